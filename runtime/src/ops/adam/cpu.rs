//! Adam on the CPU, in blocks of parameters per task.

use rayon::prelude::*;

use super::{AdamScalars, AdamStep};

const BLOCK: usize = 1 << 14;

/// Updates `p`, the moments `m` and `v` (and `vmax` with amsgrad) from `g`.
pub fn step(op: &AdamStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], vmax: Option<&mut [f32]>) {
    let o = *op;
    let AdamScalars { step_size, bc2_sqrt, decay } = o.scalars();
    let update = |p: &mut f32, g: f32, m: &mut f32, v: &mut f32, vmax: Option<&mut f32>| {
        let g = if o.decoupled {
            *p *= decay;
            g
        } else {
            g + o.weight_decay * *p
        };
        *m += (g - *m) * (1.0 - o.beta1);
        *v = o.beta2 * *v + (1.0 - o.beta2) * g * g;
        let v = match vmax {
            Some(vmax) => {
                *vmax = vmax.max(*v);
                *vmax
            }
            None => *v,
        };
        *p -= step_size * *m / (v.sqrt() / bc2_sqrt + o.eps);
    };
    let blocks = p.par_chunks_mut(BLOCK).zip(g.par_chunks(BLOCK)).zip(m.par_chunks_mut(BLOCK).zip(v.par_chunks_mut(BLOCK)));
    match vmax {
        Some(vmax) => blocks.zip(vmax.par_chunks_mut(BLOCK)).for_each(|(((p, g), (m, v)), vmax)| {
            for i in 0..p.len() {
                update(&mut p[i], g[i], &mut m[i], &mut v[i], Some(&mut vmax[i]));
            }
        }),
        None => blocks.for_each(|((p, g), (m, v))| {
            for i in 0..p.len() {
                update(&mut p[i], g[i], &mut m[i], &mut v[i], None);
            }
        }),
    }
}
