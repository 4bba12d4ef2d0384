use std::time::Instant;
use staticnet::ops::{self, Conv2d, Linear, Pool2d, Activation};

fn med(mut f: impl FnMut()) -> f64 {
    for _ in 0..3 { f(); }
    let mut ts: Vec<f64> = (0..20).map(|_| { let t = Instant::now(); f(); t.elapsed().as_secs_f64() * 1e3 }).collect();
    ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    ts[10]
}

fn main() {
    let n = 100;
    for op in [Conv2d::new(1, 16, [28, 28], [5, 5], [1, 1], [2, 2], [1, 1], true), Conv2d::new(16, 32, [14, 14], [5, 5], [1, 1], [2, 2], [1, 1], true),
               Conv2d::new(3, 32, [32, 32], [3, 3], [1, 1], [1, 1], [1, 1], true), Conv2d::new(32, 64, [16, 16], [3, 3], [1, 1], [1, 1], [1, 1], true), Conv2d::new(64, 128, [8, 8], [3, 3], [1, 1], [1, 1], [1, 1], true)] {
        let x = vec![0.5f32; n * op.x_len()];
        let wb = vec![0.01f32; op.param_len()];
        let mut y = vec![0.0f32; n * op.y_len()];
        let mut s = vec![0.0f32; ops::conv2d::cpu::scratch_len(&op, n)];
        let f = op.flops() as f64 * n as f64;
        let t = med(|| ops::conv2d::cpu::forward(&op, n, &x, &wb, &mut y, &mut s));
        let mut dx = vec![0.0f32; x.len()]; let mut dwb = vec![0.0f32; wb.len()];
        let tb = med(|| ops::conv2d::cpu::backward(&op, n, &x, &wb, &y, None, Some(&mut dwb), &mut s));
        let td = med(|| ops::conv2d::cpu::backward(&op, n, &x, &wb, &y, Some(&mut dx), None, &mut s));
        println!("conv {}->{} {}x{} k{}: fwd {:.2} ms ({:.0} GF/s)  bwd-filter {:.2} ms ({:.0})  bwd-data {:.2} ms ({:.0})", op.c_in, op.c_out, op.h_in, op.w_in, op.kernel[0], t, f / t / 1e6, tb, f / tb / 1e6, td, f / td / 1e6);
    }
    let op = Pool2d::max(16, [28, 28], [2, 2], [2, 2], [0, 0], [1, 1], false);
    let x = vec![0.5f32; n * op.x_len()]; let mut y = vec![0.0f32; n * op.y_len()]; let mut idx = vec![0u32; y.len()];
    println!("maxpool 16x28x28: {:.2} ms", med(|| ops::pool2d::cpu::max_forward(&op, n, &x, &mut y, &mut idx)));
    let mut dx = vec![0.0f32; x.len()];
    println!("maxpool bwd 16x28x28: {:.2} ms", med(|| ops::pool2d::cpu::max_backward(&op, n, &idx, &y, &mut dx)));
    let len = n * 16 * 28 * 28; let x = vec![0.5f32; len]; let mut y = vec![0.0f32; len];
    println!("relu 16x28x28: {:.2} ms", med(|| ops::activation::cpu::forward(Activation::ReLU, len, &x, &mut y)));
    let mut dx = vec![0.0f32; len];
    println!("relu bwd: {:.2} ms", med(|| ops::activation::cpu::backward(Activation::ReLU, len, &x, &y, &y, &mut dx)));
    let op = Linear::new(1568, 10, true);
    let x = vec![0.5f32; n * 1568]; let wb = vec![0.01f32; op.param_len()]; let mut y = vec![0.0f32; n * 10];
    println!("linear fwd: {:.3} ms", med(|| ops::linear::cpu::forward(&op, n, &x, &wb, &mut y)));
    let mut dx = vec![0.0f32; x.len()]; let mut dwb = vec![0.0f32; wb.len()];
    println!("linear bwd: {:.3} ms", med(|| ops::linear::cpu::backward(&op, n, &x, &wb, &y, Some(&mut dx), Some(&mut dwb))));
}
