//! Stratified percentile bootstrap of the AUROC, resampling by counts on the pre-sorted order.
//!
//! # What is bootstrapped
//! Only the AUROC (overall and per level) under `interval: bootstrap`. Proportions keep a
//! closed-form interval with documented coverage even in bootstrap mode (Clopper-Pearson, see
//! [`crate::stats`]), and subgroup gaps use the simultaneous closed-form bound of
//! [`crate::stats::gap`].
//!
//! # Resampling (stratified by class within each level, as pROC does on a subset)
//! For each level (the whole set is level 0), resample `r` draws, with replacement, `P_l`
//! positives from the level's `P_l` positives and `N_l` negatives from its `N_l` negatives, and
//! records how often each case was drawn. One linear pass over the level's cases in the shared
//! sorted order, with those counts as weights, gives that resample's Mann-Whitney AUROC: nothing
//! is re-sorted. A level with both classes therefore has a defined AUROC in every resample; the
//! number of usable resamples is still counted and reported with every interval.
//!
//! # RNG (reproducible on every machine and thread count)
//! Resample `r` (0-based) of level `l` uses its own generator:
//! `ChaCha8Rng::seed_from_u64(seed)` (rand_chacha 0.9; `seed_from_u64` expands the seed with
//! PCG32 as rand_core 0.9 specifies) switched to stream `(l << 32) | r` with `set_stream`. It
//! draws the `P_l` positive indices first, then the `N_l` negative ones (indices in the level's
//! sorted order), each uniform on `[0, m)` by Lemire's multiply-shift with rejection on 32-bit
//! outputs ([`uniform_below`], implemented here so no library upgrade can change it). Resamples
//! run in parallel but results are stored by index, so the thread count never changes an
//! interval.
//!
//! # Percentile interval
//! `lower`/`upper` are the `a/2` and `1 - a/2` quantiles of the resampled values with linear
//! interpolation between order statistics (R `quantile(type = 7)`, numpy's default).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::subgroup::Prepared;

/// The generator of resample `index` for `seed` (see the module docs).
pub(crate) fn resample_rng(seed: u64, index: u64) -> ChaCha8Rng {
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

/// One level's cases in the shared sorted order: the class of each and where runs of tied
/// scores start.
#[derive(Debug, Clone, Default)]
pub struct LevelOrder {
    /// Class of each of the level's cases, in score order.
    pub positive: Vec<bool>,
    /// Index (into `positive`) of the start of each run of equal scores, then the length.
    pub runs: Vec<u32>,
    /// Positives.
    pub n_pos: u32,
}

/// Every level's cases in sorted order, from one pass over `prep`.
pub(crate) fn level_orders(prep: &Prepared) -> Vec<LevelOrder> {
    let mut out = vec![LevelOrder::default(); prep.n_levels];
    let mut last_run = vec![usize::MAX; prep.n_levels];
    for r in 0..prep.runs.len() - 1 {
        for p in prep.runs[r]..prep.runs[r + 1] {
            for &l in &prep.levels[p * prep.stride..(p + 1) * prep.stride] {
                let o = &mut out[l as usize];
                if last_run[l as usize] != r {
                    last_run[l as usize] = r;
                    o.runs.push(o.positive.len() as u32);
                }
                o.positive.push(prep.positive[p]);
                o.n_pos += u32::from(prep.positive[p]);
            }
        }
    }
    for o in &mut out {
        o.runs.push(o.positive.len() as u32);
    }
    out
}

/// The AUROC of `level` in each of `resamples` stratified resamples (NaN where a class is
/// absent, which stratification rules out when the level has both classes).
pub(crate) fn auc_resamples(level: &LevelOrder, l: usize, resamples: u32, seed: u64) -> Vec<f64> {
    let n_pos = level.n_pos as usize;
    let n_neg = level.positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return vec![f64::NAN; resamples as usize];
    }
    // Draw counts are kept in bytes, so that the counters of a million cases stay in cache; a
    // count reaching 255 (which needs hundreds of draws of one case) redoes the resample with
    // 32-bit counters from the same generator, so the result never depends on the width.
    (0..resamples)
        .into_par_iter()
        .map_init(
            || (vec![0u8; n_pos], vec![0u8; n_neg]),
            |(wpos, wneg), r| {
                let stream = ((l as u64) << 32) | u64::from(r);
                if draw(seed, stream, wpos, wneg) {
                    weighted_auc(level, wpos, wneg)
                } else {
                    let (mut p32, mut n32) = (vec![0u32; n_pos], vec![0u32; n_neg]);
                    draw(seed, stream, &mut p32, &mut n32);
                    weighted_auc(level, &p32, &n32)
                }
            },
        )
        .collect()
}

/// A draw counter: `u8` (fast) or `u32` (fallback).
trait Count: Copy + Into<u64> {
    /// Adds one; `false` when the counter is full.
    fn bump(&mut self) -> bool;
}

impl Count for u8 {
    fn bump(&mut self) -> bool {
        *self = self.wrapping_add(1);
        *self != u8::MAX
    }
}

impl Count for u32 {
    fn bump(&mut self) -> bool {
        *self += 1;
        true
    }
}

/// Draws one resample's counts (positives first, then negatives) from stream `stream`;
/// `false` when a counter filled up.
fn draw<T: Count + Default>(seed: u64, stream: u64, wpos: &mut [T], wneg: &mut [T]) -> bool {
    let mut rng = resample_rng(seed, stream);
    let mut ok = true;
    for w in [&mut *wpos, &mut *wneg] {
        w.iter_mut().for_each(|x| *x = T::default());
        let m = w.len() as u32;
        for _ in 0..m {
            ok &= w[uniform_below(&mut rng, m) as usize].bump();
        }
    }
    ok
}

/// Mann-Whitney AUROC of one level with per-case weights (ties 1/2).
fn weighted_auc<T: Count>(level: &LevelOrder, wpos: &[T], wneg: &[T]) -> f64 {
    let (mut ip, mut ineg) = (0usize, 0usize);
    let (mut below_neg, mut mw2, mut tp, mut tn) = (0u64, 0u64, 0u64, 0u64);
    for w in level.runs.windows(2) {
        let (s, e) = (w[0] as usize, w[1] as usize);
        let (mut gp, mut gn) = (0u64, 0u64);
        for &pos in &level.positive[s..e] {
            if pos {
                gp += wpos[ip].into();
                ip += 1;
            } else {
                gn += wneg[ineg].into();
                ineg += 1;
            }
        }
        mw2 += gp * (2 * below_neg + gn);
        below_neg += gn;
        tp += gp;
        tn += gn;
    }
    mw2 as f64 / (2.0 * tp as f64 * tn as f64)
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
pub(crate) fn percentile_interval(values: &mut [f64], confidence: f64) -> Option<(f64, f64)> {
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

    /// Rebuilds resample `r` of the whole set explicitly (the drawn cases as a new data set)
    /// and recomputes its AUROC with the naive O(P N) definition: checks the by-counts pass and
    /// the draw-to-case mapping.
    #[test]
    fn resample_equals_explicit_rebuild() {
        use crate::stats::auroc::tests::naive_delong;
        let labels: Vec<bool> = (0..41).map(|i| i % 3 != 0).collect();
        let scores: Vec<f64> = (0..41).map(|i| f64::from((i * 7) % 13) / 12.0).collect();
        let prep = Prepared::new(&labels, &scores, &[], 0.5).unwrap();
        let orders = level_orders(&prep);
        let boot = auc_resamples(&orders[0], 0, 5, 99);
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
            let (auc, _) = naive_delong(&l, &s).unwrap();
            assert!((boot[r as usize] - auc).abs() < 1e-12);
        }
    }

    /// The byte counters give the same resamples as 32-bit ones, and a full byte counter is
    /// detected (a 300-case class drawn 300 times puts 255 on some case only when the generator
    /// is degenerate, so the detection is checked directly).
    #[test]
    fn byte_counters_equal_wide_counters() {
        let (mut p8, mut n8) = (vec![0u8; 37], vec![0u8; 61]);
        let (mut p32, mut n32) = (vec![0u32; 37], vec![0u32; 61]);
        for stream in 0..20 {
            assert!(draw(5, stream, &mut p8, &mut n8));
            draw(5, stream, &mut p32, &mut n32);
            assert!(p8.iter().zip(&p32).all(|(a, b)| u32::from(*a) == *b));
            assert!(n8.iter().zip(&n32).all(|(a, b)| u32::from(*a) == *b));
        }
        let mut c = 254u8;
        assert!(!c.bump());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn reproducible_for_a_seed(seed in any::<u64>(), cases in proptest::collection::vec((any::<bool>(), 0u8..20), 4..60)) {
            let labels: Vec<bool> = cases.iter().map(|c| c.0).collect();
            let scores: Vec<f64> = cases.iter().map(|c| f64::from(c.1) / 20.0).collect();
            let prep = Prepared::new(&labels, &scores, &[], 0.5).unwrap();
            let o = level_orders(&prep);
            let a = auc_resamples(&o[0], 0, 50, seed);
            // A different thread count must not change anything.
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            let b = pool.install(|| auc_resamples(&o[0], 0, 50, seed));
            prop_assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}
