use std::time::Instant;
use staticnet::ops::gemm::{gemm, MatMut, MatRef, Parallelism};

#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut a = [_mm256_set1_ps(1.0); 10];
    let m = _mm256_set1_ps(0.999999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iters { for r in a.iter_mut() { *r = _mm256_fmadd_ps(*r, m, b); } }
    let mut s = 0.0; for r in a { let mut t = [0f32; 8]; _mm256_storeu_ps(t.as_mut_ptr(), r); s += t[0]; } s
}

fn main() {
    kernel_only();
    let iters = 100_000_000u64;
    let t = Instant::now();
    let s = unsafe { fma_loop(iters) };
    let el = t.elapsed().as_secs_f64();
    println!("FMA peak 1 thread: {:.1} GFLOP/s ({s})", (iters * 10 * 16) as f64 / el / 1e9);
    for &n in &[256usize, 1000, 1024] {
        let a = vec![0.5f32; n * n]; let b = vec![0.25f32; n * n]; let mut c = vec![0.0f32; n * n];
        for par in [Parallelism::Sequential, Parallelism::Rayon] {
            let mut best = f64::MAX;
            for _ in 0..15 {
                let t = Instant::now();
                gemm(n, n, n, MatRef::rows(&a, n), MatRef::rows(&b, n), 0.0, MatMut::rows(&mut c, n), par);
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("gemm {n}^3 {par:?}: {:.1} GFLOP/s (best of 15)", 2.0 * (n * n * n) as f64 / best / 1e9);
        }
    }
}

#[allow(dead_code)]
fn kernel_only() {
    use staticnet::ops::gemm::kernel::{select, MR, NR};
    let k = select();
    for kc in [64usize, 256, 400] {
        let a = vec![0.5f32; kc * MR]; let b = vec![0.25f32; kc * NR]; let mut c = vec![0.0f32; MR * 1024];
        let reps = 2_000_000usize / kc * 64;
        let t = Instant::now();
        for _ in 0..reps { unsafe { k(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), 1024, 1, MR, NR, 1.0) } }
        let el = t.elapsed().as_secs_f64();
        println!("kernel kc={kc}: {:.1} GFLOP/s", (2 * MR * NR * kc * reps) as f64 / el / 1e9);
    }
}
