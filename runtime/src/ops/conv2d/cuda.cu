// Convolution as im2col + GEMM (ops/gemm/cuda.cu), per image of the batch:
// - forward:          Y_b[co, p] = W[co, K]·col_b[K, p] + bias, then ReLU
// - backward filter:  dW[co, K] += Σ_b dY_b[co, p]·col_bᵀ;  db += Σ dY
// - backward data:    dcol_b[K, p] = Wᵀ·dY_b, then col2im gathers it into dX
// with K = c_in·kh·kw taps and p = h_out·w_out pixels. col2im is a gather (one input element
// per thread summing its taps), so it needs no atomics and does not depend on scheduling.
//
// x (n, c_in, h_in, w_in), col (n, K, p), y and dy (n, c_out, h_out, w_out).

// The geometry of a `Conv2d` (ops/conv2d/mod.rs); `ConvGeometry` in ops/conv2d/cuda.rs has the
// same layout.
struct Conv {
    u32 c_in, h_in, w_in, h_out, w_out;
    u32 kh, kw, sh, sw, ph, pw, dh, dw;
};

// col (n, K, p) written from x: col[b, (ci, ky, kx), (oy, ox)] = x[b, ci, oy·sh − ph + ky·dh,
// ox·sw − pw + kx·dw], zero in the padding.
extern "C" __global__ void im2col_f32(float* col, const float* x, u32 n, Conv v) {
    u64 p = (u64)v.h_out * v.w_out, taps = (u64)v.c_in * v.kh * v.kw;
    GRID_STRIDE(i, n * taps * p) {
        u64 b = i / (taps * p), tap = (i / p) % taps, pix = i % p;
        u32 ci = tap / (v.kh * v.kw), ky = (tap / v.kw) % v.kh, kx = tap % v.kw;
        i64 iy = (i64)(pix / v.w_out) * v.sh - v.ph + (i64)ky * v.dh;
        i64 ix = (i64)(pix % v.w_out) * v.sw - v.pw + (i64)kx * v.dw;
        bool inside = iy >= 0 && iy < v.h_in && ix >= 0 && ix < v.w_in;
        col[i] = inside ? x[((b * v.c_in + ci) * v.h_in + iy) * v.w_in + ix] : 0.0f;
    }
}

// dx (n, c_in, h_in, w_in) written: the sum of dcol over every (tap, pixel) that read this input.
extern "C" __global__ void col2im_f32(float* dx, const float* dcol, u32 n, Conv v) {
    u64 p = (u64)v.h_out * v.w_out, taps = (u64)v.c_in * v.kh * v.kw, plane = (u64)v.h_in * v.w_in;
    GRID_STRIDE(i, n * v.c_in * plane) {
        u64 b = i / (v.c_in * plane);
        u32 ci = (i / plane) % v.c_in;
        i64 iy = (i % plane) / v.w_in, ix = (i % plane) % v.w_in;
        const float* dc = dcol + b * taps * p;
        float sum = 0.0f;
        for (u32 ky = 0; ky < v.kh; ky++) {
            i64 ty = iy + v.ph - (i64)ky * v.dh;
            if (ty < 0 || ty % v.sh != 0 || ty / v.sh >= v.h_out) continue;
            u64 oy = ty / v.sh;
            for (u32 kx = 0; kx < v.kw; kx++) {
                i64 tx = ix + v.pw - (i64)kx * v.dw;
                if (tx < 0 || tx % v.sw != 0 || tx / v.sw >= v.w_out) continue;
                u64 ox = tx / v.sw;
                u64 tap = ((u64)ci * v.kh + ky) * v.kw + kx;
                sum += dc[tap * p + oy * v.w_out + ox];
            }
        }
        dx[i] = sum;
    }
}

// dst (len) = dy where the fused ReLU's output y is positive, else 0; written.
extern "C" __global__ void conv2d_relu_mask_f32(float* dst, const float* dy, const float* y, u64 len) {
    GRID_STRIDE(i, len) dst[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
