// Elementwise activations, one element per thread. `kind` is the `Activation` variant (0 ReLU,
// 1 LeakyReLU with `slope`, 2 Sigmoid, 3 Tanh, 4 SiLU; mapped in ops/activation/cuda.rs).

__device__ float activation_apply(int kind, float slope, float x) {
    switch (kind) {
        case 0: return fmaxf(x, 0.0f);
        case 1: return x > 0.0f ? x : x * slope;
        case 2: return 1.0f / (1.0f + expf(-x));
        case 4: return x / (1.0f + expf(-x));
        default: return tanhf(x);
    }
}

// y (len) = f(x (len)), written.
extern "C" __global__ void activation_fwd_f32(float* y, const float* x, u64 len, int kind, float slope) {
    GRID_STRIDE(i, len) y[i] = activation_apply(kind, slope, x[i]);
}

// dx (len) = f'(x)·dy, written; ReLU, LeakyReLU and SiLU read the input x, Sigmoid and Tanh the output y.
extern "C" __global__ void activation_bwd_f32(float* dx, const float* x, const float* y, const float* dy, u64 len, int kind, float slope) {
    GRID_STRIDE(i, len) {
        float g = dy[i];
        switch (kind) {
            case 0: dx[i] = x[i] > 0.0f ? g : 0.0f; break;
            case 1: dx[i] = x[i] > 0.0f ? g : g * slope; break;
            case 2: dx[i] = g * y[i] * (1.0f - y[i]); break;
            case 4: {
                float s = 1.0f / (1.0f + expf(-x[i]));
                dx[i] = g * s * (1.0f + x[i] * (1.0f - s));
                break;
            }
            default: dx[i] = g * (1.0f - y[i] * y[i]); break;
        }
    }
}
