//! PyTorch's `DataLoader`: batches of a [`Source`] (a data set in memory, or images decoded from
//! files as they are needed), in order or shuffled each epoch, transformed per sample, prepared
//! by worker threads while the network trains on the previous batch (`num_workers`, with
//! `prefetch_factor` batches in flight per worker, as PyTorch's defaults: 2).
//!
//! Batch buffers circulate between the loader, its workers and the caller, so that an epoch
//! allocates nothing once the first batches have been made (decoding an image file does
//! allocate, inside the `image` crate).

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::transforms::{Image, Transform, sample_rng};
use crate::batch::Batch;
use crate::{Error, Result};

/// Labelled samples that a [`DataLoader`] reads by index, typed by the sample shape `I` of the
/// network they feed.
pub trait Source<I: Batch>: Send + Sync {
    /// Where the samples come from, for messages (`"MNIST train"`, a folder).
    fn name(&self) -> &str;
    /// How many samples.
    fn len(&self) -> usize;
    /// No samples at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Labels are in `0..classes()`.
    fn classes(&self) -> usize;
    /// Every sample's label, in order.
    fn labels(&self) -> &[usize];
    /// Sample `i` (below `len()`) as an image, before any transform: `[C, H, W]` values (in
    /// [0, 1] for decoded images); a flat sample of `F` values is a 1 × 1 × F image.
    fn read(&self, i: usize, img: &mut Image) -> Result<()>;
    /// Sample `i`, untransformed, into `out` (`I::SAMPLE_LEN` values); `img` is scratch. The
    /// default reads the image and checks that it has the network's shape.
    fn read_into(&self, i: usize, img: &mut Image, out: &mut [f32]) -> Result<()> {
        self.read(i, img)?;
        copy_sample::<I>(img, out, || self.describe(i))
    }
    /// Sample `i` for a message: `"MNIST train: sample 7"`, or its file.
    fn describe(&self, i: usize) -> String {
        format!("{}: sample {i}", self.name())
    }
    /// A handle on the same samples that loader threads can keep (cheap: the samples are
    /// shared, not copied).
    fn shared(&self) -> Arc<dyn Source<I>>;
}

/// Copies a transformed image into a batch slot, if it has the network's shape; `what` names the
/// sample in the error.
pub(crate) fn copy_sample<I: Batch>(img: &Image, out: &mut [f32], what: impl FnOnce() -> String) -> Result<()> {
    let fits = match I::SHAPE {
        [c, h, w] => (img.channels, img.height, img.width) == (*c, *h, *w),
        _ => img.data.len() == I::SAMPLE_LEN,
    };
    if !fits || img.data.len() != out.len() {
        return Err(Error::bad_input(format!(
            "{} is {}×{}×{} after its transforms, but the network takes samples shaped {:?}; \
             add a Resize or CenterCrop to the transforms",
            what(),
            img.channels,
            img.height,
            img.width,
            I::SHAPE
        )));
    }
    out.copy_from_slice(&img.data);
    Ok(())
}

/// One batch on its way: which samples, and the buffers they are written to.
struct Work<I: Batch> {
    epoch: u64,
    batch: usize,
    indices: Vec<usize>,
    x: I,
    labels: Vec<usize>,
    result: Result<()>,
    /// Its batch and labels were handed to the caller: take buffers the caller gave back.
    shell: bool,
}

impl<I: Batch> Work<I> {
    fn empty(capacity: usize) -> Work<I> {
        Work { epoch: 0, batch: 0, indices: Vec::with_capacity(capacity), x: empty_batch(capacity), labels: Vec::with_capacity(capacity), result: Ok(()), shell: false }
    }
}

/// A batch of no samples with room for `capacity`.
fn empty_batch<I: Batch>(capacity: usize) -> I {
    I::from_vec(0, Vec::with_capacity(capacity * I::SAMPLE_LEN)).expect("an empty batch")
}

/// What a batch is made from, shared by the loader and its workers.
struct Recipe<I: Batch> {
    source: Arc<dyn Source<I>>,
    transform: Option<Arc<dyn Transform>>,
    seed: u64,
}

impl<I: Batch> Recipe<I> {
    /// Reads, transforms and copies the samples of `work` into its buffers.
    fn make(&self, work: &mut Work<I>, img: &mut Image) {
        work.result = self.fill(work, img);
    }

    fn fill(&self, work: &mut Work<I>, img: &mut Image) -> Result<()> {
        let source = &*self.source;
        let labels = source.labels();
        work.x.resize(work.indices.len());
        work.labels.clear();
        for (slot, &i) in work.x.as_mut_slice().chunks_exact_mut(I::SAMPLE_LEN).zip(&work.indices) {
            work.labels.push(labels[i]);
            match &self.transform {
                None => source.read_into(i, img, slot)?,
                Some(t) => {
                    source.read(i, img)?;
                    t.apply(img, &mut sample_rng(self.seed, work.epoch, i as u64))
                        .map_err(|e| Error::bad_input(format!("{}: {e}", source.describe(i))))?;
                    copy_sample::<I>(img, slot, || source.describe(i))?;
                }
            }
        }
        Ok(())
    }
}

/// A queue between threads: a mutex and a condition variable over a ring of reserved capacity.
/// (A std channel's blocking receive allocates the first time a thread blocks, at a moment no one
/// chooses; a condition variable never does.)
struct Queue<T> {
    items: Mutex<(VecDeque<T>, bool)>,
    ready: Condvar,
}

impl<T> Queue<T> {
    fn new(capacity: usize) -> Queue<T> {
        Queue { items: Mutex::new((VecDeque::with_capacity(capacity), false)), ready: Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<T>, bool)> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, item: T) {
        self.lock().0.push_back(item);
        self.ready.notify_one();
    }

    /// The next item, waiting for one; `None` once the queue is closed and empty.
    fn pop(&self) -> Option<T> {
        let mut items = self.lock();
        loop {
            if let Some(item) = items.0.pop_front() {
                return Some(item);
            }
            if items.1 {
                return None;
            }
            items = self.ready.wait(items).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        self.lock().1 = true;
        self.ready.notify_all();
    }
}

/// Worker threads and the queues to and from them.
struct Workers<I: Batch> {
    jobs: Arc<Queue<Work<I>>>,
    done: Arc<Queue<Work<I>>>,
    threads: Vec<JoinHandle<()>>,
    /// Batches sent and not yet received back.
    in_flight: usize,
    /// Batches allowed in flight.
    depth: usize,
}

impl<I: Batch + 'static> Workers<I> {
    fn start(count: usize, prefetch: usize, recipe: &Arc<Recipe<I>>) -> Workers<I> {
        let depth = count * prefetch.max(1);
        // At most `depth` batches are in flight: neither queue grows past its capacity.
        let (jobs, done) = (Arc::new(Queue::new(depth)), Arc::new(Queue::new(depth)));
        let threads = (0..count)
            .map(|_| {
                let (jobs, done, recipe) = (jobs.clone(), done.clone(), recipe.clone());
                std::thread::spawn(move || {
                    // Sized for a sample now, so that a worker first used late in a run does not
                    // allocate then.
                    let mut img = Image { data: Vec::with_capacity(I::SAMPLE_LEN), spare: Vec::with_capacity(I::SAMPLE_LEN), ..Image::default() };
                    while let Some(mut work) = jobs.pop() {
                        recipe.make(&mut work, &mut img);
                        done.push(work);
                    }
                })
            })
            .collect();
        Workers { jobs, done, threads, in_flight: 0, depth }
    }
}

impl<I: Batch> Drop for Workers<I> {
    fn drop(&mut self) {
        self.jobs.close(); // workers finish their batch, see the queue closed and end
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A batch or its labels, handed out by iterating over a loader; returned to the loader's
/// buffers when dropped. Reads as the batch (`&x` is a `&Images<…>`) or the labels.
pub struct Pooled<T: Send + 'static> {
    value: Option<T>,
    home: SyncSender<T>,
}

impl<T: Send + 'static> Deref for Pooled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for Pooled<T> {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            let _ = self.home.try_send(v);
        }
    }
}

/// One rank's share of every epoch (see [`DataLoader::shard`]).
#[derive(Clone, Copy, Debug)]
struct Shard {
    rank: usize,
    world_size: usize,
    pad: bool,
}

impl Shard {
    /// Reduces an epoch's order to positions `rank`, `rank + world_size`, … of it, padded first
    /// (if padding) to a multiple of `world_size` by repeating it from its start, as
    /// `DistributedSampler` does. Allocates only the first time the padding grows the order.
    fn take(&self, order: &mut Vec<usize>) {
        let n = order.len();
        let total = if self.pad { n.div_ceil(self.world_size) * self.world_size } else { n };
        for i in n..total {
            order.push(order[i % n]);
        }
        // Position `rank + j·world_size` moves to `j`, never forward: the compaction is in place.
        let mut kept = 0;
        for at in (self.rank..total).step_by(self.world_size) {
            order[kept] = order[at];
            kept += 1;
        }
        order.truncate(kept);
    }
}

/// How many handed-out buffers may wait to be reused.
const RETURNS: usize = 16;

/// Batches of a [`Source`] (PyTorch's `DataLoader`): in order, or in a new shuffled order each
/// epoch; the last batch holds what is left (`drop_last=False`).
///
/// ```text
/// let mut loader = train.loader(64)?.shuffle(0).transform(augment).num_workers(2);
/// loader.start_epoch(epoch);
/// for (x, y) in &mut loader {
///     model.train_step(&x, &y, &mut optimizer)?;
/// }
/// loader.finish()?; // an error that ended the epoch early (a corrupt file), if any
/// ```
pub struct DataLoader<I: Batch + 'static> {
    recipe: Arc<Recipe<I>>,
    batch_size: usize,
    shuffle: Option<u64>,
    /// Data-parallel training: this rank's share of each epoch's order.
    shard: Option<Shard>,
    num_workers: usize,
    prefetch: usize,
    order: Vec<usize>,
    epoch: u64,
    /// The next batch to hand out, and the next to start making.
    next: usize,
    submitted: usize,
    workers: Option<Workers<I>>,
    /// Batches that arrived before their turn.
    ready: Vec<Work<I>>,
    /// Idle buffers, and the batch `next()` lent out last.
    free: Vec<Work<I>>,
    current: Option<Work<I>>,
    /// Where handed-out batches come back to.
    returned_x: (SyncSender<I>, Receiver<I>),
    returned_labels: (SyncSender<Vec<usize>>, Receiver<Vec<usize>>),
    img: Image,
    /// An error that ended iteration, until `finish` reports it.
    error: Option<Error>,
}

impl<I: Batch + 'static> DataLoader<I> {
    /// Batches of `batch_size` from `source`, in order, made on the calling thread.
    pub fn new(source: &dyn Source<I>, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::bad_input(format!("{}: the batch size must be at least 1", source.name())));
        }
        Ok(DataLoader {
            recipe: Arc::new(Recipe { source: source.shared(), transform: None, seed: 0 }),
            batch_size,
            shuffle: None,
            shard: None,
            num_workers: 0,
            prefetch: 2,
            order: (0..source.len()).collect(),
            epoch: 0,
            next: 0,
            submitted: 0,
            workers: None,
            ready: Vec::new(),
            free: Vec::new(),
            current: None,
            returned_x: sync_channel(RETURNS),
            returned_labels: sync_channel(RETURNS),
            img: Image::default(),
            error: None,
        })
    }

    /// Shuffle every epoch, each epoch's order drawn from `seed` and the epoch number; the
    /// transforms' random parameters are drawn from the same seed.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = Some(seed);
        self.set_recipe(|r| r.seed = seed);
        self
    }

    /// Applies `transform` to every sample (`transform=` of a torchvision data set), with random
    /// parameters drawn from (seed, epoch, sample index).
    pub fn transform(mut self, transform: impl Transform + 'static) -> Self {
        self.set_recipe(|r| r.transform = Some(Arc::new(transform)));
        self
    }

    /// [`DataLoader::transform`] with a shared transform (or none).
    pub fn transform_shared(mut self, transform: Option<Arc<dyn Transform>>) -> Self {
        self.set_recipe(|r| r.transform = transform);
        self
    }

    /// Seeds the transforms' random parameters without shuffling (an evaluation loader).
    pub fn transform_seed(mut self, seed: u64) -> Self {
        self.set_recipe(|r| r.seed = seed);
        self
    }

    /// Data-parallel training: this loader makes rank `rank`'s share of every epoch, as
    /// `torch.utils.data.DistributedSampler(num_replicas=world_size, rank=rank)` with its default
    /// `drop_last=False`: the epoch's order (shuffled as a single process shuffles it) is padded
    /// to a multiple of `world_size` by repeating its first samples, and this rank takes positions
    /// `rank`, `rank + world_size`, … of it. Every rank then has the same number of samples, and
    /// the k-th batches of all ranks together are the k-th batch of one process whose batch is
    /// `world_size` times larger (the padding aside). An error if `rank` is not below
    /// `world_size`.
    pub fn shard(self, rank: usize, world_size: usize) -> Result<Self> {
        self.set_shard(Shard { rank, world_size, pad: true })
    }

    /// [`DataLoader::shard`] without the padding: rank `rank` takes samples `rank`,
    /// `rank + world_size`, … and the ranks' shares differ by one at most, so that each sample is
    /// seen once (for evaluation, whose sums are added across ranks).
    pub fn shard_unpadded(self, rank: usize, world_size: usize) -> Result<Self> {
        self.set_shard(Shard { rank, world_size, pad: false })
    }

    fn set_shard(mut self, shard: Shard) -> Result<Self> {
        if shard.rank >= shard.world_size {
            return Err(Error::bad_input(format!(
                "{}: rank {} of a world of {}: a rank is below the world size",
                self.recipe.source.name(),
                shard.rank,
                shard.world_size
            )));
        }
        self.shard = Some(shard);
        self.reset_order(0);
        Ok(self)
    }

    /// Makes batches on `n` worker threads while the caller uses the previous ones (0: on the
    /// calling thread, as PyTorch's `num_workers=0`).
    pub fn num_workers(mut self, n: usize) -> Self {
        self.num_workers = n;
        self.workers = None;
        self
    }

    /// Batches in flight per worker (PyTorch's `prefetch_factor`, 2 by default).
    pub fn prefetch_factor(mut self, batches: usize) -> Self {
        self.prefetch = batches.max(1);
        self.workers = None;
        self
    }

    fn set_recipe(&mut self, f: impl FnOnce(&mut Recipe<I>)) {
        self.workers = None; // they hold the old recipe
        let mut r = Recipe { source: self.recipe.source.clone(), transform: self.recipe.transform.clone(), seed: self.recipe.seed };
        f(&mut r);
        self.recipe = Arc::new(r);
    }

    /// Samples per batch (the last one may hold fewer).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch, the last one possibly smaller.
    pub fn batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    /// The bytes of batch buffers this loader keeps at most (batches in flight, ready, lent out,
    /// and each worker's image): what streaming costs besides the network.
    pub fn buffer_bytes(&self) -> usize {
        let batch = self.batch_size.min(self.order.len()) * (I::SAMPLE_LEN * 4 + 8);
        let in_flight = if self.num_workers == 0 { 0 } else { self.num_workers * self.prefetch };
        (in_flight + 2) * batch
    }

    /// Starts epoch `epoch` (from 0): rewinds, reshuffles if shuffling, and sets the workers to
    /// make its first batches.
    pub fn start_epoch(&mut self, epoch: u64) {
        self.reclaim();
        self.epoch = epoch;
        (self.next, self.submitted) = (0, 0);
        self.reset_order(epoch);
        if self.num_workers > 0 && self.workers.is_none() {
            self.workers = Some(Workers::start(self.num_workers, self.prefetch, &self.recipe));
        }
        self.submit();
    }

    /// Sets the order of epoch `epoch`: every sample, shuffled if shuffling, then this rank's
    /// share if sharded.
    fn reset_order(&mut self, epoch: u64) {
        self.order.clear();
        self.order.extend(0..self.recipe.source.len());
        if let Some(seed) = self.shuffle {
            self.order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        }
        if let Some(shard) = self.shard {
            shard.take(&mut self.order);
        }
    }

    /// Takes back every buffer from the workers, the ready list and the caller.
    fn reclaim(&mut self) {
        if let Some(w) = &mut self.workers {
            while w.in_flight > 0 {
                match w.done.pop() {
                    Some(work) => self.free.push(work),
                    None => break,
                }
                w.in_flight -= 1;
            }
        }
        self.free.append(&mut self.ready);
        self.free.extend(self.current.take());
    }

    /// An idle buffer: one never handed out, or the batch and labels the caller gave back, or
    /// (only while the buffers are first made, or when the caller keeps them) a new one.
    fn idle(&mut self) -> Work<I> {
        let capacity = self.batch_size.min(self.order.len());
        let mut work = self.free.pop().unwrap_or_else(|| Work::empty(capacity));
        if work.shell {
            work.x = self.returned_x.1.try_recv().unwrap_or_else(|_| empty_batch(capacity));
            work.labels = self.returned_labels.1.try_recv().unwrap_or_else(|_| Vec::with_capacity(capacity));
            work.shell = false;
        }
        work
    }

    /// The samples of batch `b` of this epoch.
    fn batch_indices(&self, b: usize) -> &[usize] {
        let start = b * self.batch_size;
        &self.order[start..start.saturating_add(self.batch_size).min(self.order.len())]
    }

    /// Sends batches to the workers while they have room.
    fn submit(&mut self) {
        let batches = self.batches();
        loop {
            let Some(w) = &self.workers else { return };
            if w.in_flight >= w.depth || self.submitted >= batches {
                return;
            }
            let mut work = self.idle();
            work.indices.clear();
            work.indices.extend_from_slice(self.batch_indices(self.submitted));
            (work.epoch, work.batch) = (self.epoch, self.submitted);
            let w = self.workers.as_mut().expect("checked above");
            w.jobs.push(work);
            w.in_flight += 1;
            self.submitted += 1;
        }
    }

    /// Batch `self.next`, made (on this thread, or received from the workers).
    fn take_next(&mut self) -> Result<Option<Work<I>>> {
        if self.next >= self.batches() {
            return Ok(None);
        }
        let mut work = if self.workers.is_some() {
            self.submit();
            loop {
                if let Some(at) = self.ready.iter().position(|w| w.batch == self.next) {
                    break self.ready.swap_remove(at);
                }
                let w = self.workers.as_mut().expect("checked above");
                let work = w.done.pop().ok_or_else(|| Error::bad_input(format!("{}: a data loader worker stopped", self.recipe.source.name())))?;
                w.in_flight -= 1;
                self.ready.push(work);
            }
        } else {
            let mut work = self.idle();
            work.indices.clear();
            work.indices.extend_from_slice(self.batch_indices(self.next));
            (work.epoch, work.batch) = (self.epoch, self.next);
            self.recipe.make(&mut work, &mut self.img);
            work
        };
        self.next += 1;
        if let Err(e) = std::mem::replace(&mut work.result, Ok(())) {
            self.free.push(work);
            return Err(e);
        }
        self.submit();
        Ok(Some(work))
    }

    /// The next batch of the epoch and its labels, or `None` at its end; an error if a sample
    /// could not be read (a corrupt image file) or transformed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(&I, &[usize])>> {
        self.free.extend(self.current.take());
        self.current = self.take_next()?;
        Ok(self.current.as_ref().map(|w| (&w.x, &w.labels[..])))
    }

    /// After iterating with `for (x, y) in &mut loader`: the error that ended the epoch early,
    /// if one did (a corrupt file, a transform that failed).
    pub fn finish(&mut self) -> Result<()> {
        self.error.take().map_or(Ok(()), Err)
    }
}

impl<I: Batch + 'static> Iterator for &mut DataLoader<I> {
    type Item = (Pooled<I>, Pooled<Vec<usize>>);

    /// The next batch and its labels, which go back to the loader's buffers when dropped. An
    /// error ends the iteration and waits in [`DataLoader::finish`].
    fn next(&mut self) -> Option<Self::Item> {
        match self.take_next() {
            Ok(Some(mut work)) => {
                // The batch and labels travel with the caller and come back when dropped; the
                // rest of the buffer stays here as a shell.
                let x = std::mem::replace(&mut work.x, I::from_vec(0, Vec::new()).expect("an empty batch"));
                let labels = std::mem::take(&mut work.labels);
                work.shell = true;
                self.free.push(work);
                Some((Pooled { value: Some(x), home: self.returned_x.0.clone() }, Pooled { value: Some(labels), home: self.returned_labels.0.clone() }))
            }
            Ok(None) => None,
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

impl<I: Batch + 'static> Drop for DataLoader<I> {
    fn drop(&mut self) {
        if let Some(e) = &self.error {
            eprintln!("warning: a data loader's epoch ended early on an error that was never checked with finish(): {e}");
        }
    }
}
