//! What the examples share: a small command-line parser and the error exit.

#![allow(dead_code)]

pub mod imagenet;

use std::process::ExitCode;
use std::str::FromStr;

/// `--name value` flags and `--switch`es, parsed by hand to keep the examples free of
/// dependencies.
pub struct Args {
    pairs: Vec<(String, Option<String>)>,
    usage: &'static str,
}

impl Args {
    /// Parses `std::env::args`; `--help` prints `usage` and exits.
    pub fn parse(usage: &'static str) -> Args {
        Self::parse_without_last(usage, false)
    }

    /// [`Args::parse`], leaving out the last argument when `skip_last` (a positional one).
    pub fn parse_without_last(usage: &'static str, skip_last: bool) -> Args {
        let mut pairs = Vec::new();
        let mut all: Vec<String> = std::env::args().skip(1).collect();
        if skip_last {
            all.pop();
        }
        let mut it = all.into_iter().peekable();
        while let Some(a) = it.next() {
            if a == "--help" || a == "-h" {
                println!("{usage}");
                std::process::exit(0);
            }
            let Some(name) = a.strip_prefix("--") else {
                fail(usage, &format!("unexpected argument `{a}`"));
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (name.to_string(), it.next_if(|v| !v.starts_with("--"))),
            };
            pairs.push((name, value));
        }
        Args { pairs, usage }
    }

    /// The value of `--name`, parsed, or `default`.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.pairs.iter().find(|(n, _)| n == name) {
            None => default,
            Some((_, Some(v))) => v.parse().unwrap_or_else(|_| fail(self.usage, &format!("--{name}: cannot read `{v}`"))),
            Some((_, None)) => fail(self.usage, &format!("--{name} needs a value")),
        }
    }

    pub fn opt(&self, name: &str) -> Option<String> {
        self.pairs.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.clone())
    }

    pub fn flag(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// Fails on flags that no `known` name matches.
    pub fn check(&self, known: &[&str]) {
        for (n, _) in &self.pairs {
            if !known.contains(&n.as_str()) {
                fail(self.usage, &format!("unknown option --{n}"));
            }
        }
    }
}

fn fail(usage: &str, msg: &str) -> ! {
    eprintln!("error: {msg}\n\n{usage}");
    std::process::exit(2);
}

/// The bundled MNIST subset, wherever the example runs from.
pub fn bundled_mnist() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k").to_string()
}

/// Runs `f`, printing its error and exiting non-zero on failure.
/// `--precision f32|bf16` (f32 when absent): bf16 is PyTorch's autocast, on the GPU only.
#[allow(dead_code)]
pub fn precision(args: &Args, device: &str) -> staticnet::Result<staticnet::Precision> {
    let precision: staticnet::Precision = args.opt("precision").as_deref().unwrap_or("f32").parse()?;
    if precision != staticnet::Precision::F32 && device != "cuda" {
        return Err(staticnet::Error::BadInput(format!("--precision {precision} needs --device cuda: the CPU backend computes in f32")));
    }
    Ok(precision)
}

/// The first GPU, computing in `precision`.
#[cfg(feature = "cuda")]
#[allow(dead_code)]
pub fn cuda(precision: staticnet::Precision) -> staticnet::Result<staticnet::Cuda> {
    let dev = staticnet::Cuda::new(0)?;
    dev.set_precision(precision);
    Ok(dev)
}

pub fn run(f: impl FnOnce() -> staticnet::Result<()>) -> ExitCode {
    match f() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
