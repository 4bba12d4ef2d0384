// Max and average pooling. Forwards: one output per thread. Backwards gather: one input per
// thread sums the gradients of the windows that hold it, so overlapping windows (kernel >
// stride) need no atomics and the result does not depend on scheduling.
//
// x (n, c, h_in, w_in), y (n, c, h_out, w_out); `planes` = n·c.

// The geometry of a `Pool2d` (ops/pool2d/mod.rs), passed by value; `PoolGeometry` in
// ops/pool2d/cuda.rs has the same layout.
struct Pool {
    u32 h_in, w_in, h_out, w_out;
    u32 kh, kw, sh, sw, ph, pw, dh, dw;
    u32 count_include_pad, divisor_override;
};

// The input index PyTorch's max pooling picks in window (oy, ox) of a plane whose maximum is m:
// the first element equal to it in scan order, or the last NaN when m is NaN; -1 for a window
// with no element inside the input.
__device__ i64 max_pool_argmax(const Pool& p, const float* x, u32 oy, u32 ox, float m) {
    i64 first = -1, found = -1;
    for (u32 ky = 0; ky < p.kh; ky++) {
        i64 iy = (i64)oy * p.sh - p.ph + (i64)ky * p.dh;
        if (iy < 0 || iy >= p.h_in) continue;
        for (u32 kx = 0; kx < p.kw; kx++) {
            i64 ix = (i64)ox * p.sw - p.pw + (i64)kx * p.dw;
            if (ix < 0 || ix >= p.w_in) continue;
            i64 i = iy * p.w_in + ix;
            if (first < 0) first = i;
            if (isnan(m)) {
                if (isnan(x[i])) found = i;
            } else if (x[i] == m) {
                return i;
            }
        }
    }
    return found >= 0 ? found : first;
}

// y = max over each window, NaN propagating as in PyTorch; written.
extern "C" __global__ void max_pool2d_fwd_f32(float* y, const float* x, u64 planes, Pool p) {
    u64 out = (u64)p.h_out * p.w_out;
    GRID_STRIDE(o, planes * out) {
        const float* plane = x + (o / out) * p.h_in * p.w_in;
        u32 oy = (o % out) / p.w_out, ox = (o % out) % p.w_out;
        float best = NEG_INF;
        bool nan = false;
        for (u32 ky = 0; ky < p.kh; ky++) {
            i64 iy = (i64)oy * p.sh - p.ph + (i64)ky * p.dh;
            if (iy < 0 || iy >= p.h_in) continue;
            for (u32 kx = 0; kx < p.kw; kx++) {
                i64 ix = (i64)ox * p.sw - p.pw + (i64)kx * p.dw;
                if (ix < 0 || ix >= p.w_in) continue;
                float v = plane[iy * p.w_in + ix];
                best = fmaxf(best, v);
                nan |= isnan(v);
            }
        }
        y[o] = nan ? QUIET_NAN : best;
    }
}

// dx = Σ dy over the windows whose argmax (found again from x and y) is this input; written.
extern "C" __global__ void max_pool2d_bwd_f32(float* dx, const float* x, const float* y, const float* dy, u64 planes, Pool p) {
    u64 in = (u64)p.h_in * p.w_in, out = (u64)p.h_out * p.w_out;
    GRID_STRIDE(i, planes * in) {
        u64 plane = i / in;
        i64 at = i % in;
        i64 iy = at / p.w_in, ix = at % p.w_in;
        const float* xp = x + plane * in;
        float sum = 0.0f;
        for (u32 ky = 0; ky < p.kh; ky++) {
            i64 ty = iy + p.ph - (i64)ky * p.dh;
            if (ty < 0 || ty % p.sh != 0 || ty / p.sh >= p.h_out) continue;
            u32 oy = ty / p.sh;
            for (u32 kx = 0; kx < p.kw; kx++) {
                i64 tx = ix + p.pw - (i64)kx * p.dw;
                if (tx < 0 || tx % p.sw != 0 || tx / p.sw >= p.w_out) continue;
                u32 ox = tx / p.sw;
                u64 o = plane * out + (u64)oy * p.w_out + ox;
                if (max_pool_argmax(p, xp, oy, ox, y[o]) == at) sum += dy[o];
            }
        }
        dx[i] = sum;
    }
}

// `staticnet_shape::pool_window`: the window of output o along one axis, clipped to the input,
// and its length counting padding (but not a ceil_mode overhang).
struct Window {
    u32 start, end, padded;
};

__device__ Window pool_window(u32 o, u32 len, u32 kernel, u32 stride, u32 padding) {
    u32 start_padded = o * stride;
    u32 end_padded = min(start_padded + kernel, len + 2 * padding);
    Window w;
    w.padded = end_padded - start_padded;
    w.start = start_padded > padding ? start_padded - padding : 0;
    w.end = min(end_padded > padding ? end_padded - padding : 0, len);
    return w;
}

__device__ float avg_pool_divisor(const Pool& p, Window wy, Window wx) {
    if (p.divisor_override > 0) return (float)p.divisor_override;
    if (p.count_include_pad) return (float)(wy.padded * wx.padded);
    return (float)((wy.end - wy.start) * (wx.end - wx.start));
}

// y = mean over each window, with PyTorch's divisor; written.
extern "C" __global__ void avg_pool2d_fwd_f32(float* y, const float* x, u64 planes, Pool p) {
    u64 out = (u64)p.h_out * p.w_out;
    GRID_STRIDE(o, planes * out) {
        const float* plane = x + (o / out) * p.h_in * p.w_in;
        u32 oy = (o % out) / p.w_out, ox = (o % out) % p.w_out;
        Window wy = pool_window(oy, p.h_in, p.kh, p.sh, p.ph), wx = pool_window(ox, p.w_in, p.kw, p.sw, p.pw);
        float sum = 0.0f;
        for (u32 iy = wy.start; iy < wy.end; iy++)
            for (u32 ix = wx.start; ix < wx.end; ix++) sum += plane[iy * p.w_in + ix];
        y[o] = sum / avg_pool_divisor(p, wy, wx);
    }
}

// The outputs along one axis whose window (before clipping) covers input i: o·stride ≤
// i + padding < o·stride + kernel.
__device__ void covering(u32 i, u32 kernel, u32 stride, u32 padding, u32 out, u32* lo, u32* hi) {
    u32 t = i + padding;
    *lo = t >= kernel ? (t - kernel) / stride + 1 : 0;
    *hi = min(t / stride + 1, out);
}

// dx = Σ dy/divisor over the windows that hold this input; written.
extern "C" __global__ void avg_pool2d_bwd_f32(float* dx, const float* dy, u64 planes, Pool p) {
    u64 in = (u64)p.h_in * p.w_in, out = (u64)p.h_out * p.w_out;
    GRID_STRIDE(i, planes * in) {
        u64 plane = i / in;
        u32 iy = (i % in) / p.w_in, ix = (i % in) % p.w_in;
        u32 y0, y1, x0, x1;
        covering(iy, p.kh, p.sh, p.ph, p.h_out, &y0, &y1);
        covering(ix, p.kw, p.sw, p.pw, p.w_out, &x0, &x1);
        float sum = 0.0f;
        for (u32 oy = y0; oy < y1; oy++) {
            Window wy = pool_window(oy, p.h_in, p.kh, p.sh, p.ph);
            if (iy < wy.start || iy >= wy.end) continue;
            for (u32 ox = x0; ox < x1; ox++) {
                Window wx = pool_window(ox, p.w_in, p.kw, p.sw, p.pw);
                if (ix < wx.start || ix >= wx.end) continue;
                sum += dy[plane * out + (u64)oy * p.w_out + ox] / avg_pool_divisor(p, wy, wx);
            }
        }
        dx[i] = sum;
    }
}
