// Mean squared error: one element per thread, each block's Σ (y − t)² (in f64) into `partial`;
// the host sums the partials in order.

// dy (len) = k·(y − t) written when not null (k = 2/len); partial (gridDim.x) written.
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) mse_fwd_bwd_f32(float* dy, double* partial, const float* y, const float* t, u64 len, float k) {
    double acc = 0.0;
    GRID_STRIDE(i, len) {
        float d = y[i] - t[i];
        acc += (double)d * (double)d;
        if (dy) dy[i] = k * d;
    }
    double total = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}
