// Adaptive average pooling: forward one output per thread, backward one input per thread
// gathering from every window that holds it (windows may overlap).
//
// x (planes, h_in, w_in), y (planes, h_out, w_out).

// `staticnet_shape::adaptive_window`: [floor(o·in/out), ceil((o + 1)·in/out)).
__device__ u32 adaptive_start(u32 o, u32 in, u32 out) { return (u32)(((u64)o * in) / out); }
__device__ u32 adaptive_end(u32 o, u32 in, u32 out) { return (u32)(((u64)(o + 1) * in + out - 1) / out); }

// y = mean over each window; written.
extern "C" __global__ void adaptive_avg_pool2d_fwd_f32(float* y, const float* x, u64 planes, u32 h_in, u32 w_in, u32 h_out, u32 w_out) {
    u64 out = (u64)h_out * w_out;
    GRID_STRIDE(o, planes * out) {
        const float* plane = x + (o / out) * h_in * w_in;
        u32 oy = (o % out) / w_out, ox = (o % out) % w_out;
        u32 y0 = adaptive_start(oy, h_in, h_out), y1 = adaptive_end(oy, h_in, h_out);
        u32 x0 = adaptive_start(ox, w_in, w_out), x1 = adaptive_end(ox, w_in, w_out);
        float sum = 0.0f;
        for (u32 iy = y0; iy < y1; iy++)
            for (u32 ix = x0; ix < x1; ix++) sum += plane[iy * w_in + ix];
        y[o] = sum / (float)((y1 - y0) * (x1 - x0));
    }
}

// dx = Σ dy/window size over the windows that hold this input; written.
extern "C" __global__ void adaptive_avg_pool2d_bwd_f32(float* dx, const float* dy, u64 planes, u32 h_in, u32 w_in, u32 h_out, u32 w_out) {
    u64 in = (u64)h_in * w_in, out = (u64)h_out * w_out;
    GRID_STRIDE(i, planes * in) {
        u64 plane = i / in;
        u32 iy = (i % in) / w_in, ix = (i % in) % w_in;
        float sum = 0.0f;
        for (u32 oy = 0; oy < h_out; oy++) {
            u32 y0 = adaptive_start(oy, h_in, h_out), y1 = adaptive_end(oy, h_in, h_out);
            if (iy < y0 || iy >= y1) continue;
            for (u32 ox = 0; ox < w_out; ox++) {
                u32 x0 = adaptive_start(ox, w_in, w_out), x1 = adaptive_end(ox, w_in, w_out);
                if (ix < x0 || ix >= x1) continue;
                sum += dy[plane * out + (u64)oy * w_out + ox] / (float)((y1 - y0) * (x1 - x0));
            }
        }
        dx[i] = sum;
    }
}
