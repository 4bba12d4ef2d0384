// Batch normalization: per-channel statistics one channel per block (summed in f64, two passes,
// as on the CPU), then the elementwise part one element per thread.
//
// x, y, dx, dy (n, c, s); wb: γ (c) then β (c), or null; running: mean (c) then var (c), or
// null; saved (4c): mean, inverse std, then the backward's Σ dy and Σ dy·x̂.

// Training statistics of channel blockIdx.x: saved mean and invstd written; running updated with
// weight `*factor` (the variance unbiased) when not null. The factor is read from device memory
// (see `Cuda::step_scalars`): with momentum=None it is 1/t, new at every step.
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) batch_norm_stats_f32(float* saved, float* running, const float* x, u32 n, u32 c,
                                                                                  u32 s, float eps, const float* factor) {
    u32 ch = blockIdx.x;
    u64 count = (u64)n * s;
    double sum = 0.0;
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) sum += x[((i / s) * c + ch) * s + i % s];
    double mu = block_sum(sum) / count;
    double sq = 0.0;
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) {
        double d = x[((i / s) * c + ch) * s + i % s] - mu;
        sq += d * d;
    }
    double var = block_sum(sq) / count;
    if (threadIdx.x == 0) {
        saved[ch] = (float)mu;
        saved[c + ch] = (float)(1.0 / sqrt(var + (double)eps));
        if (running) {
            double f = *factor, unbias = (double)count / fmax((double)count - 1.0, 1.0);
            running[ch] = (float)((1.0 - f) * running[ch] + f * mu);
            running[c + ch] = (float)((1.0 - f) * running[c + ch] + f * var * unbias);
        }
    }
}

// Evaluation statistics: saved mean and invstd from the running ones, one channel per thread.
extern "C" __global__ void batch_norm_eval_stats_f32(float* saved, const float* running, u32 c, float eps) {
    GRID_STRIDE(ch, c) {
        saved[ch] = running[ch];
        saved[c + ch] = 1.0f / sqrtf(running[c + ch] + eps);
    }
}

// y = (x − mean)·invstd·γ + β with the saved statistics; written.
extern "C" __global__ void batch_norm_fwd_f32(float* y, const float* x, const float* wb, const float* saved, u32 n, u32 c, u32 s) {
    GRID_STRIDE(i, (u64)n * c * s) {
        u32 ch = (i / s) % c;
        float gamma = wb ? wb[ch] : 1.0f, beta = wb ? wb[c + ch] : 0.0f;
        float scale = saved[c + ch] * gamma;
        float shift = beta - saved[ch] * scale;
        y[i] = x[i] * scale + shift;
    }
}

// Σ dy and Σ dy·x̂ of channel blockIdx.x into saved[2c..4c] (written), and dγ += Σ dy·x̂,
// dβ += Σ dy when dwb is not null.
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) batch_norm_bwd_sums_f32(float* saved, float* dwb, const float* x, const float* dy,
                                                                                     u32 n, u32 c, u32 s) {
    u32 ch = blockIdx.x;
    u64 count = (u64)n * s;
    float mean = saved[ch], invstd = saved[c + ch];
    double a = 0.0, b = 0.0;
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) {
        u64 at = ((i / s) * c + ch) * s + i % s;
        float g = dy[at];
        a += g;
        b += (double)g * (double)((x[at] - mean) * invstd);
    }
    a = block_sum(a);
    b = block_sum(b);
    if (threadIdx.x == 0) {
        saved[2 * c + ch] = (float)a;
        saved[3 * c + ch] = (float)b;
        if (dwb) {
            dwb[ch] += (float)b;
            dwb[c + ch] += (float)a;
        }
    }
}

// dx written: γ·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)) with batch statistics, γ·invstd·dy
// without (evaluation, where the statistics are constants).
extern "C" __global__ void batch_norm_bwd_f32(float* dx, const float* x, const float* wb, const float* saved, const float* dy, u32 n, u32 c, u32 s,
                                              int batch_stats) {
    float count = (float)((u64)n * s);
    GRID_STRIDE(i, (u64)n * c * s) {
        u32 ch = (i / s) % c;
        float gamma = wb ? wb[ch] : 1.0f;
        float k = gamma * saved[c + ch];
        if (batch_stats) {
            float md = saved[2 * c + ch] / count, mdx = saved[3 * c + ch] / count;
            float xhat = (x[i] - saved[ch]) * saved[c + ch];
            dx[i] = k * (dy[i] - md - xhat * mdx);
        } else {
            dx[i] = k * dy[i];
        }
    }
}
