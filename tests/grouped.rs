//! Grouped and depthwise convolutions in a listing: a depthwise-separable block (depthwise 3×3,
//! then pointwise 1×1, as MobileNet's), a grouped convolution and a channel multiplier. Their
//! parameter counts and state-dict shapes are PyTorch's (worked out by hand below: the weight
//! of `Conv2d(c_in, c_out, k, groups = g)` is (c_out, c_in/g, k, k)), their repr is PyTorch's,
//! and the network learns.

use staticnet::prelude::*;
use staticnet::{Dataset, Trainer, evaluate};

network! {
    pub struct DwSep {
        input: [4, 8, 8],
        dw: Conv2d(4, 4, 3, padding = 1, groups = 4, bias = false), BatchNorm2d(4), ReLU,
        pw: Conv2d(4, 8, 1), ReLU,
        grouped: Conv2d(8, 8, 3, stride = 2, padding = 1, groups = 4), ReLU,
        mult: Conv2d(8, 16, 3, padding = 1, groups = 8), ReLU,
        Flatten,
        fc: Linear(16 * 4 * 4, 4),
    }
}

#[test]
fn parameters_and_state_dict_are_pytorchs() {
    // dw 4·1·9 (no bias), bn 4 + 4, pw 8·4 + 8, grouped 8·2·9 + 8, mult 16·1·9 + 16, fc 256·4 + 4.
    let expected = 36 + 8 + 40 + 152 + 160 + 1028;
    assert_eq!(DwSep::<Cpu>::PARAMETERS, expected);
    let net = DwSep::new(&Cpu, 0).unwrap();
    let sd = net.state_dict().unwrap();
    for (name, shape) in [("dw.weight", &[4, 1, 3, 3][..]), ("pw.weight", &[8, 4, 1, 1]), ("grouped.weight", &[8, 2, 3, 3]), ("grouped.bias", &[8]), ("mult.weight", &[16, 1, 3, 3]), ("mult.bias", &[16])] {
        assert_eq!(sd.get(name).unwrap_or_else(|| panic!("no {name}")).shape(), shape, "{name}");
    }
    assert!(sd.get("dw.bias").is_none());
    // kaiming_uniform_ bounds by fan_in = c_in/groups · k · k: 9 for dw, 18 for grouped.
    for (name, fan_in) in [("dw.weight", 9.0), ("grouped.weight", 18.0), ("grouped.bias", 18.0)] {
        let bound = 1.0 / f64::sqrt(fan_in);
        let max = net.parameter(name).unwrap().iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
        assert!(max <= bound && max > 0.5 * bound, "{name}: max |w| {max}, bound {bound}");
    }
    let repr = net.to_string();
    for line in [
        "(dw): Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=4, bias=False)",
        "(pw): Conv2d(4, 8, kernel_size=(1, 1), stride=(1, 1))",
        "(grouped): Conv2d(8, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), groups=4)",
        "(mult): Conv2d(8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=8)",
    ] {
        assert!(repr.contains(line), "no `{line}` in\n{repr}");
    }
}

/// 8×8 images of 4 channels with one bright pixel in one channel; the label is the channel, so
/// that the depthwise layer must keep the channels apart.
fn channels(n: usize) -> Dataset<Images<4, 8, 8>> {
    let mut values = vec![0.05f32; n * 256];
    let mut labels = Vec::new();
    for i in 0..n {
        let (c, y, x) = (i % 4, (i * 7 / 4) % 8, (i * 5 / 4 + i / 32) % 8);
        values[i * 256 + (c * 8 + y) * 8 + x] = 1.0;
        labels.push(c);
    }
    Dataset::new("channels", values, labels, 4).unwrap()
}

#[test]
fn a_depthwise_separable_network_learns() {
    let data = channels(256);
    let mut net = DwSep::new(&Cpu, 1).unwrap();
    let before = net.parameter("dw.weight").unwrap().iter().copied().collect::<Vec<f32>>();
    let loss0 = evaluate(&mut net, &data, 64).unwrap().loss;
    let mut opt = Adam::new(3e-3);
    let history = Trainer::new(8).batch_size(16).seed(1).progress(false).verbose(false).fit(&mut net, &mut opt, &data, None).unwrap();
    let last = history.epochs.last().unwrap().train_loss;
    let after = evaluate(&mut net, &data, 64).unwrap();
    assert_ne!(net.parameter("dw.weight").unwrap().iter().copied().collect::<Vec<f32>>(), before, "the depthwise weights trained");
    assert!(after.loss < 0.5 * loss0, "loss {loss0} → {} (last epoch's train loss {last})", after.loss);
    assert!(after.accuracy > 0.9, "accuracy {}", after.accuracy);
}
