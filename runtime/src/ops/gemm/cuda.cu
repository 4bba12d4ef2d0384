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
//
// bf16 mixed precision (`Precision::Bf16`, PyTorch's autocast) rounds both operands to bf16 as
// they are staged and sums the products in f32 (a product of two bf16 values is exact in f32),
// then rounds the GEMM's own result to bf16, autocast's output dtype, before it is added to C
// (`accumulate`: a gradient autocast computes in bf16 is added to an f32 .grad). Storage stays
// f32. On sm_80 and newer `gemm_bf16_tc` does those products on tensor cores; `gemm_f32` with
// `bf16_in` set is the same arithmetic for older GPUs.

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
    int bf16_in;     // operands rounded to bf16 (products summed in f32)
    int bf16_out;    // the result rounded to bf16 before it is added to C
};

// What a GEMM's result v for C[gm, gn] becomes, stored at `at`: rounded to bf16 (bf16_out), the
// old value added (accumulate), the bias added and ReLU, in the order each precision's
// reference does it. In f32 the order is the one the CPU backend's GEMM has always used.
__device__ __forceinline__ void gemm_store(float* at, float v, const float* bias, u64 gm, u64 gn, const Gemm& g) {
    if (g.bf16_out) {
        // Autocast: y = bf16(x·w + bias) with the bias in bf16, then added to what C held.
        if (bias) v += bf16_round(g.bias_rows ? bias[gm] : bias[gn]);
        v = bf16_round(v);
        if (g.accumulate) v += *at;
    } else {
        if (g.accumulate) v += *at;
        if (bias) v += g.bias_rows ? bias[gm] : bias[gn];
    }
    if (g.relu) v = fmaxf(v, 0.0f);
    *at = v;
}

// An operand as the GEMM stages it: itself, or rounded to bf16.
__device__ __forceinline__ float gemm_operand(float x, const Gemm& g) {
    return g.bf16_in ? bf16_round(x) : x;
}

#define TILE_M 64
#define TILE_N 64
#define TILE_K 16

// What one block of a GEMM computes (blockIdx.z picks it): batches first .. last summed, over
// k_lo .. k_hi of the k range.
struct GemmPart {
    u32 first, last;
    u64 k_lo, k_hi;
};

__device__ __forceinline__ GemmPart gemm_part(const Gemm& g) {
    u32 groups = (g.batches + g.group - 1) / g.group;
    u32 first = (blockIdx.z % groups) * g.group;
    u64 k_lo = (u64)(blockIdx.z / groups) * g.k_chunk;
    return GemmPart{first, min(first + g.group, g.batches), k_lo, min(k_lo + g.k_chunk, (u64)g.k)};
}

// The element of a tile's 16-deep slice of A (mm, kk) and of B (nn, kk) that staging thread step
// t loads: neighbouring threads read neighbouring addresses, along k when the operand is
// k-contiguous, along m (n) otherwise.
__device__ __forceinline__ void a_coords(u32 t, const Gemm& g, u32& mm, u32& kk) {
    mm = g.a_k == 1 ? t / TILE_K : t % TILE_M;
    kk = g.a_k == 1 ? t % TILE_K : t / TILE_M;
}

__device__ __forceinline__ void b_coords(u32 t, const Gemm& g, u32& nn, u32& kk) {
    nn = g.b_n == 1 ? t % TILE_N : t / TILE_K;
    kk = g.b_n == 1 ? t / TILE_N : t % TILE_K;
}

// c (written, or accumulated with `accumulate`) from a, b and bias (null for none).
extern "C" __global__ void __launch_bounds__(256) gemm_f32(float* c, const float* a, const float* b, const float* bias, Gemm g) {
    __shared__ float as[TILE_K][TILE_M + 1];
    __shared__ float bs[TILE_K][TILE_N + 1];
    u32 tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    u64 m0 = (u64)blockIdx.y * TILE_M, n0 = (u64)blockIdx.x * TILE_N;
    float acc[4][4] = {};
    GemmPart part = gemm_part(g);
    for (u32 batch = part.first; batch < part.last; batch++) {
        const float* ab = a + batch * g.a_b;
        const float* bb = b + batch * g.b_b;
        for (u64 k0 = part.k_lo; k0 < part.k_hi; k0 += TILE_K) {
            for (u32 t = threadIdx.x; t < TILE_M * TILE_K; t += 256) {
                u32 mm, kk;
                a_coords(t, g, mm, kk);
                u64 gm = m0 + mm, gk = k0 + kk;
                as[kk][mm] = gm < g.m && gk < part.k_hi ? gemm_operand(ab[gm * g.a_m + gk * g.a_k], g) : 0.0f;
            }
            for (u32 t = threadIdx.x; t < TILE_N * TILE_K; t += 256) {
                u32 nn, kk;
                b_coords(t, g, nn, kk);
                u64 gn = n0 + nn, gk = k0 + kk;
                bs[kk][nn] = gn < g.n && gk < part.k_hi ? gemm_operand(bb[gk * g.b_k + gn * g.b_n], g) : 0.0f;
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
            gemm_store(cb + gm * g.c_m + gn * g.c_n, acc[i][j], bias, gm, gn, g);
        }
    }
}

// bf16 operands, f32 sums on tensor cores (sm_80 and newer): the same C_z as `gemm_f32`, from the
// same 64 × 64 tiles and 16-deep slices, with 4 warps of 32 × 32 each, as 2 × 4 `mma.sync`
// m16n8k16 tiles. The operands are rounded to bf16 as they are staged, A as [m][k] and B as
// [n][k], so that each thread's fragment is pairs of neighbouring k: one 32-bit load per pair.
// Rows are padded to 24 halves (12 words), so a warp's fragment loads hit 32 different banks.
#define TC_THREADS 128
#define TC_ROW (TILE_K + 8)

__device__ __forceinline__ unsigned short bf16_bits(float x) {
    return (unsigned short)(__float_as_uint(bf16_round(x)) >> 16);
}

extern "C" __global__ void __launch_bounds__(TC_THREADS) gemm_bf16_tc(float* c, const float* a, const float* b, const float* bias, Gemm g) {
#if __CUDA_ARCH__ >= 800
    __shared__ __align__(16) unsigned short as[TILE_M][TC_ROW];
    __shared__ __align__(16) unsigned short bs[TILE_N][TC_ROW];
    // The PTX ISA's fragment layout of m16n8k16: lane = 4·group + thread-in-group.
    u32 lane = threadIdx.x % 32, warp = threadIdx.x / 32, gid = lane / 4, tig = lane % 4;
    u32 wm = (warp / 2) * 32, wn = (warp % 2) * 32;
    u64 m0 = (u64)blockIdx.y * TILE_M, n0 = (u64)blockIdx.x * TILE_N;
    float acc[2][4][4] = {};
    GemmPart part = gemm_part(g);
    for (u32 batch = part.first; batch < part.last; batch++) {
        const float* ab = a + batch * g.a_b;
        const float* bb = b + batch * g.b_b;
        for (u64 k0 = part.k_lo; k0 < part.k_hi; k0 += TILE_K) {
            for (u32 t = threadIdx.x; t < TILE_M * TILE_K; t += TC_THREADS) {
                u32 mm, kk;
                a_coords(t, g, mm, kk);
                u64 gm = m0 + mm, gk = k0 + kk;
                as[mm][kk] = gm < g.m && gk < part.k_hi ? bf16_bits(ab[gm * g.a_m + gk * g.a_k]) : 0;
            }
            for (u32 t = threadIdx.x; t < TILE_N * TILE_K; t += TC_THREADS) {
                u32 nn, kk;
                b_coords(t, g, nn, kk);
                u64 gn = n0 + nn, gk = k0 + kk;
                bs[nn][kk] = gn < g.n && gk < part.k_hi ? bf16_bits(bb[gk * g.b_k + gn * g.b_n]) : 0;
            }
            __syncthreads();
            // A fragment (16 × 16, rows gid and gid + 8, k pairs 2·tig and 2·tig + 8); B fragment
            // (16 × 8, column gid, the same k pairs). The lower half of each word is the lower k.
            u32 af[2][4], bf[4][2];
#pragma unroll
            for (u32 i = 0; i < 2; i++) {
                u32 r = wm + 16 * i + gid;
                af[i][0] = *(const u32*)&as[r][2 * tig];
                af[i][1] = *(const u32*)&as[r + 8][2 * tig];
                af[i][2] = *(const u32*)&as[r][2 * tig + 8];
                af[i][3] = *(const u32*)&as[r + 8][2 * tig + 8];
            }
#pragma unroll
            for (u32 j = 0; j < 4; j++) {
                u32 col = wn + 8 * j + gid;
                bf[j][0] = *(const u32*)&bs[col][2 * tig];
                bf[j][1] = *(const u32*)&bs[col][2 * tig + 8];
            }
#pragma unroll
            for (u32 i = 0; i < 2; i++)
#pragma unroll
                for (u32 j = 0; j < 4; j++) {
                    float* d = acc[i][j];
                    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                                 : "r"(af[i][0]), "r"(af[i][1]), "r"(af[i][2]), "r"(af[i][3]), "r"(bf[j][0]), "r"(bf[j][1]));
                }
            __syncthreads();
        }
    }
    // Accumulator r of tile (i, j): row gid (+ 8 for r ≥ 2), column 2·tig (+ 1 for odd r).
    float* cb = c + blockIdx.z * g.c_b;
#pragma unroll
    for (u32 i = 0; i < 2; i++)
#pragma unroll
        for (u32 j = 0; j < 4; j++)
#pragma unroll
            for (u32 r = 0; r < 4; r++) {
                u64 gm = m0 + wm + 16 * i + gid + (r / 2) * 8, gn = n0 + wn + 8 * j + 2 * tig + r % 2;
                if (gm < g.m && gn < g.n) gemm_store(cb + gm * g.c_m + gn * g.c_n, acc[i][j][r], bias, gm, gn, g);
            }
#else
    // The launcher picks this kernel only on sm_80 and newer.
    __trap();
#endif
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
        gemm_store(c + z * g.c_b + m * g.c_m + n * g.c_n, v, bias, m, n, g);
    }
}

// The epilogue of a GEMM cuBLAS computed into C (with `accumulate` as its beta): + bias, ReLU.
extern "C" __global__ void gemm_epilogue_f32(float* c, const float* bias, Gemm g) {
    u64 per = (u64)g.m * g.n, len = (u64)g.batches * per;
    GRID_STRIDE(i, len) {
        u64 z = i / per, m = (i % per) / g.n, n = i % g.n;
        float* at = c + z * g.c_b + m * g.c_m + n * g.c_n;
        float v = *at;
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
// depend on scheduling): the reduction after a split GEMM, whose total is rounded to bf16 when
// `bf16` is set (the GEMM's partial sums were not: see `gemm_parts`).
extern "C" __global__ void sum_parts_f32(float* dst, const float* partial, u64 len, u32 parts, int bf16) {
    GRID_STRIDE(i, len) {
        float sum = 0.0f;
        for (u32 z = 0; z < parts; z++) sum += partial[z * len + i];
        dst[i] += bf16 ? bf16_round(sum) : sum;
    }
}
