//! Bad input at run time returns an error that says what is wrong; none of it panics.

use staticnet::prelude::*;

network! {
    pub struct Small {
        input: [1, 6, 6],
        conv: Conv2d(1, 2, 3, padding = 1),
        bn: BatchNorm2d(2),
        relu: ReLU,
        Flatten,
        fc: Linear(2 * 6 * 6, 3),
    }
}

network! {
    pub struct Mlp {
        input: [4],
        bn: BatchNorm1d(4),
        fc: Linear(4, 3),
    }
}

fn batch(n: usize) -> Images<1, 6, 6> {
    Images::new(n, (0..n * 36).map(|i| (i % 7) as f32 / 7.0).collect()).unwrap()
}

fn message(r: staticnet::Result<impl std::fmt::Debug>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn labels_that_do_not_match_the_batch() {
    let mut net = Small::new(&Cpu, 0).unwrap();
    let msg = message(net.train_step(&batch(4), &[0, 1, 2], &mut Sgd::new(0.1)));
    assert!(msg.contains("3 labels for a batch of 4 samples"), "{msg}");
}

#[test]
fn an_empty_batch() {
    let mut net = Small::new(&Cpu, 0).unwrap();
    let msg = message(net.forward(&batch(0)));
    assert!(msg.contains("the batch is empty"), "{msg}");
    let msg = message(net.train_step(&batch(0), &[], &mut Sgd::new(0.1)));
    assert!(msg.contains("the batch is empty"), "{msg}");
}

#[test]
fn a_label_that_is_not_a_class() {
    let mut net = Small::new(&Cpu, 0).unwrap();
    let before = net.parameter("fc.weight").unwrap();
    let msg = message(net.train_step(&batch(2), &[1, 3], &mut Sgd::new(0.1)));
    assert!(msg.contains("label 3 (sample 1) is not a class: the network has 3 outputs, so labels must be 0..=2"), "{msg}");
    // Nothing was updated.
    assert_eq!(net.parameter("fc.weight").unwrap(), before);
}

#[test]
fn nan_and_infinity_in_the_input() {
    let mut net = Small::new(&Cpu, 0).unwrap();
    let mut x = batch(3);
    x.as_mut_slice()[36 + 5] = f32::NAN;
    let msg = message(net.forward(&x));
    assert!(msg.contains("the input holds NaN at sample 1, element 5"), "{msg}");
    x.as_mut_slice()[36 + 5] = f32::INFINITY;
    let msg = message(net.train_step(&x, &[0, 1, 2], &mut Sgd::new(0.1)));
    assert!(msg.contains("the input holds inf at sample 1, element 5"), "{msg}");
}

#[test]
fn a_batch_whose_length_does_not_fit_its_shape() {
    let msg = message(Images::<1, 6, 6>::new(2, vec![0.0; 71]));
    assert!(msg.contains("a batch of 2 samples shaped [1, 6, 6] needs 72 values, got 71"), "{msg}");
}

#[test]
fn batch_norm_with_one_value_per_channel_in_train_mode() {
    let mut net = Mlp::new(&Cpu, 0).unwrap();
    let x = Vectors::<4>::new(1, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let msg = message(net.forward(&x));
    assert!(msg.contains("layer `bn` (BatchNorm1d(4, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)) needs more than 1 value per channel in train mode"), "{msg}");
    // In eval mode it uses its running statistics and works, as in PyTorch.
    net.eval();
    net.forward(&x).unwrap();
}

#[test]
fn backward_and_loss_before_any_forward() {
    let mut net = Small::new(&Cpu, 0).unwrap();
    let msg = message(net.loss_backward(&CrossEntropyLoss::default(), &[0]));
    assert!(msg.contains("a loss needs a forward first"), "{msg}");
    let msg = message(net.backward(&Vectors::<3>::zeros(1)));
    assert!(msg.contains("backward needs a forward first"), "{msg}");
}

#[test]
fn an_output_gradient_of_the_wrong_batch_size() {
    let mut net = Small::new(&Cpu, 0).unwrap();
    net.forward(&batch(2)).unwrap();
    let msg = message(net.backward(&Vectors::<3>::zeros(3)));
    assert!(msg.contains("the output gradient has 9 values, but the last forward produced 6"), "{msg}");
}

#[test]
fn unknown_tensor_names_get_a_suggestion() {
    let net = Small::new(&Cpu, 0).unwrap();
    let msg = message(net.parameter("fc.wieght"));
    assert!(msg.contains("Small has no tensor named `fc.wieght`; did you mean `fc.weight`?"), "{msg}");
    let mut net = net;
    let msg = message(net.freeze("features"));
    assert!(msg.contains("Small has no tensor named `features.*`"), "{msg}");
}

#[test]
fn a_parameter_of_the_wrong_shape() {
    let mut net = Small::new(&Cpu, 0).unwrap();
    let wrong = staticnet::ndarray::ArrayD::<f32>::zeros(staticnet::ndarray::IxDyn(&[3, 71]));
    let msg = message(net.set_parameter("fc.weight", &wrong));
    assert!(msg.contains("tensor `fc.weight`: Small expects shape [3, 72], got [3, 71]"), "{msg}");
}

#[test]
fn invalid_optimizer_settings() {
    let mut net = Small::new(&Cpu, 0).unwrap();
    let msg = message(net.train_step(&batch(2), &[0, 1], &mut Sgd::new(-0.1)));
    assert!(msg.contains("SGD: invalid learning rate -0.1"), "{msg}");
    let msg = message(net.train_step(&batch(2), &[0, 1], &mut Sgd::new(0.1).nesterov(true)));
    assert!(msg.contains("nesterov momentum requires a momentum and zero dampening"), "{msg}");
    let msg = message(net.train_step(&batch(2), &[0, 1], &mut Adam::new(1e-3).betas(1.0, 0.999)));
    assert!(msg.contains("Adam: invalid beta1 1"), "{msg}");
}

#[test]
fn one_optimizer_for_two_networks_of_different_sizes() {
    let (mut a, mut b) = (Small::new(&Cpu, 0).unwrap(), Mlp::new(&Cpu, 0).unwrap());
    let mut adam = Adam::new(1e-3);
    a.train_step(&batch(2), &[0, 1], &mut adam).unwrap();
    let x = Vectors::<4>::zeros(2);
    let msg = message(b.train_step(&x, &[0, 1], &mut adam));
    assert!(msg.contains("use one optimizer per network"), "{msg}");
}
