//! SGD on the CPU, in blocks of parameters per task.

use rayon::prelude::*;

use super::SgdStep;

const BLOCK: usize = 1 << 14;

/// Updates `p` (and the momentum buffer `buf`, unused without momentum) from `g`.
pub fn step(op: &SgdStep, p: &mut [f32], g: &[f32], buf: &mut [f32]) {
    let o = *op;
    let update = |p: &mut f32, g: f32, b: Option<&mut f32>| {
        let mut d = g + o.weight_decay * *p;
        if let Some(b) = b {
            *b = if o.first { d } else { o.momentum * *b + (1.0 - o.dampening) * d };
            d = if o.nesterov { d + o.momentum * *b } else { *b };
        }
        *p -= o.lr * d;
    };
    if o.momentum != 0.0 {
        p.par_chunks_mut(BLOCK).zip(g.par_chunks(BLOCK)).zip(buf.par_chunks_mut(BLOCK)).for_each(|((p, g), b)| {
            p.iter_mut().zip(g).zip(b).for_each(|((p, &g), b)| update(p, g, Some(b)));
        });
    } else {
        p.par_chunks_mut(BLOCK).zip(g.par_chunks(BLOCK)).for_each(|(p, g)| p.iter_mut().zip(g).for_each(|(p, &g)| update(p, g, None)));
    }
}
