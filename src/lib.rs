//! # staticnet
//!
//! Convolutional networks declared as a layer listing, the way PyTorch's `nn.Sequential` reads,
//! with every tensor shape checked at compile time and the forward and backward passes
//! generated for the exact shapes.
//!
//! ```
//! use staticnet::prelude::*;
//!
//! network! {
//!     /// Model A: two same-padding convolutions, max pooling, one linear readout.
//!     pub struct ModelA {
//!         input: [1, 28, 28],
//!         cnn1: Conv2d(1, 16, kernel_size = 5, stride = 1, padding = 2),
//!         relu1: ReLU,
//!         maxpool1: MaxPool2d(2),
//!         cnn2: Conv2d(16, 32, kernel_size = 5, stride = 1, padding = 2),
//!         relu2: ReLU,
//!         maxpool2: MaxPool2d(2),
//!         Flatten,
//!         fc1: Linear(32 * 7 * 7, 10),
//!     }
//! }
//!
//! # fn main() -> staticnet::Result<()> {
//! let mut model = ModelA::new(&Cpu, 0)?;
//! assert_eq!(ModelA::<Cpu>::PARAMETERS, 28_938);
//! let images = Images::<1, 28, 28>::zeros(4);
//! let mut optimizer = Sgd::new(0.01).momentum(0.9);
//! let step = model.train_step(&images, &[0, 1, 2, 3], &mut optimizer)?;
//! assert!(step.loss.is_finite());
//! # Ok(())
//! # }
//! ```

pub use staticnet_macros::network;
pub use staticnet_runtime::*;

/// Everything a program that declares and trains networks needs.
pub mod prelude {
    pub use staticnet_macros::network;
    pub use staticnet_runtime::{
        Adam, AdamW, Batch, Backend, CosineAnnealingLr, Cpu, CrossEntropyLoss, Images, LrScheduler, Network, Optimizer, Sgd, StateDict, StepLr, Tensor,
        Vectors,
    };
}
