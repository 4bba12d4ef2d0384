//! What a declared network gives before any training: PyTorch's initialisation, the summary
//! table, `print(model)`, and the small things a PyTorch user expects (a constructor generic
//! code can call, `nn.` before a layer, `Dropout(p = 1.0)`, a warning when everything is
//! frozen). Expected values are worked out by hand from PyTorch's definitions or printed by
//! PyTorch (the fixtures' metadata), not read back.

mod common;

use common::nets::{MlpDropout, ModelA, ModelB, ModelC, NetBn, ResNetMini};
use staticnet::prelude::*;

/// `nn.Conv2d` and `nn.Linear` draw weights from kaiming_uniform_(a = √5), which is
/// U(±1/√fan_in), and biases from U(±1/√fan_in); BatchNorm starts at weight 1, bias 0, mean 0,
/// variance 1. Checked by range, spread and mean of each tensor, for two seeds.
#[test]
fn initialisation_is_pytorchs() {
    for seed in [0, 1] {
        let net = ModelA::new(&Cpu, seed).unwrap();
        for (name, fan_in) in [("cnn1.weight", 25.0), ("cnn1.bias", 25.0), ("cnn2.weight", 400.0), ("cnn2.bias", 400.0), ("fc1.weight", 1568.0), ("fc1.bias", 1568.0)] {
            let v = net.parameter(name).unwrap();
            let bound = 1.0 / f64::sqrt(fan_in);
            let n = v.len() as f64;
            let max = v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
            assert!(max <= bound, "{name}: |w| reaches {max}, over the bound {bound}");
            // A uniform on ±b has variance b²/3; with n draws its estimate is within a few
            // times (b²/3)·√(0.8/n) of that, its mean within a few times b/√(3n) of 0.
            let tolerance = 5.0 * f64::sqrt(0.8 / n) + 1e-9;
            assert!((var / (bound * bound / 3.0) - 1.0).abs() < tolerance.max(0.05), "{name} (seed {seed}): variance {var}, expected {}", bound * bound / 3.0);
            assert!(mean.abs() < 5.0 * bound / f64::sqrt(3.0 * n), "{name} (seed {seed}): mean {mean}");
            if n >= 400.0 {
                assert!(max > 0.95 * bound, "{name}: the draws do not fill ±{bound} (max {max})");
            }
        }
    }
    let a = ModelA::new(&Cpu, 7).unwrap();
    assert_eq!(a.parameter("cnn2.weight").unwrap(), ModelA::new(&Cpu, 7).unwrap().parameter("cnn2.weight").unwrap(), "the same seed gives the same weights");
    assert_ne!(a.parameter("cnn2.weight").unwrap(), ModelA::new(&Cpu, 8).unwrap().parameter("cnn2.weight").unwrap(), "another seed gives other weights");

    let bn = NetBn::new(&Cpu, 0).unwrap();
    for (name, value) in [("features.3.weight", 1.0), ("features.3.bias", 0.0), ("features.3.running_mean", 0.0), ("features.3.running_var", 1.0)] {
        assert!(bn.parameter(name).unwrap().iter().all(|&x| x == value), "{name} should start at {value}");
    }
    match bn.tensor("features.3.num_batches_tracked").unwrap() {
        Tensor::I64(a) => assert_eq!(a.iter().copied().collect::<Vec<_>>(), [0]),
        other => panic!("num_batches_tracked should be an int64 counter, got {other:?}"),
    }
}

/// Model A's table: output shapes, parameter counts and FLOPs (a multiply-add counts 2) of
/// each layer, and the totals.
#[test]
fn summary_of_model_a() {
    let table = ModelA::new(&Cpu, 0).unwrap().summary().to_string();
    let row = |layer: &str| table.lines().find(|l| l.starts_with(layer)).unwrap_or_else(|| panic!("no row for {layer}:\n{table}")).to_string();
    // (layer, output shape, parameters, FLOPs per sample)
    let expected = [
        ("cnn1 ", "[16, 28, 28]", 16 * 25 + 16, 2 * 16 * 28 * 28 * 25),
        ("relu1 ", "[16, 28, 28]", 0, 16 * 28 * 28),
        ("maxpool1 ", "[16, 14, 14]", 0, 16 * 14 * 14 * 4),
        ("cnn2 ", "[32, 14, 14]", 32 * 16 * 25 + 32, 2 * 32 * 14 * 14 * 16 * 25),
        ("maxpool2 ", "[32, 7, 7]", 0, 32 * 7 * 7 * 4),
        ("fc1 ", "[10]", 32 * 7 * 7 * 10 + 10, 2 * 32 * 7 * 7 * 10),
    ];
    for (layer, shape, params, flops) in expected {
        let r = row(layer);
        let cells: Vec<&str> = r.split_whitespace().rev().take(2).collect(); // FLOPs, parameters
        assert!(r.contains(shape), "{layer}: {r}");
        assert_eq!(cells[1].replace(',', "").parse::<usize>().unwrap(), params, "{layer} parameters: {r}");
        assert_eq!(cells[0].replace(',', "").parse::<usize>().unwrap(), flops, "{layer} FLOPs: {r}");
    }
    let total = 416 + 12_832 + 15_690;
    assert_eq!(ModelA::<Cpu>::PARAMETERS, total);
    assert!(table.contains("Total params: 28,938"), "{table}");
}

/// Our `Display` against what PyTorch 2.15 printed for the same network (`print(model)`, the
/// fixtures' metadata `model`), line by line, for every fixture network whose PyTorch definition
/// is made of modules only. Left out: `cifar_net`, whose PyTorch `forward` applies `F.relu` and
/// reuses one `pool` module three times, so no listing of layers prints as it does.
#[test]
fn display_is_pytorchs_print_model() {
    // (fixture, PyTorch's class, our text); the class name is each program's own choice.
    let cases = [
        ("model_a", "ModelA", ModelA::new(&Cpu, 0).unwrap().to_string()),
        ("model_b", "ModelB", ModelB::new(&Cpu, 0).unwrap().to_string()),
        ("model_c", "ModelC", ModelC::new(&Cpu, 0).unwrap().to_string()),
        ("net_bn", "NetBN", NetBn::new(&Cpu, 0).unwrap().to_string()),
        ("mlp_dropout", "Mlp", MlpDropout::new(&Cpu, 0).unwrap().to_string()),
        ("resnet_mini", "ResNetMini", ResNetMini::new(&Cpu, 0).unwrap().to_string()),
    ];
    for (fixture, class, ours) in cases {
        let path = format!("{}/tests/fixtures/{fixture}.safetensors", env!("CARGO_MANIFEST_DIR"));
        let (_, metadata) = StateDict::load_with_metadata(&path).unwrap();
        let torch = metadata.get("model").unwrap_or_else(|| panic!("{fixture}: no `model` in the metadata"));
        let (ours, torch): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), torch.lines().collect());
        assert_eq!(torch[0], format!("{class}("), "{fixture}: PyTorch's first line");
        assert!(ours[0].ends_with('(') && !ours[0].starts_with(' '), "{fixture}: our first line is {:?}", ours[0]);
        let (mut o, mut t, mut flatten) = (1, 1, 0);
        while o < ours.len() {
            if t < torch.len() && ours[o] == torch[t] {
                (o, t) = (o + 1, t + 1);
                continue;
            }
            // The one line PyTorch may lack: its `forward` flattens with `x.view(x.size(0), -1)`
            // (or `torch.flatten(x, 1)`) where the listing has a `Flatten` layer.
            assert!(
                ours[o].trim_start().ends_with(": Flatten(start_dim=1, end_dim=-1)") && flatten == 0,
                "{fixture}: line {} differs:\n  ours:    {:?}\n  PyTorch: {:?}\n(the only line PyTorch may lack is one Flatten, which it does with x.view in forward)",
                o + 1,
                ours[o],
                torch.get(t)
            );
            flatten += 1;
            o += 1;
        }
        assert_eq!(t, torch.len(), "{fixture}: PyTorch prints lines we do not: {:?}", &torch[t..]);
    }
}

network! {
    /// One of each layer the fixtures do not print, with arguments off their defaults.
    pub struct Reprs {
        input: [3, 16, 16],
        conv: nn.Conv2d(3, 8, (3, 5), stride = (2, 1), padding = (1, 2), bias = false),
        same: Conv2d(8, 8, 3, padding = "same", dilation = 2),
        act: LeakyReLU(0.2, inplace = true),
        pool: MaxPool2d((2, 2), stride = (2, 1), padding = 1, ceil_mode = true),
        avg: AvgPool2d(3, stride = 2, padding = 1),
        adapt: AdaptiveAvgPool2d((None, 4)),
        nn.Sigmoid,
        bn: BatchNorm2d(8, eps = 1e-3, momentum = None),
        flat: Flatten(1, -1),
        drop: Dropout(p = 0.25),
        fc: Linear(_, 16, bias = false),
        bn1: BatchNorm1d(16, eps = 0.00001),
        tanh: Tanh,
        head: [Linear(16, 4), Softmax(dim = 1), LogSoftmax()],
    }
}

/// Each line as PyTorch's `extra_repr` writes it (torch/nn/modules: `_ConvNd` shows sizes as
/// pairs and padding, dilation and bias only off their defaults, a padding string as it is;
/// the pooling layers keep sizes as given, with stride None becoming the kernel size;
/// `LeakyReLU` adds `, inplace=True` only when set; floats as Python's `repr`, so 1e-05 and
/// 0.001; `Softmax(dim=None)` when no dim is given), and `nn.Sequential` nesting two spaces per
/// level.
#[test]
fn every_layer_prints_as_pytorch() {
    let expected = "\
Reprs(
  (conv): Conv2d(3, 8, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), bias=False)
  (same): Conv2d(8, 8, kernel_size=(3, 3), stride=(1, 1), padding=same, dilation=(2, 2))
  (act): LeakyReLU(negative_slope=0.2, inplace=True)
  (pool): MaxPool2d(kernel_size=(2, 2), stride=(2, 1), padding=1, dilation=1, ceil_mode=True)
  (avg): AvgPool2d(kernel_size=3, stride=2, padding=1)
  (adapt): AdaptiveAvgPool2d(output_size=(None, 4))
  (6): Sigmoid()
  (bn): BatchNorm2d(8, eps=0.001, momentum=None, affine=True, bias=True, track_running_stats=True)
  (flat): Flatten(start_dim=1, end_dim=-1)
  (drop): Dropout(p=0.25, inplace=False)
  (fc): Linear(in_features=96, out_features=16, bias=False)
  (bn1): BatchNorm1d(16, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
  (tanh): Tanh()
  (head): Sequential(
    (0): Linear(in_features=16, out_features=4, bias=True)
    (1): Softmax(dim=1)
    (2): LogSoftmax(dim=None)
  )
)";
    let net = Reprs::new(&Cpu, 0).unwrap();
    assert_eq!(net.to_string(), expected);
    assert_eq!(format!("{net:?}"), expected, "Debug prints what Display does, as repr(model) is print(model)");
}

/// Builds any network from generic code, through the trait.
fn build<B: Backend, N: Network<B>>(device: &B, seed: u64) -> N {
    N::new(device, seed).unwrap()
}

/// `Network::new` is what the inherent `new` is: the same seed gives the same weights.
#[test]
fn generic_code_builds_a_network() {
    let generic: ModelA = build(&Cpu, 3);
    let inherent = ModelA::new(&Cpu, 3).unwrap();
    for name in ["cnn1.weight", "fc1.bias"] {
        assert_eq!(generic.parameter(name).unwrap(), inherent.parameter(name).unwrap(), "{name}");
    }
    let other: ModelA = build(&Cpu, 4);
    assert_ne!(other.parameter("cnn1.weight").unwrap(), inherent.parameter("cnn1.weight").unwrap(), "the seed reaches the generic constructor");
}

network! {
    /// Dropout with p = 1, which PyTorch allows: every element dropped.
    pub struct DropAll {
        input: [4],
        fc1: Linear(4, 3),
        drop: Dropout(p = 1.0),
        fc2: Linear(3, 2),
    }
}

/// PyTorch's dropout with p = 1 outputs zeros (not 0·∞ = NaN): after it, `fc2` sees zeros, so
/// it outputs its bias, and no gradient reaches `fc1`. In eval mode the layer is the identity.
#[test]
fn dropout_of_one_zeroes_without_nan() {
    let mut net = DropAll::new(&Cpu, 0).unwrap();
    let x = Vectors::<4>::from_vec(2, vec![1.0, -2.0, 3.0, 0.5, 0.25, 4.0, -1.0, 2.0]).unwrap();
    let bias: Vec<f32> = net.parameter("fc2.bias").unwrap().iter().copied().collect();
    let out = net.forward(&x).unwrap();
    assert_eq!(out.as_slice(), [bias.clone(), bias.clone()].concat(), "train mode: fc2 outputs its bias");
    net.zero_grad().unwrap();
    net.loss_backward(&CrossEntropyLoss::default(), &[0, 1]).unwrap();
    for name in ["fc1.weight", "fc1.bias", "fc2.weight"] {
        assert!(net.grad(name).unwrap().iter().all(|&g| g == 0.0), "{name}: the gradient must be exactly zero");
    }
    assert!(net.grad("fc2.bias").unwrap().iter().any(|&g| g != 0.0), "fc2.bias still learns");
    net.eval();
    assert_ne!(net.forward(&x).unwrap().as_slice(), [bias.clone(), bias].concat(), "eval mode: dropout is the identity");
}

/// `freeze("")` then `fit`: `fit` warns on stderr that nothing will train, and does not when
/// something can. Run in a child process of this test binary, whose stderr the test reads.
#[test]
fn fit_warns_when_everything_is_frozen() {
    const CHILD: &str = "STATICNET_TEST_FROZEN_FIT";
    if let Some(prefix) = std::env::var_os(CHILD) {
        let mut net = ModelC::new(&Cpu, 0).unwrap();
        net.freeze("").unwrap();
        if prefix != "none" {
            net.unfreeze(prefix.to_str().unwrap()).unwrap();
        }
        let data = staticnet::data::Dataset::new("zeros", vec![0.5; 4 * 784], vec![0, 1, 2, 3], 10).unwrap();
        staticnet::Trainer::new(1).batch_size(4).progress(false).verbose(false).fit(&mut net, &mut Sgd::new(0.1), &data, None).unwrap();
        return;
    }
    let run = |unfrozen: &str| {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "fit_warns_when_everything_is_frozen", "--nocapture", "--test-threads=1"])
            .env(CHILD, unfrozen)
            .output()
            .unwrap();
        assert!(out.status.success(), "the child run failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let frozen = run("none");
    assert!(frozen.contains("warning: ModelC has no parameter left to train"), "no warning with everything frozen; stderr:\n{frozen}");
    let training = run("fc1");
    assert!(!training.contains("no parameter left to train"), "a warning although fc1 trains; stderr:\n{training}");
}

/// `num_trainable_parameters` counts what is not frozen, as
/// `sum(p.numel() for p in model.parameters() if p.requires_grad)`.
#[test]
fn trainable_parameters_leave_out_the_frozen() {
    let mut net = ModelA::new(&Cpu, 0).unwrap();
    assert_eq!(net.num_trainable_parameters(), 16 * 25 + 16 + 32 * 16 * 25 + 32 + 1568 * 10 + 10);
    net.freeze("cnn1").unwrap();
    net.freeze("cnn2").unwrap();
    assert_eq!(net.num_trainable_parameters(), 1568 * 10 + 10);
    net.freeze("").unwrap();
    assert_eq!(net.num_trainable_parameters(), 0);
}

network! {
    /// Every element-wise activation beyond the course's, with arguments on and off their defaults,
/// and adaptive max pooling.
    pub struct Activations {
        input: [3, 8, 8],
        features: [
            Conv2d(3, 4, 3, padding = 1), ReLU6(inplace = true), Hardswish, SiLU,
            GELU, GELU(approximate = "tanh"), ELU, ELU(alpha = 0.5, inplace = true), Identity,
        ],
        pool: AdaptiveMaxPool2d((4, None)),
        flatten: Flatten,
        fc: Linear(4 * 4 * 8, 10),
    }
}

/// As PyTorch 2.15 prints them: `ReLU6` and `SiLU` show `inplace=True` only when set,
/// `Hardswish` has no `extra_repr` (bare even when in place), `GELU` quotes `approximate`, `ELU`
/// shows `alpha` as Python's repr of the float.
#[test]
fn new_activations_print_as_pytorch() {
    let expected = "\
Activations(
  (features): Sequential(
    (0): Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    (1): ReLU6(inplace=True)
    (2): Hardswish()
    (3): SiLU()
    (4): GELU(approximate='none')
    (5): GELU(approximate='tanh')
    (6): ELU(alpha=1.0)
    (7): ELU(alpha=0.5, inplace=True)
    (8): Identity()
  )
  (pool): AdaptiveMaxPool2d(output_size=(4, None))
  (flatten): Flatten(start_dim=1, end_dim=-1)
  (fc): Linear(in_features=128, out_features=10, bias=True)
)";
    let net = Activations::new(&Cpu, 0).unwrap();
    assert_eq!(net.to_string(), expected);
}

network! {
    /// Dropout2d alone, on 8 channels of 5×5.
    pub struct ChannelDropout {
        input: [8, 5, 5],
        drop: Dropout2d(0.5),
    }
}

/// Dropout2d zeroes whole channels of each sample and scales the rest by 1/(1−p); in eval mode it
/// is the identity; it prints as PyTorch's.
#[test]
fn dropout2d_drops_whole_channels() {
    let mut net = ChannelDropout::new(&Cpu, 3).unwrap();
    assert_eq!(net.to_string(), "ChannelDropout(\n  (drop): Dropout2d(p=0.5, inplace=False)\n)");
    let n = 16;
    let x = Images::<8, 5, 5>::new(n, vec![1.0; n * 200]).unwrap();
    net.train();
    let y = net.forward(&x).unwrap();
    let mut dropped = 0;
    for ch in y.as_slice().chunks(25) {
        assert!(ch.iter().all(|&v| v == ch[0]) && (ch[0] == 0.0 || ch[0] == 2.0), "a channel is all dropped or all kept: {ch:?}");
        dropped += (ch[0] == 0.0) as usize;
    }
    assert!((32..=96).contains(&dropped), "{dropped} of 128 channels dropped with p = 0.5");
    net.eval();
    assert_eq!(net.forward(&x).unwrap().as_slice(), x.as_slice());
}

network! {
    /// Raw scores.
    pub struct Scores {
        input: [8],
        fc: Linear(8, 5),
    }
}

network! {
    /// The same layer, ending in log-probabilities.
    pub struct LogProbs {
        input: [8],
        fc: Linear(8, 5),
        logp: LogSoftmax(dim = 1),
    }
}

/// `NLLLoss` on log-probabilities is `CrossEntropyLoss` on the scores under them (PyTorch's
/// definition of the one by the other): the same loss and the same gradients, through the
/// log-softmax's own backward. On raw scores it is an error naming the last layer.
#[test]
fn nll_loss_on_log_softmax_is_cross_entropy() {
    let (mut scores, mut logp) = (Scores::new(&Cpu, 5).unwrap(), LogProbs::new(&Cpu, 5).unwrap());
    assert_eq!(scores.parameter("fc.weight").unwrap(), logp.parameter("fc.weight").unwrap(), "same seed, same initial weights");
    let x = Vectors::<8>::new(6, (0..48).map(|i| ((i * 37 % 19) as f32 - 9.0) / 7.0).collect()).unwrap();
    let labels = [0, 4, 2, 2, 1, 3];
    scores.forward(&x).unwrap();
    let want = scores.loss_backward(&CrossEntropyLoss::new(), &labels).unwrap();
    logp.forward(&x).unwrap();
    let got = logp.loss_backward(NLLLoss::new(), &labels).unwrap();
    assert!((got.loss - want.loss).abs() < 1e-6, "NLL {} vs cross-entropy {}", got.loss, want.loss);
    assert_eq!(got.correct, want.correct);
    for name in ["fc.weight", "fc.bias"] {
        let (g, w) = (logp.grad(name).unwrap(), scores.grad(name).unwrap());
        let err = (&g - &w).mapv(f32::abs).iter().cloned().fold(0.0, f32::max);
        assert!(err < 1e-6, "{name}: gradients differ by {err}");
    }
    scores.forward(&x).unwrap();
    let err = scores.loss_backward(NLLLoss::new(), &labels).unwrap_err().to_string();
    assert!(err.contains("Scores") && err.contains("`fc`") && err.contains("LogSoftmax"), "{err}");
}

network! {
    /// Two 3 × 3 convolutions of 32 channels: the second's input gradient is Winograd's, from
    /// weights laid out at the forward. No ReLU after it, so that its input gradient depends
    /// on its weights and on dY only, not on its forward.
    pub struct TwoConvs {
        input: [3, 6, 6],
        conv1: Conv2d(3, 32, 3, padding = 1),
        relu: ReLU,
        conv2: Conv2d(32, 32, 3, padding = 1),
        Flatten,
        fc: Linear(32 * 6 * 6, 4),
    }
}

/// A backward after the weights changed (a forward, then a write; as PyTorch would use the
/// tensors as they are at the backward) reads the new weights, not those laid out for the
/// forward: `conv1`'s gradient equals that of a network built with the new weights.
#[test]
fn backward_after_a_weight_change_reads_the_new_weights() {
    let n = 4;
    let x = Images::<3, 6, 6>::new(n, (0..n * 108).map(|i| ((i * 37) % 11) as f32 / 11.0 - 0.4).collect()).unwrap();
    let dy = Vectors::<4>::from_vec(n, (0..n * 4).map(|i| (i % 5) as f32 - 2.0).collect()).unwrap();
    let changed = TwoConvs::new(&Cpu, 1).unwrap().parameter("conv2.weight").unwrap();
    let conv1_grad = |net: &mut TwoConvs, change: bool| {
        net.forward(&x).unwrap();
        if change {
            net.set_parameter("conv2.weight", &changed).unwrap();
        }
        net.zero_grad().unwrap();
        net.backward(&dy).unwrap();
        net.grad("conv1.weight").unwrap().iter().copied().collect::<Vec<f32>>()
    };
    let mut net = TwoConvs::new(&Cpu, 0).unwrap();
    let got = conv1_grad(&mut net, true);
    let mut fresh = TwoConvs::new(&Cpu, 0).unwrap();
    fresh.set_parameter("conv2.weight", &changed).unwrap();
    let want = conv1_grad(&mut fresh, false);
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * scale, "conv1.weight[{i}]: {g} against {w}");
    }
}
