//! Helpers shared by the integration tests: the PyTorch fixtures (tests/fixtures, copied from
//! ../shared/fixtures; see its README for how they were made) and the fixtures' error measure.

#![allow(dead_code)]

pub mod nets;

use staticnet::network::TensorKind;
use staticnet::prelude::*;

/// The reference values PyTorch 2.15 wrote for one network and one batch.
pub struct Fixture {
    pub name: &'static str,
    pub tensors: StateDict,
    /// The same values computed by PyTorch in float64 (`NAME_f64.safetensors`, from
    /// scripts/make_f64_references.py), where the network is too ill-conditioned in train mode
    /// for float32 values summed in another order to meet the tolerances against PyTorch's.
    pub exact: Option<StateDict>,
}

impl Fixture {
    pub fn load(name: &'static str) -> Fixture {
        let path = |suffix: &str| format!("{}/tests/fixtures/{name}{suffix}.safetensors", env!("CARGO_MANIFEST_DIR"));
        let tensors = StateDict::load(path("")).unwrap_or_else(|e| panic!("{e}"));
        let exact = std::path::Path::new(&path("_f64")).exists().then(|| StateDict::load(path("_f64")).unwrap_or_else(|e| panic!("{e}")));
        Fixture { name, tensors, exact }
    }

    /// `ours` against the fixture's `key` within `tol`; where a float64 twin has the key: against
    /// float64 within `tol`, or within twice PyTorch's own float32 error (the fixture's), each
    /// measured on the scale of the larger of the two references (or, for a bias or a running
    /// mean, a thousandth of its layer's weight's or running variance's: a value that is zero in
    /// exact arithmetic, such as the gradient of a bias in front of a batch norm, is rounding
    /// noise in every float32 implementation).
    #[track_caller]
    pub fn check(&self, key: &str, ours: &[f32], tol: f64) {
        let torch = self.f32(key);
        let Some(Some(Tensor::F32(exact))) = self.exact.as_ref().map(|e| e.get(key)) else {
            return assert_close(ours, &torch, tol, &format!("{}: {key}", self.name));
        };
        let exact: Vec<f32> = exact.iter().copied().collect();
        let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
        // A bias's gradient that is zero in exact arithmetic (in front of a batch norm), or the
        // running mean of a batch norm fed by one (its batch mean is zero), is rounding noise:
        // measured on a thousandth of its layer's weight's (running variance's) scale.
        let sibling = (key.strip_suffix(".bias").map(|k| format!("{k}.weight")))
            .or_else(|| key.strip_suffix(".running_mean").map(|k| format!("{k}.running_var")));
        let floor = match sibling.and_then(|k| self.exact.as_ref().and_then(|e| e.get(&k)).cloned()) {
            Some(Tensor::F32(w)) => 1e-3 * norm(&w.iter().copied().collect::<Vec<_>>()),
            _ => 0.0,
        };
        let scale = norm(&exact).max(norm(&torch)).max(floor);
        let dist = |v: &[f32]| v.iter().zip(&exact).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>().sqrt() / scale;
        let (e_ours, e_torch) = (dist(ours), dist(&torch));
        let allowed = tol.max(2.0 * e_torch);
        if std::env::var_os("STATICNET_PARITY_VERBOSE").is_some() {
            eprintln!("{}: {key}: ours {e_ours:.2e}, PyTorch float32 {e_torch:.2e} against float64", self.name);
        }
        assert!(e_ours < allowed, "{}: {key}: relative error against float64 {e_ours:.3e} ≥ {allowed:.1e} (PyTorch's float32: {e_torch:.1e})", self.name);
    }

    pub fn has(&self, key: &str) -> bool {
        self.tensors.get(key).is_some()
    }

    pub fn f32(&self, key: &str) -> Vec<f32> {
        match self.tensors.get(key) {
            Some(Tensor::F32(a)) => a.iter().copied().collect(),
            other => panic!("{}: `{key}` is not a float tensor: {other:?}", self.name),
        }
    }

    pub fn i64(&self, key: &str) -> Vec<i64> {
        match self.tensors.get(key) {
            Some(Tensor::I64(a)) => a.iter().copied().collect(),
            other => panic!("{}: `{key}` is not an int64 tensor: {other:?}", self.name),
        }
    }

    pub fn labels(&self) -> Vec<usize> {
        self.i64("target").into_iter().map(|v| v as usize).collect()
    }

    pub fn input<I: Batch>(&self) -> I {
        I::from_vec(self.labels().len(), self.f32("input")).unwrap()
    }

    /// The initial parameters and buffers of `N`, under `prefix` (`""`, `"sgd3."`, …).
    pub fn state_for<B: Backend, N: Network<B>>(&self, prefix: &str) -> StateDict {
        let mut sd = StateDict::new();
        for t in N::SPEC.tensors {
            let key = format!("{prefix}{}", t.name);
            let value = self.tensors.get(&key).unwrap_or_else(|| panic!("{}: no `{key}`", self.name));
            sd.insert(t.name, value.clone());
        }
        sd
    }

    /// A network made by `new` on `dev` with the fixture's initial parameters, loaded strictly.
    pub fn network<B: Backend, N: Network<B>>(&self, dev: &B, new: impl Fn(&B, u64) -> staticnet::Result<N>) -> N {
        let mut net = new(dev, 0).unwrap();
        net.load_state_dict(&self.state_for::<B, N>(""), true).unwrap();
        net
    }
}

/// The GPU the `cuda` variants of the tests run on, shared by all of them; `None`, after printing
/// why `test` is skipped, when there is none (no GPU, driver or NVRTC). With
/// `STATICNET_REQUIRE_GPU` set, a missing GPU fails the test instead, so that a run meant to
/// check the GPU cannot pass by skipping.
#[cfg(feature = "cuda")]
pub fn gpu(test: &str) -> Option<staticnet::Cuda> {
    static GPU: std::sync::OnceLock<Result<staticnet::Cuda, String>> = std::sync::OnceLock::new();
    match GPU.get_or_init(|| staticnet::Cuda::new(0).map_err(|e| e.to_string())) {
        Ok(gpu) => Some(gpu.clone()),
        Err(e) if std::env::var_os("STATICNET_REQUIRE_GPU").is_some() => panic!("{test}: STATICNET_REQUIRE_GPU is set, but {e}"),
        Err(e) => {
            // Straight to stderr: the test harness captures `eprintln!` of passing tests, and a
            // skip must be seen.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {test} on cuda: {e}");
            None
        }
    }
}

/// Declares each test once for every backend: `fn name(dev) { … }` becomes the test `name` on
/// the CPU and, with feature `cuda`, `cuda::name` on the GPU (skipped, saying why, without one).
/// `dev` is a `&Cpu` or a `&Cuda`.
#[macro_export]
macro_rules! on_every_backend {
    ($($(#[$attr:meta])* fn $name:ident($dev:ident) $body:block)*) => {
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                let $dev = &staticnet::Cpu;
                $body
            }
        )*

        #[cfg(feature = "cuda")]
        mod cuda {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$attr])*
                #[test]
                fn $name() {
                    let Some(gpu) = $crate::common::gpu(stringify!($name)) else { return };
                    let $dev = &gpu;
                    $body
                }
            )*
        }
    };
}

/// ‖ours − ref‖ / ‖ref‖, the fixtures' measure of agreement.
pub fn rel_err(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "lengths differ");
    let diff: f64 = ours.iter().zip(reference).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = reference.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
    if norm == 0.0 { diff } else { diff / norm }
}

#[track_caller]
pub fn assert_close(ours: &[f32], reference: &[f32], tol: f64, what: &str) {
    let e = rel_err(ours, reference);
    assert!(e < tol, "{what}: relative error {e:.3e} ≥ {tol:.0e}");
}

/// Every parameter and buffer of `net` against the fixture's values under `prefix`.
#[track_caller]
pub fn assert_state<B: Backend, N: Network<B>>(net: &N, fx: &Fixture, prefix: &str, tol: f64) {
    for t in N::SPEC.tensors {
        let key = format!("{prefix}{}", t.name);
        match t.kind {
            TensorKind::Counter { .. } => {
                let ours = match net.tensor(t.name).unwrap() {
                    Tensor::I64(a) => a.iter().copied().collect::<Vec<_>>(),
                    other => panic!("{key}: {other:?}"),
                };
                assert_eq!(ours, fx.i64(&key), "{}: {key}", fx.name);
            }
            _ => {
                let ours: Vec<f32> = net.parameter(t.name).unwrap().iter().copied().collect();
                fx.check(&key, &ours, tol);
            }
        }
    }
}
