//! Which instruction set the CPU kernels use: the best the processor has (AVX-512, else AVX2 with
//! FMA, else portable code), detected once; or one chosen by `STATICNET_ISA=avx512|avx2|generic`
//! or [`set_isa`], so that every path can be tested and measured on a machine that runs the
//! faster ones too. The choice is made once: the kernels size their buffers by its tiles.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::{Error, Result};

/// An instruction set the CPU kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, vectorised by LLVM for the build target.
    Generic = 1,
    /// AVX2 and FMA: 16 registers of 8 floats.
    Avx2 = 2,
    /// AVX-512 (F, BW, VL, DQ) with FMA: 32 registers of 16 floats.
    Avx512 = 3,
}

impl Isa {
    /// `"avx512"`, `"avx2"`, `"generic"`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    fn from_name(name: &str) -> Option<Isa> {
        [Isa::Generic, Isa::Avx2, Isa::Avx512].into_iter().find(|i| i.name() == name)
    }

    /// Every instruction set this processor can run, portable first.
    pub fn supported() -> Vec<Isa> {
        [Isa::Generic, Isa::Avx2, Isa::Avx512].into_iter().filter(|&i| i <= detected()).collect()
    }
}

/// 0 until decided.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// The best instruction set this processor has.
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") && has!("fma") {
            return Isa::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Generic
}

/// The instruction set the kernels use now.
#[inline]
pub fn isa() -> Isa {
    match CHOSEN.load(Ordering::Relaxed) {
        1 => Isa::Generic,
        2 => Isa::Avx2,
        3 => Isa::Avx512,
        _ => {
            let chosen = std::env::var("STATICNET_ISA").ok().and_then(|n| Isa::from_name(n.trim())).filter(|&i| i <= detected()).unwrap_or_else(detected);
            CHOSEN.store(chosen as u8, Ordering::Relaxed);
            chosen
        }
    }
}

/// Whether the AVX2 kernels may run (the processor has AVX2 and FMA, and nothing chose the
/// portable ones).
#[inline]
pub fn avx2() -> bool {
    isa() >= Isa::Avx2
}

/// Whether the AVX-512 kernels may run.
#[inline]
pub fn avx512() -> bool {
    isa() >= Isa::Avx512
}

/// Makes the kernels use `isa` (for tests and benchmarks of each path): before the first kernel
/// runs, since buffers are sized for the chosen kernels' tiles. An error if the processor lacks
/// it, or if another was already in use.
pub fn set_isa(isa: Isa) -> Result<()> {
    if isa > detected() {
        return Err(Error::Backend(format!("set_isa: this processor lacks {} (it has {})", isa.name(), detected().name())));
    }
    match CHOSEN.compare_exchange(0, isa as u8, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => Ok(()),
        Err(current) if current == isa as u8 => Ok(()),
        Err(_) => Err(Error::Backend(format!("set_isa({}): the kernels already use {}; choose before the first network runs", isa.name(), self::isa().name()))),
    }
}

/// Runs `f` from a function compiled for AVX2 (and FMA) where [`avx2`] allows, else as it is:
/// for element-wise loops (batch norm, activations) that LLVM vectorises for the build target
/// (SSE2, 4 floats or 2 doubles) unless the code it inlines `f` into may use AVX2. LLVM does
/// not fuse a·b + c into an FMA on its own, so the results are the same either way.
#[inline(always)]
pub fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        #[target_feature(enable = "avx2,fma")]
        fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the processor has AVX2 and FMA (checked just above).
        return unsafe { run(f) };
    }
    f()
}
