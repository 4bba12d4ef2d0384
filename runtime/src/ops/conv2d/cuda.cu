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
extern "C" __global__ void col2im_f32(float* dx, const float* dcol, u32 n, Conv v, int bf16) {
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
        // In bf16 the GEMM left dcol unrounded: dX is rounded once, as autocast's would be.
        dx[i] = bf16 ? bf16_round(sum) : sum;
    }
}

// dst (len) = dy where the fused ReLU's output y is positive, else 0; written.
extern "C" __global__ void conv2d_relu_mask_f32(float* dst, const float* dy, const float* y, u64 len) {
    GRID_STRIDE(i, len) dst[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// The epilogue of a convolution cuDNN ran (ops/conv2d/cudnn.rs): y (len = n·c·hw) += bias[ch]
// when bias is not null, then ReLU when `relu`, in place.
extern "C" __global__ void conv2d_bias_relu_f32(float* y, const float* bias, u64 len, u32 c, u32 hw, int relu) {
    GRID_STRIDE(i, len) {
        float v = y[i];
        if (bias) v += bias[(i / hw) % c];
        y[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// Grouped convolutions (groups > 1: depthwise and the like) as direct loops, one thread per
// output element (no im2col: a group's taps are too few to make a GEMM pay). Output channel co
// reads the cin_g = c_in/groups inputs of group co / cout_g; w (c_out, cin_g, kh, kw).

// y (n, c_out, h_out, w_out) written: bias + Σ over the group's inputs and taps, then ReLU.
extern "C" __global__ void conv2d_grouped_fwd_f32(float* y, const float* x, const float* w, const float* bias, u32 n, Conv v, u32 c_out,
                                                  u32 groups, int relu) {
    u64 p = (u64)v.h_out * v.w_out;
    u32 cin_g = v.c_in / groups, cout_g = c_out / groups;
    GRID_STRIDE(i, (u64)n * c_out * p) {
        u64 b = i / (c_out * p), pix = i % p;
        u32 co = (i / p) % c_out;
        i64 oy = pix / v.w_out, ox = pix % v.w_out;
        float acc = bias ? bias[co] : 0.0f;
        for (u32 cg = 0; cg < cin_g; cg++) {
            const float* xp = x + ((b * v.c_in + (u64)(co / cout_g) * cin_g + cg) * v.h_in) * v.w_in;
            const float* wp = w + ((u64)co * cin_g + cg) * v.kh * v.kw;
            for (u32 ky = 0; ky < v.kh; ky++) {
                i64 iy = oy * v.sh - v.ph + (i64)ky * v.dh;
                if (iy < 0 || iy >= v.h_in) continue;
                for (u32 kx = 0; kx < v.kw; kx++) {
                    i64 ix = ox * v.sw - v.pw + (i64)kx * v.dw;
                    if (ix < 0 || ix >= v.w_in) continue;
                    acc += xp[iy * v.w_in + ix] * wp[ky * v.kw + kx];
                }
            }
        }
        y[i] = relu && acc < 0.0f ? 0.0f : acc;
    }
}

// dx (n, c_in, h_in, w_in) written: per input element, the sum over the outputs of its group
// that read it (a gather, so no atomics).
extern "C" __global__ void conv2d_grouped_dx_f32(float* dx, const float* dy, const float* w, u32 n, Conv v, u32 c_out, u32 groups) {
    u64 plane = (u64)v.h_in * v.w_in, p = (u64)v.h_out * v.w_out;
    u32 cin_g = v.c_in / groups, cout_g = c_out / groups;
    GRID_STRIDE(i, (u64)n * v.c_in * plane) {
        u64 b = i / (v.c_in * plane);
        u32 ci = (i / plane) % v.c_in, group = ci / cin_g, cg = ci % cin_g;
        i64 iy = (i % plane) / v.w_in, ix = (i % plane) % v.w_in;
        float sum = 0.0f;
        for (u32 co = group * cout_g; co < (group + 1) * cout_g; co++) {
            const float* d = dy + (b * c_out + co) * p;
            const float* wp = w + ((u64)co * cin_g + cg) * v.kh * v.kw;
            for (u32 ky = 0; ky < v.kh; ky++) {
                i64 ty = iy + v.ph - (i64)ky * v.dh;
                if (ty < 0 || ty % v.sh != 0 || ty / v.sh >= v.h_out) continue;
                u64 oy = ty / v.sh;
                for (u32 kx = 0; kx < v.kw; kx++) {
                    i64 tx = ix + v.pw - (i64)kx * v.dw;
                    if (tx < 0 || tx % v.sw != 0 || tx / v.sw >= v.w_out) continue;
                    sum += d[oy * v.w_out + tx / v.sw] * wp[ky * v.kw + kx];
                }
            }
        }
        dx[i] = sum;
    }
}

// dwb += the weight gradient (c_out, cin_g, kh, kw), then the bias gradient (c_out) when
// `bias`: one block per parameter, summing over the batch and the output pixels in f64 (the
// block's sum has a fixed order, so the result does not depend on scheduling).
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) conv2d_grouped_dw_f32(float* dwb, const float* x, const float* dy, u32 n, Conv v,
                                                                                   u32 c_out, u32 groups, int bias) {
    u64 p = (u64)v.h_out * v.w_out, taps = (u64)v.kh * v.kw;
    u32 cin_g = v.c_in / groups, cout_g = c_out / groups;
    u64 wlen = (u64)c_out * cin_g * taps;
    u64 param = blockIdx.x;
    double sum = 0.0;
    if (param < wlen) {
        u32 co = param / (cin_g * taps), cg = (param / taps) % cin_g;
        u32 ky = (param % taps) / v.kw, kx = param % v.kw;
        u32 ci = (co / cout_g) * cin_g + cg;
        for (u64 j = threadIdx.x; j < (u64)n * p; j += blockDim.x) {
            u64 b = j / p, pix = j % p;
            i64 iy = (i64)(pix / v.w_out) * v.sh - v.ph + (i64)ky * v.dh;
            i64 ix = (i64)(pix % v.w_out) * v.sw - v.pw + (i64)kx * v.dw;
            if (iy < 0 || iy >= v.h_in || ix < 0 || ix >= v.w_in) continue;
            sum += (double)dy[(b * c_out + co) * p + pix] * x[((b * v.c_in + ci) * v.h_in + iy) * v.w_in + ix];
        }
    } else if (bias) {
        u32 co = param - wlen;
        for (u64 j = threadIdx.x; j < (u64)n * p; j += blockDim.x) sum += dy[((j / p) * c_out + co) * p + j % p];
    }
    double total = block_sum(sum);
    if (threadIdx.x == 0) dwb[param] += (float)total;
}
