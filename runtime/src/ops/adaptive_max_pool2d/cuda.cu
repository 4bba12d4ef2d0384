// Adaptive max pooling: forward one output per thread; backward one input per thread, summing
// dy over the windows whose argmax it is (windows may overlap). The argmax is the CPU's
// (ops/adaptive_max_pool2d/cpu.rs): the first strictly greater element, or the last NaN.
//
// x (planes, h_in, w_in), y (planes, h_out, w_out). adaptive_start/adaptive_end come from
// ops/adaptive_avg_pool2d/cuda.cu, compiled before this source.

__device__ u32 adaptive_max_argmax(const float* plane, u32 oy, u32 ox, u32 h_in, u32 w_in, u32 h_out, u32 w_out) {
    u32 y0 = adaptive_start(oy, h_in, h_out), y1 = adaptive_end(oy, h_in, h_out);
    u32 x0 = adaptive_start(ox, w_in, w_out), x1 = adaptive_end(ox, w_in, w_out);
    float best = NEG_INF;
    u32 at = y0 * w_in + x0;
    for (u32 iy = y0; iy < y1; iy++)
        for (u32 ix = x0; ix < x1; ix++) {
            float v = plane[iy * w_in + ix];
            if (v > best || isnan(v)) {
                best = v;
                at = iy * w_in + ix;
            }
        }
    return at;
}

// y = max over each window; written.
extern "C" __global__ void adaptive_max_pool2d_fwd_f32(float* y, const float* x, u64 planes, u32 h_in, u32 w_in, u32 h_out, u32 w_out) {
    u64 out = (u64)h_out * w_out;
    GRID_STRIDE(o, planes * out) {
        const float* plane = x + (o / out) * h_in * w_in;
        u32 oy = (o % out) / w_out, ox = (o % out) % w_out;
        y[o] = plane[adaptive_max_argmax(plane, oy, ox, h_in, w_in, h_out, w_out)];
    }
}

// dx = Σ dy over the windows that hold this input as their argmax; written.
extern "C" __global__ void adaptive_max_pool2d_bwd_f32(float* dx, const float* x, const float* dy, u64 planes, u32 h_in, u32 w_in, u32 h_out, u32 w_out) {
    u64 in = (u64)h_in * w_in, out = (u64)h_out * w_out;
    GRID_STRIDE(i, planes * in) {
        u64 p = i / in;
        u32 idx = (u32)(i % in);
        u32 iy = idx / w_in, ix = idx % w_in;
        const float* plane = x + p * in;
        float sum = 0.0f;
        for (u32 oy = 0; oy < h_out; oy++) {
            if (iy < adaptive_start(oy, h_in, h_out) || iy >= adaptive_end(oy, h_in, h_out)) continue;
            for (u32 ox = 0; ox < w_out; ox++) {
                if (ix < adaptive_start(ox, w_in, w_out) || ix >= adaptive_end(ox, w_in, w_out)) continue;
                if (adaptive_max_argmax(plane, oy, ox, h_in, w_in, h_out, w_out) == idx) sum += dy[p * out + (u64)oy * w_out + ox];
            }
        }
        dx[i] = sum;
    }
}
