//! Traceability: requirement -> acceptance criterion -> result -> evidence.
//!
//! This stage owns the evidence record ([`evidence::Evidence`]), the requirement and risk
//! inputs ([`inputs`]), and the evaluation of acceptance criteria against the statistics.

pub mod evidence;
pub mod inputs;

pub use evidence::*;
