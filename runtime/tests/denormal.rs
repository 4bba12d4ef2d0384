//! `set_flush_denormal`, in a test binary of its own: the mode is per thread and would reach
//! the other tests' work on the shared pool.

use rayon::prelude::*;

/// 1e-30 · 1e-10 on every thread of the pool: 1e-40 is denormal, so it survives only in IEEE
/// arithmetic. black_box keeps the compiler from folding it to a constant.
fn products() -> Vec<f32> {
    let threads = staticnet_runtime::num_threads();
    (0..threads * 64).into_par_iter().map(|_| std::hint::black_box(1e-30f32) * std::hint::black_box(1e-10f32)).collect()
}

#[test]
fn flushes_denormals_on_every_thread_and_back() {
    let ieee = products();
    assert!(ieee.iter().all(|&v| v > 0.0 && !v.is_normal()), "IEEE arithmetic keeps denormals: {:?}", &ieee[..4]);
    if !staticnet_runtime::set_flush_denormal(true) {
        println!("SKIPPED: flushing denormals is not supported on this processor (x86-64 only)");
        return;
    }
    let flushed = products();
    assert!(flushed.iter().all(|&v| v == 0.0), "with flush_denormal every product is 0: {flushed:?}");
    // A denormal input reads as 0 too (denormals-are-zero).
    let read: Vec<f32> = (0..64).into_par_iter().map(|_| std::hint::black_box(1e-40f32) * std::hint::black_box(1e10f32)).collect();
    assert!(read.iter().all(|&v| v == 0.0), "a denormal operand reads as 0: {read:?}");
    assert!(staticnet_runtime::set_flush_denormal(false));
    assert_eq!(products(), ieee, "switched off, IEEE arithmetic again");
}
