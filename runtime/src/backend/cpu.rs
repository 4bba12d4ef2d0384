//! The CPU backend: buffers are `Vec`s, views are slices, kernels are `ops::<op>::cpu` run on
//! rayon's thread pool (set its size with `RAYON_NUM_THREADS`).

use std::ops::Range;

use rayon::prelude::*;

use super::{Backend, Elem};
pub use crate::ops::aligned::AlignedVec;
use crate::Result;
use crate::ops::Op;
use crate::ops::{self, Activation, AdamStep, AdaptiveAvgPool2d, AdaptiveMaxPool2d, BatchNorm, Conv2d, CrossEntropy, Dropout, Linear, LossOutput, Pool2d, SgdStep, Softmax};

/// The CPU, with as many threads as rayon's global pool has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu;

fn disjoint(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.is_empty() || b.is_empty() || a.end <= b.start || b.end <= a.start
}

impl Backend for Cpu {
    type Buf<T: Elem> = AlignedVec<T>;
    type Src<'a, T: Elem> = &'a [T];
    type Dst<'a, T: Elem> = &'a mut [T];

    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn alloc<T: Elem>(&self, len: usize) -> Result<AlignedVec<T>> {
        Ok(AlignedVec::new(len))
    }

    fn len<T: Elem>(buf: &AlignedVec<T>) -> usize {
        buf.len()
    }

    fn upload<T: Elem>(&self, dst: &mut AlignedVec<T>, at: usize, src: &[T]) -> Result<()> {
        dst[at..at + src.len()].copy_from_slice(src);
        Ok(())
    }

    fn download<T: Elem>(&self, src: &AlignedVec<T>, at: usize, dst: &mut [T]) -> Result<()> {
        dst.copy_from_slice(&src[at..at + dst.len()]);
        Ok(())
    }

    fn src<T: Elem>(buf: &AlignedVec<T>, range: Range<usize>) -> &[T] {
        &buf[range]
    }

    fn dst<T: Elem>(buf: &mut AlignedVec<T>, range: Range<usize>) -> &mut [T] {
        &mut buf[range]
    }

    fn io<T: Elem>(buf: &mut AlignedVec<T>, src: Range<usize>, dst: Range<usize>) -> (&[T], &mut [T]) {
        let (a, _, y) = Self::io2(buf, src.clone(), src, dst);
        (a, y)
    }

    fn io2<T: Elem>(buf: &mut AlignedVec<T>, a: Range<usize>, b: Range<usize>, dst: Range<usize>) -> (&[T], &[T], &mut [T]) {
        assert!(disjoint(&a, &dst) && disjoint(&b, &dst), "views {a:?}, {b:?} overlap the output {dst:?}");
        assert!(a.end <= buf.len() && b.end <= buf.len() && dst.end <= buf.len() && a.start <= a.end && b.start <= b.end && dst.start <= dst.end);
        let p = buf.as_mut_ptr();
        // SAFETY: all three ranges are inside the buffer, and the written one overlaps neither
        // read one (checked above), so no element is both borrowed shared and mutably.
        unsafe {
            (
                std::slice::from_raw_parts(p.add(a.start), a.len()),
                std::slice::from_raw_parts(p.add(b.start), b.len()),
                std::slice::from_raw_parts_mut(p.add(dst.start), dst.len()),
            )
        }
    }

    fn io_dst2<T: Elem>(buf: &mut AlignedVec<T>, src: Range<usize>, a: Range<usize>, b: Range<usize>) -> (&[T], &mut [T], &mut [T]) {
        assert!(disjoint(&src, &a) && disjoint(&src, &b) && disjoint(&a, &b), "views {src:?}, {a:?}, {b:?} overlap");
        assert!(src.end <= buf.len() && a.end <= buf.len() && b.end <= buf.len() && src.start <= src.end && a.start <= a.end && b.start <= b.end);
        let p = buf.as_mut_ptr();
        // SAFETY: all three ranges are inside the buffer and no two overlap (checked above), so
        // no element is both borrowed shared and mutably.
        unsafe {
            (
                std::slice::from_raw_parts(p.add(src.start), src.len()),
                std::slice::from_raw_parts_mut(p.add(a.start), a.len()),
                std::slice::from_raw_parts_mut(p.add(b.start), b.len()),
            )
        }
    }

    fn dst2<T: Elem>(buf: &mut AlignedVec<T>, a: Range<usize>, b: Range<usize>) -> (&mut [T], &mut [T]) {
        assert!(disjoint(&a, &b), "output views {a:?} and {b:?} overlap");
        assert!(a.end <= buf.len() && b.end <= buf.len() && a.start <= a.end && b.start <= b.end);
        let p = buf.as_mut_ptr();
        // SAFETY: both ranges are inside the buffer and do not overlap (checked above).
        unsafe { (std::slice::from_raw_parts_mut(p.add(a.start), a.len()), std::slice::from_raw_parts_mut(p.add(b.start), b.len())) }
    }

    fn fill(&self, dst: &mut [f32], value: f32) -> Result<()> {
        // On every thread: one core alone does not reach the memory's bandwidth (zero_grad of
        // AlexNet's 61M gradients).
        dst.par_chunks_mut(1 << 16).for_each(|d| d.fill(value));
        Ok(())
    }

    fn copy(&self, src: &[f32], dst: &mut [f32]) -> Result<()> {
        dst.copy_from_slice(src);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn depth_first(&self) -> bool {
        true
    }

    fn scratch_len(&self, op: &Op, n: usize) -> usize {
        match op {
            Op::Conv2d(op) => ops::conv2d::cpu::scratch_len(op, n),
            _ => 0,
        }
    }

    fn packed_len(&self, op: &Op) -> usize {
        match op {
            Op::Conv2d(op) => ops::conv2d::cpu::packed_len(op),
            _ => 0,
        }
    }

    fn pack(&self, op: &Op, wb: &[f32], packed: &mut [f32]) -> Result<()> {
        if let Op::Conv2d(op) = op {
            ops::conv2d::cpu::pack(op, wb, packed);
        }
        Ok(())
    }

    fn conv2d_forward(&self, op: &Conv2d, n: usize, x: &[f32], wb: &[f32], packed: Option<&[f32]>, y: &mut [f32], scratch: &mut [f32], relu: bool) -> Result<()> {
        ops::conv2d::cpu::forward(op, n, x, wb, packed, y, scratch, relu);
        Ok(())
    }

    fn folds_batch_norm(&self) -> bool {
        true
    }

    fn fuses_conv2d_relu_max_pool(&self, op: &Conv2d, keep_relu: bool) -> bool {
        ops::conv2d::cpu::fuses_relu_max_pool(op, keep_relu)
    }

    fn conv2d_relu_max_pool_forward(&self, op: &Conv2d, n: usize, x: &[f32], wb: &[f32], packed: Option<&[f32]>, y: &mut [f32], relu_y: Option<&mut [f32]>, scratch: &mut [f32]) -> Result<()> {
        if !self.fuses_conv2d_relu_max_pool(op, relu_y.is_some()) {
            return Err(crate::Error::Backend(format!("cpu: no fused convolution, ReLU and max pooling for {op:?}")));
        }
        ops::conv2d::cpu::forward_relu_max_pool(op, n, x, wb, packed, y, relu_y, scratch);
        Ok(())
    }

    fn conv2d_backward(
        &self,
        op: &Conv2d,
        n: usize,
        x: &[f32],
        wb: &[f32],
        packed: Option<&[f32]>,
        dy: &[f32],
        relu_y: Option<&[f32]>,
        dx: Option<&mut [f32]>,
        dwb: Option<&mut [f32]>,
        scratch: &mut [f32],
    ) -> Result<()> {
        ops::conv2d::cpu::backward(op, n, x, wb, packed, dy, relu_y, dx, dwb, scratch);
        Ok(())
    }

    fn fuses_conv2d_relu_max_pool_backward(&self, op: &Conv2d, dx: bool) -> bool {
        ops::conv2d::cpu::fuses_relu_max_pool_backward(op, dx)
    }

    fn conv2d_relu_max_pool_backward(
        &self,
        op: &Conv2d,
        n: usize,
        x: &[f32],
        wb: &[f32],
        relu_y: &[f32],
        pool_y: &[f32],
        pool_dy: &[f32],
        dx: Option<&mut [f32]>,
        dwb: Option<&mut [f32]>,
        scratch: &mut [f32],
    ) -> Result<()> {
        if !self.fuses_conv2d_relu_max_pool_backward(op, dx.is_some()) {
            return Err(crate::Error::Backend(format!("cpu: no fused backward of convolution, ReLU and max pooling for {op:?}")));
        }
        ops::conv2d::cpu::relu_max_pool_backward(op, n, x, wb, relu_y, pool_y, pool_dy, dx, dwb, scratch);
        Ok(())
    }

    fn linear_forward(&self, op: &Linear, n: usize, x: &[f32], wb: &[f32], y: &mut [f32]) -> Result<()> {
        ops::linear::cpu::forward(op, n, x, wb, y);
        Ok(())
    }

    fn linear_backward(&self, op: &Linear, n: usize, x: &[f32], wb: &[f32], dy: &[f32], dx: Option<&mut [f32]>, dwb: Option<&mut [f32]>) -> Result<()> {
        ops::linear::cpu::backward(op, n, x, wb, dy, dx, dwb);
        Ok(())
    }

    fn max_pool2d_forward(&self, op: &Pool2d, n: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
        ops::pool2d::cpu::max_forward(op, n, x, y);
        Ok(())
    }

    fn max_pool2d_backward(&self, op: &Pool2d, n: usize, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
        ops::pool2d::cpu::max_backward(op, n, x, y, dy, dx);
        Ok(())
    }

    fn avg_pool2d_forward(&self, op: &Pool2d, n: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
        ops::pool2d::cpu::avg_forward(op, n, x, y);
        Ok(())
    }

    fn avg_pool2d_backward(&self, op: &Pool2d, n: usize, dy: &[f32], dx: &mut [f32]) -> Result<()> {
        ops::pool2d::cpu::avg_backward(op, n, dy, dx);
        Ok(())
    }

    fn adaptive_avg_pool2d_forward(&self, op: &AdaptiveAvgPool2d, n: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
        ops::adaptive_avg_pool2d::cpu::forward(op, n, x, y);
        Ok(())
    }

    fn adaptive_avg_pool2d_backward(&self, op: &AdaptiveAvgPool2d, n: usize, dy: &[f32], dx: &mut [f32]) -> Result<()> {
        ops::adaptive_avg_pool2d::cpu::backward(op, n, dy, dx);
        Ok(())
    }

    fn adaptive_max_pool2d_forward(&self, op: &AdaptiveMaxPool2d, n: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
        ops::adaptive_max_pool2d::cpu::forward(op, n, x, y);
        Ok(())
    }

    fn adaptive_max_pool2d_backward(&self, op: &AdaptiveMaxPool2d, n: usize, x: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
        ops::adaptive_max_pool2d::cpu::backward(op, n, x, dy, dx);
        Ok(())
    }

    fn batch_norm_forward_train(&self, op: &BatchNorm, n: usize, x: &[f32], wb: Option<&[f32]>, running: Option<&mut [f32]>, factor: f32, saved: &mut [f32], y: &mut [f32]) -> Result<()> {
        ops::batch_norm::cpu::forward_train(op, n, x, wb, running, factor, saved, y);
        Ok(())
    }

    fn batch_norm_forward_eval(&self, op: &BatchNorm, n: usize, x: &[f32], wb: Option<&[f32]>, running: &[f32], saved: &mut [f32], y: &mut [f32]) -> Result<()> {
        ops::batch_norm::cpu::forward_eval(op, n, x, wb, running, saved, y);
        Ok(())
    }

    fn batch_norm_backward(
        &self,
        op: &BatchNorm,
        n: usize,
        batch_stats: bool,
        x: &[f32],
        wb: Option<&[f32]>,
        saved: &mut [f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dwb: Option<&mut [f32]>,
    ) -> Result<()> {
        ops::batch_norm::cpu::backward(op, n, batch_stats, x, wb, saved, dy, dx, dwb);
        Ok(())
    }

    fn dropout_forward(&self, op: &Dropout, n: usize, key: u64, x: &[f32], y: &mut [f32]) -> Result<()> {
        ops::dropout::cpu::forward(op, n, key, x, y);
        Ok(())
    }

    fn dropout_backward(&self, op: &Dropout, n: usize, key: u64, dy: &[f32], dx: &mut [f32]) -> Result<()> {
        ops::dropout::cpu::backward(op, n, key, dy, dx);
        Ok(())
    }

    fn activation_forward(&self, act: Activation, len: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
        ops::activation::cpu::forward(act, len, x, y);
        Ok(())
    }

    fn activation_backward(&self, act: Activation, len: usize, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
        ops::activation::cpu::backward(act, len, x, y, dy, dx);
        Ok(())
    }

    fn softmax_forward(&self, op: &Softmax, n: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
        ops::softmax::cpu::forward(op, n, x, y);
        Ok(())
    }

    fn softmax_backward(&self, op: &Softmax, n: usize, y: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
        ops::softmax::cpu::backward(op, n, y, dy, dx);
        Ok(())
    }

    fn add(&self, len: usize, a: &[f32], b: &[f32], y: &mut [f32], relu: bool) -> Result<()> {
        ops::add::cpu::add(len, a, b, y, relu);
        Ok(())
    }

    fn add_assign(&self, len: usize, y: &mut [f32], x: &[f32]) -> Result<()> {
        ops::add::cpu::add_assign(len, y, x);
        Ok(())
    }

    fn cross_entropy(&self, op: &CrossEntropy, n: usize, logits: &[f32], labels: &[u32], dlogits: Option<&mut [f32]>) -> Result<LossOutput> {
        Ok(ops::cross_entropy::cpu::forward_backward(op, n, logits, labels, dlogits))
    }

    fn mse(&self, len: usize, y: &[f32], target: &[f32], dy: Option<&mut [f32]>) -> Result<f32> {
        Ok(ops::mse::cpu::forward_backward(len, y, target, dy))
    }

    fn sgd_step(&self, op: &SgdStep, p: &mut [f32], g: &[f32], momentum: &mut [f32]) -> Result<()> {
        ops::sgd::cpu::step(op, p, g, momentum);
        Ok(())
    }

    fn adam_step(&self, op: &AdamStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], vmax: Option<&mut [f32]>) -> Result<()> {
        ops::adam::cpu::step(op, p, g, m, v, vmax);
        Ok(())
    }
}

