//! The devices the kernels run on, below `ops` (whose launchers use them) and `backend` (which
//! implements `Backend` for them). The CPU needs nothing here: its memory is `Vec`s and its
//! kernels plain functions. [`Precision`], the arithmetic a device computes in, is here for
//! every build: the examples parse it whatever the features.

#[cfg(feature = "cuda")]
pub mod cuda;

use crate::Result;

/// The arithmetic of convolutions and linear layers, as PyTorch's autocast chooses it: `F32`
/// everywhere, or `Bf16` mixed precision (`torch.autocast(device_type="cuda",
/// dtype=torch.bfloat16)`): GEMM operands rounded to bf16, products summed in f32, each GEMM's
/// result rounded to bf16; batch norm, losses, the optimizer and the master weights stay f32.
/// Only the CUDA backend has `Bf16` (`Cuda::set_precision`, feature `cuda`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Full f32, as the fixtures (no TF32).
    #[default]
    F32,
    /// bf16 operands with f32 sums, PyTorch autocast's bfloat16.
    Bf16,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = crate::Error;

    /// `"f32"` (or `"float32"`) and `"bf16"` (or `"bfloat16"`), PyTorch's dtype names.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" | "fp32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(crate::Error::bad_input(format!("unknown precision {other:?}: expected f32 or bf16"))),
        }
    }
}
