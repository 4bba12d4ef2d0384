//! torchvision's MobileNetV2 written in `network!`: its InvertedResidual block needs a value
//! computed from the block's parameters (`let hidden_dim = int(round(inp * expand_ratio));`), a
//! layer present only under a condition (the expansion, only `if expand_ratio != 1`, after which
//! torchvision's indices inside `conv` shift), a residual sum present only under a condition and
//! with no activation after it, and functional ops with no module (`_: AdaptiveAvgPool2d`,
//! `_: Flatten`), so that `classifier` stays `classifier.0` (Dropout), `classifier.1` (Linear).
//!
//! The references: tests/fixtures/mobilenet_v2_state_dict.txt (scripts/mobilenet_v2_keys.py:
//! torchvision's `mobilenet_v2()`, key, dtype, shape in state_dict order) and
//! tests/fixtures/mobilenet_v2_mini.safetensors (torchvision's `mobilenet_v2(width_mult=0.25,
//! num_classes=10, dropout=0.0)`, written by torchvision itself).

use staticnet::network::{NetSpec, TensorKind};
use staticnet::prelude::*;

/// `name dtype [shape]` of each state_dict entry of a network, in state_dict order.
fn listing(spec: &NetSpec) -> Vec<(String, String, Vec<usize>)> {
    spec.tensors
        .iter()
        .map(|t| {
            let dtype = if matches!(t.kind, TensorKind::Counter { .. }) { "int64" } else { "float32" };
            (t.name.to_string(), dtype.to_string(), t.shape.to_vec())
        })
        .collect()
}

/// torchvision's `mobilenet_v2()` state_dict and parameter count, from the fixture.
fn torchvision_full() -> (usize, Vec<(String, String, Vec<usize>)>) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mobilenet_v2_state_dict.txt")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let count = header.split(": ").last().unwrap().split(' ').next().unwrap().parse().unwrap();
    let entries = lines
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let (name, dtype, shape) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            let shape = shape.trim_matches(['[', ']']).split(", ").filter(|d| !d.is_empty()).map(|d| d.parse().unwrap()).collect();
            (name.to_string(), dtype.to_string(), shape)
        })
        .collect();
    (count, entries)
}

/// The mini net's initial state_dict as torchvision wrote it: (key, shape), sorted by key (the
/// file does not keep the order).
fn torchvision_mini() -> Vec<(String, Vec<usize>)> {
    let sd = StateDict::load(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mobilenet_v2_mini.safetensors")).unwrap();
    let reference = |k: &str| {
        !["grad.", "sgd3.", "adam3.", "after_forward."].iter().any(|p| k.starts_with(p)) && !["input", "target", "loss"].contains(&k) && !k.starts_with("logits")
    };
    let mut keys: Vec<(String, Vec<usize>)> = sd.iter().filter(|(k, _)| reference(k)).map(|(k, t)| (k.to_string(), t.shape().to_vec())).collect();
    keys.sort();
    keys
}

/// A depthwise convolution's weight in torchvision: `[C, 1, 3, 3]` (groups = C).
fn depthwise(shape: &[usize]) -> bool {
    matches!(shape, [_, 1, 3, 3])
}

// The PyTorch fixtures' helpers, for the parity test of the exact listing below.
// Enabled when groups and ReLU6 land.
#[cfg(any())]
mod common;

// The listings as torchvision's MobileNetV2 must finally be written: they need
// `Conv2d(groups = …)` and `ReLU6`, which are landing on other branches.
// Enabled when groups and ReLU6 land.
#[cfg(any())]
mod exact {
    use super::*;

    network! {
        /// torchvision's Conv2dNormActivation with ReLU6 (a Sequential: its layers are 0, 1, 2).
        block Conv2dNormActivation(in_channels, out_channels, kernel_size = 3, stride = 1, groups = 1) {
            Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) / 2, groups = groups, bias = false),
            BatchNorm2d(out_channels),
            ReLU6(inplace = true),
        }

        /// torchvision's InvertedResidual.
        block InvertedResidual(inp, oup, stride, expand_ratio) {
            let hidden_dim = int(round(inp * expand_ratio));
            conv: [
                Conv2dNormActivation(inp, hidden_dim, kernel_size = 1) if expand_ratio != 1,
                Conv2dNormActivation(hidden_dim, hidden_dim, stride = stride, groups = hidden_dim),
                Conv2d(hidden_dim, oup, 1, 1, 0, bias = false),
                BatchNorm2d(oup),
            ],
            + identity if stride == 1 && inp == oup,
        }

        /// torchvision's `mobilenet_v2()`.
        pub struct MobileNetV2 {
            input: [3, 224, 224],
            features: [
                Conv2dNormActivation(3, 32, stride = 2),
                InvertedResidual(32, 16, 1, 1),
                InvertedResidual(16, 24, 2, 6),
                InvertedResidual(24, 24, 1, 6),
                InvertedResidual(24, 32, 2, 6),
                InvertedResidual(32, 32, 1, 6),
                InvertedResidual(32, 32, 1, 6),
                InvertedResidual(32, 64, 2, 6),
                InvertedResidual(64, 64, 1, 6),
                InvertedResidual(64, 64, 1, 6),
                InvertedResidual(64, 64, 1, 6),
                InvertedResidual(64, 96, 1, 6),
                InvertedResidual(96, 96, 1, 6),
                InvertedResidual(96, 96, 1, 6),
                InvertedResidual(96, 160, 2, 6),
                InvertedResidual(160, 160, 1, 6),
                InvertedResidual(160, 160, 1, 6),
                InvertedResidual(160, 320, 1, 6),
                Conv2dNormActivation(320, 1280, kernel_size = 1),
            ],
            _: AdaptiveAvgPool2d((1, 1)),
            _: Flatten,
            classifier: [Dropout(0.2), Linear(1280, 1000)],
        }

        /// torchvision's `mobilenet_v2(width_mult=0.25, num_classes=10, dropout=0.0)`.
        pub struct MobileNetV2Mini {
            input: [3, 32, 32],
            features: [
                Conv2dNormActivation(3, 8, stride = 2),
                InvertedResidual(8, 8, 1, 1),
                InvertedResidual(8, 8, 2, 6),
                InvertedResidual(8, 8, 1, 6),
                InvertedResidual(8, 8, 2, 6),
                InvertedResidual(8, 8, 1, 6),
                InvertedResidual(8, 8, 1, 6),
                InvertedResidual(8, 16, 2, 6),
                InvertedResidual(16, 16, 1, 6),
                InvertedResidual(16, 16, 1, 6),
                InvertedResidual(16, 16, 1, 6),
                InvertedResidual(16, 24, 1, 6),
                InvertedResidual(24, 24, 1, 6),
                InvertedResidual(24, 24, 1, 6),
                InvertedResidual(24, 40, 2, 6),
                InvertedResidual(40, 40, 1, 6),
                InvertedResidual(40, 40, 1, 6),
                InvertedResidual(40, 80, 1, 6),
                Conv2dNormActivation(80, 1280, kernel_size = 1),
            ],
            _: AdaptiveAvgPool2d((1, 1)),
            _: Flatten,
            classifier: [Dropout(0.0), Linear(1280, 10)],
        }
    }

    #[test]
    fn mobilenet_v2_is_torchvisions() {
        let (count, theirs) = torchvision_full();
        assert_eq!(MobileNetV2::<Cpu>::PARAMETERS, 3_504_872);
        assert_eq!(MobileNetV2::<Cpu>::PARAMETERS, count);
        assert_eq!(listing(&MobileNetV2::<Cpu>::SPEC), theirs);
    }

    #[test]
    fn the_mini_net_has_torchvisions_state_dict() {
        let mut ours: Vec<(String, Vec<usize>)> = listing(&MobileNetV2Mini::<Cpu>::SPEC).into_iter().map(|(k, _, s)| (k, s)).collect();
        ours.sort();
        assert_eq!(ours, torchvision_mini());
        assert_eq!(MobileNetV2Mini::<Cpu>::PARAMETERS, 250_922);
    }

    /// The mini net with torchvision's initial parameters reproduces its logits (eval and
    /// train mode), loss and gradients within the fixtures' tolerances (tests/fixtures/README.md).
    #[test]
    fn the_mini_net_reproduces_torchvisions_logits_and_gradients() {
        use crate::common::{Fixture, assert_close};
        let fx = Fixture::load("mobilenet_v2_mini");
        let mut net = fx.network(&Cpu, MobileNetV2Mini::new);
        let x: Images<3, 32, 32> = fx.input();
        net.eval();
        let out = net.forward(&x).unwrap();
        assert_close(out.as_slice(), &fx.f32("logits_eval"), 1e-4, "logits_eval");
        net.train();
        let out = net.forward(&x).unwrap();
        assert_close(out.as_slice(), &fx.f32("logits_train"), 1e-4, "logits_train");
        let step = net.loss_backward(&CrossEntropyLoss::default(), &fx.labels()).unwrap();
        assert_close(&[step.loss], &fx.f32("loss"), 1e-4, "loss");
        let mut grads = 0;
        for t in MobileNetV2Mini::<Cpu>::SPEC.tensors {
            let key = format!("grad.{}", t.name);
            if fx.has(&key) {
                let ours: Vec<f32> = net.grad(t.name).unwrap().iter().copied().collect();
                assert_close(&ours, &fx.f32(&key), 1e-3, &key);
                grads += 1;
            }
        }
        assert_eq!(grads, 158);
    }
}

// The same block structure with what this branch has: ReLU for ReLU6, and a dense 3×3
// convolution for the depthwise one (groups = hidden_dim). The state_dict keys and their order
// are torchvision's; only the depthwise weights' shapes differ ([C, C, 3, 3] for [C, 1, 3, 3]).
network! {
    /// torchvision's Conv2dNormActivation, with ReLU and without groups.
    block Conv2dNormActivation(in_channels, out_channels, kernel_size = 3, stride = 1) {
        Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) / 2, bias = false),
        BatchNorm2d(out_channels),
        ReLU(inplace = true),
    }

    /// InvertedResidual, with ReLU and without groups.
    block InvertedResidual(inp, oup, stride, expand_ratio) {
        let hidden_dim = int(round(inp * expand_ratio));
        conv: [
            Conv2dNormActivation(inp, hidden_dim, kernel_size = 1) if expand_ratio != 1,
            Conv2dNormActivation(hidden_dim, hidden_dim, stride = stride),
            Conv2d(hidden_dim, oup, 1, 1, 0, bias = false),
            BatchNorm2d(oup),
        ],
        + identity if stride == 1 && inp == oup,
    }

    /// `mobilenet_v2()`'s structure.
    pub struct MobileNetV2Dense {
        input: [3, 224, 224],
        features: [
            Conv2dNormActivation(3, 32, stride = 2),
            InvertedResidual(32, 16, 1, 1),
            InvertedResidual(16, 24, 2, 6),
            InvertedResidual(24, 24, 1, 6),
            InvertedResidual(24, 32, 2, 6),
            InvertedResidual(32, 32, 1, 6),
            InvertedResidual(32, 32, 1, 6),
            InvertedResidual(32, 64, 2, 6),
            InvertedResidual(64, 64, 1, 6),
            InvertedResidual(64, 64, 1, 6),
            InvertedResidual(64, 64, 1, 6),
            InvertedResidual(64, 96, 1, 6),
            InvertedResidual(96, 96, 1, 6),
            InvertedResidual(96, 96, 1, 6),
            InvertedResidual(96, 160, 2, 6),
            InvertedResidual(160, 160, 1, 6),
            InvertedResidual(160, 160, 1, 6),
            InvertedResidual(160, 320, 1, 6),
            Conv2dNormActivation(320, 1280, kernel_size = 1),
        ],
        _: AdaptiveAvgPool2d((1, 1)),
        _: Flatten,
        classifier: [Dropout(0.2), Linear(1280, 1000)],
    }

    /// `mobilenet_v2(width_mult=0.25, num_classes=10, dropout=0.0)`'s structure.
    pub struct MobileNetV2MiniDense {
        input: [3, 32, 32],
        features: [
            Conv2dNormActivation(3, 8, stride = 2),
            InvertedResidual(8, 8, 1, 1),
            InvertedResidual(8, 8, 2, 6),
            InvertedResidual(8, 8, 1, 6),
            InvertedResidual(8, 8, 2, 6),
            InvertedResidual(8, 8, 1, 6),
            InvertedResidual(8, 8, 1, 6),
            InvertedResidual(8, 16, 2, 6),
            InvertedResidual(16, 16, 1, 6),
            InvertedResidual(16, 16, 1, 6),
            InvertedResidual(16, 16, 1, 6),
            InvertedResidual(16, 24, 1, 6),
            InvertedResidual(24, 24, 1, 6),
            InvertedResidual(24, 24, 1, 6),
            InvertedResidual(24, 40, 2, 6),
            InvertedResidual(40, 40, 1, 6),
            InvertedResidual(40, 40, 1, 6),
            InvertedResidual(40, 80, 1, 6),
            Conv2dNormActivation(80, 1280, kernel_size = 1),
        ],
        _: AdaptiveAvgPool2d((1, 1)),
        _: Flatten,
        classifier: [Dropout(0.0), Linear(1280, 10)],
    }
}

#[test]
fn the_block_structure_gives_torchvisions_keys_in_torchvisions_order() {
    let (_, theirs) = torchvision_full();
    let ours = listing(&MobileNetV2Dense::<Cpu>::SPEC);
    let names = |l: &[(String, String, Vec<usize>)]| l.iter().map(|(k, d, _)| format!("{k} {d}")).collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs));
    // Every shape but the depthwise convolutions' weights is torchvision's.
    let mut depthwise_convs = 0;
    for ((key, _, our), (_, _, their)) in ours.iter().zip(&theirs) {
        if depthwise(their) {
            depthwise_convs += 1;
            assert_eq!(our, &[their[0], their[0], 3, 3], "{key}");
        } else {
            assert_eq!(our, their, "{key}");
        }
    }
    assert_eq!(depthwise_convs, 17, "one per InvertedResidual");
    // The expansion exists only where expand_ratio != 1, and indices shift as in torchvision.
    assert!(ours.iter().any(|(k, _, _)| k == "features.1.conv.1.weight"));
    assert!(ours.iter().any(|(k, _, _)| k == "features.2.conv.1.0.weight"));
    assert!(ours.iter().any(|(k, _, _)| k == "classifier.1.bias"));
}

#[test]
fn the_sum_is_there_only_where_the_stride_is_1_and_the_widths_agree() {
    let sums: Vec<&str> = MobileNetV2Dense::<Cpu>::SPEC.layers.iter().filter(|l| l.inputs.len() == 2).map(|l| l.name).collect();
    // features.1 (32 → 16), features.2 (stride 2), features.4, .7, .11 (new width), .14 and
    // .17 have none.
    let want: Vec<String> = [3, 5, 6, 8, 9, 10, 12, 13, 15, 16].iter().map(|i| format!("features.{i}.add")).collect();
    assert_eq!(sums, want);
}

#[test]
fn the_mini_net_has_torchvisions_keys() {
    let theirs = torchvision_mini();
    let mut ours: Vec<(String, Vec<usize>)> = listing(&MobileNetV2MiniDense::<Cpu>::SPEC).into_iter().map(|(k, _, s)| (k, s)).collect();
    ours.sort();
    assert_eq!(ours.len(), theirs.len());
    for ((k, our), (their_k, their)) in ours.iter().zip(&theirs) {
        assert_eq!(k, their_k);
        if depthwise(their) {
            assert_eq!(our, &[their[0], their[0], 3, 3], "{k}");
        } else {
            assert_eq!(our, their, "{k}");
        }
    }
}

#[test]
fn the_mini_net_runs_and_prints_as_torchvision_does() -> staticnet::Result<()> {
    let mut net = MobileNetV2MiniDense::new(&Cpu, 0)?;
    let x = Images::<3, 32, 32>::zeros(2);
    let out = net.forward(&x)?;
    assert_eq!(out.len(), 2);
    // The backward runs through sums with no activation after them, and around absent ones.
    let loss = net.train_step(&x, &[1, 7], &mut Sgd::new(0.01))?;
    assert!(loss.loss.is_finite());
    let printed = net.to_string();
    // The functional ops are no modules: not printed, no index.
    assert!(!printed.contains("AdaptiveAvgPool2d") && !printed.contains("Flatten"), "{printed}");
    // Line by line torchvision's print(model) (the fixture's metadata), but for what this branch
    // lacks: ReLU for ReLU6, and no `groups=` on the depthwise convolutions.
    let (_, metadata) = StateDict::load_with_metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mobilenet_v2_mini.safetensors"))?;
    let torch: Vec<String> = metadata["model"]
        .lines()
        .map(|l| {
            let l = l.replace("ReLU6(", "ReLU(");
            match l.find(", groups=") {
                Some(at) => {
                    let end = at + l[at + 2..].find(", ").expect("bias=False follows") + 2;
                    format!("{}{}", &l[..at], &l[end..])
                }
                None => l,
            }
        })
        .collect();
    let ours: Vec<&str> = printed.lines().collect();
    assert_eq!(torch[0], "MobileNetV2(");
    assert_eq!(ours.len(), torch.len(), "{printed}");
    for (i, (o, t)) in ours.iter().zip(&torch).enumerate().skip(1) {
        assert_eq!(o, t, "line {}", i + 1);
    }
    Ok(())
}

network! {
    /// A module may take the name torch.fx would give a functional op (`flatten`): the op's
    /// name then moves out of its way, as torch.fx's does.
    pub struct NamedLikeAFunction {
        input: [2, 4, 4],
        _: Flatten,
        flatten: Linear(32, 4),
        _: Flatten,
    }
}

#[test]
fn functional_ops_are_named_as_torch_fx_names_them_and_take_no_index() {
    let names: Vec<&str> = NamedLikeAFunction::<Cpu>::SPEC.layers.iter().map(|l| l.name).collect();
    assert_eq!(names, ["flatten_1", "flatten", "flatten_2"]);
    let keys: Vec<&str> = NamedLikeAFunction::<Cpu>::SPEC.tensors.iter().map(|t| t.name).collect();
    assert_eq!(keys, ["flatten.weight", "flatten.bias"]);
}
