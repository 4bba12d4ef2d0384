//! torchvision's transforms: each equals `torchvision.transforms.v2.functional` on test images
//! with fixed parameters, within 1/255 per pixel, and each random transform draws its parameters
//! from torchvision's distributions (ranges and means over 20,000 draws, compared with
//! torchvision's own draws). Fixtures: scripts/make_transform_fixtures.py.

use std::collections::HashMap;

use staticnet::data::transforms::*;
use staticnet::prelude::*;

fn fixture() -> (StateDict, HashMap<String, String>) {
    StateDict::load_with_metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/transforms.safetensors")).unwrap()
}

fn image(t: &Tensor) -> Image {
    let a = t.as_f32().unwrap();
    let s = a.shape();
    Image::new(s[0], s[1], s[2], a.iter().copied().collect())
}

/// Our call for each fixture case (the same parameters as the script's).
fn run(case: &str, img: &mut Image) -> staticnet::Result<()> {
    let rgb_mean = [0.4914, 0.4822, 0.4465];
    let rgb_std = [0.2470, 0.2435, 0.2616];
    match case {
        "resize_down" => resize(img, 11, 9),
        "resize_up" => resize(img, 31, 37),
        "resize_smaller_edge" => Resize::new(16).apply(img, &mut sample_rng(0, 0, 0))?,
        "resize_gray" => resize(img, 7, 9),
        "center_crop" => center_crop(img, 15, 15),
        "center_crop_odd" => center_crop(img, 13, 20),
        "center_crop_larger" => center_crop(img, 20, 18),
        "pad_crop" => {
            pad(img, 4, 4, 4, 4, 0.0);
            crop(img, 3, 7, 20, 24);
        }
        "pad_crop_fill" => {
            pad(img, 2, 2, 2, 2, 0.5);
            crop(img, 0, 4, 17, 13);
        }
        "hflip" => horizontal_flip(img),
        "resized_crop" => {
            crop(img, 2, 3, 12, 15);
            resize(img, 8, 8);
        }
        "resized_crop_up" => {
            crop(img, 1, 1, 6, 5);
            resize(img, 12, 10);
        }
        "rotate_23_5" => rotate(img, 23.5, 0.0),
        "rotate_minus_10" => rotate(img, -10.0, 0.0),
        "rotate_100" => rotate(img, 100.0, 0.0),
        "rotate_fill" => rotate(img, 37.0, 0.25),
        "brightness_1_3" => adjust_brightness(img, 1.3)?,
        "contrast_0_6" => adjust_contrast(img, 0.6)?,
        "contrast_gray_1_4" => adjust_contrast(img, 1.4)?,
        "saturation_1_7" => adjust_saturation(img, 1.7)?,
        "saturation_0_2" => adjust_saturation(img, 0.2)?,
        "grayscale_1" => rgb_to_grayscale(img, 1)?,
        "grayscale_3" => rgb_to_grayscale(img, 3)?,
        "normalize" => normalize(img, &rgb_mean, &rgb_std)?,
        other => panic!("no call for fixture case {other}: add it here"),
    }
    Ok(())
}

#[test]
fn every_transform_equals_torchvisions_within_one_level() {
    let (tensors, meta) = fixture();
    let cases: HashMap<String, String> = serde_json::from_str(&meta["cases"]).unwrap();
    assert!(cases.len() >= 24, "{} cases", cases.len());
    for (case, input) in &cases {
        let expected = image(tensors.get(case).unwrap());
        let mut img = image(tensors.get(&format!("input.{input}")).unwrap());
        run(case, &mut img).unwrap();
        assert_eq!((img.channels, img.height, img.width), (expected.channels, expected.height, expected.width), "{case}: shape");
        let worst = img.data.iter().zip(&expected.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1.0 / 255.0, "{case}: differs from torchvision by up to {worst}");
    }
}

/// torchvision's statistics of one parameter over its draws.
struct Stat {
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
}

/// Compares our draws of one parameter with torchvision's: a range inside torchvision's that
/// covers at least 90% of it (the extremes of a discrete parameter can be rare draws), and means
/// within four standard errors.
fn same_distribution(name: &str, ours: &[f64], theirs: &Stat, draws: f64) {
    let n = ours.len() as f64;
    let mean = ours.iter().sum::<f64>() / n;
    let (min, max) = ours.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let standard_error = (theirs.std * theirs.std / draws + theirs.std * theirs.std / n).sqrt().max(1e-9);
    assert!((mean - theirs.mean).abs() <= 4.0 * standard_error, "{name}: mean {mean}, torchvision {} (± {standard_error})", theirs.mean);
    let slack = ((theirs.max - theirs.min) * 0.002).max(1e-9);
    let inside = min >= theirs.min - slack && max <= theirs.max + slack;
    assert!(inside && max - min >= 0.9 * (theirs.max - theirs.min), "{name}: range [{min}, {max}], torchvision [{}, {}]", theirs.min, theirs.max);
}

#[test]
fn random_parameters_follow_torchvisions_distributions() {
    let (_, meta) = fixture();
    let json: serde_json::Value = serde_json::from_str(&meta["stats"]).unwrap();
    let stat = |t: &str, p: &str| {
        let s = &json[t][p];
        let f = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{t} {p}: no {k}"));
        Stat { mean: f("mean"), std: f("std"), min: f("min"), max: f("max") }
    };
    let draws: f64 = meta["draws"].parse().unwrap();
    let n = 20_000u64;
    let rngs = || (0..n).map(|i| sample_rng(7, 3, i));
    let check = |transform: &str, columns: Vec<(&str, Vec<f64>)>| {
        for (param, values) in columns {
            same_distribution(&format!("{transform} {param}"), &values, &stat(transform, param), draws);
        }
    };

    let crop = RandomCrop::new(20).padding(4);
    let (tops, lefts): (Vec<f64>, Vec<f64>) = rngs().map(|mut r| crop.params(20, 24, &mut r).map(|(_, y, x)| (y as f64, x as f64)).unwrap()).unzip();
    check("RandomCrop(20, padding=4) on 3x20x24", vec![("top", tops), ("left", lefts)]);

    let rrc = RandomResizedCrop::new(8);
    let p: Vec<(usize, usize, usize, usize)> = rngs().map(|mut r| rrc.params(20, 24, &mut r)).collect();
    let col = |f: fn(&(usize, usize, usize, usize)) -> usize| p.iter().map(|x| f(x) as f64).collect::<Vec<_>>();
    check("RandomResizedCrop(8) on 3x20x24", vec![("top", col(|x| x.0)), ("left", col(|x| x.1)), ("height", col(|x| x.2)), ("width", col(|x| x.3))]);

    let rot = RandomRotation::new(10.0);
    check("RandomRotation(10)", vec![("angle", rngs().map(|mut r| rot.angle(&mut r)).collect())]);

    let jitter = ColorJitter::new().brightness(0.4).contrast(0.4).saturation(0.4);
    let p: Vec<JitterParams> = rngs().map(|mut r| jitter.params(&mut r)).collect();
    check(
        "ColorJitter(0.4, 0.4, 0.4)",
        vec![
            ("brightness", p.iter().map(|j| j.brightness.unwrap() as f64).collect()),
            ("contrast", p.iter().map(|j| j.contrast.unwrap() as f64).collect()),
            ("saturation", p.iter().map(|j| j.saturation.unwrap() as f64).collect()),
            ("brightness_first", p.iter().map(|j| f64::from(u8::from(j.order[0] == 0))).collect()),
        ],
    );

    let flip = RandomHorizontalFlip::new(0.3);
    check("RandomHorizontalFlip(0.3)", vec![("flipped", rngs().map(|mut r| f64::from(u8::from(flip.draw(&mut r)))).collect())]);
}

/// The same (seed, epoch, index) gives the same draws, whatever else was drawn before; another
/// epoch or index gives others.
#[test]
fn draws_depend_only_on_seed_epoch_and_index() {
    let rot = RandomRotation::new(30.0);
    let a = rot.angle(&mut sample_rng(1, 2, 3));
    assert_eq!(a, rot.angle(&mut sample_rng(1, 2, 3)));
    for other in [sample_rng(1, 2, 4), sample_rng(1, 3, 3), sample_rng(2, 2, 3)] {
        assert_ne!(a, rot.angle(&mut other.clone()));
    }
}

#[test]
fn transforms_refuse_what_they_cannot_do() {
    let mut img = Image::new(2, 4, 4, vec![0.5; 32]);
    let msg = adjust_contrast(&mut img, 1.2).unwrap_err().to_string();
    assert!(msg.contains("adjust_contrast: images of 1 or 3 channels, not 2"), "{msg}");
    let msg = normalize(&mut Image::new(3, 2, 2, vec![0.0; 12]), &[0.5, 0.5], &[1.0]).unwrap_err().to_string();
    assert!(msg.contains("Normalize: 2 means and 1 stds for an image of 3 channels"), "{msg}");
    let msg = RandomCrop::new(10).apply(&mut Image::new(1, 4, 4, vec![0.0; 16]), &mut sample_rng(0, 0, 0)).unwrap_err().to_string();
    assert!(msg.contains("RandomCrop: the crop 10×10 is larger than the (padded) image 4×4"), "{msg}");
}
