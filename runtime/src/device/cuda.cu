// What every kernel source of the CUDA backend shares. The sources are compiled by NVRTC as one
// program, with this file first (see `device/cuda.rs`), so NVRTC's lack of standard headers is
// made up for here once.

typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;

// Every index below is 64-bit: an im2col matrix of a large batch passes 2^31 elements.
#define GRID_STRIDE(i, count) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(count); i += (u64)blockDim.x * gridDim.x)

// NVRTC has no <math.h> macros.
#define NEG_INF __int_as_float(0xff800000)
#define QUIET_NAN __int_as_float(0x7fc00000)

// x rounded to the nearest bf16 (ties to even), as PyTorch's float → bfloat16 conversion; NaN
// stays NaN and ±inf stays ±inf (bf16 mixed precision: see ops/gemm/cuda.cu). Without
// <cuda_bf16.h>: NVRTC has no headers by default.
__device__ __forceinline__ float bf16_round(float x) {
    u32 u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0x007fffffu) ? __uint_as_float(u | 0x00400000u) : x;
    u += 0x7fffu + ((u >> 16) & 1u);
    return __uint_as_float(u & 0xffff0000u);
}

// Threads per block of the reduction kernels (`block_sum`): a power of two.
#define REDUCE_THREADS 256

// The sum of `v` over the block, in thread 0 (other threads get a partial sum). Every thread of
// the block must call it.
__device__ double block_sum(double v) {
    __shared__ double lanes[REDUCE_THREADS];
    lanes[threadIdx.x] = v;
    __syncthreads();
    for (u32 half = REDUCE_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) lanes[threadIdx.x] += lanes[threadIdx.x + half];
        __syncthreads();
    }
    double total = lanes[0];
    // The shared lanes are reused by the next call.
    __syncthreads();
    return total;
}

// dst = value over `len` elements.
extern "C" __global__ void fill_f32(float* dst, u64 len, float value) {
    GRID_STRIDE(i, len) dst[i] = value;
}
