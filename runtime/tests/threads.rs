//! The thread that asks for the CPU backend's thread count before it creates a network still
//! becomes a worker of the pool, so that its kernels run on it instead of being queued to
//! another thread while it sleeps. (One test in this binary: it is about the process's first
//! use of the pool.)

#[test]
fn asking_the_thread_count_first_keeps_the_calling_thread_a_worker() {
    assert_eq!(rayon::current_thread_index(), None, "a test thread starts outside the pool");
    assert!(staticnet_runtime::num_threads() >= 1);
    assert_eq!(rayon::current_thread_index(), Some(0), "num_threads() built the pool without this thread");
}
