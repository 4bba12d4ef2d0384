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

mod common;

use common::nets::{MobileNetV2, MobileNetV2Mini};
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

#[test]
fn mobilenet_v2_is_torchvisions() {
    let (count, theirs) = torchvision_full();
    assert_eq!(MobileNetV2::<Cpu>::PARAMETERS, 3_504_872);
    assert_eq!(MobileNetV2::<Cpu>::PARAMETERS, count);
    let ours = listing(&MobileNetV2::<Cpu>::SPEC);
    assert_eq!(ours.len(), theirs.len());
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(o, t, "state_dict entry {i}");
    }
    // The expansion exists only where expand_ratio != 1, and indices shift as in torchvision.
    assert!(ours.iter().any(|(k, _, s)| k == "features.1.conv.1.weight" && s == &[16, 32, 1, 1]));
    assert!(ours.iter().any(|(k, _, s)| k == "features.2.conv.1.0.weight" && s == &[96, 1, 3, 3]));
}

#[test]
fn the_sum_is_there_only_where_the_stride_is_1_and_the_widths_agree() {
    let sums: Vec<&str> = MobileNetV2::<Cpu>::SPEC.layers.iter().filter(|l| l.inputs.len() == 2).map(|l| l.name).collect();
    // features.1 (32 → 16), features.2 (stride 2), features.4, .7, .11 (new width), .14 and
    // .17 have none.
    let want: Vec<String> = [3, 5, 6, 8, 9, 10, 12, 13, 15, 16].iter().map(|i| format!("features.{i}.add")).collect();
    assert_eq!(sums, want);
}

#[test]
fn the_mini_net_has_torchvisions_state_dict() {
    let mut ours: Vec<(String, Vec<usize>)> = listing(&MobileNetV2Mini::<Cpu>::SPEC).into_iter().map(|(k, _, s)| (k, s)).collect();
    ours.sort();
    assert_eq!(ours, torchvision_mini());
    assert_eq!(MobileNetV2Mini::<Cpu>::PARAMETERS, 250_922);
}

#[test]
fn the_mini_net_prints_as_torchvision_does() -> staticnet::Result<()> {
    let net = MobileNetV2Mini::new(&Cpu, 0)?;
    let printed = net.to_string();
    // The functional ops are no modules: not printed, no index.
    assert!(!printed.contains("AdaptiveAvgPool2d") && !printed.contains("Flatten"), "{printed}");
    // Line by line torchvision's print(model), from the fixture's metadata (the first line
    // names the class: MobileNetV2Mini here).
    let (_, metadata) = StateDict::load_with_metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mobilenet_v2_mini.safetensors"))?;
    let torch: Vec<&str> = metadata["model"].lines().collect();
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
