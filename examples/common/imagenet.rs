//! torchvision's ImageNet classification around a network: the preprocessing its pretrained
//! models expect, and the top-5 classes of the logits.

use std::path::Path;

use staticnet::{Error, Images, Result};

/// The IMAGE argument: the last one, unless it is an option or the value of one of the
/// `valued` options (`--weights FILE` given last is no image).
pub fn image_arg(valued: &[&str]) -> Option<String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let after_option = argv.len() >= 2 && valued.contains(&argv[argv.len() - 2].as_str());
    argv.last().filter(|a| !a.starts_with("--") && !after_option).cloned()
}

/// torchvision's ImageNet preprocessing (`weights.transforms()`): resize the shorter side to 256
/// (bilinear), crop the centre 224 × 224, scale to [0, 1], normalise per channel with mean
/// (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
pub fn input(path: &Path) -> Result<Images<3, 224, 224>> {
    let img = image::open(path).map_err(|e| Error::File { path: path.into(), message: format!("cannot decode the image: {e}") })?.to_rgb8();
    let (w, h) = img.dimensions();
    let scale = 256.0 / w.min(h) as f32;
    let (nw, nh) = (((w as f32 * scale).round() as u32).max(224), ((h as f32 * scale).round() as u32).max(224));
    let resized = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
    let (x0, y0) = ((nw - 224) / 2, (nh - 224) / 2);
    let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let mut data = vec![0.0f32; 3 * 224 * 224];
    for y in 0..224 {
        for x in 0..224 {
            let p = resized.get_pixel(x0 + x, y0 + y);
            for c in 0..3 {
                data[(c * 224 + y as usize) * 224 + x as usize] = (p[c] as f32 / 255.0 - mean[c]) / std[c];
            }
        }
    }
    Images::new(1, data)
}

/// Prints the five most probable classes (softmax over `logits`) with their names from
/// `labels` (one per line; examples/data/imagenet_classes.txt by default).
pub fn print_top5(image: &str, logits: &[f32], labels: Option<String>) -> Result<()> {
    let path = labels.unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/imagenet_classes.txt").to_string());
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Io { path: path.clone().into(), source: e })?;
    let names: Vec<&str> = text.lines().collect();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|v| (v - max).exp()).sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    println!("\n{image}:");
    for &c in order.iter().take(5) {
        println!("  {:6.2}%  {c:4}  {}", 100.0 * (logits[c] - max).exp() / sum, names.get(c).unwrap_or(&"?"));
    }
    Ok(())
}
