//! The statistics engine: pure computation, no I/O.

pub mod types;

pub use types::*;
