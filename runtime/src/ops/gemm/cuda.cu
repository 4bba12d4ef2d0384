// Single-precision GEMM on the GPU, on operands given by strides, so that one kernel serves the
// linear layer (X·Wᵀ, dY·W, dYᵀ·X) and the convolution (W·col per image, dY·colᵀ summed over
// the batch, Wᵀ·dY) without a transposed copy of anything.
//
// C_z[m, n] (+)= Σ_{b in group z} Σ_k A_b[m, k]·B_b[k, n], then + bias (per row or per column)
// and ReLU, where blockIdx.z = z takes the batches z·group .. (z + 1)·group. With group 1 that is
// one GEMM per batch; with a larger group, a sum over batches split into partial sums (split-K
// over the batch, for the filter gradient, whose output is small and whose reduction is long).
// Likewise the k range may be split in chunks of `k_chunk`: blockIdx.z then also picks the chunk,
// each chunk's sum goes to its own C_z, and `gemm_sum_splits_f32` adds them up in order.
//
// Each block computes a 64 × 64 tile of C with 256 threads, 4 × 4 elements each, from 16-deep
// slices of A and B staged in shared memory. Products are plain f32 FMAs (no TF32), so results
// agree with the CPU and PyTorch's fp32 to rounding.

// `GemmShape` in ops/gemm/cuda.rs has the same layout. Strides are in elements.
struct Gemm {
    u32 m, n, k, batches;
    i64 a_m, a_k, a_b;
    i64 b_k, b_n, b_b;
    i64 c_m, c_n, c_b;
    u32 group;       // batches summed into each C_z
    u32 k_chunk;     // k per split of the k range (k itself for no split)
    int accumulate;  // C += … instead of C = …
    int bias_rows;   // bias[m] instead of bias[n]
    int relu;
};

#define TILE_M 64
#define TILE_N 64
#define TILE_K 16

// c (written, or accumulated with `accumulate`) from a, b and bias (null for none).
extern "C" __global__ void __launch_bounds__(256) gemm_f32(float* c, const float* a, const float* b, const float* bias, Gemm g) {
    __shared__ float as[TILE_K][TILE_M + 1];
    __shared__ float bs[TILE_K][TILE_N + 1];
    u32 tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    u64 m0 = (u64)blockIdx.y * TILE_M, n0 = (u64)blockIdx.x * TILE_N;
    float acc[4][4] = {};
    u32 groups = (g.batches + g.group - 1) / g.group;
    u32 first = (blockIdx.z % groups) * g.group, last = min(first + g.group, g.batches);
    u64 k_lo = (u64)(blockIdx.z / groups) * g.k_chunk, k_hi = min(k_lo + g.k_chunk, (u64)g.k);
    for (u32 batch = first; batch < last; batch++) {
        const float* ab = a + batch * g.a_b;
        const float* bb = b + batch * g.b_b;
        for (u64 k0 = k_lo; k0 < k_hi; k0 += TILE_K) {
            // Neighbouring threads read neighbouring addresses: along k when A is k-contiguous,
            // along m otherwise (and likewise for B).
            for (u32 t = threadIdx.x; t < TILE_M * TILE_K; t += 256) {
                u32 mm = g.a_k == 1 ? t / TILE_K : t % TILE_M;
                u32 kk = g.a_k == 1 ? t % TILE_K : t / TILE_M;
                u64 gm = m0 + mm, gk = k0 + kk;
                as[kk][mm] = gm < g.m && gk < k_hi ? ab[gm * g.a_m + gk * g.a_k] : 0.0f;
            }
            for (u32 t = threadIdx.x; t < TILE_N * TILE_K; t += 256) {
                u32 nn = g.b_n == 1 ? t % TILE_N : t / TILE_K;
                u32 kk = g.b_n == 1 ? t / TILE_N : t % TILE_K;
                u64 gn = n0 + nn, gk = k0 + kk;
                bs[kk][nn] = gn < g.n && gk < k_hi ? bb[gk * g.b_k + gn * g.b_n] : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (u32 kk = 0; kk < TILE_K; kk++) {
                float ar[4], br[4];
#pragma unroll
                for (u32 i = 0; i < 4; i++) {
                    ar[i] = as[kk][ty + 16 * i];
                    br[i] = bs[kk][tx + 16 * i];
                }
#pragma unroll
                for (u32 i = 0; i < 4; i++)
#pragma unroll
                    for (u32 j = 0; j < 4; j++) acc[i][j] += ar[i] * br[j];
            }
            __syncthreads();
        }
    }
    float* cb = c + blockIdx.z * g.c_b;
#pragma unroll
    for (u32 i = 0; i < 4; i++) {
        u64 gm = m0 + ty + 16 * i;
        if (gm >= g.m) continue;
#pragma unroll
        for (u32 j = 0; j < 4; j++) {
            u64 gn = n0 + tx + 16 * j;
            if (gn >= g.n) continue;
            float* at = cb + gm * g.c_m + gn * g.c_n;
            float v = acc[i][j];
            if (g.accumulate) v += *at;
            if (bias) v += g.bias_rows ? bias[gm] : bias[gn];
            if (g.relu) v = fmaxf(v, 0.0f);
            *at = v;
        }
    }
}

// The end of a GEMM split along k: C_z[m, n] (+)= Σ_s partial[s, z, m, n] in order, then bias and
// ReLU as `gemm_f32` would. `g` is the GEMM's own description; partial holds `splits` blocks of
// (z, m, n), z < ⌈batches/group⌉.
extern "C" __global__ void gemm_sum_splits_f32(float* c, const float* partial, const float* bias, Gemm g, u32 splits) {
    u64 groups = (g.batches + g.group - 1) / g.group, per = (u64)g.m * g.n, len = groups * per;
    GRID_STRIDE(i, len) {
        u64 z = i / per, m = (i % per) / g.n, n = i % g.n;
        float v = 0.0f;
        for (u32 s = 0; s < splits; s++) v += partial[s * len + i];
        float* at = c + z * g.c_b + m * g.c_m + n * g.c_n;
        if (g.accumulate) v += *at;
        if (bias) v += g.bias_rows ? bias[m] : bias[n];
        if (g.relu) v = fmaxf(v, 0.0f);
        *at = v;
    }
}

// The bias gradient of a layer whose output is (outer, c, inner): db[ch] += Σ dy over outer and
// inner, one channel per block, summed in f64.
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) bias_grad_f32(float* db, const float* dy, u32 outer, u32 c, u32 inner) {
    u32 ch = blockIdx.x;
    u64 count = (u64)outer * inner;
    double sum = 0.0;
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) sum += dy[((i / inner) * c + ch) * inner + i % inner];
    sum = block_sum(sum);
    if (threadIdx.x == 0) db[ch] += (float)sum;
}

// dst (len) += Σ_z partial[z·len + i] over `parts` partial sums, in order (so the result does not
// depend on scheduling): the reduction after a split GEMM.
extern "C" __global__ void sum_parts_f32(float* dst, const float* partial, u64 len, u32 parts) {
    GRID_STRIDE(i, len) {
        float sum = 0.0f;
        for (u32 z = 0; z < parts; z++) sum += partial[z * len + i];
        dst[i] += sum;
    }
}
