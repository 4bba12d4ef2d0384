//! The GEMM and every convolution shape of the course's networks (forward, backward-data,
//! backward-filter), with FLOPs as the throughput: criterion's "Gelem/s" reads as GFLOP/s.
//!
//!     cargo bench --bench kernels                  # everything
//!     cargo bench --bench kernels -- alexnet       # one network's layers
//!
//! Threads: RAYON_NUM_THREADS (the bench example prints the one-thread figures against the FMA
//! peak).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use staticnet::ops::conv2d::cpu as conv;
use staticnet::ops::gemm::{MatMut, MatRef, Parallelism, gemm};
use staticnet::ops::{Conv2d, random_values as values};

/// `Conv2d(c_in, c_out, kernel, stride, padding)` on `[c_in, h, w]` inputs, with bias.
const fn conv2d(c_in: usize, c_out: usize, hw: usize, k: usize, stride: usize, padding: usize) -> Conv2d {
    Conv2d::new(c_in, c_out, [hw, hw], [k, k], [stride, stride], [padding, padding], [1, 1], 1, true)
}

/// (layer, op, batch): every convolution of the workloads of `bench/compare.py`, then grouped
/// ones.
const LAYERS: &[(&str, Conv2d, usize)] = &[
    ("model_a.cnn1", conv2d(1, 16, 28, 5, 1, 2), 100),
    ("model_a.cnn2", conv2d(16, 32, 14, 5, 1, 2), 100),
    ("model_c.cnn1", conv2d(1, 16, 28, 5, 1, 0), 100),
    ("model_c.cnn2", conv2d(16, 32, 12, 5, 1, 0), 100),
    ("net_seq.features.0", conv2d(1, 5, 28, 3, 1, 1), 64),
    ("net_seq.features.2", conv2d(5, 10, 28, 3, 1, 1), 64),
    ("net_seq.features.5", conv2d(10, 20, 14, 3, 1, 1), 64),
    ("net_seq.features.7", conv2d(20, 40, 14, 3, 1, 1), 64),
    ("net_bn.features.0", conv2d(1, 10, 28, 3, 1, 1), 64),
    ("net_bn.features.4", conv2d(10, 20, 14, 3, 1, 1), 64),
    ("cifar_cnn.conv1", conv2d(3, 32, 32, 3, 1, 1), 128),
    ("cifar_cnn.conv2", conv2d(32, 64, 16, 3, 1, 1), 128),
    ("cifar_cnn.conv3", conv2d(64, 128, 8, 3, 1, 1), 128),
    ("alexnet.features.0", conv2d(3, 64, 224, 11, 4, 2), 4),
    ("alexnet.features.3", conv2d(64, 192, 27, 5, 1, 2), 4),
    ("alexnet.features.6", conv2d(192, 384, 13, 3, 1, 1), 4),
    ("alexnet.features.8", conv2d(384, 256, 13, 3, 1, 1), 4),
    ("alexnet.features.10", conv2d(256, 256, 13, 3, 1, 1), 4),
    // Depthwise (MobileNet-like, no bias) and grouped convolutions: the direct kernels of
    // ops/conv2d/depthwise.rs.
    ("depthwise.96x16x16", Conv2d::new(96, 96, [16, 16], [3, 3], [1, 1], [1, 1], [1, 1], 96, false), 128),
    ("depthwise.144x8x8", Conv2d::new(144, 144, [8, 8], [3, 3], [1, 1], [1, 1], [1, 1], 144, false), 128),
    ("depthwise.96x16x16.s2", Conv2d::new(96, 96, [16, 16], [3, 3], [2, 2], [1, 1], [1, 1], 96, false), 128),
    ("grouped4.64x16x16", Conv2d::new(64, 64, [16, 16], [3, 3], [1, 1], [1, 1], [1, 1], 4, true), 32),
];

fn convolutions(c: &mut Criterion) {
    for &(name, op, n) in LAYERS {
        let mut group = c.benchmark_group(format!("conv/{name}"));
        group.throughput(Throughput::Elements(op.flops() * n as u64));
        let x = values(n * op.x_len(), 1);
        let wb = values(op.param_len(), 2);
        let dy = values(n * op.y_len(), 3);
        let (mut y, mut dx, mut dwb) = (vec![0.0; n * op.y_len()], vec![0.0; n * op.x_len()], vec![0.0; op.param_len()]);
        let mut scratch = vec![0.0; conv::scratch_len(&op, n)];
        group.bench_function("forward", |b| b.iter(|| conv::forward(&op, n, &x, &wb, None, &mut y, &mut scratch, true)));
        group.bench_function("backward-data", |b| b.iter(|| conv::backward(&op, n, &x, &wb, None, &dy, None, Some(&mut dx), None, &mut scratch)));
        group.bench_function("backward-filter", |b| b.iter(|| conv::backward(&op, n, &x, &wb, None, &dy, None, None, Some(&mut dwb), &mut scratch)));
        group.finish();
    }
}

/// Square products and the linear layers' shapes (rows = batch).
fn gemms(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    for (m, n, k) in [(256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (64, 1024, 1960), (64, 2048, 1024), (4, 4096, 9216), (100, 10, 1568)] {
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        let (a, b) = (values(m * k, 4), values(k * n, 5));
        let mut out = vec![0.0; m * n];
        group.bench_function(BenchmarkId::from_parameter(format!("{m}x{n}x{k}")), |bench| {
            bench.iter(|| gemm(m, n, k, MatRef::rows(&a, k), MatRef::rows(&b, n), 0.0, MatMut::rows(&mut out, n), Parallelism::Rayon))
        });
    }
    group.finish();
}

criterion_group!(benches, convolutions, gemms);
criterion_main!(benches);
