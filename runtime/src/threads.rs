//! The CPU thread pool: rayon's global pool, with the thread that trains as one of its workers.
//!
//! rayon hands work submitted from outside its pool to a global queue that allocates a block
//! every 63 submissions; work submitted by a worker goes to that worker's own deque, which
//! stops growing once warm. A training loop submits every kernel, so it runs on a worker: the
//! first network created makes its thread worker 0 of the global pool (unless the program has
//! configured that pool already) and gives every worker its packing buffers, so that training
//! steps then allocate nothing, whichever threads join in.

use std::sync::Once;

use crate::{Error, Result};

static ADOPT: Once = Once::new();

/// Makes the calling thread a worker of rayon's global pool, if that pool does not exist yet.
/// `RAYON_NUM_THREADS` sets its size, as for any rayon pool.
pub(crate) fn adopt_current_thread() {
    ADOPT.call_once(|| {
        // Fails if the pool exists already (the program configured it): then it stays as it is.
        let _ = rayon::ThreadPoolBuilder::new().use_current_thread().build_global();
        crate::ops::gemm::reserve_packing_buffers();
    });
}

/// `torch.set_num_threads(n)`: the CPU backend's threads, the calling thread among them. Call it
/// before creating a network; afterwards the pool exists and this returns an error.
pub fn set_num_threads(n: usize) -> Result<()> {
    let mut result = Err(Error::Backend("set_num_threads: the CPU thread pool already exists; call it before creating a network".into()));
    ADOPT.call_once(|| {
        result = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .use_current_thread()
            .build_global()
            .map_err(|e| Error::Backend(format!("set_num_threads({n}): {e}")));
        crate::ops::gemm::reserve_packing_buffers();
    });
    result
}

/// The CPU backend's threads. Like creating a network, it makes the calling thread a worker of
/// the pool first: asking rayon for its thread count builds its global pool, and a pool built
/// without the training thread hands it every kernel through a queue and puts it to sleep while
/// the kernel runs (a program that printed the thread count before creating its network trained
/// Model A a quarter slower, one thread, with a context switch per kernel).
pub fn num_threads() -> usize {
    adopt_current_thread();
    rayon::current_num_threads()
}

/// `torch.set_flush_denormal(mode)`: with `true`, floats too small to be normal (below about
/// 1.2e-38) are read and written as zero on every thread of the CPU backend, so that a step that
/// meets them (vanishing gradients, Adam's squared gradients) does not slow down by the tens of
/// cycles each such operation costs in microcode; `false` restores IEEE arithmetic. Off unless
/// called, as in PyTorch. Returns whether the processor supports it (x86-64: always; elsewhere
/// nothing changes and it returns false).
///
/// It sets the MXCSR's flush-to-zero and denormals-are-zero bits of the threads of rayon's
/// global pool, which this crate's CPU backend runs on (the calling thread among them, see
/// [`set_num_threads`]); other code on those threads sees the same mode.
pub fn set_flush_denormal(on: bool) -> bool {
    adopt_current_thread();
    #[cfg(target_arch = "x86_64")]
    {
        rayon::broadcast(|_| set_mxcsr_flush(on));
        // The calling thread, when it is not one of the pool's (the program configured the pool).
        if rayon::current_thread_index().is_none() {
            set_mxcsr_flush(on);
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = on;
        false
    }
}

/// Flush-to-zero (bit 15) and denormals-are-zero (bit 6) of this thread's MXCSR.
#[cfg(target_arch = "x86_64")]
fn set_mxcsr_flush(on: bool) {
    const FTZ_DAZ: u32 = 0x8040;
    let mut csr = 0u32;
    // SAFETY: stmxcsr stores the 4-byte MXCSR at the address given, a local u32, and ldmxcsr
    // loads it back with only the FTZ and DAZ bits changed: both are defined on every x86-64
    // processor (SSE2 is part of the architecture) and change only how denormals round.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
        csr = if on { csr | FTZ_DAZ } else { csr & !FTZ_DAZ };
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
    }
}
