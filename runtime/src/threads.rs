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

/// The CPU backend's threads.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
