//! Mean squared error, PyTorch's `nn.MSELoss` (mean reduction): `mean((y − t)²)` over every
//! element, and its gradient `2·(y − t)/count`.

pub(crate) mod cpu;
