//! Stratified percentile bootstrap, resampling by counts on the pre-sorted order.
//!
//! # Resampling
//! Each resample draws, with replacement, `P` positives from the `P` positives and `N`
//! negatives from the `N` negatives of the whole analysed set (stratified by true class, as
//! pROC does), and records how often each case was drawn. One linear pass over the sorted
//! order ([`super::subgroup::count_pass`]) with those counts as weights then gives every
//! level's 2x2 table and AUROC for that resample: nothing is re-sorted. Subgroup levels are
//! domains of the same resample, so a level's class counts vary between resamples, and gaps
//! between two levels are differences taken within each resample.
//!
//! # RNG (reproducible on every machine and thread count)
//! Resample `r` (0-based) uses its own generator: `ChaCha8Rng::seed_from_u64(seed)` (rand_chacha
//! 0.9; `seed_from_u64` expands the seed with PCG32 as rand_core 0.9 specifies) switched to
//! stream `r` with `set_stream(r)`. It draws the `P` positive indices first, then the `N`
//! negative ones, each uniform on `[0, m)` by Lemire's multiply-shift with rejection on
//! 32-bit outputs ([`uniform_below`], implemented here so no library upgrade can change it).
//! Resamples run in parallel but results are stored by index, so the thread count never
//! changes an interval.
//!
//! # Percentile interval
//! `lower`/`upper` are the `a/2` and `1 - a/2` quantiles of the resampled values with linear
//! interpolation between order statistics (R `quantile(type = 7)`, numpy's default). A metric
//! undefined in a resample (e.g. PPV with no predicted positives) is left out of that metric's
//! quantiles; when it is undefined in every resample it has no interval.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::subgroup::{LevelCounts, Prepared, RunScratch, count_pass};

/// Metrics recorded per level and resample, in this order.
pub const BOOT_METRICS: [&str; 6] = [
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "accuracy",
    "auroc",
];

/// The generator of resample `index` for `seed` (see the module docs).
pub fn resample_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// A uniform integer in `[0, m)` (`m >= 1`) by Lemire's nearly divisionless method on 32-bit
/// outputs (Lemire 2019, ACM TOMACS 29:3).
pub fn uniform_below(rng: &mut impl RngCore, m: u32) -> u32 {
    let mut prod = u64::from(rng.next_u32()) * u64::from(m);
    let mut low = prod as u32;
    if low < m {
        let floor = m.wrapping_neg() % m;
        while low < floor {
            prod = u64::from(rng.next_u32()) * u64::from(m);
            low = prod as u32;
        }
    }
    (prod >> 32) as u32
}

/// Per-level metric values of every resample: `values[r][l * 6 + k]` is metric
/// [`BOOT_METRICS`]`[k]` of level `l` in resample `r`, NaN where undefined (internal only:
/// never reported).
#[derive(Debug, Clone)]
pub struct Resamples {
    /// Levels per resample.
    pub n_levels: usize,
    /// One row per resample.
    pub values: Vec<Vec<f64>>,
}

impl Resamples {
    /// Defined values of metric `k` of level `l`, in resample order.
    pub fn metric(&self, l: usize, k: usize) -> Vec<f64> {
        self.values
            .iter()
            .map(|row| row[l * BOOT_METRICS.len() + k])
            .filter(|v| !v.is_nan())
            .collect()
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        f64::NAN
    } else {
        num as f64 / den as f64
    }
}

/// Runs `resamples` stratified bootstrap resamples over `prep`.
pub fn run(prep: &Prepared, resamples: u32, seed: u64) -> Resamples {
    let n_pos = prep.positive.iter().filter(|&&y| y).count();
    let n_neg = prep.n - n_pos;
    let nl = prep.n_levels;
    let values = (0..resamples)
        .into_par_iter()
        .map_init(
            || {
                (
                    vec![0u32; n_pos],
                    vec![0u32; n_neg],
                    LevelCounts::new(nl),
                    RunScratch::new(nl),
                )
            },
            |(wpos, wneg, acc, scratch), r| {
                let mut rng = resample_rng(seed, u64::from(r));
                wpos.iter_mut().for_each(|w| *w = 0);
                wneg.iter_mut().for_each(|w| *w = 0);
                for _ in 0..n_pos {
                    wpos[uniform_below(&mut rng, n_pos as u32) as usize] += 1;
                }
                for _ in 0..n_neg {
                    wneg[uniform_below(&mut rng, n_neg as u32) as usize] += 1;
                }
                // Positives (negatives) are met in sorted order, so a cursor per class maps a
                // sorted position to its draw count.
                let (mut ip, mut ineg) = (0usize, 0usize);
                let positive = &prep.positive;
                count_pass(
                    prep,
                    |p| {
                        if positive[p] {
                            ip += 1;
                            u64::from(wpos[ip - 1])
                        } else {
                            ineg += 1;
                            u64::from(wneg[ineg - 1])
                        }
                    },
                    acc,
                    scratch,
                );
                let mut row = Vec::with_capacity(nl * BOOT_METRICS.len());
                for l in 0..nl {
                    let (fn_, tn) = (acc.fn_[l], acc.tn[l]);
                    let tp = acc.pos[l] - fn_;
                    let fp = acc.neg[l] - tn;
                    row.push(ratio(tp, tp + fn_));
                    row.push(ratio(tn, tn + fp));
                    row.push(ratio(tp, tp + fp));
                    row.push(ratio(tn, tn + fn_));
                    row.push(ratio(tp + tn, tp + tn + fp + fn_));
                    row.push(acc.auc(l).unwrap_or(f64::NAN));
                }
                row
            },
        )
        .collect();
    Resamples {
        n_levels: nl,
        values,
    }
}

/// The `q` quantile of `values` with linear interpolation (R type 7); `None` when empty.
///
/// # Formula
/// Sorted values `x_1 <= ... <= x_m`, `h = (m - 1) q`: `x_{floor h} + (h - floor h)
/// (x_{floor h + 1} - x_{floor h})` (0-based).
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(|a, b| a.total_cmp(b));
    let h = (values.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(values.len() - 1);
    Some(values[lo] + (h - lo as f64) * (values[hi] - values[lo]))
}

/// The two-sided percentile interval of `values` at `confidence`.
pub fn percentile_interval(values: &mut [f64], confidence: f64) -> Option<(f64, f64)> {
    let a = 1.0 - confidence;
    Some((quantile(values, a / 2.0)?, quantile(values, 1.0 - a / 2.0)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantile_type7() {
        // numpy.quantile([1, 2, 3, 4, 10], [0.025, 0.975]) = [1.1, 9.4]
        let mut v = vec![10.0, 2.0, 4.0, 1.0, 3.0];
        let (l, h) = percentile_interval(&mut v, 0.95).unwrap();
        assert!((l - 1.1).abs() < 1e-12 && (h - 9.4).abs() < 1e-12);
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn rng_stream_is_pinned() {
        // Pin the generator: a change in rand_chacha or in the derivation shows up here.
        let mut a = resample_rng(20_070_315, 0);
        let mut b = resample_rng(20_070_315, 1);
        let xa: Vec<u32> = (0..3).map(|_| uniform_below(&mut a, 1000)).collect();
        let xb: Vec<u32> = (0..3).map(|_| uniform_below(&mut b, 1000)).collect();
        // Recorded from rand_chacha 0.9.0; if this changes, every published bootstrap interval
        // changes with it.
        assert_eq!(xa, [845, 841, 765]);
        assert_eq!(xb, [264, 317, 116]);
        let mut a2 = resample_rng(20_070_315, 0);
        assert_eq!(
            xa,
            (0..3)
                .map(|_| uniform_below(&mut a2, 1000))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn uniform_below_is_in_range_and_covers() {
        let mut rng = resample_rng(1, 0);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[uniform_below(&mut rng, 7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
    }

    /// Rebuilds resample `r` explicitly (the drawn cases as a new data set) and recomputes its
    /// metrics from the definitions: checks the by-counts pass and the draw-to-case mapping.
    #[test]
    fn resample_equals_explicit_rebuild() {
        use crate::stats::auroc::tests::naive_delong;
        use crate::stats::confusion::Confusion;
        let labels: Vec<bool> = (0..41).map(|i| i % 3 != 0).collect();
        let scores: Vec<f64> = (0..41).map(|i| f64::from((i * 7) % 13) / 12.0).collect();
        let prep = Prepared::new(&labels, &scores, &[], 0.5).unwrap();
        let boot = run(&prep, 5, 99);
        // Positives and negatives in the engine's sorted order.
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
        let pos: Vec<usize> = order.iter().copied().filter(|&i| labels[i]).collect();
        let neg: Vec<usize> = order.iter().copied().filter(|&i| !labels[i]).collect();
        for r in 0..5u64 {
            let mut rng = resample_rng(99, r);
            let mut cases: Vec<usize> = Vec::new();
            for _ in 0..pos.len() {
                cases.push(pos[uniform_below(&mut rng, pos.len() as u32) as usize]);
            }
            for _ in 0..neg.len() {
                cases.push(neg[uniform_below(&mut rng, neg.len() as u32) as usize]);
            }
            let l: Vec<bool> = cases.iter().map(|&i| labels[i]).collect();
            let s: Vec<f64> = cases.iter().map(|&i| scores[i]).collect();
            let c = Confusion::at_threshold(&l, &s, 0.5);
            let row = &boot.values[r as usize];
            assert_eq!(row[0], c.sensitivity().unwrap());
            assert_eq!(row[1], c.specificity().unwrap());
            assert_eq!(row[4], c.accuracy().unwrap());
            let (auc, _) = naive_delong(&l, &s).unwrap();
            assert!((row[5] - auc).abs() < 1e-12);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn reproducible_for_a_seed(seed in any::<u64>(), cases in proptest::collection::vec((any::<bool>(), 0u8..20), 4..60)) {
            let labels: Vec<bool> = cases.iter().map(|c| c.0).collect();
            let scores: Vec<f64> = cases.iter().map(|c| f64::from(c.1) / 20.0).collect();
            let prep = Prepared::new(&labels, &scores, &[], 0.5).unwrap();
            let a = run(&prep, 50, seed);
            // A different thread count must not change anything.
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            let b = pool.install(|| run(&prep, 50, seed));
            prop_assert_eq!(
                a.values.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.values.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}
