//! The validation protocol: the declarative YAML plan that fixes, before unblinding, the
//! model, the prompt, the operating point, the golden set, the subgroups, the statistics and
//! the acceptance criteria (FDA's "pre-specified statistical analysis plan").
//!
//! This stage owns the protocol types ([`types`]) and their loading and checking. Later
//! stages receive a parsed, checked [`Protocol`] and never re-read the YAML.

pub mod types;

pub use types::*;
