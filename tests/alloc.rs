//! A training step allocates nothing once the first one has planned its buffers, nor does a
//! loader whose batches have circulated once: a counting global allocator watches the second
//! and later steps. (One test in this binary, so that no other test allocates concurrently.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use staticnet::prelude::*;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static SIZES: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let i = ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        SIZES[i % 64].store(layout.size(), Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

network! {
    /// Model A with a batch-norm and a dropout, so that every kind of step runs.
    pub struct Net {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, 5, padding = 2), relu1: ReLU, maxpool1: MaxPool2d(2),
        bn: BatchNorm2d(16),
        cnn2: Conv2d(16, 32, 5, padding = 2), relu2: ReLU, maxpool2: MaxPool2d(2),
        Flatten,
        drop: Dropout(0.25),
        fc1: Linear(32 * 7 * 7, 10),
    }
}

network! {
    /// Depthwise convolutions on both of their CPU paths: padded planes (28 × 28) and small
    /// planes (7 × 7, eight channels at a time), with ReLU6 and batch-norm as in MobileNetV2.
    pub struct Depthwise {
        input: [1, 28, 28],
        conv: Conv2d(1, 8, 3, padding = 1, bias = false), bn: BatchNorm2d(8), act: ReLU6,
        dw1: Conv2d(8, 8, 3, padding = 1, groups = 8), ReLU,
        MaxPool2d(2),
        dw2: Conv2d(8, 8, 3, stride = 2, padding = 1, groups = 8, bias = false), BatchNorm2d(8), ReLU6,
        Flatten,
        fc: Linear(8 * 7 * 7, 10),
    }
}

network! {
    /// A 3 × 3 convolution of 128 channels each side: Winograd's forward, data gradient (from
    /// the weights laid out at the forward) and filter gradient, in blocks shared by the
    /// threads; then 128 → 32, whose filter gradient takes blocks of each thread's own.
    pub struct Wide {
        input: [1, 28, 28],
        conv1: Conv2d(1, 128, 3, stride = 4, padding = 1), ReLU,
        conv2: Conv2d(128, 128, 3, padding = 1), ReLU,
        conv3: Conv2d(128, 32, 3, padding = 1), ReLU,
        Flatten,
        fc: Linear(32 * 7 * 7, 10),
    }
}

fn count(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

/// The one test of this binary: the test harness allocates while it reports a finished test,
/// which a second test running meanwhile would count.
#[test]
fn nothing_is_allocated_per_step_after_the_first() {
    a_train_step_after_the_first_allocates_nothing();
    loading_batches_with_workers_allocates_nothing_in_the_steady_state();
}

fn a_train_step_after_the_first_allocates_nothing() {
    train_steps_allocate_nothing("Net", Net::new);
    train_steps_allocate_nothing("Depthwise", Depthwise::new);
    train_steps_allocate_nothing("Wide", Wide::new);
}

fn train_steps_allocate_nothing<N: Network<Cpu, Input = Images<1, 28, 28>>>(net_name: &str, new: fn(&Cpu, u64) -> staticnet::Result<N>)
where
    N::Output: staticnet::Logits,
{
    let x = Images::<1, 28, 28>::new(100, (0..78_400).map(|i| (i % 255) as f32 / 255.0).collect()).unwrap();
    let labels: Vec<usize> = (0..100).map(|i| i % 10).collect();
    let small = Images::<1, 28, 28>::new(37, x.as_slice()[..37 * 784].to_vec()).unwrap();
    for (opt_name, adam) in [("SGD", false), ("Adam", true)] {
        let name = format!("{net_name}, {opt_name}");
        let mut net = new(&Cpu, 0).unwrap();
        let mut sgd = Sgd::new(0.01).momentum(0.9);
        let mut adam_opt = Adam::new(1e-3);
        let mut step = |net: &mut N, x: &Images<1, 28, 28>, labels: &[usize]| {
            if adam { net.train_step(x, labels, &mut adam_opt).unwrap() } else { net.train_step(x, labels, &mut sgd).unwrap() };
        };
        // The first step plans the workspace, creates the optimizer state and starts rayon's
        // threads (and each thread's packing buffers); from the second on, nothing is allocated.
        step(&mut net, &x, &labels);
        for i in 2..8 {
            let allocated = count(|| step(&mut net, &x, &labels));
            let last = ALLOCATIONS.load(Ordering::SeqCst);
            let sizes: Vec<usize> = (last - allocated..last).map(|k| SIZES[k % 64].load(Ordering::SeqCst)).collect();
            assert_eq!(allocated, 0, "{name}: train step {i} allocated {allocated} times: {sizes:?}");
        }
        // A smaller last batch reuses the planned buffers.
        let allocated = count(|| step(&mut net, &small, &labels[..37]));
        assert_eq!(allocated, 0, "{name}: a smaller batch allocated {allocated} times");
    }
}

/// A test transform: mirrors each image left to right, in place.
struct Mirror;

impl staticnet::data::transforms::Transform for Mirror {
    fn apply(&self, img: &mut staticnet::data::transforms::Image, _rng: &mut staticnet::data::transforms::ChaCha8Rng) -> staticnet::Result<()> {
        let w = img.width;
        img.data.chunks_exact_mut(w).for_each(|row| row.reverse());
        Ok(())
    }
}

/// A loader with worker threads and a transform, and the train steps on its batches, allocate
/// nothing once the buffers have circulated (the second epoch on), whether iterated with
/// `next()` or with `for (x, y) in &mut loader`.
fn loading_batches_with_workers_allocates_nothing_in_the_steady_state() {
    let values: Vec<f32> = (0..300 * 784).map(|i| (i % 251) as f32 / 251.0).collect();
    let data = staticnet::Dataset::<Images<1, 28, 28>>::new("synthetic", values, (0..300).map(|i| i % 10).collect(), 10).unwrap();
    let mut net = Net::new(&Cpu, 0).unwrap();
    let mut sgd = Sgd::new(0.01).momentum(0.9);
    let mut loader = data.loader(64).unwrap().shuffle(1).transform(Mirror).num_workers(2);
    for epoch in 0..4 {
        let allocated = count(|| {
            loader.start_epoch(epoch);
            if epoch % 2 == 0 {
                while let Some((x, y)) = loader.next().unwrap() {
                    net.train_step(x, y, &mut sgd).unwrap();
                }
            } else {
                for (x, y) in &mut loader {
                    net.train_step(&x, &y, &mut sgd).unwrap();
                }
                loader.finish().unwrap();
            }
        });
        if epoch >= 2 {
            let last = ALLOCATIONS.load(Ordering::SeqCst);
            let sizes: Vec<usize> = (last - allocated.min(64)..last).map(|k| SIZES[k % 64].load(Ordering::SeqCst)).collect();
            assert_eq!(allocated, 0, "epoch {epoch} allocated {allocated} times: {sizes:?}");
        }
    }
}
