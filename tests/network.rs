//! What a declared network gives before any training: PyTorch's initialisation and the summary
//! table. Expected values are worked out by hand from PyTorch's definitions, not read back.

mod common;

use common::nets::{ModelA, NetBn};
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
