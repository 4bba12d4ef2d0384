// Elementwise addition, one element per thread.

// y (len) = a + b, then ReLU when `relu`; written.
extern "C" __global__ void add_f32(float* y, const float* a, const float* b, u64 len, int relu) {
    GRID_STRIDE(i, len) {
        float v = a[i] + b[i];
        y[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// y (len) += x.
extern "C" __global__ void add_assign_f32(float* y, const float* x, u64 len) {
    GRID_STRIDE(i, len) y[i] += x[i];
}
