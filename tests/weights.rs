//! Weights in PyTorch's format, checkpoints that survive a crash, freezing and a new head on an
//! old backbone.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::nets::{CifarNet, ModelA, NetBn, NetSeq};
use common::{Fixture, assert_close};
use staticnet::prelude::*;
use staticnet::train::Checkpoint;
use staticnet::{Dataset, Trainer};

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("weights-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn state_dict_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/state_dicts/{name}.safetensors"))
}

/// Files written by `safetensors.torch.save_file(model.state_dict())` (see
/// scripts/make_state_dict_fixtures.py) load strictly and reproduce PyTorch's logits.
#[test]
fn pytorch_files_load_strictly_and_reproduce_the_logits() {
    fn check<N: Network>(name: &'static str, new: impl Fn(&Cpu, u64) -> staticnet::Result<N>)
    where
        N::Output: staticnet::Logits,
    {
        let mut net = new(&Cpu, 99).unwrap();
        let report = net.load(state_dict_fixture(name), true).unwrap();
        assert!(report.is_clean() && report.loaded == N::SPEC.tensors.len(), "{name}: {report}");
        let fx = Fixture::load(name);
        net.eval();
        let out = net.forward(&fx.input()).unwrap();
        assert_close(out.as_slice(), &fx.f32("logits_eval"), 1e-4, &format!("{name}: logits_eval"));
    }
    check("model_a", ModelA::new);
    check("net_bn", NetBn::new);
    check("cifar_net", CifarNet::new);
}

/// What staticnet writes is what PyTorch writes: the same names, dtypes (int64 counters),
/// shapes and values, so `load_state_dict(strict=True)` in PyTorch takes it (checked with
/// PyTorch by scripts/check_torch_load.py).
#[test]
fn staticnet_writes_the_state_dict_pytorch_writes() {
    let mut net = NetBn::new(&Cpu, 1).unwrap();
    net.load(state_dict_fixture("net_bn"), true).unwrap();
    let path = tmp("writes").join("net_bn.safetensors");
    net.save(&path).unwrap();
    let (ours, theirs) = (StateDict::load(&path).unwrap(), StateDict::load(state_dict_fixture("net_bn")).unwrap());
    let mut keys: Vec<&str> = ours.keys().collect();
    let mut want: Vec<&str> = theirs.keys().collect();
    keys.sort();
    want.sort();
    assert_eq!(keys, want);
    for k in keys {
        assert_eq!(ours.get(k), theirs.get(k), "{k}");
    }
    assert!(matches!(ours.get("features.3.num_batches_tracked"), Some(Tensor::I64(_))));
}

/// staticnet → file → staticnet is bit-identical, buffers and counters included.
#[test]
fn a_round_trip_is_bit_identical() {
    let mut net = NetBn::new(&Cpu, 3).unwrap();
    let x = Images::<1, 28, 28>::new(4, (0..4 * 784).map(|i| (i % 17) as f32 / 17.0).collect()).unwrap();
    for _ in 0..2 {
        net.train_step(&x, &[1, 2, 3, 4], &mut Adam::new(1e-2)).unwrap();
    }
    let path = tmp("round-trip").join("net.safetensors");
    net.save(&path).unwrap();
    let mut back = NetBn::new(&Cpu, 4).unwrap();
    back.load(&path, true).unwrap();
    assert_eq!(back.state_dict().unwrap(), net.state_dict().unwrap());
    assert_eq!(back.tensor("features.7.num_batches_tracked").unwrap(), Tensor::I64(staticnet::ndarray::arr0(2).into_dyn()));
}

/// Rewrites a safetensors file's JSON header with `edit` (keeping the data as it is).
fn edit_header(from: &Path, to: &Path, edit: impl Fn(String) -> String) {
    let bytes = std::fs::read(from).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = edit(String::from_utf8(bytes[8..8 + n].to_vec()).unwrap());
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(to, out).unwrap();
}

#[test]
fn bad_files_give_an_error_naming_file_and_tensor_and_change_nothing() {
    let dir = tmp("bad");
    let good = state_dict_fixture("model_a");
    let mut net = ModelA::new(&Cpu, 5).unwrap();
    let before = net.state_dict().unwrap();
    let mut check = |file: &str, strict: bool, expect: &[&str]| {
        let path = dir.join(file);
        let msg = net.load(&path, strict).err().unwrap_or_else(|| panic!("{file}: expected an error")).to_string();
        assert!(msg.contains(file), "{file}: the message names the file: {msg}");
        for e in expect {
            assert!(msg.contains(e), "{file}: expected `{e}` in: {msg}");
        }
        assert_eq!(net.state_dict().unwrap(), before, "{file}: the network changed");
    };

    std::fs::write(dir.join("not_safetensors.bin"), b"PK\x03\x04 this is a zip file, not safetensors").unwrap();
    check("not_safetensors.bin", true, &["not a valid safetensors file"]);

    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(dir.join("truncated.safetensors"), &bytes[..bytes.len() - 1000]).unwrap();
    check("truncated.safetensors", true, &["not a valid safetensors file"]);

    // The header claims fc1.bias ends past the data.
    edit_header(&good, &dir.join("lying_offsets.safetensors"), |h| {
        let at = h.find("\"fc1.bias\"").unwrap();
        let (head, tail) = h.split_at(at);
        let start = tail.find("\"data_offsets\":[").unwrap() + "\"data_offsets\":[".len();
        let end = start + tail[start..].find(']').unwrap();
        let first: u64 = tail[start..end].split(',').next().unwrap().parse().unwrap();
        format!("{head}{}{},{}{}", &tail[..start], first, first + 4_000_000, &tail[end..])
    });
    check("lying_offsets.safetensors", true, &["not a valid safetensors file", "fc1.bias"]);

    // cnn1.weight stored as int32: the right size, the wrong type.
    edit_header(&good, &dir.join("wrong_dtype.safetensors"), |h| {
        let at = h.find("\"cnn1.weight\"").unwrap();
        let (head, tail) = h.split_at(at);
        format!("{head}{}", tail.replacen("\"F32\"", "\"I32\"", 1))
    });
    check("wrong_dtype.safetensors", true, &["tensor `cnn1.weight` has dtype I32; staticnet reads float32 and int64"]);

    // A head of 5 classes under Model A's names.
    let mut sd = StateDict::load(&good).unwrap();
    let w = staticnet::ndarray::ArrayD::<f32>::zeros(staticnet::ndarray::IxDyn(&[5, 1568]));
    sd.insert("fc1.weight", Tensor::F32(w));
    sd.save(dir.join("wrong_shape.safetensors")).unwrap();
    check("wrong_shape.safetensors", true, &["size mismatch for fc1.weight: the file has shape [5, 1568], the network [10, 1568]"]);
    // ...which non-strict loading skips and reports instead.
    let report = net.load(dir.join("wrong_shape.safetensors"), false).unwrap();
    assert_eq!(report.mismatched.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(), ["fc1.weight"]);

    let mut sd = StateDict::load(&good).unwrap();
    sd.remove("fc1.bias");
    sd.insert("fc2.bias", Tensor::F32(staticnet::ndarray::ArrayD::zeros(staticnet::ndarray::IxDyn(&[10]))));
    sd.save(dir.join("missing_key.safetensors")).unwrap();
    let mut net = ModelA::new(&Cpu, 5).unwrap();
    let msg = net.load(dir.join("missing_key.safetensors"), true).err().unwrap().to_string();
    assert!(msg.contains("missing_key.safetensors") && msg.contains("missing keys: fc1.bias") && msg.contains("unexpected keys: fc2.bias"), "{msg}");
    assert_eq!(net.state_dict().unwrap(), before);

    let msg = net.load(dir.join("no_such_file.safetensors"), true).err().unwrap().to_string();
    assert!(msg.contains("no_such_file.safetensors") && msg.contains("No such file"), "{msg}");
}

network! {
    /// Model A's backbone with a 5-class head: the transfer-learning target.
    pub struct ModelA5 {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, kernel_size = 5, stride = 1, padding = 2),
        relu1: ReLU,
        maxpool1: MaxPool2d(2),
        cnn2: Conv2d(16, 32, kernel_size = 5, stride = 1, padding = 2),
        relu2: ReLU,
        maxpool2: MaxPool2d(2),
        Flatten,
        fc1: Linear(32 * 7 * 7, 5),
    }
}

/// The 82-byte file of the issue: a shape whose element count overflows 64 bits panicked in a
/// debug build (overflow checks); it is an error naming the tensor.
#[test]
fn a_shape_that_overflows_is_an_error_not_a_panic() {
    let dir = tmp("overflow");
    let path = dir.join("huge.safetensors");
    let header = br#"{"a":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    std::fs::write(&path, &bytes).unwrap();
    let msg = StateDict::load(&path).unwrap_err().to_string();
    assert!(msg.contains("tensor `a`: shape [2147483648, 2147483648] of F32 needs more bytes than the 0 of data the file holds"), "{msg}");
}

/// A new head on an old backbone: non-strict loading reports exactly the head's keys.
#[test]
fn a_new_head_loads_the_backbone_and_reports_the_head() {
    let mut net = ModelA5::new(&Cpu, 0).unwrap();
    let report = net.load(state_dict_fixture("model_a"), false).unwrap();
    let keys: Vec<&str> = report.mismatched.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["fc1.weight", "fc1.bias"]);
    assert!(report.missing_keys.is_empty() && report.unexpected_keys.is_empty());
    assert_eq!(report.loaded, 4);
    let backbone = StateDict::load(state_dict_fixture("model_a")).unwrap();
    assert_eq!(Some(&net.tensor("cnn2.weight").unwrap()), backbone.get("cnn2.weight"));
}

/// Frozen parameters get no gradient and no update; the others train; unfreezing resumes.
#[test]
fn frozen_parameters_stay_put() {
    let mut net = ModelA::new(&Cpu, 0).unwrap();
    let x = Images::<1, 28, 28>::new(8, (0..8 * 784).map(|i| (i % 23) as f32 / 23.0).collect()).unwrap();
    let labels = [0, 1, 2, 3, 4, 5, 6, 7];
    assert_eq!(net.freeze("cnn1").unwrap(), 2);
    assert_eq!(net.freeze("cnn2.weight").unwrap(), 1);
    let (cnn1, cnn2w, cnn2b, fc) = (net.parameter("cnn1.weight").unwrap(), net.parameter("cnn2.weight").unwrap(), net.parameter("cnn2.bias").unwrap(), net.parameter("fc1.weight").unwrap());
    let mut opt = Adam::new(1e-2);
    for _ in 0..3 {
        net.train_step(&x, &labels, &mut opt).unwrap();
    }
    assert_eq!(net.parameter("cnn1.weight").unwrap(), cnn1);
    assert_eq!(net.parameter("cnn2.weight").unwrap(), cnn2w);
    assert_ne!(net.parameter("cnn2.bias").unwrap(), cnn2b);
    assert_ne!(net.parameter("fc1.weight").unwrap(), fc);
    // The backward stopped before cnn1: it has no gradient at all.
    assert!(net.grad("cnn1.weight").unwrap().iter().all(|&g| g == 0.0));
    net.unfreeze("").unwrap();
    net.train_step(&x, &labels, &mut opt).unwrap();
    assert_ne!(net.parameter("cnn1.weight").unwrap(), cnn1);
}

network! {
    /// Small, with batch-norm and dropout, so that a checkpoint must carry running statistics,
    /// counters and the dropout RNG.
    pub struct Small {
        input: [1, 6, 6],
        conv: Conv2d(1, 4, 3, padding = 1), bn: BatchNorm2d(4), ReLU, MaxPool2d(2),
        Flatten,
        drop: Dropout(0.3),
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

/// Stopping after 2 epochs and resuming from the checkpoint ends exactly where an uninterrupted
/// 5-epoch run ends: same weights, statistics, optimizer moments and history.
#[test]
fn resuming_from_a_checkpoint_continues_the_run_exactly() {
    let dir = tmp("resume");
    let (train, val) = quadrants(120).split(100, 0).unwrap();
    let trainer = |epochs: usize| Trainer::new(epochs).batch_size(10).seed(7).early_stopping(10).progress(false).verbose(false);

    let mut whole = Small::new(&Cpu, 11).unwrap();
    let mut opt = Adam::new(1e-2);
    let h_whole = trainer(5).checkpoint(dir.join("whole.ckpt")).fit(&mut whole, &mut opt, &train, Some(&val)).unwrap();

    let mut first = Small::new(&Cpu, 11).unwrap();
    trainer(2).checkpoint(dir.join("part.ckpt")).fit(&mut first, &mut Adam::new(1e-2), &train, Some(&val)).unwrap();
    // A new process would start from scratch: another seed, a fresh optimizer.
    let mut resumed = Small::new(&Cpu, 12345).unwrap();
    let mut opt2 = Adam::new(1e-2);
    let h_resumed = trainer(5).resume(dir.join("part.ckpt")).checkpoint(dir.join("part.ckpt")).fit(&mut resumed, &mut opt2, &train, Some(&val)).unwrap();

    assert_eq!(resumed.state_dict().unwrap(), whole.state_dict().unwrap());
    assert_eq!(opt2.state_dict(&Cpu).unwrap(), opt.state_dict(&Cpu).unwrap());
    let curve = |h: &staticnet::History| h.epochs.iter().map(|e| (e.epoch, e.train_loss, e.val_loss)).collect::<Vec<_>>();
    assert_eq!(curve(&h_resumed), curve(&h_whole));
    let ck = Checkpoint::load(dir.join("part.ckpt")).unwrap();
    assert_eq!((ck.epoch, ck.network.as_str(), ck.optimizer_kind.as_str()), (5, "Small", "Adam"));

    // A checkpoint refuses another network or another optimizer.
    let mut other = NetBn::new(&Cpu, 0).unwrap();
    let msg = Trainer::new(1).resume(dir.join("part.ckpt")).verbose(false).fit(&mut other, &mut Adam::new(1e-3), &Dataset::new("x", vec![0.0; 2 * 784], vec![0, 1], 10).unwrap(), None).err().unwrap().to_string();
    assert!(msg.contains("a checkpoint of Small, not of NetBn"), "{msg}");
    let msg = trainer(6).resume(dir.join("part.ckpt")).fit(&mut resumed, &mut Sgd::new(0.1), &train, Some(&val)).err().unwrap().to_string();
    assert!(msg.contains("a checkpoint of a run with Adam, not SGD"), "{msg}");
}

/// Kills a process that writes checkpoints in a loop, many times at random moments: the file
/// on disk always loads, whole.
#[test]
fn killing_a_checkpoint_writer_never_leaves_a_broken_file() {
    use std::io::BufRead;
    let dir = tmp("kill");
    let path = dir.join("run.ckpt");
    write_checkpoints(&path, 1); // so that a checkpoint exists before the first kill
    // Random moments, from a seed printed with any failure so that it can be replayed.
    let seed = std::env::var("STATICNET_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    let mut rng = seed;
    let mut last_epoch = 1;
    // Killed writes leave their temporary files behind (named by the writer's pid): the sign
    // that a kill did land mid-write.
    let torn = || std::fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".run.ckpt.tmp")).count();
    // At least 12 kills; more while none has yet landed mid-write or after a second checkpoint
    // (a write is a small part of the writer's loop, so 12 random moments can all miss it).
    for i in 0..60 {
        if i >= 12 && last_epoch > 1 && torn() > 0 {
            break;
        }
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "checkpoint_writer_process", "--ignored", "--nocapture", "--test-threads=1"])
            .env("STATICNET_CHECKPOINT_WRITER", &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the child's first finished checkpoint (however slow the machine), then kill
        // it somewhere in the next two or so: it writes continuously, so the kill interrupts a
        // write at a random stage.
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.any(|l| l.is_ok_and(|l| l.starts_with("saved"))), "kill {i}: the writer never saved (seed {seed})");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let period_ms = 150;
        std::thread::sleep(Duration::from_millis(rng % (2 * period_ms)));
        child.kill().unwrap();
        child.wait().unwrap();
        let ck = Checkpoint::load(&path).unwrap_or_else(|e| panic!("after kill {i} (seed {seed}): {e}"));
        assert!(ck.epoch >= 1 && ck.model.len() == NetSeq::<Cpu>::SPEC.tensors.len());
        last_epoch = last_epoch.max(ck.epoch);
    }
    assert!(last_epoch > 1, "no child ever finished a second checkpoint: the test did not exercise overwriting (seed {seed})");
    assert!(torn() > 0, "no kill interrupted a write (seed {seed})");
    // The next run that checkpoints there removes what the killed writers left.
    let mut net = NetSeq::new(&Cpu, 0).unwrap();
    let data = Dataset::new("zeros", vec![0.0; 2 * 784], vec![0, 1], 10).unwrap();
    Trainer::new(1).batch_size(2).progress(false).verbose(false).checkpoint(&path).fit(&mut net, &mut Sgd::new(0.0), &data, None).unwrap();
    assert_eq!(torn(), 0, "temporary files were left after a new run started (seed {seed})");
}

/// Writes checkpoints of a 4-million-parameter network (about 33 MB each) forever, or `count`
/// times.
fn write_checkpoints(path: &Path, count: usize) {
    let mut net = NetSeq::new(&Cpu, 0).unwrap();
    let sgd = Sgd::<Cpu>::new(0.1).momentum(0.9);
    let optimizer = sgd.state_dict(&Cpu).unwrap();
    let mut history = staticnet::History::default();
    for epoch in 1..=count {
        // A checkpoint's history has a row per epoch (Checkpoint::load checks that).
        history.epochs.push(staticnet::train::EpochStats { epoch, train_loss: 1.0, train_accuracy: 0.5, val_loss: None, val_accuracy: None, lr: 0.1, seconds: 1.0 });
        let x = Images::<1, 28, 28>::zeros(2);
        net.train_step(&x, &[0, 1], &mut Sgd::new(0.0)).unwrap();
        let ck = Checkpoint {
            network: "NetSeq".into(),
            epoch,
            model: net.state_dict().unwrap(),
            optimizer_kind: "SGD".into(),
            optimizer: optimizer.clone(),
            base_lr: 0.1,
            seed: 0,
            rng: net.state().rng_state(),
            history: history.clone(),
            best: None,
            world_size: 1,
        };
        ck.save(path).unwrap();
        // The kill test waits for this line before it picks its moment.
        println!("saved {epoch}");
    }
}

/// The process `killing_a_checkpoint_writer_never_leaves_a_broken_file` kills.
#[test]
#[ignore = "a helper process of killing_a_checkpoint_writer_never_leaves_a_broken_file, not a test of its own"]
fn checkpoint_writer_process() {
    let path = std::env::var_os("STATICNET_CHECKPOINT_WRITER").expect("run by the kill test");
    write_checkpoints(Path::new(&path), usize::MAX);
}
