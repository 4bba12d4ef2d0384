#![doc = include_str!("../README.md")]
//!
//! # Example
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     pub struct Tiny {
//!         input: [1, 8, 8],
//!         conv: Conv2d(1, 4, kernel_size = 3, padding = 1),
//!         relu: ReLU,
//!         pool: MaxPool2d(2),
//!         Flatten,
//!         fc: Linear(4 * 4 * 4, 3),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let mut model = Tiny::new(&Cpu, 0)?;
//! assert_eq!(Tiny::<Cpu>::PARAMETERS, 4 * 9 + 4 + 64 * 3 + 3);
//! let images = Images::<1, 8, 8>::zeros(2);
//! let mut optimizer = Sgd::new(0.01).momentum(0.9);
//! let step = model.train_step(&images, &[0, 2], &mut optimizer)?;
//! assert!(step.loss.is_finite());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub use staticnet_macros::network;
pub use staticnet_runtime::*;

pub mod language;

/// Everything a program that declares and trains networks needs.
pub mod prelude {
    pub use staticnet_macros::network;
    pub use staticnet_runtime::{
        Adam, AdamW, Batch, Backend, CosineAnnealingLr, Cpu, CrossEntropyLoss, Images, NLLLoss, LrScheduler, Network, Optimizer, Sgd, StateDict, StepLr, Tensor,
        Vectors,
    };
}
