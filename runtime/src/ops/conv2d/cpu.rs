//! Convolution on the CPU: im2col + GEMM, one image at a time, images split over threads.
//!
//! Per image, with K = c_in·kh·kw and P = h_out·w_out:
//! - forward:          Y[c_out, P] = W[c_out, K] · col[K, P] + b
//! - backward filter:  dW[c_out, K] += dY[c_out, P] · col[K, P]ᵀ,  db += Σ_P dY
//! - backward data:    dcol[K, P] = Wᵀ · dY, then col2im scatters dcol into dX
//!
//! A pointwise convolution (1×1, stride 1, no padding) is already in col form, so it skips the
//! im2col copy. The backward recomputes col from x instead of keeping it from the forward: K·P
//! floats per image would be the largest buffer of the step.

use rayon::prelude::*;

use super::Conv2d;
use crate::ops::gemm::{MatMut, MatRef, Parallelism, gemm};
use crate::ops::par_chunks;

/// Floats of one thread's im2col buffer.
fn col_len(op: &Conv2d) -> usize {
    if op.is_pointwise() { 0 } else { op.patch_len() * op.out_pixels() }
}

/// Floats of one thread's backward scratch: col, then the partial dW and db of its images.
fn backward_chunk_len(op: &Conv2d) -> usize {
    col_len(op) + op.param_len()
}

/// Scratch floats the forward and the backward need for a batch of `n`.
pub fn scratch_len(op: &Conv2d, n: usize) -> usize {
    par_chunks(n) * backward_chunk_len(op)
}

/// y = conv(x, w) + b.
pub fn forward(op: &Conv2d, n: usize, x: &[f32], wb: &[f32], y: &mut [f32], scratch: &mut [f32]) {
    let (k, p) = (op.patch_len(), op.out_pixels());
    let (w, b) = wb.split_at(op.weight_len());
    let per = n.div_ceil(par_chunks(n));
    let col = col_len(op).max(1);
    y[..n * op.y_len()]
        .par_chunks_mut(per * op.y_len())
        .zip(x[..n * op.x_len()].par_chunks(per * op.x_len()))
        .zip(scratch.par_chunks_mut(col))
        .for_each(|((y, x), col)| {
            for (y, x) in y.chunks_exact_mut(op.y_len()).zip(x.chunks_exact(op.x_len())) {
                let beta = if op.bias {
                    for (row, &bias) in y.chunks_exact_mut(p).zip(b) {
                        row.fill(bias);
                    }
                    1.0
                } else {
                    0.0
                };
                let cols = if op.is_pointwise() {
                    x
                } else {
                    im2col(op, x, col);
                    &col[..k * p]
                };
                gemm(op.c_out, p, k, MatRef::rows(w, k), MatRef::rows(cols, p), beta, MatMut::rows(y, p), Parallelism::Sequential);
            }
        });
}

/// dx = conv_backward_data(dy) (written), dwb += conv_backward_filter(x, dy) (accumulated).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    op: &Conv2d,
    n: usize,
    x: &[f32],
    wb: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dwb: Option<&mut [f32]>,
    scratch: &mut [f32],
) {
    let chunks = par_chunks(n);
    let per = n.div_ceil(chunks);
    let chunk_len = backward_chunk_len(op);
    let want_dw = dwb.is_some();
    let scratch = &mut scratch[..chunks * chunk_len];
    // Each chunk of images: its scratch holds col (K·P) then its partial dW and db.
    let work = |ci: usize, dx: Option<&mut [f32]>, scratch: &mut [f32]| {
        let (col, partial) = scratch.split_at_mut(chunk_len - op.param_len());
        partial.fill(0.0);
        let images = ci * per..((ci + 1) * per).min(n);
        let mut dx_images = dx.map(|dx| dx.chunks_exact_mut(op.x_len()));
        for img in images {
            let x = &x[img * op.x_len()..(img + 1) * op.x_len()];
            let dy = &dy[img * op.y_len()..(img + 1) * op.y_len()];
            if want_dw {
                filter_grad(op, x, dy, col, partial);
            }
            if let Some(dx) = dx_images.as_mut().and_then(|it| it.next()) {
                data_grad(op, &wb[..op.weight_len()], dy, dx, col);
            }
        }
    };
    match dx {
        Some(dx) => dx[..n * op.x_len()]
            .par_chunks_mut(per * op.x_len())
            .zip(scratch.par_chunks_mut(chunk_len))
            .enumerate()
            .for_each(|(ci, (dx, s))| work(ci, Some(dx), s)),
        None => scratch.par_chunks_mut(chunk_len).enumerate().for_each(|(ci, s)| work(ci, None, s)),
    }
    if let Some(dwb) = dwb {
        // Sum the per-chunk partials in a fixed order, so the result does not depend on timing.
        let partials = scratch.chunks_exact(chunk_len).map(|c| &c[chunk_len - op.param_len()..]);
        let dwb = &mut dwb[..op.param_len()];
        for partial in partials.take(n.div_ceil(per)) {
            for (g, &v) in dwb.iter_mut().zip(partial) {
                *g += v;
            }
        }
    }
}

/// partial[dW, db] += (dY · colᵀ, Σ dY) for one image.
fn filter_grad(op: &Conv2d, x: &[f32], dy: &[f32], col: &mut [f32], partial: &mut [f32]) {
    let (k, p) = (op.patch_len(), op.out_pixels());
    let cols = if op.is_pointwise() {
        x
    } else {
        im2col(op, x, col);
        &col[..k * p]
    };
    let (dw, db) = partial.split_at_mut(op.weight_len());
    gemm(op.c_out, k, p, MatRef::rows(dy, p), MatRef::transposed(cols, p), 1.0, MatMut::rows(dw, k), Parallelism::Sequential);
    if op.bias {
        for (g, row) in db.iter_mut().zip(dy.chunks_exact(p)) {
            *g += row.iter().sum::<f32>();
        }
    }
}

/// dx = col2im(Wᵀ · dY) for one image.
fn data_grad(op: &Conv2d, w: &[f32], dy: &[f32], dx: &mut [f32], col: &mut [f32]) {
    let (k, p) = (op.patch_len(), op.out_pixels());
    if op.is_pointwise() {
        gemm(k, p, op.c_out, MatRef::transposed(w, k), MatRef::rows(dy, p), 0.0, MatMut::rows(dx, p), Parallelism::Sequential);
    } else {
        gemm(k, p, op.c_out, MatRef::transposed(w, k), MatRef::rows(dy, p), 0.0, MatMut::rows(&mut col[..k * p], p), Parallelism::Sequential);
        dx.fill(0.0);
        col2im(op, col, dx);
    }
}

/// The output columns `ox` whose input column `ox·stride + offset − pad` lies inside the image,
/// for a kernel tap at `offset = k·dilation`.
fn valid_range(out: usize, len: usize, stride: usize, pad: usize, offset: usize) -> std::ops::Range<usize> {
    // ix = ox·s + offset − pad ≥ 0  ⇔  ox ≥ ⌈(pad − offset)/s⌉
    let lo = if pad > offset { (pad - offset).div_ceil(stride) } else { 0 };
    // ix ≤ len − 1  ⇔  ox ≤ ⌊(len − 1 + pad − offset)/s⌋
    let hi = if len + pad > offset { ((len - 1 + pad - offset) / stride + 1).min(out) } else { 0 };
    lo.min(hi)..hi
}

/// col[(ci·kh + ky)·kw + kx][oy·w_out + ox] = x[ci][oy·sh + ky·dh − ph][ox·sw + kx·dw − pw], or 0
/// in the padding.
fn im2col(op: &Conv2d, x: &[f32], col: &mut [f32]) {
    let [kh, kw] = op.kernel;
    let [sh, sw] = op.stride;
    let p = op.out_pixels();
    let mut rows = col.chunks_exact_mut(p);
    for plane in x.chunks_exact(op.h_in * op.w_in) {
        for ky in 0..kh {
            let ys = valid_range(op.h_out, op.h_in, sh, op.padding[0], ky * op.dilation[0]);
            for kx in 0..kw {
                let xs = valid_range(op.w_out, op.w_in, sw, op.padding[1], kx * op.dilation[1]);
                let row = rows.next().expect("col has K rows");
                for (oy, out) in row.chunks_exact_mut(op.w_out).enumerate() {
                    if !ys.contains(&oy) {
                        out.fill(0.0);
                        continue;
                    }
                    let iy = oy * sh + ky * op.dilation[0] - op.padding[0];
                    let src = &plane[iy * op.w_in..(iy + 1) * op.w_in];
                    out[..xs.start].fill(0.0);
                    out[xs.end..].fill(0.0);
                    let ix0 = xs.start * sw + kx * op.dilation[1] - op.padding[1];
                    if sw == 1 {
                        out[xs.clone()].copy_from_slice(&src[ix0..ix0 + xs.len()]);
                    } else {
                        for (o, &v) in out[xs.clone()].iter_mut().zip(src[ix0..].iter().step_by(sw)) {
                            *o = v;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: dx[ci][iy][ix] += col[row][oy·w_out + ox].
fn col2im(op: &Conv2d, col: &[f32], dx: &mut [f32]) {
    let [kh, kw] = op.kernel;
    let [sh, sw] = op.stride;
    let p = op.out_pixels();
    let mut rows = col.chunks_exact(p);
    for plane in dx.chunks_exact_mut(op.h_in * op.w_in) {
        for ky in 0..kh {
            let ys = valid_range(op.h_out, op.h_in, sh, op.padding[0], ky * op.dilation[0]);
            for kx in 0..kw {
                let xs = valid_range(op.w_out, op.w_in, sw, op.padding[1], kx * op.dilation[1]);
                let row = rows.next().expect("col has K rows");
                for oy in ys.clone() {
                    let iy = oy * sh + ky * op.dilation[0] - op.padding[0];
                    let dst = &mut plane[iy * op.w_in..(iy + 1) * op.w_in];
                    let src = &row[oy * op.w_out..(oy + 1) * op.w_out];
                    let ix0 = xs.start * sw + kx * op.dilation[1] - op.padding[1];
                    for (i, &v) in src[xs.clone()].iter().enumerate() {
                        dst[ix0 + i * sw] += v;
                    }
                }
            }
        }
    }
}
