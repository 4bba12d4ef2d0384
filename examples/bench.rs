//! The course's networks timed the way `bench/compare.py` times them in PyTorch: the same
//! networks, batch sizes, optimizers and workload names, medians after warm-up. Also the
//! machine's FMA peak, the largest convolutions' speed on one thread against it, and the grouped
//! (depthwise) convolutions' time and memory throughput.
//!
//!     RAYON_NUM_THREADS=2 cargo run --release --example bench              # a table
//!     RAYON_NUM_THREADS=2 cargo run --release --example bench -- --json    # JSON
//!     python3 bench/compare.py                                             # ratios to PyTorch
//!
//! Options: `--iters 20` timed repetitions, `--only NAME` workloads whose name contains NAME,
//! `--no-layers` to skip the per-layer measurements, `--device cuda` to time the networks on the
//! GPU (built with `--features cuda`; the per-layer measurements are the CPU's only),
//! `--precision bf16` to train and infer there in bf16 mixed precision (`Cuda::set_precision`),
//! `--flush-denormal` to time them with `staticnet::set_flush_denormal(true)`.
//!
//! `--conv C_IN,C_OUT,SIZE,KERNEL,PADDING,BATCH` times one square convolution of stride 1
//! instead (forward, data gradient, filter gradient, on one thread and on the pool's), as the
//! layer table does: `--conv 32,64,16,3,1,128` is the CIFAR network's second layer.

mod common;
#[path = "common/course.rs"]
mod course;

use std::fmt::Write as _;
use std::time::Instant;

use staticnet::ops::aligned::AlignedVec;
use staticnet::ops::{self, Conv2d};
use staticnet::prelude::*;

use course::{Airbench94, AlexNet, CifarCnn, MobileNetV2Cifar, ModelA, ModelC, NetBn, NetSeq, batch, freeze_like_airbench};
use staticnet::{Logits, Optimizer};

const USAGE: &str = "usage: bench [--json] [--iters 20] [--only NAME] [--no-layers] [--device cpu|cuda] [--precision f32|bf16] [--flush-denormal]
       bench --conv C_IN,C_OUT,SIZE,KERNEL,PADDING,BATCH

Times a training step and an inference forward of each course network (the workloads of
bench/compare.py), then the largest convolutions on one thread against the FMA peak. With
--conv, one square convolution of stride 1 only, on one thread and on the pool's.";

/// One workload's result.
struct Timing {
    name: &'static str,
    train_ms: f64,
    forward_ms: f64,
    /// The forward of one sample (the deployment case).
    forward_b1_ms: f64,
    batch: usize,
    /// The network's parameters, which compare.py checks against its PyTorch twin's.
    params: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Medians of `iters` timed calls after 3 warm-up calls, in ms.
fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    median((0..iters).map(|_| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e3
    }).collect())
}

fn workload<B: TrainTimer, N, O>(dev: &B, name: &'static str, n: usize, iters: usize, new: impl Fn(&B, u64) -> staticnet::Result<N>, opt: O) -> staticnet::Result<Timing>
where
    N: Network<B>,
    N::Output: Logits,
    O: Optimizer<B>,
{
    let mut net = new(dev, 0)?;
    let (x, y) = batch::<N::Input>(n, 1);
    net.train();
    let (train_ms, mut net) = B::train_ms(net, opt, &x, &y, iters)?;
    net.eval();
    let mut out = N::Output::from_vec(0, Vec::new())?;
    let mut err = Ok(());
    let forward_ms = time(iters, || {
        if let Err(e) = net.forward_into(&x, &mut out) {
            err = Err(e);
        }
    });
    err?;
    let (x1, _) = batch::<N::Input>(1, 2);
    let mut err = Ok(());
    let forward_b1_ms = time(iters * 5, || {
        if let Err(e) = net.forward_into(&x1, &mut out) {
            err = Err(e);
        }
    });
    err?;
    Ok(Timing { name, train_ms, forward_ms, forward_b1_ms, batch: n, params: net.num_parameters() })
}

/// How a backend's train step is timed: the median of `iters` steps after 3 warm-up steps, each
/// ending with the loss on the host.
trait TrainTimer: Backend {
    fn train_ms<N: Network<Self>, O: Optimizer<Self>>(net: N, opt: O, x: &N::Input, y: &[usize], iters: usize) -> staticnet::Result<(f64, N)>
    where
        N::Output: Logits;
}

/// On the CPU, `train_step`.
impl TrainTimer for Cpu {
    fn train_ms<N: Network<Self>, O: Optimizer<Self>>(mut net: N, mut opt: O, x: &N::Input, y: &[usize], iters: usize) -> staticnet::Result<(f64, N)>
    where
        N::Output: Logits,
    {
        let mut err = Ok(());
        let ms = time(iters, || {
            if let Err(e) = net.train_step(x, y, &mut opt) {
                err = Err(e);
            }
        });
        err.map(|()| (ms, net))
    }
}

/// On the GPU, the step replayed from one CUDA graph (`staticnet::graph`); the loss is read back
/// at every step, as PyTorch's `loss.item()` does, so that the time includes the device's work.
/// With STATICNET_EAGER=1, `train_step` as on the CPU (to see what the graph saves). With
/// STATICNET_CUDA_PROFILE=1, first prints where an eager step's time goes, kernel by kernel.
#[cfg(feature = "cuda")]
impl TrainTimer for staticnet::Cuda {
    fn train_ms<N: Network<Self>, O: Optimizer<Self>>(mut net: N, mut opt: O, x: &N::Input, y: &[usize], iters: usize) -> staticnet::Result<(f64, N)>
    where
        N::Output: Logits,
    {
        if std::env::var_os("STATICNET_CUDA_PROFILE").is_some() {
            // Where an eager step's time goes, kernel by kernel (before the timing, which the
            // profiling's waits would slow).
            let dev = net.device().clone();
            net.train_step(x, y, &mut opt)?;
            dev.set_profiling(true);
            let steps = 5;
            for _ in 0..steps {
                net.train_step(x, y, &mut opt)?;
            }
            let rows = dev.take_profile();
            dev.set_profiling(false);
            let total: f64 = rows.iter().map(|r| r.2).sum::<f64>() / steps as f64;
            eprintln!("{}: eager train step, {total:.3} ms in kernels (launch to finish, one at a time):", N::SPEC.name);
            for (name, count, ms) in rows.iter().take(12) {
                eprintln!("  {name:32} {:4} launches {:8.3} ms  {:5.1}%", count / steps, ms / steps as f64, 100.0 * ms / steps as f64 / total);
            }
        }
        let mut err = Ok(());
        if std::env::var_os("STATICNET_EAGER").is_some() {
            let ms = time(iters, || {
                if let Err(e) = net.train_step(x, y, &mut opt) {
                    err = Err(e);
                }
            });
            return err.map(|()| (ms, net));
        }
        let mut step = staticnet::graph::GraphedTrainStep::new(net, opt, staticnet::CrossEntropyLoss::new())?;
        // Beyond `time`'s 3 warm-up steps: the eager step and the two captures.
        for _ in 0..3 {
            step.step(x, y)?;
        }
        let ms = time(iters, || {
            if let Err(e) = step.step(x, y).and_then(|()| step.loss()) {
                err = Err(e);
            }
        });
        err?;
        Ok((ms, step.into_parts()?.0))
    }
}

/// The FMA peak of one core in GFLOP/s for the instruction set the kernels use: independent
/// chains of 8-wide (AVX2) or 16-wide (AVX-512) FMAs, enough to cover the FMA latency on every
/// FMA port.
fn fma_peak() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        /// 12 chains of `W`-float FMAs, `iters` times; returns a sum so nothing is optimised away.
        macro_rules! chains {
            ($name:ident, $feature:literal, $vec:ty, $set1:ident, $fmadd:ident, $store:ident, $w:literal) => {
                #[target_feature(enable = $feature)]
                fn $name(iters: u64) -> f32 {
                    use std::arch::x86_64::*;
                    let mut acc: [$vec; 12] = [$set1(1.0); 12];
                    let (m, b) = ($set1(0.999_999), $set1(1e-7));
                    for _ in 0..iters {
                        for a in acc.iter_mut() {
                            *a = $fmadd(*a, m, b);
                        }
                    }
                    let mut s = [0.0f32; $w];
                    for a in acc {
                        let mut lanes = [0.0f32; $w];
                        // SAFETY: lanes holds W floats.
                        unsafe { $store(lanes.as_mut_ptr(), a) };
                        s.iter_mut().zip(lanes).for_each(|(s, l)| *s += l);
                    }
                    s.iter().sum()
                }
            };
        }
        chains!(avx2_chains, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps, 8);
        chains!(avx512_chains, "avx512f,fma", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps, 16);
        let (run, width): (fn(u64) -> f32, u64) = match staticnet::ops::isa::isa() {
            // SAFETY (both): the instruction set was detected on this processor.
            staticnet::Isa::Avx512 => (|n| unsafe { avx512_chains(n) }, 16),
            staticnet::Isa::Avx2 => (|n| unsafe { avx2_chains(n) }, 8),
            staticnet::Isa::Generic => return 0.0,
        };
        // Runs of some 35 ms, the fastest of those in half a second: the layers' figures are
        // their fastest calls too, so that a slow spell lowers neither alone. The count goes
        // through black_box on every call, or LLVM computes the pure call once for all runs.
        let iters = 20_000_000u64;
        let best = fastest(&mut || _ = std::hint::black_box(run(std::hint::black_box(iters))), 0.5);
        return (iters * 12 * 2 * width) as f64 / best / 1e9;
    }
    #[allow(unreachable_code)]
    0.0
}

/// One convolution's forward, backward-data and backward-filter on one thread, in GFLOP/s
/// (the fastest call: the machine's speed, not its neighbours', as the FMA peak is its
/// fastest run).
fn conv_layer(op: Conv2d, n: usize) -> [f64; 3] {
    let flops = op.flops() as f64 * n as f64;
    layer_seconds(op, n, 1).map(|seconds| flops / seconds / 1e9)
}

/// `--conv C_IN,C_OUT,SIZE,KERNEL,PADDING,BATCH`: that convolution's passes on one thread and
/// on the pool's, GFLOP/s of the direct sum (the fastest call, as in the layer table).
fn one_conv(spec: &str) -> staticnet::Result<()> {
    let bad = || staticnet::Error::BadInput(format!("--conv {spec}: expected C_IN,C_OUT,SIZE,KERNEL,PADDING,BATCH (six whole numbers, e.g. 32,64,16,3,1,128)"));
    let v: Vec<usize> = spec.split(',').map(|f| f.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let &[c_in, c_out, size, k, pad, n] = v.as_slice() else { return Err(bad()) };
    if c_in == 0 || c_out == 0 || n == 0 || k == 0 || size + 2 * pad < k {
        return Err(staticnet::Error::BadInput(format!("--conv {spec}: no output (channels and batch must be at least 1, and SIZE + 2·PADDING at least KERNEL)")));
    }
    let op = Conv2d::new(c_in, c_out, [size, size], [k, k], [1, 1], [pad, pad], [1, 1], 1, true);
    let (peak, threads) = (fma_peak(), staticnet::num_threads());
    let flops = op.flops() as f64 * n as f64;
    println!("kernels: {}; its FMA peak, one thread: {peak:.1} GFLOP/s", staticnet::ops::isa::isa().name());
    println!("conv {c_in} -> {c_out}, {size} x {size}, {k} x {k}, padding {pad}, batch {n} (GFLOP/s of the direct sum)");
    for t in [1, threads] {
        let g = layer_seconds(op, n, t).map(|s| flops / s / 1e9);
        let share = |v: f64| format!("{v:7.1} ({:3.0}%)", 100.0 * v / (peak * t as f64));
        println!("  {t} thread(s): forward {}   backward-data {}   backward-filter {}   (% of {t} x the peak)", share(g[0]), share(g[1]), share(g[2]));
    }
    Ok(())
}

/// Seconds ([`fastest`]) of the forward, data gradient and filter gradient of `op` on
/// `threads` threads.
fn layer_seconds(op: Conv2d, n: usize, threads: usize) -> [f64; 3] {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
    pool.install(|| {
        // Every buffer on a cache line, as the CPU backend allocates them.
        let aligned = |v: &[f32]| {
            let mut a = AlignedVec::new(v.len());
            a.copy_from_slice(v);
            a
        };
        let (x, wb) = (aligned(&ops::random_values(n * op.x_len(), 2)), aligned(&ops::random_values(op.param_len(), 3)));
        let (mut y, mut dx, mut dwb) = (AlignedVec::new(n * op.y_len()), AlignedVec::new(n * op.x_len()), AlignedVec::new(op.param_len()));
        let mut scratch = AlignedVec::new(ops::conv2d::cpu::scratch_len(&op, n));
        // The weights laid out once, as a network keeps them between forwards.
        let mut packed = AlignedVec::new(ops::conv2d::cpu::packed_len(&op));
        ops::conv2d::cpu::pack(&op, &wb, &mut packed);
        let fwd = fastest(&mut || ops::conv2d::cpu::forward(&op, n, &x, &wb, Some(&packed[..]).filter(|p| !p.is_empty()), &mut y, &mut scratch, false), LAYER_SECONDS);
        let data = fastest(&mut || ops::conv2d::cpu::backward(&op, n, &x, &wb, Some(&packed[..]).filter(|p| !p.is_empty()), &y, None, Some(&mut dx), None, &mut scratch), LAYER_SECONDS);
        let filter = fastest(&mut || ops::conv2d::cpu::backward(&op, n, &x, &wb, Some(&packed[..]).filter(|p| !p.is_empty()), &y, None, None, Some(&mut dwb), &mut scratch), LAYER_SECONDS);
        [fwd, data, filter]
    })
}

/// Seconds ([`fastest`], one thread) of both gradients of `op` → ReLU → MaxPool2d(2, 2) from the
/// pooling's output gradient, as a train step runs them (`relu_max_pool_backward`).
fn pooled_backward_seconds(op: Conv2d, n: usize) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a thread pool");
    pool.install(|| {
        let (x, wb) = (ops::random_values(n * op.x_len(), 2), ops::random_values(op.param_len(), 3));
        let mut scratch = AlignedVec::new(ops::conv2d::cpu::scratch_len(&op, n));
        // The training forward's outputs the backward reads: the ReLU's and the pooling's.
        let mut relu_y = AlignedVec::new(n * op.y_len());
        ops::conv2d::cpu::forward(&op, n, &x, &wb, None, &mut relu_y, &mut scratch, true);
        let max_pool = ops::Pool2d::max(op.c_out, [op.h_out, op.w_out], [2, 2], [2, 2], [0, 0], [1, 1], false);
        let mut pool_y = AlignedVec::new(n * max_pool.y_len());
        ops::pool2d::cpu::max_forward(&max_pool, n, &relu_y, &mut pool_y);
        let pool_dy = ops::random_values(pool_y.len(), 4);
        let (mut dx, mut dwb) = (AlignedVec::new(n * op.x_len()), AlignedVec::new(op.param_len()));
        fastest(&mut || ops::conv2d::cpu::relu_max_pool_backward(&op, n, &x, &wb, &relu_y, &pool_y, &pool_dy, Some(&mut dx), Some(&mut dwb), &mut scratch), LAYER_SECONDS)
    })
}

/// Seconds a layer's pass is timed for ([`fastest`]).
const LAYER_SECONDS: f64 = 0.25;

/// Seconds of the fastest call of `f` in `seconds` (5 calls at least), after one to warm up.
/// This VM's speed drifts by 5–15% from one second to the next (its neighbours): the fastest of
/// 5 calls (35 ms of AlexNet's 384 → 256 data gradient) read 69–82% of the peak for the same
/// binary from one run of the table to the next.
fn fastest(f: &mut dyn FnMut(), seconds: f64) -> f64 {
    f();
    let start = Instant::now();
    let mut best = f64::MAX;
    let mut calls = 0;
    while calls < 5 || start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        calls += 1;
    }
    best
}

type Run = Box<dyn Fn(usize) -> staticnet::Result<Timing>>;

/// The workloads of bench/compare.py on `dev`; with `gpu`, also airbench94's network at batch
/// 1024 (a GPU workload: its train step is some 0.7 TFLOP).
fn workloads<B: TrainTimer>(dev: &B, gpu: bool) -> Vec<(&'static str, Run)> {
    let sgd = || Sgd::<B>::new(0.01).momentum(0.9);
    let adam = || Adam::<B>::new(3e-4).weight_decay(1e-3);
    let d = || dev.clone();
    let airbench = |dev: &B, seed| {
        let mut net = Airbench94::new(dev, seed)?;
        freeze_like_airbench(&mut net)?;
        Ok(net)
    };
    // airbench94's optimizer: SGD with Nesterov momentum 0.85 (its learning rate and decay
    // change nothing in the time).
    let nesterov = || Sgd::<B>::new(0.01).momentum(0.85).nesterov(true).weight_decay(5e-4);
    let gpu_only: Vec<(&'static str, Run)> = if gpu {
        vec![("airbench94_b1024_sgd", { let dev = d(); Box::new(move |i| workload(&dev, "airbench94_b1024_sgd", 1024, i, airbench, nesterov())) })]
    } else {
        Vec::new()
    };
    let mut all: Vec<(&'static str, Run)> = vec![
        ("model_a_mnist_b100_sgd", { let dev = d(); Box::new(move |i| workload(&dev, "model_a_mnist_b100_sgd", 100, i, ModelA::new, sgd())) }),
        ("model_c_mnist_b100_sgd", { let dev = d(); Box::new(move |i| workload(&dev, "model_c_mnist_b100_sgd", 100, i, ModelC::new, sgd())) }),
        ("net_seq_mnist_b64_adam", { let dev = d(); Box::new(move |i| workload(&dev, "net_seq_mnist_b64_adam", 64, i, NetSeq::new, adam())) }),
        ("net_bn_mnist_b64_adam", { let dev = d(); Box::new(move |i| workload(&dev, "net_bn_mnist_b64_adam", 64, i, NetBn::new, adam())) }),
        ("cifar_cnn_b128_adam", { let dev = d(); Box::new(move |i| workload(&dev, "cifar_cnn_b128_adam", 128, i, CifarCnn::new, adam())) }),
        ("alexnet_224_b4_sgd", { let dev = d(); Box::new(move |i| workload(&dev, "alexnet_224_b4_sgd", 4, i, AlexNet::new, sgd())) }),
        ("mobilenet_v2_cifar_b128_sgd", { let dev = d(); Box::new(move |i| workload(&dev, "mobilenet_v2_cifar_b128_sgd", 128, i, MobileNetV2Cifar::new, sgd())) }),
    ];
    all.extend(gpu_only);
    all
}

fn main() -> std::process::ExitCode {
    let args = common::Args::parse(USAGE);
    args.check(&["json", "iters", "only", "no-layers", "device", "precision", "flush-denormal", "conv"]);
    if let Some(spec) = args.opt("conv") {
        return common::run(|| one_conv(&spec));
    }
    let (json, iters, only) = (args.flag("json"), args.get("iters", 20usize), args.opt("only").unwrap_or_default());
    let device = args.opt("device").unwrap_or_else(|| "cpu".into());
    common::run(|| {
        if args.flag("flush-denormal") {
            staticnet::set_flush_denormal(true);
        }
        let threads = staticnet::num_threads();
        common::precision(&args, &device)?;
        #[cfg(feature = "cuda")]
        let cuda = if device == "cuda" { Some(common::cuda(common::precision(&args, &device)?)?) } else { None };
        let all = match device.as_str() {
            "cpu" => workloads(&Cpu, false),
            #[cfg(feature = "cuda")]
            "cuda" => workloads(cuda.as_ref().expect("opened above"), true),
            other => return Err(staticnet::Error::BadInput(format!("--device {other}: expected cpu or cuda (cuda needs --features cuda)"))),
        };
        let gpu = device != "cpu";
        let mut results = Vec::new();
        for (name, run) in all.iter().filter(|(n, _)| n.contains(&only)) {
            let t = run(iters)?;
            if !json {
                println!("{name:28} train_step {:9.3} ms   forward {:9.3} ms   forward of one {:8.3} ms   ({:8.0} img/s train)", t.train_ms, t.forward_ms, t.forward_b1_ms, t.batch as f64 * 1000.0 / t.train_ms);
            }
            results.push(t);
        }
        // What the first steps chose between cuDNN and our kernels, per convolution and pass.
        #[cfg(feature = "cuda")]
        if let Some(cuda) = &cuda {
            eprintln!("convolutions and GEMMs, cuDNN or cuBLAS or ours (timed once per shape at the first step):");
            for line in cuda.tuning_report() {
                eprintln!("  {line}");
            }
        }
        // The largest convolutions of the CIFAR network and of AlexNet, and Model A's second, on
        // one thread. Their GFLOP/s count the direct sum's multiply-adds, so Winograd's passes
        // (fewer of them) can read above the peak. Those followed by ReLU and MaxPool2d(2, 2) in
        // their network (`true`) are timed too as the train step runs their backward: both
        // gradients from the pooling's (`relu_max_pool_backward`, along its routes), counted
        // as the two direct sums it stands for.
        let layers: Vec<(&str, Conv2d, usize, bool)> = if args.flag("no-layers") || gpu {
            Vec::new()
        } else {
            vec![
                ("cifar_cnn.conv2", Conv2d::new(32, 64, [16, 16], [3, 3], [1, 1], [1, 1], [1, 1], 1, true), 128, true),
                ("cifar_cnn.conv3", Conv2d::new(64, 128, [8, 8], [3, 3], [1, 1], [1, 1], [1, 1], 1, true), 128, true),
                ("alexnet.features.3", Conv2d::new(64, 192, [27, 27], [5, 5], [1, 1], [2, 2], [1, 1], 1, true), 4, false),
                ("alexnet.features.6", Conv2d::new(192, 384, [13, 13], [3, 3], [1, 1], [1, 1], [1, 1], 1, true), 4, false),
                ("alexnet.features.8", Conv2d::new(384, 256, [13, 13], [3, 3], [1, 1], [1, 1], [1, 1], 1, true), 4, false),
                ("alexnet.features.10", Conv2d::new(256, 256, [13, 13], [3, 3], [1, 1], [1, 1], [1, 1], 1, true), 4, false),
                ("model_a.cnn2", Conv2d::new(16, 32, [14, 14], [5, 5], [1, 1], [2, 2], [1, 1], 1, true), 100, true),
            ]
        };
        // Grouped convolutions (depthwise.rs): MobileNet-like depthwise layers and a grouped one.
        // They do ~9 multiply-adds per output, so memory, not the FMA peak, is their measure.
        let grouped: Vec<(&str, Conv2d, usize)> = if args.flag("no-layers") || gpu {
            Vec::new()
        } else {
            vec![
                ("depthwise 96ch 16x16 s1", Conv2d::new(96, 96, [16, 16], [3, 3], [1, 1], [1, 1], [1, 1], 96, false), 128),
                ("depthwise 144ch 8x8 s1", Conv2d::new(144, 144, [8, 8], [3, 3], [1, 1], [1, 1], [1, 1], 144, false), 128),
                ("depthwise 96ch 16x16 s2", Conv2d::new(96, 96, [16, 16], [3, 3], [2, 2], [1, 1], [1, 1], 96, false), 128),
                // MobileNetV2's smallest planes on 32 x 32 images.
                ("depthwise 192ch 4x4 s1", Conv2d::new(192, 192, [4, 4], [3, 3], [1, 1], [1, 1], [1, 1], 192, false), 128),
                ("depthwise 576ch 2x2 s1", Conv2d::new(576, 576, [2, 2], [3, 3], [1, 1], [1, 1], [1, 1], 576, false), 128),
                ("depthwise 576ch 2x2 s2", Conv2d::new(576, 576, [2, 2], [3, 3], [2, 2], [1, 1], [1, 1], 576, false), 128),
                ("depthwise 960ch 1x1 s1", Conv2d::new(960, 960, [1, 1], [3, 3], [1, 1], [1, 1], [1, 1], 960, false), 128),
                ("depthwise 32ch 32x32 5x5", Conv2d::new(32, 32, [32, 32], [5, 5], [1, 1], [2, 2], [1, 1], 32, false), 128),
                ("groups=4 64ch 16x16", Conv2d::new(64, 64, [16, 16], [3, 3], [1, 1], [1, 1], [1, 1], 4, true), 32),
            ]
        };
        let peak = if layers.is_empty() { 0.0 } else { fma_peak() };
        let mut layer_rows = Vec::new();
        if !layers.is_empty() && !json {
            println!("\nkernels: {}; its FMA peak, one thread: {peak:.1} GFLOP/s", staticnet::ops::isa::isa().name());
            println!("{:22} {:>16} {:>16} {:>16} {:>16}   (one thread, GFLOP/s of the direct sum and % of peak)", "convolution", "forward", "backward-data", "backward-filter", "both, pooled");
        }
        for (name, op, n, pooled) in layers {
            let g = conv_layer(op, n);
            let p = pooled.then(|| 2.0 * op.flops() as f64 * n as f64 / pooled_backward_seconds(op, n) / 1e9);
            if !json {
                let cell = |v: f64| format!("{v:7.1} ({:3.0}%)", 100.0 * v / peak);
                println!("{name:22} {:>16} {:>16} {:>16} {:>16}", cell(g[0]), cell(g[1]), cell(g[2]), p.map_or(String::new(), cell));
            }
            layer_rows.push((name, g, p));
        }
        if !grouped.is_empty() && !json {
            println!("\n{:26} {:>22} {:>22} {:>22}   (ms and GB/s of x + y, one thread | {threads} threads)", "grouped convolution", "forward", "backward-data", "backward-filter");
        }
        for (name, op, n) in grouped {
            let one = layer_seconds(op, n, 1);
            let all = layer_seconds(op, n, threads);
            // Bytes each pass must move at least: the input and the output (or their gradients).
            let bytes = 4.0 * (n * (op.x_len() + op.y_len())) as f64;
            if !json {
                let cell = |a: f64, b: f64| format!("{:6.2} {:5.1} | {:6.2} {:5.1}", a * 1e3, bytes / a / 1e9, b * 1e3, bytes / b / 1e9);
                println!("{name:26} {} {} {}", cell(one[0], all[0]), cell(one[1], all[1]), cell(one[2], all[2]));
            }
        }
        if json {
            let mut s = String::from("{\n");
            for t in &results {
                let _ = writeln!(s, " \"{}\": {{\"train_step_ms\": {:.3}, \"forward_ms\": {:.3}, \"forward_b1_ms\": {:.4}, \"batch\": {}, \"params\": {}, \"threads\": {threads}}},", t.name, t.train_ms, t.forward_ms, t.forward_b1_ms, t.batch, t.params);
            }
            let step = if gpu && std::env::var_os("STATICNET_EAGER").is_none() { "one CUDA graph" } else { "eager" };
            let _ = write!(s, " \"train_step\": \"{step}\",\n \"isa\": \"{}\",\n \"fma_peak_gflops\": {peak:.1},\n \"conv_layers_one_thread_gflops\": {{", staticnet::ops::isa::isa().name());
            let rows: Vec<String> = layer_rows
                .iter()
                .map(|(n, g, p)| {
                    let pooled = p.map_or(String::new(), |p| format!(", \"backward_pooled\": {p:.1}"));
                    format!("\n  \"{n}\": {{\"forward\": {:.1}, \"backward_data\": {:.1}, \"backward_filter\": {:.1}{pooled}}}", g[0], g[1], g[2])
                })
                .collect();
            let _ = write!(s, "{}\n }}\n}}", rows.join(","));
            println!("{s}");
        }
        Ok(())
    })
}
