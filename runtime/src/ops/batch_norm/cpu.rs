//! Batch normalization on the CPU: statistics one channel per task (summed in f64, in
//! eight partial sums), then the elementwise part one image per task.
//!
//! MobileNetV2 on 32 × 32 images has planes of 16 × 16 down to 1 × 1 (128 × 1280 planes of one
//! float): one task per plane, and a single f64 running sum per channel (each add waiting on
//! the last, 4 cycles), made batch norm 36% of its train step.

use rayon::prelude::*;

use super::BatchNorm;

/// Training forward (or any forward without running statistics): normalise with the batch
/// statistics, save them, and fold them into `running` with weight `factor`.
#[allow(clippy::too_many_arguments)]
pub fn forward_train(op: &BatchNorm, n: usize, x: &[f32], wb: Option<&[f32]>, running: Option<&mut [f32]>, factor: f32, saved: &mut [f32], y: &mut [f32]) {
    let (c, s) = (op.c, op.spatial);
    let count = (n * s) as f64;
    let (mean, invstd) = saved[..2 * c].split_at_mut(c);
    let stats = |ch: usize| {
        let mu = channel_sum(n, c, s, ch, x, x, |v, _| v as f64) / count;
        let var = channel_sum(n, c, s, ch, x, x, |v, _| (v as f64 - mu).powi(2)) / count;
        (mu, var, (1.0 / (var + op.eps as f64).sqrt()) as f32)
    };
    let per_channel = mean.par_iter_mut().zip(invstd.par_iter_mut()).enumerate();
    match running {
        Some(running) => {
            let (rm, rv) = running.split_at_mut(c);
            // The running variance takes the unbiased batch variance.
            let (f, unbias) = (factor as f64, count / (count - 1.0).max(1.0));
            per_channel.zip(rm.par_iter_mut().zip(rv.par_iter_mut())).for_each(|((ch, (m, inv)), (rm, rv))| {
                let (mu, var, inv_std) = stats(ch);
                (*m, *inv) = (mu as f32, inv_std);
                *rm = ((1.0 - f) * *rm as f64 + f * mu) as f32;
                *rv = ((1.0 - f) * *rv as f64 + f * var * unbias) as f32;
            });
        }
        None => per_channel.for_each(|(ch, (m, inv))| {
            let (mu, _, inv_std) = stats(ch);
            (*m, *inv) = (mu as f32, inv_std);
        }),
    }
    normalise(op, n, x, wb, mean, invstd, y);
}

/// Partial sums of a channel's sums: [`LANES`] f64s, which LLVM vectorises and whose adds do not
/// wait on each other.
const LANES: usize = 8;

/// Σ f(a[i], b[i]) over the indices i of channel `ch`'s n planes of `s` (of `c` channels), in
/// f64: whole vectors of a plane in [`LANES`] partial sums, the rest of a plane (all of a plane
/// smaller than a vector) dealt round the partial sums in turn, then the sums added in order.
#[inline(always)]
fn channel_sum(n: usize, c: usize, s: usize, ch: usize, a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f64) -> f64 {
    crate::ops::isa::with_avx2(|| channel_sum_body(n, c, s, ch, a, b, f))
}

#[inline(always)]
fn channel_sum_body(n: usize, c: usize, s: usize, ch: usize, a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f64) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let mut next = 0;
    for img in 0..n {
        let at = (img * c + ch) * s;
        let (pa, pb) = (a[at..][..s].chunks_exact(LANES), b[at..][..s].chunks_exact(LANES));
        for (l, (&u, &v)) in pa.remainder().iter().zip(pb.remainder()).enumerate() {
            lanes[(next + l) % LANES] += f(u, v);
        }
        next = (next + s % LANES) % LANES;
        for (u, v) in pa.zip(pb) {
            for l in 0..LANES {
                lanes[l] += f(u[l], v[l]);
            }
        }
    }
    lanes.iter().sum()
}

/// Evaluation forward: normalise with the running statistics (saved for the backward).
pub fn forward_eval(op: &BatchNorm, n: usize, x: &[f32], wb: Option<&[f32]>, running: &[f32], saved: &mut [f32], y: &mut [f32]) {
    let c = op.c;
    let (mean, invstd) = saved[..2 * c].split_at_mut(c);
    mean.copy_from_slice(&running[..c]);
    for (inv, &v) in invstd.iter_mut().zip(&running[c..2 * c]) {
        *inv = 1.0 / (v + op.eps).sqrt();
    }
    normalise(op, n, x, wb, mean, invstd, y);
}

/// y = (x − mean)·invstd·γ + β, one image per task (a plane can be one float).
fn normalise(op: &BatchNorm, n: usize, x: &[f32], wb: Option<&[f32]>, mean: &[f32], invstd: &[f32], y: &mut [f32]) {
    let (c, s) = (op.c, op.spatial);
    // y = x·scale + shift per channel: computed per channel of each image, not per element, and
    // not into a vector (a step allocates nothing: tests/alloc.rs).
    y[..n * c * s].par_chunks_mut(c * s).zip(x[..n * c * s].par_chunks(c * s)).for_each(|(y, x)| {
        crate::ops::isa::with_avx2(|| {
            for (ch, (y, x)) in y.chunks_exact_mut(s).zip(x.chunks_exact(s)).enumerate() {
                let (gamma, beta) = wb.map_or((1.0, 0.0), |wb| (wb[ch], wb[c + ch]));
                let scale = invstd[ch] * gamma;
                let shift = beta - mean[ch] * scale;
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = x * scale + shift;
                }
            }
        })
    });
}

/// dx (written) and dγ, dβ (accumulated). With `batch_stats` the mean and variance depend on
/// x and their gradient flows back too; without (evaluation) they are constants.
#[allow(clippy::too_many_arguments)]
pub fn backward(op: &BatchNorm, n: usize, batch_stats: bool, x: &[f32], wb: Option<&[f32]>, saved: &mut [f32], dy: &[f32], dx: Option<&mut [f32]>, dwb: Option<&mut [f32]>) {
    let (c, s) = (op.c, op.spatial);
    let count = (n * s) as f32;
    let (stats, sums) = saved[..4 * c].split_at_mut(2 * c);
    let (mean, invstd) = stats.split_at(c);
    // Per channel: Σ dy and Σ dy·x̂ (in the second half of `saved`).
    let (sum_dy, sum_dy_xhat) = sums.split_at_mut(c);
    sum_dy.par_iter_mut().zip(sum_dy_xhat.par_iter_mut()).enumerate().for_each(|(ch, (sd, sdx))| {
        let (m, inv) = (mean[ch], invstd[ch]);
        let a = channel_sum(n, c, s, ch, dy, dy, |g, _| g as f64);
        let b = channel_sum(n, c, s, ch, dy, x, |g, v| g as f64 * ((v - m) * inv) as f64);
        (*sd, *sdx) = (a as f32, b as f32);
    });
    if let Some(dwb) = dwb {
        for ch in 0..c {
            dwb[ch] += sum_dy_xhat[ch];
            dwb[c + ch] += sum_dy[ch];
        }
    }
    if let Some(dx) = dx {
        let (sum_dy, sum_dy_xhat) = (&*sum_dy, &*sum_dy_xhat);
        // One image per task, channel by channel (a plane can be one float).
        dx[..n * c * s].par_chunks_mut(c * s).zip(dy[..n * c * s].par_chunks(c * s)).zip(x[..n * c * s].par_chunks(c * s)).for_each(|((dx, dy), x)| {
            crate::ops::isa::with_avx2(|| {
                for (ch, ((dx, dy), x)) in dx.chunks_exact_mut(s).zip(dy.chunks_exact(s)).zip(x.chunks_exact(s)).enumerate() {
                    let gamma = wb.map_or(1.0, |wb| wb[ch]);
                    let k = gamma * invstd[ch];
                    if batch_stats {
                        let (md, mdx) = (sum_dy[ch] / count, sum_dy_xhat[ch] / count);
                        for ((dx, &g), &v) in dx.iter_mut().zip(dy).zip(x) {
                            let xhat = (v - mean[ch]) * invstd[ch];
                            *dx = k * (g - md - xhat * mdx);
                        }
                    } else {
                        for (dx, &g) in dx.iter_mut().zip(dy) {
                            *dx = k * g;
                        }
                    }
                }
            })
        });
    }
}
