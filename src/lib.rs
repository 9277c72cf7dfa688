//! medgate: regulatory validation evidence for medical-imaging vision-language models.
//!
//! # Pipeline
//!
//! Data flows one way; each stage imports only earlier stages and the shared modules
//! (`error`, `exit`, `diag`, `world`, `hash`). The types between stages are the contract.
//!
//! | stage | entry | produces |
//! |---|---|---|
//! | [`protocol`] | [`protocol::load`] | [`protocol::Protocol`]: the pre-specified analysis plan |
//! | [`stats`] | pure computation, no I/O | [`stats::StatsReport`] |
#![warn(missing_docs)]

pub mod diag;
pub mod error;
pub mod exit;
pub mod golden;
pub mod hash;
pub mod model;
pub mod protocol;
pub mod stats;
pub mod table;
pub mod cli;
pub mod world;

pub use error::{Error, Result};
