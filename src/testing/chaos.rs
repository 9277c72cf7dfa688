//! Fault injection for `medgate serve` (tests, drills and benchmarks only).
//!
//! [`Chaos`] makes a request fail deterministically from a seeded hash of the request's
//! arrival number, so a client's retry of the same case gets a fresh draw. The server
//! ([`crate::serve`]) asks [`Chaos::fault`] per request; the CLI exposes the settings as the
//! hidden `--chaos-*` flags of `medgate serve`.

use crate::error::{Error, Result};

/// The answer text of an injected equivocal reply (exposed so tests can compare verbatim).
pub use crate::serve::EQUIVOCAL_TEXT;

/// Fault injection settings (all rates in [0, 1], applied in the order listed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chaos {
    /// Fraction of requests answered HTTP 500.
    pub fail_rate: f64,
    /// Fraction answered after `slow_ms`.
    pub slow_rate: f64,
    /// Fraction answered 200 with a body that is not JSON.
    pub garbage_rate: f64,
    /// Fraction answered with [`EQUIVOCAL_TEXT`] (valid JSON, no logprobs).
    pub equivocal_rate: f64,
    /// Delay of a slow answer, in milliseconds.
    pub slow_ms: u64,
    /// Seed of the per-request draws.
    pub seed: u64,
}

impl Default for Chaos {
    fn default() -> Self {
        Chaos {
            fail_rate: 0.0,
            slow_rate: 0.0,
            garbage_rate: 0.0,
            equivocal_rate: 0.0,
            slow_ms: 5000,
            seed: 0,
        }
    }
}

/// What chaos does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// HTTP 500.
    Fail,
    /// Answer after `slow_ms`.
    Slow,
    /// A 200 whose body is not JSON.
    Garbage,
    /// A completion with [`EQUIVOCAL_TEXT`] and no logprobs.
    Equivocal,
}

impl Chaos {
    /// True when no fault is ever injected.
    pub fn is_off(&self) -> bool {
        self.fail_rate <= 0.0
            && self.slow_rate <= 0.0
            && self.garbage_rate <= 0.0
            && self.equivocal_rate <= 0.0
    }

    /// Every rate must be a fraction in [0, 1].
    pub fn validate(&self) -> Result<()> {
        for (name, r) in [
            ("fail", self.fail_rate),
            ("slow", self.slow_rate),
            ("garbage", self.garbage_rate),
            ("equivocal", self.equivocal_rate),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(Error::input_hint(
                    format!("--chaos-{name}-rate {r} is not a fraction"),
                    "use a number between 0 and 1",
                ));
            }
        }
        Ok(())
    }

    /// The fault for the `n`-th request (0-based), from a SplitMix64 hash of (seed, n).
    pub fn fault(&self, n: u64) -> Fault {
        if self.is_off() {
            return Fault::None;
        }
        let u = (splitmix64(self.seed ^ splitmix64(n)) >> 11) as f64 / (1u64 << 53) as f64;
        let mut edge = self.fail_rate;
        if u < edge {
            return Fault::Fail;
        }
        edge += self.slow_rate;
        if u < edge {
            return Fault::Slow;
        }
        edge += self.garbage_rate;
        if u < edge {
            return Fault::Garbage;
        }
        edge += self.equivocal_rate;
        if u < edge {
            return Fault::Equivocal;
        }
        Fault::None
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a fixed, documented mixing function.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaos_draws_are_deterministic_and_near_their_rates() {
        let c = Chaos {
            fail_rate: 0.2,
            slow_rate: 0.1,
            garbage_rate: 0.1,
            equivocal_rate: 0.1,
            seed: 7,
            ..Default::default()
        };
        let draws: Vec<Fault> = (0..10_000).map(|n| c.fault(n)).collect();
        let again: Vec<Fault> = (0..10_000).map(|n| c.fault(n)).collect();
        assert_eq!(draws, again);
        let frac = |f: Fault| draws.iter().filter(|&&d| d == f).count() as f64 / 10_000.0;
        // Binomial SD at n = 10000 is at most 0.004; allow 4 SD.
        assert!((frac(Fault::Fail) - 0.2).abs() < 0.016);
        assert!((frac(Fault::Slow) - 0.1).abs() < 0.016);
        assert!((frac(Fault::Garbage) - 0.1).abs() < 0.016);
        assert!((frac(Fault::Equivocal) - 0.1).abs() < 0.016);
        assert!(
            Chaos {
                fail_rate: 1.5,
                ..c
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn splitmix64_matches_reference() {
        // Reference: first output of SplitMix64 seeded with 0 (Vigna's splitmix64.c), i.e.
        // the mix of 0x9E3779B97F4A7C15.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }
}
