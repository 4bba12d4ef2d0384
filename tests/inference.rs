//! Inference helpers against PyTorch: probabilities and top-k against `torch.softmax` and
//! `torch.topk`, every layer's activation against a PyTorch forward hook, and against a
//! convolution computed here by hand; the confusion matrix and its scores on a case worked out
//! by hand; `viz::make_grid` against torchvision's. The references are in
//! tests/fixtures/inference.safetensors, written by scripts/make_inference_fixtures.py.

mod common;

use common::nets::{ModelA, NetBn, ResNetMini};
use common::{Fixture, assert_close};
use staticnet::data::Dataset;
use staticnet::ndarray::{ArrayD, Axis, IxDyn};
use staticnet::prelude::*;
use staticnet::viz::{self, GridOptions};
use staticnet::{ConfusionMatrix, Error, Logits, evaluate};

fn refs() -> Fixture {
    Fixture::load("inference")
}

/// probabilities() of the fixture's batch against torch.softmax of PyTorch's logits, rows
/// summing to 1, and top_k's classes against torch.topk's.
fn check_probabilities<B: Backend, N: Network<B>>(dev: &B, name: &'static str, new: impl Fn(&B, u64) -> staticnet::Result<N>)
where
    N::Output: Logits,
{
    let (fx, r) = (Fixture::load(name), refs());
    let mut net = fx.network(dev, new);
    let x: N::Input = fx.input();
    let p = net.probabilities(&x).unwrap();
    assert!(net.is_training(), "{name}: the mode is restored");
    let torch = r.f32(&format!("{name}.softmax"));
    assert_close(p.as_slice(), &torch, 1e-4, &format!("{name}: probabilities against torch.softmax"));
    let classes = <N::Output as Logits>::CLASSES;
    for (i, row) in p.as_slice().chunks(classes).enumerate() {
        let sum: f64 = row.iter().map(|&v| v as f64).sum();
        assert!((sum - 1.0).abs() < 1e-6, "{name}: sample {i}'s probabilities sum to {sum}");
    }
    // The softmax itself, on PyTorch's own logits: equal to float32 rounding.
    let mut logits = fx.f32("logits_eval");
    staticnet::network::softmax_rows(&mut logits, classes);
    let worst = logits.iter().zip(&torch).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-6, "{name}: softmax of logits_eval differs from torch.softmax by {worst}");
    let top = net.top_k(&x, 3).unwrap();
    let torch_top = r.i64(&format!("{name}.top3"));
    for (i, t) in top.iter().enumerate() {
        let ours: Vec<i64> = t.iter().map(|p| p.class as i64).collect();
        assert_eq!(ours, torch_top[i * 3..i * 3 + 3], "{name}: top-3 of sample {i}");
        assert!(t.windows(2).all(|w| w[0].probability >= w[1].probability));
        assert_eq!(t[0].probability, p.sample(i)[t[0].class]);
    }
    let predicted = net.predict(&x).unwrap();
    assert_eq!(predicted, top.iter().map(|t| t[0].class).collect::<Vec<_>>(), "{name}: predict is top-1");
    let first = <N::Input as Batch>::sample(&x, 0).to_vec();
    assert_eq!(net.predict_one(&first).unwrap(), predicted[0], "{name}: predict_one of sample 0");
}

on_every_backend! {
    fn probabilities_and_top_k_equal_torch(dev) {
        check_probabilities(dev, "model_a", ModelA::new);
        check_probabilities(dev, "net_bn", NetBn::new);
        check_probabilities(dev, "resnet_mini", ResNetMini::new);
    }

    fn activations_equal_pytorch_forward_hooks(dev) {
        // ModelA's cnn1 and cnn2 have their ReLU fused (recomputed); NetBn's ReLUs are in place
        // after pooling in PyTorch; ResNetMini has blocks, containers, shortcuts and a relu
        // called twice.
        assert_eq!(check_activations(dev, "model_a", ModelA::new), 7);
        assert_eq!(check_activations(dev, "net_bn", NetBn::new), 10);
        assert_eq!(check_activations(dev, "resnet_mini", ResNetMini::new), 17);
    }
}

#[test]
fn bad_inference_input_is_an_error_naming_it() {
    let mut net = ModelA::new(&Cpu, 0).unwrap();
    let x = Images::<1, 28, 28>::zeros(2);
    let e = net.top_k(&x, 11).unwrap_err().to_string();
    assert!(e.contains("k = 11") && e.contains("10 classes"), "{e}");
    assert!(net.top_k(&x, 0).unwrap().iter().all(Vec::is_empty));
    let e = net.predict_one(&[0.0; 700]).unwrap_err().to_string();
    assert!(e.contains("ModelA") && e.contains("784 values, got 700"), "{e}");
}

/// Every module a PyTorch forward hook saw (first sample, eval mode) against `activation`.
fn check_activations<B: Backend, N: Network<B>>(dev: &B, name: &'static str, new: impl Fn(&B, u64) -> staticnet::Result<N>) -> usize {
    let (fx, r) = (Fixture::load(name), refs());
    let mut net = fx.network(dev, new);
    net.eval();
    net.forward(&fx.input()).unwrap();
    let prefix = format!("{name}.act.");
    let mut checked = 0;
    for key in r.tensors.keys().filter(|k| k.starts_with(&prefix)).map(str::to_string).collect::<Vec<_>>() {
        let module = &key[prefix.len()..];
        let ours = net.activation(module).unwrap_or_else(|e| panic!("{name}: activation(`{module}`): {e}"));
        let batch = fx.labels().len();
        assert_eq!(ours.shape()[0], batch, "{name}.{module}: one row per sample");
        let Some(Tensor::F32(torch)) = r.tensors.get(&key) else { panic!("{key} is not float") };
        assert_eq!(&ours.shape()[1..], &torch.shape()[1..], "{name}.{module}: shape");
        let first: Vec<f32> = ours.index_axis(Axis(0), 0).iter().copied().collect();
        assert_close(&first, &torch.iter().copied().collect::<Vec<_>>(), 1e-4, &format!("{name}: activation(`{module}`) against a forward hook"));
        checked += 1;
    }
    checked
}


network! {
    /// A strided, padded convolution whose ReLU is fused, and one whose output is kept.
    struct Small {
        input: [2, 7, 6],
        conv: Conv2d(2, 3, kernel_size = 3, stride = 2, padding = 1),
        relu: ReLU,
        conv2: Conv2d(3, 2, kernel_size = (2, 1)),
        Flatten,
        fc: Linear(_, 4),
    }
}

/// The convolution computed by its definition, in f64: out[n, o, y, x] = b[o] + Σ w[o, c, i, j]
/// · in[n, c, y·s + i − p, x·s + j − p] over the taps inside the image.
fn naive_conv(x: &ArrayD<f32>, w: &ArrayD<f32>, b: &ArrayD<f32>, stride: usize, pad: usize) -> ArrayD<f32> {
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (o, kh, kw) = (w.shape()[0], w.shape()[2], w.shape()[3]);
    let (oh, ow) = ((h + 2 * pad - kh) / stride + 1, (wd + 2 * pad - kw) / stride + 1);
    ArrayD::from_shape_fn(IxDyn(&[n, o, oh, ow]), |idx| {
        let (s, f, y, xx) = (idx[0], idx[1], idx[2], idx[3]);
        let mut acc = b[[f]] as f64;
        for ch in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    let (iy, ix) = ((y * stride + i) as isize - pad as isize, (xx * stride + j) as isize - pad as isize);
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                        acc += w[[f, ch, i, j]] as f64 * x[[s, ch, iy as usize, ix as usize]] as f64;
                    }
                }
            }
        }
        acc as f32
    })
}

#[test]
fn a_fused_convolution_is_its_own_output_and_the_relu_is_kept() {
    let mut net = Small::new(&Cpu, 3).unwrap();
    let e = net.activation("conv").unwrap_err().to_string();
    assert!(e.contains("needs a forward first"), "{e}");
    let x = Images::<2, 7, 6>::new(3, (0..3 * 2 * 7 * 6).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect()).unwrap();
    net.forward(&x).unwrap();
    let want = naive_conv(&x.to_ndarray(), &net.parameter("conv.weight").unwrap(), &net.parameter("conv.bias").unwrap(), 2, 1);
    assert!(want.iter().any(|&v| v < 0.0), "the test needs negative outputs, which the ReLU changes");
    let conv = net.activation("conv").unwrap();
    assert_eq!(conv.shape(), &[3, 3, 4, 3]);
    let flat = |a: &ArrayD<f32>| a.iter().copied().collect::<Vec<_>>();
    assert_close(&flat(&conv), &flat(&want), 1e-6, "conv against the convolution by its definition");
    assert_close(&flat(&net.activation("relu").unwrap()), &flat(&want.mapv(|v| v.max(0.0))), 1e-6, "relu");
    let conv2 = net.activation("conv2").unwrap();
    let relu = net.activation("relu").unwrap();
    let want2 = naive_conv(&relu, &net.parameter("conv2.weight").unwrap(), &net.parameter("conv2.bias").unwrap(), 1, 0);
    assert_close(&flat(&conv2), &flat(&want2), 1e-6, "conv2 (kept) against the definition");
    // Flatten is its input, flat.
    assert_eq!(net.activation("3").unwrap().shape(), &[3, 2 * 3 * 3]);

    // After an optimizer step the fused convolution's weights are not the forward's any more:
    // an error, not a value no forward computed. The kept ReLU output is still the forward's.
    let mut sgd = Sgd::new(0.1);
    net.train_step(&x, &[0, 1, 2], &mut sgd).unwrap();
    let before_step = net.activation("relu").unwrap();
    net.train_step(&x, &[0, 1, 2], &mut sgd).unwrap();
    let e = net.activation("conv").unwrap_err().to_string();
    assert!(e.contains("`conv`") && e.contains("run a forward first"), "{e}");
    assert_ne!(net.activation("relu").unwrap(), before_step, "the second step's forward replaced the first's");
    net.forward(&x).unwrap();
    assert!(net.activation("conv").is_ok());

    let e = net.activation("conv3").unwrap_err();
    assert!(matches!(e, Error::UnknownLayer { .. }), "{e:?}");
    assert_eq!(e.to_string(), "Small has no layer named `conv3`; did you mean `conv`?");
}

#[test]
fn confusion_matrix_of_a_hand_made_case() {
    // Three classes; class 2 is never predicted. Rows are true classes:
    //   true 0: predicted 0, 0, 0, 1      → [3, 1, 0]
    //   true 1: predicted 1, 1, 0         → [1, 2, 0]
    //   true 2: predicted 0, 1            → [1, 1, 0]
    let labels = [0, 0, 0, 0, 1, 1, 1, 2, 2];
    let predicted = [0, 0, 0, 1, 1, 1, 0, 0, 1];
    let m = ConfusionMatrix::from_predictions(3, &labels, &predicted).unwrap();
    assert_eq!(m.to_array(), staticnet::ndarray::arr2(&[[3, 1, 0], [1, 2, 0], [1, 1, 0]]));
    // class 0: tp 3, fp 2 (a 1 and a 2 predicted 0), fn 1 → P 3/5, R 3/4, F1 6/9.
    // class 1: tp 2, fp 2, fn 1 → P 2/4, R 2/3, F1 4/7.
    // class 2: tp 0, fp 0, fn 2 → P 0 (never predicted: sklearn's zero_division default), R 0, F1 0.
    let want = [(3.0 / 5.0, 3.0 / 4.0, 6.0 / 9.0, 4), (2.0 / 4.0, 2.0 / 3.0, 4.0 / 7.0, 3), (0.0, 0.0, 0.0, 2)];
    for (c, (p, r, f1, support)) in want.into_iter().enumerate() {
        let s = m.scores(c);
        let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-6;
        assert!(close(s.precision, p) && close(s.recall, r) && close(s.f1, f1) && s.support == support, "class {c}: {s:?}");
    }
    assert_eq!((m.correct(), m.total()), (5, 9));
    assert!((m.accuracy() - 5.0 / 9.0).abs() < 1e-6);
    let macro_f1 = (6.0 / 9.0 + 4.0 / 7.0 + 0.0) / 3.0;
    assert!((m.macro_avg().f1 as f64 - macro_f1).abs() < 1e-6);
    let names: Vec<String> = ["zero", "one", "two"].map(String::from).to_vec();
    assert_eq!(m.to_csv(&names).unwrap(), "true\\predicted,zero,one,two\nzero,3,1,0\none,1,2,0\ntwo,1,1,0\n");
    let report = m.report(&names).unwrap();
    let row = |name: &str| report.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|t| t.first() == Some(&name)).unwrap_or_else(|| panic!("{report}"));
    assert_eq!(row("zero"), ["zero", "0.6000", "0.7500", "0.6667", "4"], "{report}");
    assert_eq!(row("two"), ["two", "0.0000", "0.0000", "0.0000", "2"], "{report}");
    assert_eq!(row("accuracy"), ["accuracy", "0.5556", "9"], "{report}");
}

network! {
    /// The identity on three values: the predicted class is the largest input.
    struct Identity3 {
        input: [3],
        fc: Linear(3, 3),
    }
}

#[test]
fn evaluate_gives_the_confusion_matrix_of_its_predictions() {
    let mut net = Identity3::new(&Cpu, 0).unwrap();
    net.set_parameter("fc.weight", &ArrayD::from_shape_fn(IxDyn(&[3, 3]), |i| if i[0] == i[1] { 1.0 } else { 0.0 })).unwrap();
    net.set_parameter("fc.bias", &ArrayD::zeros(IxDyn(&[3]))).unwrap();
    let labels = vec![0, 0, 0, 0, 1, 1, 1, 2, 2];
    let predicted = [0, 0, 0, 1, 1, 1, 0, 0, 1];
    // Each sample's largest value at its predicted class; a tie (sample 8: 0.5, 0.5) goes to the
    // first, as torch.argmax.
    let mut values: Vec<f32> = predicted.iter().flat_map(|&p| (0..3).map(move |c| if c == p { 1.0 } else { 0.25 })).collect();
    values[7 * 3..8 * 3].copy_from_slice(&[0.5, 0.5, 0.1]);
    let data = Dataset::<Vectors<3>>::new("hand-made", values, labels.clone(), 3).unwrap();
    // Batches of 4: the last one is smaller.
    let m = evaluate(&mut net, &data, 4).unwrap();
    assert_eq!(m.confusion, ConfusionMatrix::from_predictions(3, &labels, &predicted).unwrap());
    assert_eq!((m.correct, m.total), (5, 9));
}

/// torchvision's make_grid + save_image bytes (channel 0 of the RGB it writes for grey images).
fn torch_grid(r: &Fixture, key: &str, channels: usize) -> (Vec<usize>, Vec<u8>) {
    let Some(Tensor::F32(a)) = r.tensors.get(key) else { panic!("{key}") };
    let (h, w) = (a.shape()[0], a.shape()[1]);
    let bytes = a.iter().map(|&v| v as u8).collect::<Vec<_>>();
    let picked = bytes.chunks(3).flat_map(|px| px[..channels].to_vec()).collect();
    (vec![w, h], picked)
}

#[test]
fn make_grid_equals_torchvision() {
    let r = refs();
    let get = |k: &str| match r.tensors.get(k) {
        Some(Tensor::F32(a)) => a.clone(),
        _ => panic!("{k}"),
    };
    let cases = [
        ("grid.whole", get("grid.input"), GridOptions::new().nrow(4).padding(1), 1),
        ("grid.each", get("grid.input"), GridOptions::new().nrow(3).padding(2).pad_value(1.0).scale_each(true), 1),
        ("grid.rgb", get("grid.rgb_input"), GridOptions::new(), 3),
    ];
    for (key, input, options, channels) in cases {
        let ours = viz::make_grid(&input, &options).unwrap();
        let (size, want) = torch_grid(&r, key, channels);
        assert_eq!(vec![ours.width, ours.height], size, "{key}: size");
        assert_eq!(ours.channels, channels);
        let differ = ours.pixels.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{key}: {differ} of {} bytes differ from torchvision's", want.len());
    }
    // 6 images of 5×7, 4 to a row, padding 1: 2·(5+1)+1 high, 4·(7+1)+1 wide.
    let g = viz::make_grid(&get("grid.input"), &GridOptions::new().nrow(4).padding(1)).unwrap();
    assert_eq!((g.width, g.height), (33, 13));
}
