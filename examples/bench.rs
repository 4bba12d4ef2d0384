//! placeholder bench (full version below)
mod common;
use std::time::Instant;
use staticnet::prelude::*;

network! {
    pub struct ModelA {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, kernel_size = 5, stride = 1, padding = 2),
        relu1: ReLU,
        maxpool1: MaxPool2d(2),
        cnn2: Conv2d(16, 32, kernel_size = 5, stride = 1, padding = 2),
        relu2: ReLU,
        maxpool2: MaxPool2d(2),
        Flatten,
        fc1: Linear(32 * 7 * 7, 10),
    }
}

fn main() {
    let mut m = ModelA::new(&Cpu, 0).unwrap();
    let x = Images::<1, 28, 28>::new(100, (0..78400).map(|i| (i % 255) as f32 / 255.0).collect()).unwrap();
    let labels: Vec<usize> = (0..100).map(|i| i % 10).collect();
    let mut opt = Sgd::new(0.01).momentum(0.9);
    let iters: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(50);
    for _ in 0..5 { m.train_step(&x, &labels, &mut opt).unwrap(); }
    let mut ts = vec![];
    for _ in 0..iters { let t = Instant::now(); m.train_step(&x, &labels, &mut opt).unwrap(); ts.push(t.elapsed().as_secs_f64()*1e3); }
    ts.sort_by(|a,b| a.partial_cmp(b).unwrap());
    println!("train step median {:.2} ms", ts[ts.len()/2]);
    m.eval();
    let mut ts = vec![];
    for _ in 0..iters { let t = Instant::now(); m.forward(&x).unwrap(); ts.push(t.elapsed().as_secs_f64()*1e3); }
    ts.sort_by(|a,b| a.partial_cmp(b).unwrap());
    println!("forward median {:.2} ms", ts[ts.len()/2]);
}
