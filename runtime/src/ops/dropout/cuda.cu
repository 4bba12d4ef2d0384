// Dropout with the mask of `Dropout::keep` (ops/dropout/mod.rs): element i survives when the top
// 24 bits of splitmix64(key + (i / plane)·golden) are at least p·2^24 (plane 1 for Dropout, h·w
// for Dropout2d). The arithmetic is the CPU's bit for
// bit (u64 wrap-around, an exact u32 → f32 conversion), so both backends draw the same mask.

__device__ u64 dropout_mix(u64 z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

__device__ void dropout_apply(float* dst, const float* src, u64 len, u64 plane, u64 key, float threshold, float scale) {
    GRID_STRIDE(i, len) {
        u64 u = dropout_mix(key + (i / plane) * 0x9e3779b97f4a7c15ULL) >> 40;
        dst[i] = (float)u >= threshold ? src[i] * scale : 0.0f;
    }
}

// y (n·len) = x·mask/(1−p), written. `threshold` = p·2^24, `scale` = 1/(1−p), both from the host.
// The key changes every step, so it is read from device memory (see `Cuda::step_scalars`): a
// captured graph of the step draws a new mask at each replay.
extern "C" __global__ void dropout_fwd_f32(float* y, const float* x, u64 len, u64 plane, const u64* key, float threshold, float scale) {
    dropout_apply(y, x, len, plane, *key, threshold, scale);
}

// dx = dy·mask/(1−p), written, with the mask of the forward that had the same key.
extern "C" __global__ void dropout_bwd_f32(float* dx, const float* dy, u64 len, u64 plane, const u64* key, float threshold, float scale) {
    dropout_apply(dx, dy, len, plane, *key, threshold, scale);
}
