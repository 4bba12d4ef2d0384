// Softmax and log-softmax over dimension 1: one thread per (sample, inner position), looping
// over the c channels `inner` elements apart.

// y (rows·c, rows = n·inner) written.
extern "C" __global__ void softmax_fwd_f32(float* y, const float* x, u64 rows, u32 c, u32 inner, int log_softmax) {
    GRID_STRIDE(r, rows) {
        u64 base = (r / inner) * c * inner + r % inner;
        float max = NEG_INF;
        for (u32 k = 0; k < c; k++) max = fmaxf(max, x[base + (u64)k * inner]);
        float sum = 0.0f;
        for (u32 k = 0; k < c; k++) sum += expf(x[base + (u64)k * inner] - max);
        if (log_softmax) {
            float lse = max + logf(sum);
            for (u32 k = 0; k < c; k++) y[base + (u64)k * inner] = x[base + (u64)k * inner] - lse;
        } else {
            for (u32 k = 0; k < c; k++) y[base + (u64)k * inner] = expf(x[base + (u64)k * inner] - max) / sum;
        }
    }
}

// From the output y: softmax dx = y·(dy − Σ dy·y); log-softmax dx = dy − exp(y)·Σ dy. Written.
extern "C" __global__ void softmax_bwd_f32(float* dx, const float* y, const float* dy, u64 rows, u32 c, u32 inner, int log_softmax) {
    GRID_STRIDE(r, rows) {
        u64 base = (r / inner) * c * inner + r % inner;
        float s = 0.0f;
        for (u32 k = 0; k < c; k++) {
            u64 at = base + (u64)k * inner;
            s += log_softmax ? dy[at] : dy[at] * y[at];
        }
        for (u32 k = 0; k < c; k++) {
            u64 at = base + (u64)k * inner;
            dx[at] = log_softmax ? dy[at] - expf(y[at]) * s : y[at] * (dy[at] - s);
        }
    }
}
