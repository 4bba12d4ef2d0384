//! A training step (forward, cross-entropy, backward, optimizer update) and an inference
//! forward of each benchmark workload, with images as the throughput.
//!
//!     RAYON_NUM_THREADS=2 cargo bench --bench train_step
//!
//! The bench example (`cargo run --release --example bench`) times the same workloads the way
//! PyTorch's script does, for the ratios in the README.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use staticnet::prelude::*;
use staticnet::{Logits, Optimizer};

#[path = "../examples/common/course.rs"]
mod course;
use course::{AlexNet, CifarCnn, ModelA, ModelC, NetBn, NetSeq, batch};

fn workload<N, O>(c: &mut Criterion, name: &str, n: usize, new: fn(&Cpu, u64) -> staticnet::Result<N>, mut opt: O)
where
    N: Network,
    N::Output: Logits,
    O: Optimizer<Cpu>,
{
    let mut net = new(&Cpu, 0).expect("a network");
    let (x, y) = batch::<N::Input>(n, 1);
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(n as u64));
    net.train();
    group.bench_function("train_step", |b| b.iter(|| net.train_step(&x, &y, &mut opt).expect("a step")));
    net.eval();
    let mut out = N::Output::from_vec(0, Vec::new()).expect("an empty batch");
    group.bench_function("forward", |b| b.iter(|| net.forward_into(&x, &mut out).expect("a forward")));
    group.finish();
}

fn workloads(c: &mut Criterion) {
    let sgd = || Sgd::new(0.01).momentum(0.9);
    let adam = || Adam::new(3e-4).weight_decay(1e-3);
    workload(c, "model_a_mnist_b100_sgd", 100, ModelA::new, sgd());
    workload(c, "model_c_mnist_b100_sgd", 100, ModelC::new, sgd());
    workload(c, "net_seq_mnist_b64_adam", 64, NetSeq::new, adam());
    workload(c, "net_bn_mnist_b64_adam", 64, NetBn::new, adam());
    workload(c, "cifar_cnn_b128_adam", 128, CifarCnn::new, adam());
    workload(c, "alexnet_224_b4_sgd", 4, AlexNet::new, sgd());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = workloads
}
criterion_main!(benches);
