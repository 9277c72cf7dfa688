//! Traceability inputs: the software requirements file and the risk control file.
//!
//! # Format
//!
//! `requirements.yaml`:
//! ```yaml
//! requirements:
//!   - id: SRS-PTX-010            # unique
//!     text: The function shall detect pneumothorax with sensitivity >= 0.80 (lower 95% bound).
//!     source: UN-PTX-01          # optional: user need, standard clause, claim
//! ```
//! `risks.yaml` (ISO 14971 style risk control measures):
//! ```yaml
//! risk_controls:
//!   - id: RC-PTX-03
//!     hazard: Missed pneumothorax delays treatment
//!     control: Verified minimum sensitivity in every subgroup before release
//!     requirements: [SRS-PTX-010]   # optional: requirements implementing the control
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A software requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Unique ID, e.g. `SRS-PTX-010`.
    pub id: String,
    /// The requirement text.
    pub text: String,
    /// Where it comes from (user need, claim, standard clause).
    #[serde(default)]
    pub source: Option<String>,
}

/// A risk control measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskControl {
    /// Unique ID, e.g. `RC-PTX-03`.
    pub id: String,
    /// The hazard or hazardous situation controlled.
    pub hazard: String,
    /// The control measure.
    pub control: String,
    /// Requirements implementing the control.
    #[serde(default)]
    pub requirements: Vec<String>,
}

/// The requirements file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequirementsFile {
    /// Requirements.
    pub requirements: Vec<Requirement>,
}

/// The risks file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RisksFile {
    /// Risk control measures.
    pub risk_controls: Vec<RiskControl>,
}

fn load_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_yaml(path, &text)
}

fn parse_yaml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_saphyr::from_str(text).map_err(|e| {
        let pos = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize));
        Error::Invalid(vec![crate::diag::Diagnostic::error(
            path.display().to_string(),
            pos,
            e.to_string(),
        )])
    })
}

/// Loads a requirements file.
pub fn load_requirements(path: &Path) -> Result<RequirementsFile> {
    load_yaml(path)
}

/// Loads a risks file.
pub fn load_risks(path: &Path) -> Result<RisksFile> {
    load_yaml(path)
}

/// Parses requirements from `text` (read from `path`, which names the file in errors).
pub fn parse_requirements(path: &Path, text: &str) -> Result<RequirementsFile> {
    parse_yaml(path, text)
}

/// Parses risk controls from `text` (read from `path`, which names the file in errors).
pub fn parse_risks(path: &Path, text: &str) -> Result<RisksFile> {
    parse_yaml(path, text)
}

/// The requirements and risks files as read once by [`crate::pipeline::check_protocol`]: parsed, with the
/// identity (path, SHA-256 of exactly the bytes parsed, git blob) the evidence records.
#[derive(Debug, Clone, Default)]
pub struct TraceInputs {
    /// The requirements file, when the protocol names one and it parsed.
    pub requirements: Option<(RequirementsFile, crate::trace::FileIdentity)>,
    /// The risks file, likewise.
    pub risks: Option<(RisksFile, crate::trace::FileIdentity)>,
}

impl TraceInputs {
    /// The identities, requirements first.
    pub fn identities(&self) -> Vec<crate::trace::FileIdentity> {
        let r = self.requirements.as_ref().map(|r| r.1.clone());
        let k = self.risks.as_ref().map(|r| r.1.clone());
        r.into_iter().chain(k).collect()
    }
}

/// Reads `path` once and parses it with `parse`, returning the value with the identity of
/// exactly the bytes parsed (path, SHA-256, git blob).
pub fn read_file<T>(
    path: &Path,
    parse: impl Fn(&Path, &str) -> Result<T>,
) -> Result<(T, crate::trace::FileIdentity)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| Error::input(format!("{}: not UTF-8 text", path.display())))?;
    let value = parse(path, &text)?;
    Ok((
        value,
        crate::trace::provenance::identity_of_bytes(path, &bytes),
    ))
}
