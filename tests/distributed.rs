//! Data-parallel training under `mpirun -np 2` (feature `mpi`; OpenMPI's `mpirun` on the PATH).
//!
//! Each test starts `mpirun` on this test binary, whose ignored `mpi_worker` test is the program
//! every rank runs (`STATICNET_DIST_MODE` says what it does), and compares what the ranks print
//! with a single process computed here: `cargo test --features mpi --test distributed`.
#![cfg(feature = "mpi")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use staticnet::distributed::{Collective, Mpi, fingerprint};
use staticnet::prelude::*;
use staticnet::{Dataset, Trainer, evaluate};

network! {
    /// A small convolutional classifier: what the course's Model A is, at 12 × 12.
    pub struct Small {
        input: [1, 12, 12],
        conv: Conv2d(1, 6, kernel_size = 3, padding = 1),
        relu: ReLU,
        pool: MaxPool2d(2),
        Flatten,
        fc: Linear(6 * 6 * 6, 4),
    }
}

network! {
    /// The same with batch norm and dropout, whose statistics and masks are per rank.
    pub struct SmallBn {
        input: [1, 12, 12],
        conv: Conv2d(1, 6, kernel_size = 3, padding = 1),
        bn: BatchNorm2d(6),
        relu: ReLU,
        pool: MaxPool2d(2),
        Flatten,
        drop: Dropout(0.2),
        fc: Linear(6 * 6 * 6, 4),
    }
}

/// Per-rank batch; one process runs with twice it.
const BATCH: usize = 20;
/// 250 samples: an even number (no padding with 2 ranks), and not a multiple of 40, so that the
/// last batch of an epoch is smaller (10 samples, 5 per rank).
const TRAIN: usize = 250;

/// Images whose class is the quadrant holding the brightest pixel, with noise: learnable, never
/// all zero, the same in every process.
fn data(n: usize, seed: u64) -> Dataset<Images<1, 12, 12>> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f32) / (1u64 << 31) as f32
    };
    let (mut values, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let class = i % 4;
        let (r0, c0) = ((class / 2) * 6, (class % 2) * 6);
        let (r, c) = (r0 + (next() * 6.0) as usize % 6, c0 + (next() * 6.0) as usize % 6);
        for p in 0..144 {
            let v = 0.3 * next() + if p == r * 12 + c { 2.0 } else { 0.0 };
            values.push(v);
        }
        labels.push(class);
    }
    Dataset::new("synthetic quadrants", values, labels, 4).unwrap()
}

fn trainer(epochs: usize, batch: usize) -> Trainer {
    Trainer::new(epochs).batch_size(batch).seed(3).progress(false).verbose(false)
}

/// What a run prints for the comparison: the epochs' losses and accuracies, the parameters'
/// fingerprint, and the test metrics.
fn report(history: &staticnet::History, model_fp: u64, test: staticnet::Metrics) -> String {
    let epochs: Vec<String> = history.epochs.iter().map(|e| format!("{}:{}:{}:{}", e.train_loss, e.train_accuracy, e.val_loss.unwrap_or(f32::NAN), e.val_accuracy.unwrap_or(f32::NAN))).collect();
    format!("epochs {} fingerprint {model_fp:016x} test {} {}", epochs.join(","), test.loss, test.accuracy)
}

fn single_process(epochs: usize) -> (String, Vec<[f32; 4]>) {
    let (train, val) = (data(TRAIN, 1), data(60, 2));
    let mut model = Small::new(&Cpu, 7).unwrap();
    let mut optimizer = Sgd::new(0.05).momentum(0.9);
    let history = trainer(epochs, 2 * BATCH).fit(&mut model, &mut optimizer, &train, Some(&val)).unwrap();
    let test = evaluate(&mut model, &val, 64).unwrap();
    (report(&history, fingerprint(&model).unwrap(), test), epochs_of(&history))
}

fn epochs_of(history: &staticnet::History) -> Vec<[f32; 4]> {
    history.epochs.iter().map(|e| [e.train_loss, e.train_accuracy, e.val_loss.unwrap(), e.val_accuracy.unwrap()]).collect()
}

/// `mpirun -np 2` on this binary's `mpi_worker` in `mode`, with `env`; the child, its stdout
/// and stderr merged into a pipe.
fn mpirun(mode: &str, env: &[(&str, &str)]) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", "2"]);
    cmd.env("STATICNET_DIST_MODE", mode).args(["-x", "STATICNET_DIST_MODE"]);
    // One thread per rank: two ranks share the 2 cores a CI machine may have.
    cmd.env("RAYON_NUM_THREADS", "1").args(["-x", "RAYON_NUM_THREADS"]);
    for (k, v) in env {
        cmd.env(k, v).args(["-x", k]);
    }
    cmd.arg(exe).args(["--ignored", "--exact", "mpi_worker", "--nocapture", "--test-threads=1"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().expect("mpirun on the PATH (apt-get install openmpi-bin libopenmpi-dev)")
}

/// Held by each test while its mpirun runs: the harness runs tests in parallel, and two jobs of
/// two ranks on a 2-core machine would time each other out.
static ONE_JOB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_job() -> std::sync::MutexGuard<'static, ()> {
    ONE_JOB.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `mpirun` to its end; its output, stdout then stderr.
fn mpirun_output(mode: &str, env: &[(&str, &str)]) -> String {
    let out = mpirun(mode, env).wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "mpirun {mode} failed ({}):\n{text}", out.status);
    text
}

/// The lines `RESULT rank R: …` of an output, by rank.
fn results(text: &str) -> Vec<String> {
    let mut lines: Vec<(usize, String)> = text
        .lines()
        .filter_map(|l| l.find("RESULT rank ").map(|at| &l[at + "RESULT rank ".len()..]))
        .map(|l| {
            let (rank, rest) = l.split_once(": ").unwrap();
            (rank.parse().unwrap(), rest.to_string())
        })
        .collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "one RESULT line per rank:\n{text}");
    lines.into_iter().map(|(_, l)| l).collect()
}

fn parse_epochs(result: &str) -> Vec<[f32; 4]> {
    let epochs = result.split_whitespace().nth(1).unwrap();
    epochs.split(',').map(|e| e.split(':').map(|v| v.parse().unwrap()).collect::<Vec<f32>>().try_into().unwrap()).collect()
}

#[test]
fn two_ranks_of_batch_b_train_as_one_process_of_batch_2b() {
    let _job = one_job();
    let (single, expected) = single_process(3);
    let text = mpirun_output("train", &[]);
    let ranks = results(&text);
    println!("one process, batch {}: {single}", 2 * BATCH);
    println!("two ranks, batch {BATCH} each: {}", ranks[0]);
    // Every rank ends with the same weights, and reports the same metrics.
    assert_eq!(ranks[0], ranks[1], "the ranks differ:\n{text}");
    let got = parse_epochs(&ranks[0]);
    assert_eq!(got.len(), expected.len());
    for (e, (g, x)) in got.iter().zip(&expected).enumerate() {
        let rel = |a: f32, b: f32| ((a - b) / b).abs();
        println!("epoch {}: train loss {} vs {} (relative {:.2e}), val accuracy {} vs {}", e + 1, g[0], x[0], rel(g[0], x[0]), g[3], x[3]);
        assert!(rel(g[0], x[0]) <= 1e-4, "epoch {}: train loss {} vs one process's {}", e + 1, g[0], x[0]);
        assert!(rel(g[2], x[2]) <= 1e-4, "epoch {}: val loss {} vs one process's {}", e + 1, g[2], x[2]);
        assert!((g[3] - x[3]).abs() * 100.0 <= 0.1, "epoch {}: val accuracy {} vs one process's {}", e + 1, g[3], x[3]);
    }
    // The run learnt something (the comparison is not between two runs that did nothing).
    assert!(got[2][3] > 0.7 && got[0][3] < 0.5, "{got:?}");
}

#[test]
fn batch_norm_and_dropout_keep_the_ranks_weights_equal() {
    let _job = one_job();
    let text = mpirun_output("batchnorm", &[]);
    let ranks = results(&text);
    assert_eq!(ranks[0], ranks[1], "the ranks differ:\n{text}");
}

#[test]
fn rank_0_alone_checkpoints_and_a_resumed_run_ends_as_an_uninterrupted_one() {
    let _job = one_job();
    let dir = scratch("resume");
    let ck = dir.join("run.ckpt");
    let ck = ck.to_str().unwrap();
    let full = results(&mpirun_output("resume", &[("STATICNET_DIST_EPOCHS", "3"), ("STATICNET_DIST_CKPT", "")]));
    results(&mpirun_output("resume", &[("STATICNET_DIST_EPOCHS", "2"), ("STATICNET_DIST_CKPT", ck)]));
    assert!(Path::new(ck).is_file());
    let resumed = results(&mpirun_output("resume", &[("STATICNET_DIST_EPOCHS", "3"), ("STATICNET_DIST_CKPT", ck)]));
    assert_eq!(resumed, full);
    // Alone, the checkpoint of two processes is refused: the global batch would change.
    let mut model = Small::new(&Cpu, 7).unwrap();
    let err = trainer(3, BATCH).resume(ck).fit(&mut model, &mut Sgd::new(0.05).momentum(0.9), &data(TRAIN, 1), None).unwrap_err().to_string();
    assert!(err.contains("on 2 process(es), and this one runs on 1"), "{err}");
    // Rank 0 wrote the history (3 epochs, across the resume); rank 1 wrote nothing.
    let csv = std::fs::read_to_string(dir.join("rank0/history.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(!dir.join("rank1").exists());
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 2, "only rank0/ and the checkpoint: {files:?}");
    // Kept where an assertion above failed, for a look; gone once the test passes.
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn early_stopping_stops_every_rank_at_the_same_epoch() {
    let _job = one_job();
    let text = mpirun_output("early", &[]);
    let ranks = results(&text);
    assert_eq!(ranks[0], ranks[1], "the ranks differ:\n{text}");
    assert!(ranks[0].contains("stopped true"), "{}", ranks[0]);
}

/// Starts the slow run, waits until both ranks train, and returns mpirun, rank 1's pid and the
/// lines read so far (the reader thread keeps collecting them).
fn start_slow(env: &[(&str, &str)]) -> (std::process::Child, u32, Arc<std::sync::Mutex<Vec<String>>>) {
    let mut child = mpirun("slow", env);
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    for pipe in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                lines.lock().unwrap().push(line);
            }
        });
    }
    let start = Instant::now();
    loop {
        let seen = lines.lock().unwrap().clone();
        // The harness may print `test mpi_worker ... ` before a rank's first line.
        let after = |l: &str, tag: &str| l.find(tag).map(|at| l[at + tag.len()..].to_string());
        let pid = seen.iter().find_map(|l| after(l, "PID rank 1 ")).and_then(|p| p.trim().parse::<u32>().ok());
        if let Some(pid) = pid.filter(|_| seen.iter().any(|l| l.contains("STEP"))) {
            return (child, pid, lines);
        }
        if start.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the slow run did not start, or ended early:\n{}", seen.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for mpirun to end, at most `limit`; how long it took and its output.
fn wait_ended(mut child: std::process::Child, lines: &std::sync::Mutex<Vec<String>>, limit: Duration) -> (Duration, bool, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(200)); // the readers' last lines
            return (start.elapsed(), status.success(), lines.lock().unwrap().join("\n"));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("mpirun still runs {limit:?} after: a hang\n{}", lines.lock().unwrap().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

#[test]
fn a_killed_rank_ends_the_other_with_an_error_naming_it() {
    let _job = one_job();
    let (child, pid, lines) = start_slow(&[]);
    signal("-KILL", pid);
    let (took, ok, text) = wait_ended(child, &lines, Duration::from_secs(60));
    println!("killed rank 1: mpirun ended after {:.1} s", took.as_secs_f64());
    assert!(!ok, "mpirun succeeded after a rank was killed:\n{text}");
    assert!(text.contains("rank 1"), "the error does not name rank 1:\n{text}");
    assert!(!text.contains("RESULT"), "a rank finished:\n{text}");
}

#[test]
fn a_hung_rank_ends_the_job_by_the_watchdog() {
    let _job = one_job();
    let (child, pid, lines) = start_slow(&[("STATICNET_COLLECTIVE_TIMEOUT", "3")]);
    signal("-STOP", pid);
    let (took, ok, text) = wait_ended(child, &lines, Duration::from_secs(60));
    signal("-KILL", pid); // if mpirun left it stopped
    println!("stopped rank 1: mpirun ended after {:.1} s", took.as_secs_f64());
    assert!(!ok, "mpirun succeeded with a stopped rank:\n{text}");
    assert!(text.contains("rank 0/2: error:") && text.contains("waited"), "no watchdog error from rank 0:\n{text}");
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("staticnet-distributed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What every rank runs under mpirun (not a test of its own).
#[test]
#[ignore = "run by the other tests of this file under mpirun"]
fn mpi_worker() {
    let mode = std::env::var("STATICNET_DIST_MODE").expect("run under mpirun by the other tests");
    let mpi = Arc::new(Mpi::init().unwrap());
    let result = worker(&mode, &mpi);
    match result {
        Ok(line) => println!("RESULT rank {}: {line}", mpi.rank()),
        Err(e) => mpi.abort(&e),
    }
}

fn worker(mode: &str, mpi: &Arc<Mpi>) -> staticnet::Result<String> {
    let comm: Arc<dyn Collective<Cpu>> = mpi.clone();
    let (train, val) = (data(TRAIN, 1), data(60, 2));
    let mut optimizer = Sgd::new(0.05).momentum(0.9);
    match mode {
        "train" => {
            // Each rank starts from its own seed: rank 0's weights must reach every rank.
            let mut model = Small::new(&Cpu, if mpi.rank() == 0 { 7 } else { 99 })?;
            let history = trainer(3, BATCH).distributed(comm).fit(&mut model, &mut optimizer, &train, Some(&val))?;
            let test = evaluate(&mut model, &val, 64)?;
            Ok(report(&history, fingerprint(&model)?, test))
        }
        "batchnorm" => {
            let mut model = SmallBn::new(&Cpu, 7)?;
            let history = trainer(2, BATCH).distributed(comm).fit(&mut model, &mut optimizer, &train, Some(&val))?;
            let buffers = format!("{:?}", model.parameter("bn.running_mean")?.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            Ok(format!("{} buffers {buffers}", report(&history, fingerprint(&model)?, evaluate(&mut model, &val, 64)?)))
        }
        "resume" => {
            let epochs: usize = std::env::var("STATICNET_DIST_EPOCHS").unwrap().parse().unwrap();
            let ck = std::env::var("STATICNET_DIST_CKPT").unwrap();
            let mut model = Small::new(&Cpu, 7)?;
            let mut t = trainer(epochs, BATCH).distributed(comm);
            if !ck.is_empty() {
                // Each rank is given a history folder of its own: only rank 0's may appear.
                let dir = Path::new(&ck).parent().unwrap().join(format!("rank{}", mpi.rank()));
                t = t.checkpoint(&ck).resume(&ck).out_dir(dir);
            }
            let history = t.fit(&mut model, &mut optimizer, &train, Some(&val))?;
            Ok(format!("fingerprint {:016x} last loss {}", fingerprint(&model)?, history.epochs.last().unwrap().train_loss))
        }
        "early" => {
            // Patience 0: the first epoch whose validation loss is not lower ends the run.
            let mut optimizer = Sgd::new(0.2).momentum(0.9);
            let mut model = Small::new(&Cpu, 7)?;
            let history = trainer(30, BATCH).early_stopping(0).distributed(comm).fit(&mut model, &mut optimizer, &train, Some(&val))?;
            Ok(format!("epochs {} stopped {} fingerprint {:016x}", history.epochs.len(), history.stopped_early, fingerprint(&model)?))
        }
        "slow" => {
            println!("PID rank {} {}", mpi.rank(), std::process::id());
            let mut model = Small::new(&Cpu, 7)?;
            let big = data(20_000, 5);
            for epoch in 0..1000 {
                if mpi.rank() == 0 {
                    println!("STEP epoch {epoch}");
                }
                trainer(1, BATCH).distributed(comm.clone()).fit(&mut model, &mut optimizer, &big, None)?;
            }
            Ok("never".into())
        }
        other => panic!("unknown mode {other}"),
    }
}
