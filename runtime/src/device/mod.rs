//! The devices the kernels run on, below `ops` (whose launchers use them) and `backend` (which
//! implements `Backend` for them). The CPU needs nothing here: its memory is `Vec`s and its
//! kernels plain functions.

pub mod cuda;
