//! A seeded, bounded mutation test of every file loader: state dicts (safetensors), checkpoints,
//! MNIST's IDX files (plain and gzipped) and CIFAR-10's binary files. Real files of each kind are
//! mutated thousands of times (bit flips, truncation, header edits: lying offsets and lengths,
//! huge shapes and dimensions, wrong dtypes, duplicate keys, bad magic numbers, corrupt and
//! multi-member gzip, decompression bombs) and loaded, in the dev profile so that overflow checks
//! are on. Every case must end in `Ok` or an error, never a panic; allocate at most a bound
//! proportional to what the file really holds (a counting allocator measures the peak); and a
//! load that fails must leave the network and optimizer as they were.
//!
//! `STATICNET_FUZZ_SEED=N` replays a run; `STATICNET_FUZZ_CASES=N` sets the cases per loader.
//! Each loader prints its case count, refusals and peak allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use staticnet::data::cifar10::Cifar10;
use staticnet::data::mnist;
use staticnet::prelude::*;
use staticnet::train::Checkpoint;
use staticnet::{Dataset, Trainer};

// ---- a counting allocator: the bytes live now, and the most since the last reset ----

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::SeqCst) + size;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

// SAFETY: forwards to the system allocator, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The loaders run one at a time, so that the peak of one is not another's.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` and returns its result with the most bytes it had allocated at once.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}

// ---- seeded randomness ----

fn seed() -> u64 {
    std::env::var("STATICNET_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    })
}

fn cases(default: usize) -> usize {
    std::env::var("STATICNET_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Numbers that break arithmetic: zero, one, powers of two at the edges of u32/i64/u64, and a
/// number too long for any integer type.
const INTERESTING: [&str; 12] = [
    "0",
    "1",
    "7",
    "255",
    "65536",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "340282366920938463463374607431768211456",
];

// ---- mutations of any bytes ----

/// One to three blind mutations: bit flips, random or extreme bytes and words, truncation,
/// appended junk, a range duplicated or removed.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let mut done = Vec::new();
    for _ in 0..1 + rng.below(3) {
        if bytes.is_empty() {
            bytes.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(bytes.len());
        match rng.below(7) {
            0 => {
                bytes[at] ^= 1 << rng.below(8);
                done.push(format!("flip@{at}"));
            }
            1 => {
                let random = rng.next() as u8;
                bytes[at] = *rng.pick(&[0, 0xff, 0x7f, 0x80, random]);
                done.push(format!("byte@{at}"));
            }
            2 => {
                let random = rng.next();
                let word = *rng.pick(&[0u64, u64::MAX, 1 << 31, 1 << 32, 1 << 63, i64::MAX as u64, random]);
                let le = rng.below(2) == 0;
                let b = if le { word.to_le_bytes() } else { word.to_be_bytes() };
                let n = (*rng.pick(&[4usize, 8])).min(bytes.len() - at);
                bytes[at..at + n].copy_from_slice(if le { &b[..n] } else { &b[8 - n..] });
                done.push(format!("word@{at}"));
            }
            3 => {
                bytes.truncate(at);
                done.push(format!("truncate@{at}"));
            }
            4 => {
                let n = 1 + rng.below(64);
                bytes.extend((0..n).map(|_| rng.next() as u8));
                done.push(format!("append{n}"));
            }
            5 => {
                let end = (at + 1 + rng.below(256)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.below(bytes.len());
                bytes.splice(to..to, copy);
                done.push(format!("dup{at}..{end}"));
            }
            _ => {
                let end = (at + 1 + rng.below(256)).min(bytes.len());
                bytes.drain(at..end);
                done.push(format!("cut{at}..{end}"));
            }
        }
    }
    done.join(",")
}

// ---- safetensors header edits (state dicts and checkpoints) ----

/// The JSON header of a safetensors file and the bytes after it, if it has a readable header.
fn split_safetensors(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = String::from_utf8(bytes.get(8..8usize.checked_add(n)?)?.to_vec()).ok()?;
    Some((header, bytes[8 + n..].to_vec()))
}

/// Reassembles a safetensors file; with `lie`, the length prefix is off.
fn join_safetensors(header: &str, data: &[u8], lie: i64) -> Vec<u8> {
    let n = (header.len() as i64 + lie).max(0) as u64;
    let mut out = n.to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Byte ranges of the runs of digits in `s`.
fn numbers(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

/// A mutation of the header's text: a number (a shape, an offset, a metadata value such as the
/// epoch or the RNG step) replaced by an extreme one, a dtype swapped, a tensor entry repeated
/// (a duplicate key), a key renamed, a negative number, or the length prefix made to lie.
fn mutate_safetensors(rng: &mut Rng, bytes: &[u8]) -> (Vec<u8>, String) {
    let nums = split_safetensors(bytes).map(|(h, _)| numbers(&h)).unwrap_or_default();
    let (Some((mut header, data)), false) = (split_safetensors(bytes), nums.is_empty()) else {
        // An earlier edit left no header to edit: mutate blindly.
        let mut b = bytes.to_vec();
        let what = mutate_bytes(rng, &mut b);
        return (b, what);
    };
    let mut lie = 0;
    let what = match rng.below(7) {
        0 | 1 => {
            let (s, e) = *rng.pick(&nums);
            let new = *rng.pick(&INTERESTING);
            header.replace_range(s..e, new);
            format!("number@{s}={new}")
        }
        2 => {
            let dtypes = ["\"F16\"", "\"BF16\"", "\"I32\"", "\"U8\"", "\"F64\"", "\"I64\"", "\"F32\"", "\"XYZ\"", "7"];
            let found: Vec<usize> = header.match_indices("\"F32\"").map(|(i, _)| i).chain(header.match_indices("\"I64\"").map(|(i, _)| i)).collect();
            if found.is_empty() {
                return (bytes.to_vec(), "nothing".into());
            }
            let at = *rng.pick(&found);
            let new = *rng.pick(&dtypes);
            header.replace_range(at..at + 5, new);
            format!("dtype@{at}={new}")
        }
        3 => {
            // Repeat the first tensor entry: `{"a":{...},` becomes `{"a":{...},"a":{...},`.
            let Some(end) = header.find("},").map(|i| i + 2) else { return (bytes.to_vec(), "nothing".into()) };
            let entry = header[1..end].to_string();
            header.insert_str(end, &entry);
            "duplicate key".into()
        }
        4 => {
            let (s, _) = *rng.pick(&nums);
            header.insert(s, '-');
            format!("negative@{s}")
        }
        5 => {
            lie = *rng.pick(&[-1i64, 1, -8, 8, 1 << 20, -(header.len() as i64)]);
            format!("length prefix {lie:+}")
        }
        _ => {
            let quotes: Vec<usize> = header.match_indices('"').map(|(i, _)| i).collect();
            let Some(&quote) = quotes.get(rng.below(quotes.len())) else { return (bytes.to_vec(), "nothing".into()) };
            let at = quote + 1;
            header.insert(at, 'x');
            format!("rename@{at}")
        }
    };
    (join_safetensors(&header, &data, lie), what)
}

/// A mutation of a safetensors file: most edit the header, some the bytes blindly.
fn mutate_any_safetensors(rng: &mut Rng, original: &[u8]) -> (Vec<u8>, String) {
    if rng.below(3) == 0 {
        let mut b = original.to_vec();
        let what = mutate_bytes(rng, &mut b);
        (b, what)
    } else {
        let (mut b, mut what) = mutate_safetensors(rng, original);
        if rng.below(4) == 0 {
            // Two header edits at once.
            let (b2, w2) = mutate_safetensors(rng, &b);
            (b, what) = (b2, format!("{what} + {w2}"));
        }
        (b, what)
    }
}

// ---- the harness ----

/// What one loader's run found.
#[derive(Default)]
struct Tally {
    cases: usize,
    refused: usize,
    peak: usize,
    failures: Vec<String>,
}

impl Tally {
    /// Runs one case: `load` must not panic, must stay under `bound` bytes, and returns whether
    /// it loaded (`Ok(true)`), refused (`Ok(false)`), or broke a rule (`Err`).
    fn case(&mut self, label: String, bound: usize, load: impl FnOnce() -> Result<bool, String>) {
        self.cases += 1;
        let (outcome, peak) = peak_of(|| catch_unwind(AssertUnwindSafe(load)));
        self.peak = self.peak.max(peak);
        match outcome {
            Err(_) => self.failures.push(format!("{label}: panicked")),
            Ok(Err(rule)) => self.failures.push(format!("{label}: {rule}")),
            Ok(Ok(loaded)) => self.refused += usize::from(!loaded),
        }
        if peak > bound {
            self.failures.push(format!("{label}: allocated {peak} bytes at once, more than the bound {bound}"));
        }
    }

    fn report(self, loader: &str, seed: u64, bound: &str) {
        let line = format!(
            "fuzz {loader}: {} cases, {} refused, {} panics or broken rules, peak allocation {:.2} MiB ({bound}); seed {seed}\n",
            self.cases,
            self.refused,
            self.failures.len(),
            self.peak as f64 / (1 << 20) as f64
        );
        // Straight to stderr, past the test harness's capture, so that CI's log shows it.
        let _ = std::io::stderr().write_all(line.as_bytes());
        assert!(self.failures.is_empty(), "fuzz {loader} (replay with STATICNET_FUZZ_SEED={seed}): {} failures, the first ones:\n{}", self.failures.len(), self.failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n"));
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const MIB: usize = 1 << 20;

// ---- state dicts ----

network! {
    /// The batch-normalization exercise, whose PyTorch state dict is a fixture.
    pub struct NetBn {
        input: [1, 28, 28],
        features: [
            Conv2d(1, 10, 3, stride = 1, padding = 1), MaxPool2d(2, 2), ReLU, BatchNorm2d(10),
            Conv2d(10, 20, 3, stride = 1, padding = 1), MaxPool2d(2, 2), ReLU, BatchNorm2d(20),
        ],
        Flatten,
        fc: Linear(7 * 7 * 20, 10),
    }
}

/// The state dict PyTorch wrote for NetBn, mutated, loaded into a network strictly and not.
#[test]
fn state_dicts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = seed();
    let mut rng = Rng(seed);
    let original = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state_dicts/net_bn.safetensors")).unwrap();
    let dir = tmp("state-dict");
    let path = dir.join("net.safetensors");
    let mut net = NetBn::new(&Cpu, 0).unwrap();
    let before = net.state_dict().unwrap();
    let mut tally = Tally::default();
    for i in 0..cases(3000) {
        let (bytes, what) = mutate_any_safetensors(&mut rng, &original);
        let bound = 8 * bytes.len() + MIB;
        std::fs::write(&path, &bytes).unwrap();
        let strict = i % 2 == 0;
        tally.case(format!("case {i} ({what})"), bound, || match net.load(&path, strict) {
            Ok(_) => {
                // Loaded: put the original weights back for the next case.
                net.load_state_dict(&before, true).map_err(|e| e.to_string())?;
                Ok(true)
            }
            Err(e) => {
                if !e.to_string().starts_with(&path.display().to_string()) {
                    return Err(format!("the error does not name the file: {e}"));
                }
                if net.state_dict().map_err(|e| e.to_string())? != before {
                    return Err(format!("a failed load changed the network ({e})"));
                }
                Ok(false)
            }
        });
    }
    tally.report("state dict", seed, "bound 8 × the file + 1 MiB");
}

// ---- checkpoints ----

network! {
    pub struct Tiny {
        input: [1, 6, 6],
        conv: Conv2d(1, 4, 3, padding = 1), ReLU, MaxPool2d(2),
        bn: BatchNorm2d(4),
        Flatten,
        fc: Linear(4 * 3 * 3, 4),
    }
}

fn quadrants(n: usize) -> Dataset<Images<1, 6, 6>> {
    let mut values = vec![0.05f32; n * 36];
    let mut labels = Vec::new();
    for i in 0..n {
        let (y, x) = ((i * 7) % 6, (i * 11 + i / 6) % 6);
        values[i * 36 + y * 6 + x] = 1.0;
        labels.push((y / 3) * 2 + x / 3);
    }
    Dataset::new("quadrants", values, labels, 4).unwrap()
}

/// A checkpoint of a 2-epoch Adam run with early stopping, mutated, resumed by a trainer that
/// has nothing left to train (so a case costs a load, not an epoch).
#[test]
fn checkpoints() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = seed();
    let mut rng = Rng(seed);
    let dir = tmp("checkpoint");
    let good = dir.join("good.ckpt");
    let (train, val) = quadrants(24).split(20, 0).unwrap();
    let trainer = |epochs: usize| Trainer::new(epochs).batch_size(10).early_stopping(3).progress(false).verbose(false);
    trainer(2).checkpoint(&good).fit(&mut Tiny::new(&Cpu, 1).unwrap(), &mut Adam::new(1e-2), &train, Some(&val)).unwrap();
    let original = std::fs::read(&good).unwrap();
    Checkpoint::load(&good).expect("the unmutated checkpoint loads");
    let path = dir.join("run.ckpt");
    let mut tally = Tally::default();
    for i in 0..cases(2000) {
        let (bytes, what) = mutate_any_safetensors(&mut rng, &original);
        let bound = 16 * bytes.len() + MIB;
        std::fs::write(&path, &bytes).unwrap();
        let mut net = Tiny::new(&Cpu, 5).unwrap();
        let mut opt = Adam::new(1e-2);
        let before = (net.state_dict().unwrap(), opt.state_dict(&Cpu).unwrap());
        tally.case(format!("case {i} ({what})"), bound, || match trainer(0).resume(&path).fit(&mut net, &mut opt, &train, Some(&val)) {
            Ok(_) => Ok(true),
            Err(e) => {
                let after = (net.state_dict().map_err(|e| e.to_string())?, opt.state_dict(&Cpu).map_err(|e| e.to_string())?);
                if after != before {
                    return Err(format!("a refused checkpoint changed the network or optimizer ({e})"));
                }
                Ok(false)
            }
        });
    }
    tally.report("checkpoint", seed, "bound 16 × the file + 1 MiB");
}

// ---- IDX, plain and gzipped ----

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The first `n` test images and labels of the bundled MNIST, as plain IDX files.
fn idx_files(n: usize) -> (Vec<u8>, Vec<u8>) {
    use std::io::Read;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k");
    let read = |name: &str| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(dir.join(name)).unwrap()).read_to_end(&mut out).unwrap();
        out
    };
    let (mut images, mut labels) = (read("t10k-images-idx3-ubyte.gz"), read("t10k-labels-idx1-ubyte.gz"));
    images.truncate(16 + n * 784);
    images[4..8].copy_from_slice(&(n as u32).to_be_bytes());
    labels.truncate(8 + n);
    labels[4..8].copy_from_slice(&(n as u32).to_be_bytes());
    (images, labels)
}

/// An IDX mutation: the header's magic, type or dimensions edited (huge, zero, off by one), or
/// blind byte mutations.
fn mutate_idx(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let header = if bytes.len() >= 16 && bytes[3] == 3 { 16 } else { 8 };
    match rng.below(3) {
        0 if bytes.len() >= header => {
            let field = rng.below(header / 4);
            let random = rng.next() as u32;
            let value = *rng.pick(&[0u32, 1, 28, 2049, 2051, u32::MAX, 1 << 31, 1 << 24, random]);
            bytes[4 * field..4 * field + 4].copy_from_slice(&value.to_be_bytes());
            format!("header field {field} = {value}")
        }
        _ => mutate_bytes(rng, bytes),
    }
}

/// `bytes` as a gzip stream of several members (valid, as Python's gzip reads them).
fn multi_member(bytes: &[u8], parts: usize) -> Vec<u8> {
    let step = bytes.len().div_ceil(parts.max(1)).max(1);
    bytes.chunks(step).flat_map(gzip).collect()
}

/// MNIST's reader on mutated image or label files, each plain, gzipped, multi-member gzipped,
/// or a corrupted gzip stream; and gzip bombs.
#[test]
fn idx_files_plain_and_gzipped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = seed();
    let mut rng = Rng(seed);
    let (images, labels) = idx_files(20);
    let dir = tmp("idx");
    let write = |name: &str, bytes: &[u8], gz: bool| {
        for stale in [name.to_string(), format!("{name}.gz")] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        std::fs::write(dir.join(if gz { format!("{name}.gz") } else { name.to_string() }), bytes).unwrap();
    };
    // Valid files load, in every encoding.
    for (form, bytes) in [("plain", images.clone()), ("gzip", gzip(&images)), ("3 members", multi_member(&images, 3))] {
        write("t10k-images-idx3-ubyte", &bytes, form != "plain");
        write("t10k-labels-idx1-ubyte", &labels, false);
        let data = mnist::load_split(&dir, "t10k", "MNIST test").unwrap_or_else(|e| panic!("{form}: {e}"));
        assert_eq!(data.len(), 20, "{form}");
    }
    let mut tally = Tally::default();
    for i in 0..cases(3000) {
        let images_file = rng.below(2) == 0;
        let mut content = if images_file { images.clone() } else { labels.clone() };
        let mut what = mutate_idx(&mut rng, &mut content);
        // The loader holds at most the content (4 bytes a pixel, 8 a label), twice over while a
        // vector grows: the bound follows what the file holds, whatever its header claims.
        let bound = 24 * content.len() + MIB;
        let (bytes, gz) = match rng.below(4) {
            0 => (content, false),
            1 => (gzip(&content), true),
            2 => (multi_member(&content, 2 + rng.below(3)), true),
            _ => {
                let mut z = gzip(&content);
                what += &format!(" + gzip {}", mutate_bytes(&mut rng, &mut z));
                (z, true)
            }
        };
        let (name, other, other_bytes) = if images_file {
            ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", &labels)
        } else {
            ("t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte", &images)
        };
        write(name, &bytes, gz);
        write(other, other_bytes, false);
        tally.case(format!("case {i} ({name}, {what}, gzip {gz})"), bound, || match mnist::load_split(&dir, "t10k", "MNIST test") {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains(name) => Ok(false),
            Err(e) => Err(format!("the error does not name {name}: {e}")),
        });
    }
    tally.report("IDX", seed, "bound 24 × the decompressed content + 1 MiB");

    // Gzip bombs: 32 MiB of zeros in 32 members of 1 MiB (about 32 KiB on disk), after a wrong
    // magic number, or after a header that announces far more images than follow. The first
    // must be refused after its header; the second costs what the file really holds.
    let mut tally = Tally::default();
    let zeros = gzip(&vec![0u8; MIB]);
    for (what, header, bound) in [
        ("a wrong magic number", [0u32, 0x0803, 0, 0], MIB),
        ("2^30 images announced", [0x0803, 1 << 30, 28, 28], 24 * 32 * MIB),
    ] {
        let mut bomb = gzip(&header.iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>());
        for _ in 0..32 {
            bomb.extend_from_slice(&zeros);
        }
        write("t10k-images-idx3-ubyte", &bomb, true);
        write("t10k-labels-idx1-ubyte", &labels, false);
        tally.case(format!("bomb after {what}"), bound, || match mnist::load_split(&dir, "t10k", "MNIST test") {
            Ok(_) => Err("a bomb loaded".into()),
            Err(e) if e.to_string().contains("t10k-images-idx3-ubyte.gz") => Ok(false),
            Err(e) => Err(format!("the error does not name the file: {e}")),
        });
    }
    tally.report("IDX gzip bombs", seed, "bounds 1 MiB after a wrong magic, 24 × the 32 MiB content");
}

// ---- CIFAR-10 ----

/// CIFAR-10's reader on six small binary files, one of them mutated.
#[test]
fn cifar10_files() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = seed();
    let mut rng = Rng(seed);
    let dir = tmp("cifar");
    let names = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"];
    let record = |r: usize| -> Vec<u8> { std::iter::once((r % 10) as u8).chain((0..3072).map(|p| ((p * 7 + r * 13) % 256) as u8)).collect() };
    let file: Vec<u8> = (0..3).flat_map(record).collect();
    let write_all = || {
        for name in names {
            std::fs::write(dir.join(name), &file).unwrap();
        }
    };
    write_all();
    assert_eq!(Cifar10::load(&dir).unwrap().train.len(), 15);
    let mut tally = Tally::default();
    for i in 0..cases(2000) {
        let name = *rng.pick(&names);
        let mut bytes = file.clone();
        let what = if rng.below(3) == 0 {
            let r = rng.below(3);
            bytes[r * 3073] = *rng.pick(&[10u8, 255, 128]);
            format!("label of record {r}")
        } else {
            mutate_bytes(&mut rng, &mut bytes)
        };
        let bound = 16 * 6 * bytes.len().max(file.len()) + MIB;
        std::fs::write(dir.join(name), &bytes).unwrap();
        tally.case(format!("case {i} ({name}, {what})"), bound, || match Cifar10::load(&dir) {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains(name) => Ok(false),
            Err(e) => Err(format!("the error does not name {name}: {e}")),
        });
        std::fs::write(dir.join(name), &file).unwrap();
    }
    tally.report("CIFAR-10", seed, "bound 16 × the six files + 1 MiB");
}
