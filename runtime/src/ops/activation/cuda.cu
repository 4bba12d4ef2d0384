// Elementwise activations, one element per thread. `kind` is the `Activation` variant (0 ReLU,
// 1 LeakyReLU with `slope`, 2 Sigmoid, 3 Tanh, 4 SiLU, 5 ReLU6, 6 Hardswish,
// 7 GELU, 8 GELU with approximate='tanh', 9 ELU with alpha in `slope`, 10 Identity; mapped in ops/activation/cuda.rs).

__device__ float activation_apply(int kind, float slope, float x) {
    switch (kind) {
        case 0: return fmaxf(x, 0.0f);
        case 1: return x > 0.0f ? x : x * slope;
        case 2: return 1.0f / (1.0f + expf(-x));
        case 4: return x / (1.0f + expf(-x));
        case 5: return fminf(fmaxf(x, 0.0f), 6.0f);
        case 6: return x * fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f;
        case 7: return 0.5f * x * (1.0f + erff(x * 0.70710678f));
        case 8: return 0.5f * x * (1.0f + tanhf(0.7978846f * (x + 0.044715f * x * x * x)));
        case 9: return x > 0.0f ? x : slope * expm1f(x);
        case 10: return x;
        default: return tanhf(x);
    }
}

// y (len) = f(x (len)), written.
extern "C" __global__ void activation_fwd_f32(float* y, const float* x, u64 len, int kind, float slope) {
    GRID_STRIDE(i, len) y[i] = activation_apply(kind, slope, x[i]);
}

// dx (len) = f'(x)·dy, written; Sigmoid and Tanh read the output y, the others the input x.
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
            // At the kinks, PyTorch's choices: ReLU6 passes only strictly inside (0, 6),
            // Hardswish's slope is x/3 + 1/2 on [-3, 3].
            case 5: dx[i] = x[i] > 0.0f && x[i] < 6.0f ? g : 0.0f; break;
            case 6: dx[i] = x[i] < -3.0f ? 0.0f : x[i] <= 3.0f ? g * (x[i] / 3.0f + 0.5f) : g; break;
            case 7: {
                float v = x[i];
                float cdf = 0.5f * (1.0f + erff(v * 0.70710678f));
                dx[i] = g * (cdf + v * 0.39894228f * expf(-0.5f * v * v));
                break;
            }
            case 8: {
                float v = x[i];
                float t = tanhf(0.7978846f * (v + 0.044715f * v * v * v));
                dx[i] = g * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * 0.7978846f * (1.0f + 3.0f * 0.044715f * v * v));
                break;
            }
            case 9: dx[i] = x[i] > 0.0f ? g : g * slope * expf(x[i]); break;
            case 10: dx[i] = g; break;
            default: dx[i] = g * (1.0f - y[i] * y[i]); break;
        }
    }
}
