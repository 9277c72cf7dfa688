//! The golden set: sequestered, locked test data, and the tools that keep it honest.
//!
//! This stage owns the golden-set format (manifest + images + DATASHEET + LOCK), hashing and
//! verification, the de-identification screen, the image loader, and the deterministic
//! synthetic demo set ([`demo`]). A golden set's integrity is the first thing an auditor
//! checks, so every later stage reaches the data only through a verified golden set.

pub mod demo;
pub mod dicom;
