// torch.optim.Adam / AdamW's update (ops/adam/mod.rs), one parameter per thread. The bias
// corrections are computed once on the host, in f64 as on the CPU, and change every step, so
// they are read from device memory (`step`, see `Cuda::step_scalars`), which keeps a captured
// graph of the step right: step[0] = lr/(1 − β1ᵗ), step[1] = √(1 − β2ᵗ), step[2] = 1 − lr·weight_decay.

// p, m, v (len) updated in place; vmax (len) too with amsgrad, else null.
extern "C" __global__ void adam_step_f32(float* p, float* m, float* v, float* vmax, const float* g, u64 len, float beta1, float beta2, float eps,
                                         float weight_decay, int decoupled, const float* step) {
    float step_size = step[0], bc2_sqrt = step[1], decay = step[2];
    GRID_STRIDE(i, len) {
        float grad = g[i];
        float param = p[i];
        if (decoupled) {
            param *= decay;
        } else {
            grad += weight_decay * param;
        }
        float mi = m[i] + (grad - m[i]) * (1.0f - beta1);
        float vi = beta2 * v[i] + (1.0f - beta2) * grad * grad;
        m[i] = mi;
        v[i] = vi;
        if (vmax) {
            vi = fmaxf(vmax[i], vi);
            vmax[i] = vi;
        }
        p[i] = param - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}
