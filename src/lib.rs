//! medgate: regulatory validation evidence for medical-imaging vision-language models.
//!
//! # Pipeline
//!
//! Data flows one way; each stage imports only earlier stages and the shared modules
//! (`error`, `exit`, `diag`, `world`, `hash`, `fsx`: path safety). The types between stages are the contract.
//!
//! | stage | entry | produces |
//! |---|---|---|
//! | [`protocol`] | [`protocol::load`], [`protocol::check()`] | [`protocol::Protocol`]: the pre-specified analysis plan, every problem located |
//! | [`golden`] | [`golden::GoldenSet::open`] (verifies every byte against `LOCK`) | [`golden::GoldenSet`]: cases, labels, subgroup attributes |
//! | [`model`] | the [`model::Backend`] trait (`candle-clip`, `openai`, `replay`) | [`model::Prediction`] per case, or a [`model::CaseError`] |
//! | [`harness`] | [`harness::run_cases`] (journaled, resumable) | [`harness::CaseResult`] per case |
//! | [`stats`] | [`stats::analyze`]: pure computation, no I/O | [`stats::StatsReport`] |
//! | [`trace`] | [`trace::analysis::analyze`], [`trace::build_traceability`] | [`trace::Evidence`]: criteria verdicts, traceability, provenance |
//! | [`report`] | [`report::render_bundle`] | `report.pdf`, `report.typ`, `report.html`, `report.md`, `junit.xml` |
//! | [`verify`] | reads a bundle only | a list of discrepancies by JSON path, signature checks |
//!
//! [`pipeline`] composes the stages for `medgate run` (and `check`); [`selftest`] composes
//! them into medgate's own tool-validation record. [`cli`] is the command front end: it
//! parses, prints, and maps outcomes to the exit codes of [`exit`]. The clock and the
//! environment reach the pipeline only through [`world::World`].
#![warn(missing_docs)]

pub mod cli;
pub mod demo;
pub mod diag;
pub mod diff;
pub mod error;
pub mod exit;
pub mod fsx;
pub mod golden;
pub mod harness;
pub mod hash;
pub mod model;
pub mod pipeline;
pub mod protocol;
pub mod report;
pub mod selftest;
pub mod serve;
pub mod stats;
pub mod table;
pub mod trace;
pub mod verify;
pub mod world;

pub use error::{Error, Result};
