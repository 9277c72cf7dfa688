//! medgate: regulatory validation evidence for medical-imaging vision-language models.
//!
//! # Pipeline
//!
//! Data flows one way; each stage imports only earlier stages and the shared modules
//! (`error`, `exit`, `diag`, `world`, `hash`, `fsx`: path safety). The types between stages are the contract.
//!
//! | stage | entry | produces |
//! |---|---|---|
//! | [`protocol`] | [`protocol::load()`], [`protocol::check()`] | [`protocol::LoadedProtocol`] (the pre-specified analysis plan, with its source bytes and their hash) and every problem located as a [`diag::Diagnostic`] |
//! | [`golden`] | [`golden::GoldenSet::open`] / [`golden::GoldenSet::open_read`] (verifies every byte against `LOCK`; the manifest read once) | [`golden::GoldenSet`]: cases, labels, subgroup attributes |
//! | [`model`] | [`model::build_backend`] -> the [`model::Backend`] trait (`candle-clip`, `candle-vlm`, `openai`, `replay`); a second backend for an in-run reference model (`comparison.reference_model`) | [`model::Delivery`] per case: a [`model::Prediction`] or a [`model::CaseError`] |
//! | [`harness`] | [`harness::run_cases`] (streaming, journaled, resumable; [`harness::HarnessEvent`]s to sinks), the in-run reference model into `reference/journal.jsonl` | [`harness::HarnessOutput`]: a [`harness::CaseResult`] ([`harness::CaseOutcome`]) per case |
//! | [`stats`] | [`stats::analyze`]: pure computation, no I/O | [`stats::StatsReport`] |
//! | [`trace`] | [`trace::analysis::analyze`] (and [`trace::analysis::analyze_against`] with a release comparison), [`trace::build_traceability`], [`trace::ledger::prepare`], [`trace::assemble_evidence`], [`trace::bundle::write_records`], [`trace::comparison::write_bundle_files`] / [`trace::comparison::write_flips_file`], [`trace::ledger::commit`], [`trace::bundle::write_sha256sums`] | [`trace::analysis::Analysis`] (criteria verdicts, `results_sha256`), [`trace::ledger::LedgerEntry`], [`trace::Evidence`]; `evidence.json`, `protocol.yaml`, `cases.parquet`, `reference/`, `flips.csv`, the ledger entry, `SHA256SUMS` |
//! | [`report`] | [`report::render_bundle`], [`report::junit::write`] | `report.pdf`, `report.typ`, `report.html`, `report.md`; `junit.xml` |
//! | [`verify`] | [`verify::verify_bundle`] (reads a bundle only); [`verify::reference::load_verified`] (a release comparison's reference bundle, for `run`); [`verify::reference::check_reference_journal`] (an in-run reference model's journal, for `verify`) | [`verify::VerifyReport`]: discrepancies by JSON path, signature checks; a verified [`trace::comparison::ReferenceCases`] |
//!
//! Consumers beside the stages: [`serve`] (hosts a model behind the OpenAI API), [`demo`]
//! (the synthetic demo set), [`selftest`]; test support lives in `testing` (hidden).
//!
//! [`monitor`] is a consumer beside the stages: `medgate monitor` checks production logs
//! against a verified release bundle (drift, performance, CUSUM/EWMA charts, alarms traced to
//! requirements).
//!
//! [`pipeline`] composes the stages for `medgate run` (and `check`): [`pipeline::run`] is the
//! table above, one call per row, and reads each input file once; [`selftest`] composes
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
pub mod monitor;
pub mod pipeline;
pub mod protocol;
pub mod report;
pub mod selftest;
pub mod serve;
pub mod stats;
pub mod table;
#[doc(hidden)]
pub mod testing;
pub mod trace;
pub mod verify;
pub mod world;

pub use error::{Error, Result};
