//! The CUDA kernels against the CPU ones, op by op, on shapes the fixture networks do not reach:
//! strides, dilation, rectangular and pointwise kernels, padded and overlapping pooling windows,
//! ceil mode, label smoothing. The CPU kernels are themselves checked against the definitions
//! and finite differences (runtime/src/ops), so agreement here checks the GPU ones.
//!
//! Needs feature `cuda` and a GPU; without one each test says it is skipped.

#![cfg(feature = "cuda")]

mod common;

use staticnet::backend::Backend;
use staticnet::ops::{Activation, AdaptiveAvgPool2d, AdaptiveMaxPool2d, BatchNorm, Conv2d, CrossEntropy, Dropout, Linear, Pool2d, Softmax};
use staticnet::ops::random_values as random;
use staticnet::{Cpu, Cuda, Precision};

fn buf<B: Backend>(dev: &B, v: &[f32]) -> B::Buf<f32> {
    let mut b = dev.alloc(v.len()).unwrap();
    dev.upload(&mut b, 0, v).unwrap();
    b
}

fn read<B: Backend>(dev: &B, b: &B::Buf<f32>) -> Vec<f32> {
    let mut v = vec![0.0; B::len(b)];
    dev.download(b, 0, &mut v).unwrap();
    v
}

/// Runs `f` on the CPU and on the GPU and compares what each returns, output by output.
fn agree<R: IntoIterator<Item = (&'static str, Vec<f32>)>>(test: &str, tol: f64, f: impl Fn(&dyn Fn() -> Which) -> R) {
    let Some(gpu) = common::gpu(test.split(' ').next().unwrap_or(test)) else { return };
    let cpu: Vec<_> = f(&|| Which::Cpu).into_iter().collect();
    let cuda: Vec<_> = f(&|| Which::Cuda(gpu.clone())).into_iter().collect();
    for ((what, want), (_, got)) in cpu.iter().zip(&cuda) {
        common::assert_close(got, want, tol, &format!("{test}: {what}"));
    }
}

/// The backend a comparison runs on.
enum Which {
    Cpu,
    Cuda(Cuda),
}

/// Calls a generic function on whichever backend `which` names.
macro_rules! on {
    ($which:expr, $f:ident($($arg:expr),*)) => {
        match $which() {
            Which::Cpu => $f(&Cpu, $($arg),*),
            Which::Cuda(gpu) => $f(&gpu, $($arg),*),
        }
    };
}

/// The inputs as they are.
fn same(v: Vec<f32>) -> Vec<f32> {
    v
}

/// `conv2d_forward`, then `conv2d_backward` on random x, w, b and dy (each passed through `prep`).
fn conv<B: Backend>(dev: &B, op: Conv2d, n: usize, relu: bool, prep: fn(Vec<f32>) -> Vec<f32>) -> Vec<(&'static str, Vec<f32>)> {
    let (x, wb, dy) = (buf(dev, &prep(random(n * op.x_len(), 1))), buf(dev, &prep(random(op.param_len(), 2))), buf(dev, &prep(random(n * op.y_len(), 3))));
    let (mut y, mut dx, mut dwb) = (dev.alloc(n * op.y_len()).unwrap(), dev.alloc(n * op.x_len()).unwrap(), buf(dev, &vec![0.5; op.param_len()]));
    let mut scratch = dev.alloc(dev.scratch_len(&staticnet::network::Op::Conv2d(op), n)).unwrap();
    let s = B::len(&scratch);
    let (xs, ws) = (B::src(&x, 0..n * op.x_len()), B::src(&wb, 0..op.param_len()));
    dev.conv2d_forward(&op, n, xs, ws, None, B::dst(&mut y, 0..n * op.y_len()), B::dst(&mut scratch, 0..s), relu).unwrap();
    let relu_y = relu.then(|| B::src(&y, 0..n * op.y_len()));
    let (dxd, dwd) = (B::dst(&mut dx, 0..n * op.x_len()), B::dst(&mut dwb, 0..op.param_len()));
    dev.conv2d_backward(&op, n, xs, ws, None, B::src(&dy, 0..n * op.y_len()), relu_y, Some(dxd), Some(dwd), B::dst(&mut scratch, 0..s)).unwrap();
    vec![("y", read(dev, &y)), ("dx", read(dev, &dx)), ("dwb (accumulated onto 0.5)", read(dev, &dwb))]
}

#[test]
fn conv2d() {
    for (op, n, relu) in CONVS {
        agree(&format!("conv2d {op:?} n={n} relu={relu}"), 1e-5, |w| on!(w, conv(op, n, relu, same)));
    }
}

/// The convolutions of the tests (batch size, fused ReLU); the grouped ones last.
const CONVS: [(Conv2d, usize, bool); 11] = [
        (Conv2d::new(3, 5, [29, 31], [3, 3], [2, 2], [1, 1], [1, 1], 1, true), 3, false),
        (Conv2d::new(2, 3, [11, 10], [3, 2], [1, 2], [0, 1], [2, 1], 1, false), 3, true),
        (Conv2d::new(6, 7, [5, 4], [1, 1], [1, 1], [0, 0], [1, 1], 1, true), 3, true),
        (Conv2d::new(3, 4, [23, 23], [11, 11], [4, 4], [2, 2], [1, 1], 1, true), 3, false),
        (Conv2d::new(70, 65, [9, 9], [3, 3], [1, 1], [1, 1], [1, 1], 1, true), 3, true),
        // Enough output tiles that the filter gradient sums groups of 3 images (3 + 2).
        (Conv2d::new(406, 130, [5, 5], [3, 3], [1, 1], [1, 1], [1, 1], 1, true), 5, false),
        // Grouped (the direct kernels): depthwise with stride 1 and 2, dilation, a channel
        // multiplier, groups of 4 channels.
        (Conv2d::new(12, 12, [9, 11], [3, 3], [1, 1], [1, 1], [1, 1], 12, false), 3, true),
        (Conv2d::new(8, 8, [9, 11], [3, 3], [2, 2], [1, 1], [1, 1], 8, true), 3, false),
        (Conv2d::new(4, 4, [9, 9], [3, 3], [1, 1], [2, 2], [2, 2], 4, true), 2, true),
        (Conv2d::new(4, 8, [7, 9], [5, 5], [1, 1], [2, 2], [1, 1], 4, true), 2, false),
        (Conv2d::new(16, 8, [6, 6], [3, 3], [1, 2], [1, 1], [1, 1], 4, true), 3, true),
];

/// `linear_forward`, then `linear_backward` on random x, w, b and dy (each passed through `prep`).
fn linear<B: Backend>(dev: &B, op: Linear, n: usize, prep: fn(Vec<f32>) -> Vec<f32>) -> Vec<(&'static str, Vec<f32>)> {
    let (fi, fo) = (op.in_features, op.out_features);
    let (x, wb, dy) = (buf(dev, &prep(random(n * fi, 16))), buf(dev, &prep(random(op.param_len(), 17))), buf(dev, &prep(random(n * fo, 18))));
    let (mut y, mut dx, mut dwb) = (dev.alloc(n * fo).unwrap(), dev.alloc(n * fi).unwrap(), buf(dev, &vec![0.5; op.param_len()]));
    let (xs, ws) = (B::src(&x, 0..n * fi), B::src(&wb, 0..op.param_len()));
    dev.linear_forward(&op, n, xs, ws, B::dst(&mut y, 0..n * fo)).unwrap();
    dev.linear_backward(&op, n, xs, ws, B::src(&dy, 0..n * fo), Some(B::dst(&mut dx, 0..n * fi)), Some(B::dst(&mut dwb, 0..op.param_len()))).unwrap();
    vec![("y", read(dev, &y)), ("dx", read(dev, &dx)), ("dwb (accumulated onto 0.5)", read(dev, &dwb))]
}

/// Small and large layers: the GEMMs of few tiles and a long k are split along k.
#[test]
fn linear_layers() {
    for (op, n) in LINEARS {
        agree(&format!("linear {op:?} n={n}"), 1e-5, |w| on!(w, linear(op, n, same)));
    }
}

const LINEARS: [(Linear, usize); 4] = [(Linear::new(7, 5, true), 9), (Linear::new(1568, 10, true), 100), (Linear::new(9216, 40, false), 4), (Linear::new(300, 700, true), 130)];

/// x rounded to the nearest bfloat16, ties to even, as `tensor.to(torch.bfloat16)`: of the two
/// bf16 values around x (its top 16 bits, and those plus one unit), the nearer one.
fn to_bf16(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    let down = f32::from_bits(x.to_bits() & 0xffff_0000);
    let up = f32::from_bits((x.to_bits() & 0xffff_0000) + 0x1_0000);
    let (d, u) = ((x - down).abs(), (up - x).abs());
    if d < u || (d == u && (down.to_bits() >> 16) % 2 == 0) { down } else { up }
}

fn bf16(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(to_bf16).collect()
}

/// bf16 mixed precision (`Cuda::set_precision(Precision::Bf16)`, PyTorch's autocast): each GEMM
/// of a convolution or linear layer rounds its operands to bf16, sums the products in f32 and
/// rounds its result to bf16. The reference is the CPU's f32 op on bf16-rounded x, w, b and dy,
/// its outputs rounded to bf16: a product of two bf16 values is exact in f32, so the two differ
/// by the order of f32 sums (a last-bf16-place flip here and there), by the 0.5 that the
/// gradients accumulate onto (added after the GEMM's rounding on the GPU, before it here), and
/// by the bias gradient, which sums dy unrounded on the GPU: within 5e-3, while an f32 result would differ from the bf16 one by about 1e-3 and the rounding
/// of a wrong tensor-core fragment by 1e-1 or more. The GPU's f32 results must differ from its
/// bf16 ones by more than f32's tolerance, so the test fails if bf16 is not applied.
#[test]
fn bf16_convolutions_and_linear_layers() {
    if common::gpu("bf16_convolutions_and_linear_layers").is_none() {
        return;
    }
    // A device of its own: the precision is the device's, and other tests share theirs.
    let gpu = Cuda::new(0).unwrap();
    gpu.set_precision(Precision::Bf16);
    let convs = CONVS.into_iter().filter(|(op, _, _)| op.groups == 1).map(|(op, n, relu)| {
        let bf = conv(&gpu, op, n, relu, same);
        let reference = conv(&Cpu, op, n, relu, bf16);
        let f32 = conv(&Cpu, op, n, relu, same);
        (format!("conv2d {op:?} n={n} relu={relu}"), bf, reference, f32)
    });
    let linears = LINEARS.into_iter().map(|(op, n)| (format!("linear {op:?} n={n}"), linear(&gpu, op, n, same), linear(&Cpu, op, n, bf16), linear(&Cpu, op, n, same)));
    for (what, bf, reference, f32) in convs.chain(linears) {
        for (((name, got), (_, want)), (_, exact)) in bf.iter().zip(&reference).zip(&f32) {
            common::assert_close(got, &bf16(want.clone()), 5e-3, &format!("{what}: {name} in bf16"));
            let apart = common::rel_err(got, exact);
            assert!(apart > 1e-4, "{what}: {name} in bf16 is within {apart:.1e} of f32: bf16 was not applied");
        }
    }
}

fn pool<B: Backend>(dev: &B, op: Pool2d, max: bool) -> Vec<(&'static str, Vec<f32>)> {
    let n = 2;
    let mut xv = random(n * op.x_len(), 4);
    // Ties: the backward's argmax must pick the first of equal maxima, as PyTorch does.
    for v in xv.iter_mut().step_by(7) {
        *v = 0.25;
    }
    let (x, dy) = (buf(dev, &xv), buf(dev, &random(n * op.y_len(), 5)));
    let (mut y, mut dx) = (dev.alloc(n * op.y_len()).unwrap(), dev.alloc(n * op.x_len()).unwrap());
    let (xs, dys) = (B::src(&x, 0..n * op.x_len()), B::src(&dy, 0..n * op.y_len()));
    if max {
        dev.max_pool2d_forward(&op, n, xs, B::dst(&mut y, 0..n * op.y_len())).unwrap();
        dev.max_pool2d_backward(&op, n, xs, B::src(&y, 0..n * op.y_len()), dys, B::dst(&mut dx, 0..n * op.x_len())).unwrap();
    } else {
        dev.avg_pool2d_forward(&op, n, xs, B::dst(&mut y, 0..n * op.y_len())).unwrap();
        dev.avg_pool2d_backward(&op, n, dys, B::dst(&mut dx, 0..n * op.x_len())).unwrap();
    }
    vec![("y", read(dev, &y)), ("dx", read(dev, &dx))]
}

#[test]
fn pooling() {
    let max = [
        Pool2d::max(3, [28, 28], [2, 2], [2, 2], [0, 0], [1, 1], false),
        Pool2d::max(2, [13, 13], [3, 3], [2, 2], [0, 0], [1, 1], false),
        Pool2d::max(2, [10, 9], [3, 2], [2, 1], [1, 1], [2, 1], true),
        Pool2d::max(1, [7, 7], [2, 2], [2, 2], [0, 0], [1, 1], true),
    ];
    for op in max {
        agree(&format!("max_pool2d {op:?}"), 1e-6, |w| on!(w, pool(op, true)));
    }
    let avg = [
        Pool2d::avg(3, [28, 28], [2, 2], [2, 2], [0, 0], false, true, 0),
        Pool2d::avg(2, [5, 5], [3, 3], [2, 2], [1, 1], true, true, 0),
        Pool2d::avg(2, [5, 5], [3, 3], [2, 2], [1, 1], true, false, 0),
        Pool2d::avg(2, [7, 6], [3, 2], [1, 2], [1, 0], false, true, 5),
    ];
    for op in avg {
        agree(&format!("avg_pool2d {op:?}"), 1e-6, |w| on!(w, pool(op, false)));
    }
}

fn adaptive<B: Backend>(dev: &B, op: AdaptiveAvgPool2d) -> Vec<(&'static str, Vec<f32>)> {
    let n = 2;
    let (x, dy) = (buf(dev, &random(n * op.x_len(), 6)), buf(dev, &random(n * op.y_len(), 7)));
    let (mut y, mut dx) = (dev.alloc(n * op.y_len()).unwrap(), dev.alloc(n * op.x_len()).unwrap());
    dev.adaptive_avg_pool2d_forward(&op, n, B::src(&x, 0..n * op.x_len()), B::dst(&mut y, 0..n * op.y_len())).unwrap();
    dev.adaptive_avg_pool2d_backward(&op, n, B::src(&dy, 0..n * op.y_len()), B::dst(&mut dx, 0..n * op.x_len())).unwrap();
    vec![("y", read(dev, &y)), ("dx", read(dev, &dx))]
}

#[test]
fn adaptive_avg_pool2d() {
    for op in [AdaptiveAvgPool2d::new(3, [13, 13], [6, 6]), AdaptiveAvgPool2d::new(2, [3, 3], [6, 6]), AdaptiveAvgPool2d::new(4, [7, 5], [1, 1])] {
        agree(&format!("{op:?}"), 1e-6, |w| on!(w, adaptive(op)));
    }
}

fn adaptive_max<B: Backend>(dev: &B, op: AdaptiveMaxPool2d) -> Vec<(&'static str, Vec<f32>)> {
    let n = 2;
    let (x, dy) = (buf(dev, &random(n * op.x_len(), 8)), buf(dev, &random(n * op.y_len(), 9)));
    let (mut y, mut dx) = (dev.alloc(n * op.y_len()).unwrap(), dev.alloc(n * op.x_len()).unwrap());
    dev.adaptive_max_pool2d_forward(&op, n, B::src(&x, 0..n * op.x_len()), B::dst(&mut y, 0..n * op.y_len())).unwrap();
    dev.adaptive_max_pool2d_backward(&op, n, B::src(&x, 0..n * op.x_len()), B::src(&dy, 0..n * op.y_len()), B::dst(&mut dx, 0..n * op.x_len())).unwrap();
    vec![("y", read(dev, &y)), ("dx", read(dev, &dx))]
}

#[test]
fn adaptive_max_pool2d() {
    for op in [AdaptiveMaxPool2d::new(3, [14, 14], [3, 3]), AdaptiveMaxPool2d::new(2, [3, 3], [6, 6]), AdaptiveMaxPool2d::new(4, [7, 5], [1, 1])] {
        agree(&format!("{op:?}"), 1e-6, |w| on!(w, adaptive_max(op)));
    }
}

fn batch_norm<B: Backend>(dev: &B, op: BatchNorm, train: bool) -> Vec<(&'static str, Vec<f32>)> {
    let n = 4;
    let len = n * op.x_len();
    let x: Vec<f32> = random(len, 8).iter().map(|v| 3.0 * v + 1.5).collect();
    let (x, dy, wb) = (buf(dev, &x), buf(dev, &random(len, 9)), buf(dev, &random(2 * op.c, 10)));
    let mut running = buf(dev, &[vec![0.1; op.c], vec![0.9; op.c]].concat());
    let (mut saved, mut y, mut dx, mut dwb) = (dev.alloc(op.saved_len()).unwrap(), dev.alloc(len).unwrap(), dev.alloc(len).unwrap(), buf(dev, &vec![0.5; 2 * op.c]));
    let (xs, ws) = (B::src(&x, 0..len), Some(B::src(&wb, 0..2 * op.c)));
    if train {
        dev.batch_norm_forward_train(&op, n, xs, ws, Some(B::dst(&mut running, 0..2 * op.c)), 0.1, B::dst(&mut saved, 0..op.saved_len()), B::dst(&mut y, 0..len)).unwrap();
    } else {
        dev.batch_norm_forward_eval(&op, n, xs, ws, B::src(&running, 0..2 * op.c), B::dst(&mut saved, 0..op.saved_len()), B::dst(&mut y, 0..len)).unwrap();
    }
    let (dxd, dwd) = (B::dst(&mut dx, 0..len), B::dst(&mut dwb, 0..2 * op.c));
    dev.batch_norm_backward(&op, n, train, xs, ws, B::dst(&mut saved, 0..op.saved_len()), B::src(&dy, 0..len), Some(dxd), Some(dwd)).unwrap();
    vec![("y", read(dev, &y)), ("running", read(dev, &running)), ("dx", read(dev, &dx)), ("dwb", read(dev, &dwb))]
}

#[test]
fn batch_norm_train_and_eval() {
    for train in [true, false] {
        for op in [BatchNorm::new(5, 49, 1e-5, Some(0.1), true, true), BatchNorm::new(7, 1, 1e-3, Some(0.1), true, true)] {
            agree(&format!("{op:?} train={train}"), 1e-5, |w| on!(w, batch_norm(op, train)));
        }
    }
}

fn elementwise<B: Backend>(dev: &B, len: usize) -> Vec<(&'static str, Vec<f32>)> {
    let (x, dy) = (buf(dev, &random(len, 11)), buf(dev, &random(len, 12)));
    let mut out = Vec::new();
    for &act in Activation::EXAMPLES {
        let name: &'static str = format!("{act:?}").leak();
        let (mut y, mut dx) = (dev.alloc(len).unwrap(), dev.alloc(len).unwrap());
        dev.activation_forward(act, len, B::src(&x, 0..len), B::dst(&mut y, 0..len)).unwrap();
        dev.activation_backward(act, len, B::src(&x, 0..len), B::src(&y, 0..len), B::src(&dy, 0..len), B::dst(&mut dx, 0..len)).unwrap();
        out.push((name, read(dev, &y)));
        out.push((name, read(dev, &dx)));
    }
    let mut y = dev.alloc(len).unwrap();
    dev.add(len, B::src(&x, 0..len), B::src(&dy, 0..len), B::dst(&mut y, 0..len), true).unwrap();
    dev.add_assign(len, B::dst(&mut y, 0..len), B::src(&x, 0..len)).unwrap();
    out.push(("add, add_assign", read(dev, &y)));
    for log in [false, true] {
        let op = Softmax::new(10, 3, log);
        let n = len / op.x_len();
        let (mut y, mut dx) = (dev.alloc(n * op.x_len()).unwrap(), dev.alloc(n * op.x_len()).unwrap());
        dev.softmax_forward(&op, n, B::src(&x, 0..n * op.x_len()), B::dst(&mut y, 0..n * op.x_len())).unwrap();
        dev.softmax_backward(&op, n, B::src(&y, 0..n * op.x_len()), B::src(&dy, 0..n * op.x_len()), B::dst(&mut dx, 0..n * op.x_len())).unwrap();
        out.push(("softmax", read(dev, &y)));
        out.push(("softmax dx", read(dev, &dx)));
    }
    out
}

#[test]
fn activations_add_softmax() {
    agree("elementwise", 1e-6, |w| on!(w, elementwise(3000)));
}

fn losses<B: Backend>(dev: &B) -> Vec<(&'static str, Vec<f32>)> {
    let (n, classes) = (37, 10);
    let logits = buf(dev, &random(n * classes, 13).iter().map(|v| 4.0 * v).collect::<Vec<_>>());
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 7) % classes as u32).collect();
    let mut lab = dev.alloc::<u32>(n).unwrap();
    dev.upload(&mut lab, 0, &labels).unwrap();
    let mut out = Vec::new();
    for smoothing in [0.0, 0.1] {
        let mut d = dev.alloc(n * classes).unwrap();
        let r = dev.cross_entropy(&CrossEntropy::new(classes, smoothing), n, B::src(&logits, 0..n * classes), B::src(&lab, 0..n), Some(B::dst(&mut d, 0..n * classes))).unwrap();
        out.push(("loss, correct", vec![r.loss, r.correct as f32]));
        out.push(("dlogits", read(dev, &d)));
    }
    let target = buf(dev, &random(n * classes, 14));
    let mut d = dev.alloc(n * classes).unwrap();
    let loss = dev.mse(n * classes, B::src(&logits, 0..n * classes), B::src(&target, 0..n * classes), Some(B::dst(&mut d, 0..n * classes))).unwrap();
    out.push(("mse", vec![loss]));
    out.push(("mse dy", read(dev, &d)));
    out
}

#[test]
fn cross_entropy_and_mse() {
    agree("losses", 1e-6, |w| on!(w, losses()));
}

fn dropout<B: Backend>(dev: &B, op: Dropout, n: usize, key: u64) -> Vec<f32> {
    let len = n * op.len;
    let x = buf(dev, &random(len, 15));
    let mut y = dev.alloc(len).unwrap();
    dev.dropout_forward(&op, n, key, B::src(&x, 0..len), B::dst(&mut y, 0..len)).unwrap();
    read(dev, &y)
}

/// The same key draws the same mask on both backends: bit for bit, not within a tolerance.
#[test]
fn dropout_masks_are_the_cpus() {
    let Some(gpu) = common::gpu("dropout_masks_are_the_cpus") else { return };
    for (op, n, key) in [(Dropout::new(1000, 0.5), 7, Dropout::key(42, 3, 1)), (Dropout::new(333, 0.1), 3, Dropout::key(1, 1, 0))] {
        let (cpu, cuda) = (dropout(&Cpu, op, n, key), dropout(&gpu, op, n, key));
        assert_eq!(cpu, cuda, "{op:?}");
        assert!(cpu.contains(&0.0), "{op:?} dropped nothing");
    }
}

/// No GPU, no driver, or an ordinal past the last GPU: an error that says so, never a panic.
#[test]
fn a_missing_device_is_an_error() {
    let err = Cuda::new(999).unwrap_err().to_string();
    assert!(err.contains("cuda") || err.contains("CUDA"), "{err}");
}
