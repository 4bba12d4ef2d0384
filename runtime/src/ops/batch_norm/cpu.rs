//! Batch normalization on the CPU: statistics one channel per task (summed in f64), then the
//! elementwise part one (sample, channel) plane per task.

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
        let plane = |b: usize| &x[(b * c + ch) * s..(b * c + ch + 1) * s];
        let mu = (0..n).map(|b| plane(b).iter().map(|&v| v as f64).sum::<f64>()).sum::<f64>() / count;
        let var = (0..n).map(|b| plane(b).iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>()).sum::<f64>() / count;
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

/// y = (x − mean)·invstd·γ + β, one plane per task.
fn normalise(op: &BatchNorm, n: usize, x: &[f32], wb: Option<&[f32]>, mean: &[f32], invstd: &[f32], y: &mut [f32]) {
    let (c, s) = (op.c, op.spatial);
    y[..n * c * s].par_chunks_mut(s).zip(x[..n * c * s].par_chunks(s)).enumerate().for_each(|(plane, (y, x))| {
        let ch = plane % c;
        let (gamma, beta) = wb.map_or((1.0, 0.0), |wb| (wb[ch], wb[c + ch]));
        let scale = invstd[ch] * gamma;
        let shift = beta - mean[ch] * scale;
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x * scale + shift;
        }
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
        let (mut a, mut b) = (0.0f64, 0.0f64);
        for bi in 0..n {
            let r = (bi * c + ch) * s..(bi * c + ch + 1) * s;
            for (&g, &v) in dy[r.clone()].iter().zip(&x[r]) {
                a += g as f64;
                b += g as f64 * ((v - mean[ch]) * invstd[ch]) as f64;
            }
        }
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
        dx[..n * c * s].par_chunks_mut(s).zip(dy[..n * c * s].par_chunks(s)).zip(x[..n * c * s].par_chunks(s)).enumerate().for_each(
            |(plane, ((dx, dy), x))| {
                let ch = plane % c;
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
            },
        );
    }
}
