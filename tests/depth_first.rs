//! An eval forward of a large batch on the CPU runs depth-first (a few samples at a time per
//! thread through the whole network) and keeps only its output; an eval forward of any batch
//! runs a Conv2d → ReLU → MaxPool2d(2, 2) as one kernel where the backend has it, and does not
//! write the ReLU's output, and folds a batch norm into the convolution before it. What it gives must equal the layer-by-layer forward: its output,
//! and the activations and gradients recomputed when asked for afterwards.

mod common;

use common::assert_close;
use common::nets::{CifarNet, ModelA, NetBn, NetSeq, ResNetMini};
use staticnet::prelude::*;
use staticnet::{Optimizer, Sgd};

/// A batch of `n` inputs drawn from `seed`, in [-1, 1).
fn inputs<I: Batch>(n: usize, seed: u64) -> I {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let data = (0..n * I::SAMPLE_LEN)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    I::from_vec(n, data).unwrap()
}

/// A batch of two chunks and a few samples more, so that with two threads a thread takes more
/// than one chunk, the last one partial.
fn samples<B: Backend>(state: &staticnet::network::NetState<B>) -> usize {
    2 * state.depth_first_chunk(1 << 20).expect("a large batch runs depth-first") + 3
}

/// The eval forward of `n` samples (depth-first) against each sample's own forward (one sample:
/// layer by layer), for a network whose batch norms hold running statistics of their own.
fn check_output<N: Network<Cpu>>(name: &str, new: impl Fn(&Cpu, u64) -> staticnet::Result<N>) {
    let mut net = new(&Cpu, 3).unwrap();
    // Running statistics away from 0 and 1, so that eval mode's normalisation does something.
    let warm: N::Input = inputs(16, 7);
    net.forward(&warm).unwrap();
    net.eval();
    let n = samples(net.state());
    let chunk = net.state().depth_first_chunk(n);
    assert!(chunk.is_some_and(|c| c < n), "{name}: a forward of {n} runs depth-first (chunk {chunk:?})");
    assert_eq!(net.state().depth_first_chunk(1), None, "{name}: one sample runs layer by layer");
    let x: N::Input = inputs(n, 1);
    let all = net.forward(&x).unwrap();
    for i in 0..n {
        let one = N::Input::from_vec(1, x.sample(i).to_vec()).unwrap();
        let y = net.forward(&one).unwrap();
        assert_close(all.sample(i), y.as_slice(), 1e-5, &format!("{name}: sample {i} of a depth-first forward of {n}"));
    }
}

#[test]
fn a_depth_first_forward_equals_the_forward_of_each_sample() {
    check_output("model_a", ModelA::new);
    check_output("net_bn", NetBn::new);
    check_output("cifar_net", CifarNet::new);
    check_output("resnet_mini", ResNetMini::new);
    // Its classifier's first Linear has 2M weights: it and the layers after it run on the whole
    // batch, from what the chunks left in the main arena.
    check_output("net_seq", NetSeq::new);
}

/// After a depth-first eval forward, every activation and the gradients of a backward equal
/// those after a train-mode forward (layer by layer) of the same batch: Model A has no batch
/// norm nor dropout, so both modes compute the same function.
#[test]
fn activations_and_gradients_after_a_depth_first_forward_are_recomputed() {
    let mut probe = ModelA::new(&Cpu, 0).unwrap();
    probe.eval();
    let n = samples(probe.state());
    let x: <ModelA as Network<Cpu>>::Input = inputs(n, 2);
    let labels: Vec<usize> = (0..n).map(|i| i * 7 % 10).collect();
    let layers = ["cnn1", "relu1", "maxpool1", "cnn2", "relu2", "maxpool2", "fc1"];
    let params = ["cnn1.weight", "cnn2.bias", "fc1.weight"];
    // Two networks of the same seed: the arena of the first never held a layer-by-layer forward.
    let mut train = ModelA::new(&Cpu, 5).unwrap();
    assert_eq!(train.state().depth_first_chunk(n), None, "train mode runs layer by layer");
    let out = train.forward(&x).unwrap();
    let acts: Vec<_> = layers.iter().map(|l| train.activation(l).unwrap()).collect();
    let loss = train.loss_backward(CrossEntropyLoss::default(), &labels).unwrap();

    let mut eval = ModelA::new(&Cpu, 5).unwrap();
    eval.eval();
    assert!(eval.state().depth_first_chunk(n).is_some(), "a forward of {n} in eval mode runs depth-first");
    let out_eval = eval.forward(&x).unwrap();
    assert_close(out_eval.as_slice(), out.as_slice(), 1e-5, "output");
    for (l, a) in layers.iter().zip(&acts) {
        let b = eval.activation(l).unwrap();
        assert_eq!(a.shape(), b.shape(), "{l}");
        assert_close(b.as_slice().unwrap(), a.as_slice().unwrap(), 1e-5, &format!("activation of {l} after a depth-first forward"));
    }
    let loss_eval = eval.loss_backward(CrossEntropyLoss::default(), &labels).unwrap();
    assert!((loss_eval.loss - loss.loss).abs() < 1e-5, "loss {} against {}", loss_eval.loss, loss.loss);
    for t in params {
        let (a, b) = (eval.grad(t).unwrap(), train.grad(t).unwrap());
        assert_close(a.as_slice().unwrap(), b.as_slice().unwrap(), 1e-5, &format!("gradient of {t} after a depth-first forward"));
    }
}

/// The activations a depth-first forward did not keep cannot be recomputed once the weights
/// have changed: an error, not the activations of other weights.
#[test]
fn recomputing_after_the_weights_changed_is_an_error() {
    let mut net = ModelA::new(&Cpu, 5).unwrap();
    net.eval();
    let n = samples(net.state());
    let x: <ModelA as Network<Cpu>>::Input = inputs(n, 3);
    net.forward(&x).unwrap();
    net.zero_grad().unwrap();
    Sgd::new(0.1).step(net.state_mut().params()).unwrap();
    let dy: <ModelA as Network<Cpu>>::Output = inputs(n, 4);
    for err in [net.activation("cnn2").map(|_| ()), net.backward(&dy)] {
        let err = err.unwrap_err().to_string();
        assert!(err.contains("weights have changed") && err.contains("run a forward first"), "{err}");
    }
    // After a new forward, both work again.
    net.forward(&x).unwrap();
    net.backward(&dy).unwrap();
    net.activation("cnn2").unwrap();
}

/// An eval forward of a batch smaller than a chunk (layer by layer, not depth-first) fuses
/// each Conv2d → ReLU → MaxPool2d(2, 2) the CPU can (Model A's second convolution, the CIFAR
/// network's second and third on AVX-512): its output equals train mode's, which runs every
/// layer on its own (neither network has batch norm or dropout), and so do the ReLU's
/// activation and the gradients, recomputed after it.
#[test]
fn a_fused_eval_forward_equals_the_layers_one_by_one() {
    fn check<N: Network<Cpu>>(name: &str, new: impl Fn(&Cpu, u64) -> staticnet::Result<N>, relu: &str, param: &str)
    where
        N::Output: staticnet::Logits,
    {
        let fusions = new(&Cpu, 0).unwrap().state().spec().fusions;
        assert!(!fusions.is_empty(), "{name}: no Conv2d → ReLU → MaxPool2d(2, 2) planned for fusion");
        for n in [1, 5] {
            let x: N::Input = inputs(n, 9);
            let labels: Vec<usize> = (0..n).map(|i| i * 3 % 10).collect();
            let mut train = new(&Cpu, 4).unwrap();
            let out = train.forward(&x).unwrap();
            let act = train.activation(relu).unwrap();
            train.loss_backward(CrossEntropyLoss::default(), &labels).unwrap();
            let mut eval = new(&Cpu, 4).unwrap();
            eval.eval();
            assert_eq!(eval.state().depth_first_chunk(n), None, "{name}: a forward of {n} runs layer by layer");
            let out_eval = eval.forward(&x).unwrap();
            assert_close(out_eval.as_slice(), out.as_slice(), 1e-5, &format!("{name}: output of {n}"));
            let act_eval = eval.activation(relu).unwrap();
            assert_close(act_eval.as_slice().unwrap(), act.as_slice().unwrap(), 1e-5, &format!("{name}: activation of {relu}, batch {n}"));
            eval.loss_backward(CrossEntropyLoss::default(), &labels).unwrap();
            let (a, b) = (eval.grad(param).unwrap(), train.grad(param).unwrap());
            assert_close(a.as_slice().unwrap(), b.as_slice().unwrap(), 1e-5, &format!("{name}: gradient of {param}, batch {n}"));
        }
    }
    check("model_a", ModelA::new, "relu2", "cnn2.weight");
    // The CIFAR network's ReLUs have no names of their own: the one after conv3.
    let layers = CifarNet::new(&Cpu, 0).unwrap().state().spec().layers;
    let relu3 = layers[layers.iter().position(|l| l.name == "conv3").unwrap() + 1].name;
    check("cifar_net", CifarNet::new, relu3, "conv2.bias");
}

/// An eval forward folds each batch norm with running statistics into the convolution before
/// it (ResNet's conv1/bn1 and every block's): its output equals the unfolded forward's, which
/// reading an activation afterwards recomputes layer by layer; after a train-mode forward has
/// moved the running statistics, the next eval forward folds them in again.
#[test]
fn a_folded_eval_forward_equals_the_unfolded_one() {
    let mut net = ResNetMini::new(&Cpu, 6).unwrap();
    assert!(net.state().spec().folds.len() >= 10, "{} folds planned", net.state().spec().folds.len());
    for round in 0..2 {
        // Running statistics away from 0 and 1 (and different in each round).
        net.train();
        net.forward(&inputs::<<ResNetMini as Network<Cpu>>::Input>(8, 20 + round)).unwrap();
        net.eval();
        for n in [1, 4] {
            let x: <ResNetMini as Network<Cpu>>::Input = inputs(n, 30 + round);
            let out = net.forward(&x).unwrap();
            let unfolded = net.activation("fc").unwrap();
            assert_close(out.as_slice(), unfolded.as_slice().unwrap(), 1e-5, &format!("round {round}, batch {n}: folded output against the layers one by one"));
            let bn1 = net.activation("bn1").unwrap();
            assert!(bn1.iter().any(|&v| v != 0.0), "round {round}: bn1 recomputed");
        }
    }
}
