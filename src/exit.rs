//! Exit codes: the one place where medgate's outcomes become process statuses.
//!
//! CI release gates read only these numbers, so they are a public contract and are
//! documented in the README. "The answer is no" (1) is kept apart from "the input is
//! wrong" (2) and "something broke" (3), as ripgrep and cargo-nextest do, so that a
//! gate never mistakes an infrastructure failure for a failed acceptance criterion.

use std::process::ExitCode;

/// Every acceptance criterion passed; the input was valid; verification identical.
pub const PASS: u8 = 0;
/// An acceptance criterion failed or was not evaluable; a verification found a difference.
pub const FAIL: u8 = 1;
/// Usage or input error: bad protocol, tampered golden set, unreadable file.
pub const INPUT: u8 = 2;
/// Internal or infrastructure failure: model unavailable, too many cases not evaluated.
pub const INTERNAL: u8 = 3;

/// The outcome of a command that ran to completion (errors map through [`crate::Error::exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Pass,
    /// Exit 1.
    Fail,
    /// Exit 2: the command finished but found invalid input (e.g. `check`, `verify-set`).
    Invalid,
    /// Exit 3: the command finished but infrastructure failed (e.g. too many cases not evaluated).
    Infrastructure,
}

impl Outcome {
    /// The outcome of a run: infrastructure failure first (a gate must not read it as a
    /// failed criterion), then the verdict.
    pub fn of_run(infrastructure_failure: bool, passed: bool) -> Outcome {
        if infrastructure_failure {
            Outcome::Infrastructure
        } else if passed {
            Outcome::Pass
        } else {
            Outcome::Fail
        }
    }

    /// The process status for this outcome.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Pass => PASS,
            Outcome::Fail => FAIL,
            Outcome::Invalid => INPUT,
            Outcome::Infrastructure => INTERNAL,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        ExitCode::from(o.code())
    }
}
