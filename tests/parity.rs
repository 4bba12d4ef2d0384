//! Parity with PyTorch: every fixture in tests/fixtures (written by PyTorch 2.15, see its
//! README) reproduced within the fixtures' tolerances: relative error under 1e-4 for logits and
//! loss, under 1e-3 for gradients and for parameters after optimizer steps.
//!
//! Each test runs on the CPU and, built with feature `cuda`, again on the GPU as `cuda::<name>`.

mod common;

use common::nets::{ActivationsMix, CifarNet, MlpDropout, MobileNetV2Mini, ModelA, ModelB, ModelC, NetBn, ResNet18, ResNetMini};
use common::{Fixture, assert_close, assert_state};
use staticnet::Logits;
use staticnet::prelude::*;

const LOGITS: f64 = 1e-4;
const GRADS: f64 = 1e-3;

/// logits_eval, then (when the fixture has them) logits_train, loss, every gradient and the
/// batch-norm statistics after one train-mode forward.
fn forward_and_gradients<B: Backend, N: Network<B>>(dev: &B, fx: &Fixture, new: impl Fn(&B, u64) -> staticnet::Result<N>)
where
    N::Output: Logits,
{
    let mut net = fx.network(dev, new);
    let x: N::Input = fx.input();
    let labels = fx.labels();

    net.eval();
    let out = net.forward(&x).unwrap();
    fx.check("logits_eval", out.as_slice(), LOGITS);

    if !fx.has("logits_train") {
        return;
    }
    net.train();
    let out = net.forward(&x).unwrap();
    fx.check("logits_train", out.as_slice(), LOGITS);
    let step = net.loss_backward(&CrossEntropyLoss::default(), &labels).unwrap();
    fx.check("loss", &[step.loss], LOGITS);
    let mut grads = 0;
    for t in N::SPEC.tensors {
        let key = format!("grad.{}", t.name);
        if fx.has(&key) {
            let ours: Vec<f32> = net.grad(t.name).unwrap().iter().copied().collect();
            fx.check(&key, &ours, GRADS);
            grads += 1;
        }
    }
    assert!(grads > 0, "{}: no gradient compared", fx.name);
    let stats: Vec<_> = N::SPEC.tensors.iter().filter(|t| fx.has(&format!("after_forward.{}", t.name))).collect();
    for t in stats {
        let key = format!("after_forward.{}", t.name);
        match net.tensor(t.name).unwrap() {
            Tensor::F32(a) => fx.check(&key, &a.iter().copied().collect::<Vec<_>>(), LOGITS),
            Tensor::I64(a) => assert_eq!(a.iter().copied().collect::<Vec<_>>(), fx.i64(&key), "{key}"),
        }
    }
}

/// Three optimizer steps on the fixture's batch, in train mode, against `sgd3.*` or `adam3.*`.
fn three_steps<B: Backend, N: Network<B>, O: Optimizer<B>>(dev: &B, fx: &Fixture, new: impl Fn(&B, u64) -> staticnet::Result<N>, mut opt: O, prefix: &str)
where
    N::Output: Logits,
{
    let mut net = fx.network(dev, new);
    let x: N::Input = fx.input();
    let labels = fx.labels();
    for _ in 0..3 {
        net.train_step(&x, &labels, &mut opt).unwrap();
    }
    assert_state(&net, fx, prefix, GRADS);
}

/// The fixtures with optimizer steps (`sgd3.*`, `adam3.*`; see tests/fixtures/README.md). Listed,
/// not detected, so that a renamed key fails the test instead of skipping the steps.
const WITH_STEPS: [&str; 7] = ["model_a", "model_b", "model_c", "net_bn", "cifar_net", "activations_mix", "mobilenet_v2_mini"];

/// Fixtures whose optimizer steps are not compared, and why (printed when skipped).
const STEPS_NOT_COMPARED: [(&str, &str); 1] = [(
    "mobilenet_v2_mini",
    "its gradients reach 1e3 on a batch of 4, so three steps at lr 0.01 are chaotic: PyTorch's own float32 and float64 \
     (scripts/make_f64_references.py) differ by up to 53% in sgd3.* and adam3.* (its forward and gradients are compared)",
)];

fn all<B: Backend, N: Network<B>>(dev: &B, name: &'static str, new: impl Fn(&B, u64) -> staticnet::Result<N> + Copy)
where
    N::Output: Logits,
{
    let fx = Fixture::load(name);
    forward_and_gradients(dev, &fx, new);
    let has_steps = fx.has(&format!("sgd3.{}", N::SPEC.tensors[0].name));
    assert_eq!(has_steps, WITH_STEPS.contains(&name), "{name}: sgd3.* keys present: {has_steps}");
    if let Some((_, why)) = STEPS_NOT_COMPARED.iter().find(|(n, _)| *n == name) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED {name}: sgd3.*, adam3.*: {why}");
    } else if has_steps {
        three_steps(dev, &fx, new, Sgd::new(0.01).momentum(0.9).weight_decay(1e-4), "sgd3.");
        three_steps(dev, &fx, new, Adam::new(1e-3).weight_decay(1e-3), "adam3.");
    }
}

on_every_backend! {
    fn model_a(dev) {
        all(dev, "model_a", ModelA::new);
    }

    fn model_b(dev) {
        all(dev, "model_b", ModelB::new);
    }

    fn model_c(dev) {
        all(dev, "model_c", ModelC::new);
    }

    fn net_bn(dev) {
        all(dev, "net_bn", NetBn::new);
    }

    fn cifar_net(dev) {
        all(dev, "cifar_net", CifarNet::new);
    }

    /// ResNet-18's topology: residual sums, downsample shortcuts, torchvision's names.
    fn resnet_mini(dev) {
        all(dev, "resnet_mini", ResNetMini::new);
    }

    /// Depthwise and grouped convolutions, ReLU6, GELU (both forms), ELU, Hardswish, SiLU,
    /// Identity and AdaptiveMaxPool2d.
    fn activations_mix(dev) {
        all(dev, "activations_mix", ActivationsMix::new);
    }

    /// torchvision's MobileNetV2 at width 0.25: inverted residual blocks with and without their
    /// expansion layer, conditional sums, torchvision's names.
    fn mobilenet_v2_mini(dev) {
        all(dev, "mobilenet_v2_mini", MobileNetV2Mini::new);
    }

    fn mlp_dropout_eval(dev) {
        all(dev, "mlp_dropout", MlpDropout::new);
    }

    fn optimizers_match_torch_optim(dev) {
        optimizer_steps(dev, "sgd", Sgd::new(0.1));
        optimizer_steps(dev, "sgd_momentum_dampening", Sgd::new(0.1).momentum(0.9).dampening(0.3).weight_decay(0.01));
        optimizer_steps(dev, "sgd_nesterov", Sgd::new(0.1).momentum(0.8).nesterov(true).weight_decay(0.05));
        optimizer_steps(dev, "adam_amsgrad", Adam::new(0.01).betas(0.8, 0.9).eps(1e-6).amsgrad(true));
        optimizer_steps(dev, "adamw", AdamW::adamw(0.01).weight_decay(0.1));
        optimizer_steps(dev, "adamw_amsgrad", AdamW::adamw(0.02).betas(0.85, 0.95).weight_decay(0.2).amsgrad(true));
    }
}

/// ResNet-18's state_dict, tensor by tensor, and its parameter count, against the list
/// scripts/list_state_dict_keys.py took from torchvision.
#[test]
fn resnet18_is_torchvisions() {
    let list = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/resnet18_state_dict.txt")).unwrap();
    let mut lines = list.lines();
    let header = lines.next().unwrap();
    let count: usize = header.split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert_eq!(ResNet18::<Cpu>::PARAMETERS, count);
    let theirs: Vec<String> = lines.map(str::to_string).collect();
    let ours: Vec<String> = ResNet18::<Cpu>::SPEC
        .tensors
        .iter()
        .map(|t| {
            let dtype = if matches!(t.kind, staticnet::network::TensorKind::Counter { .. }) { "int64" } else { "float32" };
            format!("{} {dtype} {:?}", t.name, t.shape)
        })
        .collect();
    assert_eq!(ours, theirs);
}

network! {
    /// The network of tests/fixtures/optimizers.safetensors.
    pub struct Lin {
        input: [3],
        fc: Linear(3, 2),
    }
}

/// Four optimizer steps on `sum(linear(x[t]) · dy[t])` against PyTorch's (made by
/// scripts/make_optimizer_fixtures.py).
fn optimizer_steps<B: Backend, O: Optimizer<B>>(dev: &B, name: &str, mut opt: O) {
    let fx = Fixture::load("optimizers");
    let mut net = Lin::new(dev, 0).unwrap();
    for p in ["weight", "bias"] {
        let v = fx.tensors.get(p).unwrap().as_f32().unwrap().clone();
        net.set_parameter(&format!("fc.{p}"), &v).unwrap();
    }
    let (x, dy) = (fx.f32("x"), fx.f32("dy"));
    let (want_w, want_b) = (fx.f32(&format!("{name}.weight")), fx.f32(&format!("{name}.bias")));
    for t in 0..4 {
        net.zero_grad().unwrap();
        net.forward(&Vectors::<3>::new(1, x[3 * t..3 * t + 3].to_vec()).unwrap()).unwrap();
        net.backward(&Vectors::<2>::new(1, dy[2 * t..2 * t + 2].to_vec()).unwrap()).unwrap();
        opt.step(net.state_mut().params()).unwrap();
        let w: Vec<f32> = net.parameter("fc.weight").unwrap().iter().copied().collect();
        let b: Vec<f32> = net.parameter("fc.bias").unwrap().iter().copied().collect();
        assert_close(&w, &want_w[6 * t..6 * t + 6], 1e-5, &format!("{name}: weight after step {}", t + 1));
        assert_close(&b, &want_b[2 * t..2 * t + 2], 1e-5, &format!("{name}: bias after step {}", t + 1));
    }
}

/// bf16 mixed precision (`Cuda::set_precision(Precision::Bf16)`) against PyTorch's autocast:
/// tests/fixtures/NAME_bf16.safetensors holds NAME's logits, loss and gradients computed under
/// `torch.autocast("cpu", dtype=torch.bfloat16)` from the same parameters and batch, by
/// scripts/make_bf16_references.py. bf16 moves them far from the f32 fixture (logits by 3e-3 to
/// 5e-3, gradients by up to 13%), so each of ours must be much nearer to autocast's than the f32
/// fixture is: within 0.3 × the fixture's distance (plus 1e-4, the size of a last-bf16-place
/// flip that another summation order can cause, for the loss, whose f32 distance is 3e-5), and
/// within 2e-2. The script measured an emulation of our arithmetic at ratios up to 0.13 (0, bit
/// for bit, for logits and loss; the rest is PyTorch's CPU kernels' own extra roundings), while
/// a wrong max-pool tie rule gives 0.49 and a bias added after the rounding 0.9 and more. The
/// last Linear's bias gradient is the exception: autocast sums a bf16 dy into bf16, ours sums
/// dy in f32, each one rounding from the other (ratio 1.0 measured): within 2 × there.
#[cfg(feature = "cuda")]
mod bf16 {
    use super::*;
    use common::rel_err;
    use staticnet::{Cuda, Precision};

    const R: f64 = 0.3;
    const R_LAST_BIAS: f64 = 2.0;
    const SLACK: f64 = 1e-4;
    const ABS: f64 = 2e-2;

    fn against_autocast<N: Network<Cuda>>(name: &'static str, amp_name: &'static str, last_bias: &str, new: impl Fn(&Cuda, u64) -> staticnet::Result<N>)
    where
        N::Output: Logits,
    {
        if common::gpu(amp_name).is_none() {
            return;
        }
        // A device of its own: the precision is the device's, and other tests share theirs.
        let dev = Cuda::new(0).unwrap();
        dev.set_precision(Precision::Bf16);
        let (fx, amp) = (Fixture::load(name), Fixture::load(amp_name));
        let mut net = fx.network(&dev, new);
        let x: N::Input = fx.input();
        let labels = fx.labels();
        net.eval();
        let mut ours = vec![("logits_eval".to_string(), net.forward(&x).unwrap().as_slice().to_vec())];
        net.train();
        ours.push(("logits_train".into(), net.forward(&x).unwrap().as_slice().to_vec()));
        let step = net.loss_backward(&CrossEntropyLoss::default(), &labels).unwrap();
        ours.push(("loss".into(), vec![step.loss]));
        for t in N::SPEC.tensors {
            let key = format!("grad.{}", t.name);
            if amp.has(&key) {
                ours.push((key, net.grad(t.name).unwrap().iter().copied().collect()));
            }
        }
        assert!(ours.len() > 3, "{amp_name}: no gradient compared");
        let mut failed = Vec::new();
        for (key, v) in &ours {
            let want = amp.f32(key);
            let (e, f) = (rel_err(v, &want), rel_err(&fx.f32(key), &want));
            let r = if *key == format!("grad.{last_bias}") { R_LAST_BIAS } else { R };
            let ok = e <= r * f + SLACK && e <= ABS;
            eprintln!("{amp_name} {key:24} ours {e:.1e}  f32 fixture {f:.1e}  ratio {:.2}  bound {r}{}", e / f, if ok { "" } else { "  FAILED" });
            if !ok {
                failed.push(key.clone());
            }
        }
        assert!(failed.is_empty(), "{amp_name}: not near enough to autocast's values: {failed:?}");
    }

    #[test]
    fn model_a_against_autocast() {
        against_autocast("model_a", "model_a_bf16", "fc1.bias", ModelA::new);
    }

    #[test]
    fn cifar_net_against_autocast() {
        against_autocast("cifar_net", "cifar_net_bf16", "fc.bias", CifarNet::new);
    }
}
