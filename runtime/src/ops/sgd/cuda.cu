// torch.optim.SGD's update (ops/sgd/mod.rs), one parameter per thread. `momentum_buf` is unread
// without momentum. The learning rate (a schedule changes it) and whether the momentum buffer is
// empty (the first step) are read from device memory, `step` (see `Cuda::step_scalars`), so that
// a captured graph of the step stays right: step[0] = lr as f32 bits, step[1] = first.

// p (len) updated in place; momentum_buf (len) updated when momentum ≠ 0.
extern "C" __global__ void sgd_step_f32(float* p, float* momentum_buf, const float* g, u64 len, const u32* step, float momentum, float dampening,
                                        float weight_decay, int nesterov) {
    float lr = __uint_as_float(step[0]);
    int first = step[1] != 0;
    GRID_STRIDE(i, len) {
        float d = g[i] + weight_decay * p[i];
        if (momentum != 0.0f) {
            float b = first ? d : momentum * momentum_buf[i] + (1.0f - dampening) * d;
            momentum_buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] -= lr * d;
    }
}
