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
//! positives from the level's `P_l` positives and `N_l` negatives from its `N_l` negatives. The
//! AUROC of a resample depends only on how many drawn positives and negatives carry each tied
//! score, so each draw (a uniform case index, exactly as when drawing cases) is mapped to its
//! tie group and only per-group counts are kept ([`ClassGroups`]). One merge pass over the
//! positive and negative groups in score order then gives that resample's Mann-Whitney AUROC:
//! nothing is re-sorted, and with scores to 4 decimals a level's pass touches at most about ten
//! thousand groups per class instead of every case. A level with both classes therefore has a
//! defined AUROC in every resample; the number of usable resamples is still counted and
//! reported with every interval.
//!
//! # RNG (reproducible on every machine and thread count)
//! Resample `r` (0-based) of level `l` uses its own xoshiro256++ generator (Blackman & Vigna
//! 2021, ACM TOMS 47:36; [`Xoshiro256pp`], implemented here so no library upgrade can change
//! it) on stream `t = (l << 32) | r`: its four state words are SplitMix64 outputs `4t + 1` to
//! `4t + 4` of the sequence started at `seed` (Vigna's recommended seeding; [`SplitMix64`]). It
//! draws the `P_l` positive indices first, then the `N_l` negative ones (indices into that
//! class's cases of the level in sorted order), each uniform on `[0, m)` by Lemire's
//! multiply-shift with rejection on one 64-bit output ([`Xoshiro256pp::below`]). Resamples run
//! in parallel but results are stored by index, so the thread count never changes an interval.
//! Until issue 17's speed step the AUROC used ChaCha8 with 32-bit draws ([`resample_rng`],
//! which the ECE bootstrap and the seeded simulations still use); the AUROC intervals moved
//! within their Monte-Carlo error when the generator changed.
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

/// SplitMix64 (Steele, Lea & Flood 2014; Vigna's `splitmix64.c`), used to seed
/// [`Xoshiro256pp`].
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// xoshiro256++ 1.0 (Blackman & Vigna; `xoshiro256plusplus.c`), the AUROC bootstrap's generator.
#[derive(Debug, Clone)]
pub struct Xoshiro256pp {
    s: [u64; 4],
}

impl Xoshiro256pp {
    /// A generator with the given state (not all zero).
    pub fn from_state(s: [u64; 4]) -> Self {
        Xoshiro256pp { s }
    }

    /// Stream `stream` of `seed` (see the module docs): state words are SplitMix64 outputs
    /// `4 stream + 1 ..= 4 stream + 4` from `seed`.
    pub fn stream(seed: u64, stream: u64) -> Self {
        let mut sm = SplitMix64(
            seed.wrapping_add(stream.wrapping_mul(4).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        );
        let s = [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()];
        // SplitMix64's output is a bijection of its counter, so only one of four consecutive
        // outputs can be zero; the state is never all zero.
        Xoshiro256pp { s }
    }

    /// The next 64-bit output.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform integer in `[0, m)` (`m >= 1`): Lemire's multiply-shift with rejection on
    /// 64-bit outputs (Lemire 2019, ACM TOMACS 29:3), exact for every `m`.
    #[inline]
    pub fn below(&mut self, m: u64) -> u64 {
        let mut prod = u128::from(self.next_u64()) * u128::from(m);
        let mut low = prod as u64;
        if low < m {
            let floor = m.wrapping_neg() % m;
            while low < floor {
                prod = u128::from(self.next_u64()) * u128::from(m);
                low = prod as u64;
            }
        }
        (prod >> 64) as u64
    }
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

/// One class of one level: its tie groups in score order and the group of each case.
#[derive(Debug, Clone, Default)]
pub struct ClassGroups {
    /// Global run (tie group of the whole set, in score order) of each group, ascending.
    pub run: Vec<u32>,
    /// Group of each of the class's cases in score order.
    case_group: CaseGroups,
    /// Cases of the class.
    pub n: u32,
    /// Cases in the largest group.
    max_group: u32,
}

/// The case-to-group map of a class, in the narrowest type that holds it.
#[derive(Debug, Clone, Default)]
enum CaseGroups {
    /// Every group is one case: group = case.
    #[default]
    Identity,
    /// At most 65,536 groups.
    Narrow(Vec<u16>),
    /// Any number of groups.
    Wide(Vec<u32>),
}

impl ClassGroups {
    fn push(&mut self, run: u32, raw: &mut Vec<u32>, size: &mut u32) {
        if self.run.last() != Some(&run) {
            self.run.push(run);
            *size = 0;
        }
        *size += 1;
        self.max_group = self.max_group.max(*size);
        raw.push(self.run.len() as u32 - 1);
        self.n += 1;
    }

    fn finish(&mut self, raw: Vec<u32>) {
        self.case_group = if self.run.len() == raw.len() {
            CaseGroups::Identity
        } else if self.run.len() <= usize::from(u16::MAX) + 1 {
            CaseGroups::Narrow(raw.into_iter().map(|g| g as u16).collect())
        } else {
            CaseGroups::Wide(raw)
        };
    }

    /// Draws `n` cases with replacement and counts them by group into `counts` (length: the
    /// number of groups); `false` when a counter filled up.
    fn draw<T: Count>(&self, rng: &mut Xoshiro256pp, counts: &mut [T]) -> bool {
        counts.iter_mut().for_each(|c| *c = T::default());
        let m = u64::from(self.n);
        let mut ok = true;
        match &self.case_group {
            CaseGroups::Identity => {
                for _ in 0..m {
                    ok &= counts[rng.below(m) as usize].bump();
                }
            }
            CaseGroups::Narrow(g) => {
                for _ in 0..m {
                    ok &= counts[usize::from(g[rng.below(m) as usize])].bump();
                }
            }
            CaseGroups::Wide(g) => {
                for _ in 0..m {
                    ok &= counts[g[rng.below(m) as usize] as usize].bump();
                }
            }
        }
        ok
    }
}

/// One level's cases in the shared sorted order, by class.
#[derive(Debug, Clone, Default)]
pub struct LevelOrder {
    /// Positives.
    pub pos: ClassGroups,
    /// Negatives.
    pub neg: ClassGroups,
}

/// Every level's cases in sorted order, from one pass over `prep`.
pub(crate) fn level_orders(prep: &Prepared) -> Vec<LevelOrder> {
    let mut out = vec![LevelOrder::default(); prep.n_levels];
    let mut raw = vec![(Vec::new(), Vec::new()); prep.n_levels];
    let mut size = vec![(0u32, 0u32); prep.n_levels];
    for r in 0..prep.runs.len() - 1 {
        for p in prep.runs[r]..prep.runs[r + 1] {
            for &l in &prep.levels[p * prep.stride..(p + 1) * prep.stride] {
                let l = l as usize;
                let (o, raw, size) = (&mut out[l], &mut raw[l], &mut size[l]);
                if prep.positive[p] {
                    o.pos.push(r as u32, &mut raw.0, &mut size.0);
                } else {
                    o.neg.push(r as u32, &mut raw.1, &mut size.1);
                }
            }
        }
    }
    for (o, (rp, rn)) in out.iter_mut().zip(raw) {
        o.pos.finish(rp);
        o.neg.finish(rn);
    }
    out
}

/// Largest group for which byte counters are tried: a count of 255 then needs a draw far in
/// the tail (mean at most 64), and a full counter redoes the resample with 32-bit counters.
const BYTE_COUNTER_MAX_GROUP: u32 = 64;

/// The AUROC of `level` in each of `resamples` stratified resamples (NaN where a class is
/// absent, which stratification rules out when the level has both classes).
pub(crate) fn auc_resamples(level: &LevelOrder, l: usize, resamples: u32, seed: u64) -> Vec<f64> {
    let (gp, gn) = (level.pos.run.len(), level.neg.run.len());
    if level.pos.n == 0 || level.neg.n == 0 {
        return vec![f64::NAN; resamples as usize];
    }
    let bytes = level.pos.max_group.max(level.neg.max_group) <= BYTE_COUNTER_MAX_GROUP;
    (0..resamples)
        .into_par_iter()
        .map_init(
            || {
                if bytes {
                    (vec![0u8; gp], vec![0u8; gn], Vec::new(), Vec::new())
                } else {
                    (Vec::new(), Vec::new(), vec![0u32; gp], vec![0u32; gn])
                }
            },
            |(p8, n8, p32, n32), r| {
                let stream = ((l as u64) << 32) | u64::from(r);
                if bytes && draw(level, seed, stream, p8, n8) {
                    return weighted_auc(level, p8, n8);
                }
                // Counts that may exceed a byte (or did): 32-bit counters from the same
                // generator, so the result never depends on the width.
                p32.resize(gp, 0);
                n32.resize(gn, 0);
                draw(level, seed, stream, p32, n32);
                weighted_auc(level, p32, n32)
            },
        )
        .collect()
}

/// A draw counter: `u8` (fast) or `u32` (fallback).
trait Count: Copy + Default + Into<u64> {
    /// Adds one; `false` when the counter is full.
    fn bump(&mut self) -> bool;
}

impl Count for u8 {
    #[inline]
    fn bump(&mut self) -> bool {
        *self = self.wrapping_add(1);
        *self != u8::MAX
    }
}

impl Count for u32 {
    #[inline]
    fn bump(&mut self) -> bool {
        *self += 1;
        true
    }
}

/// Draws one resample's group counts (positives first, then negatives) from stream `stream`;
/// `false` when a counter filled up.
fn draw<T: Count>(
    level: &LevelOrder,
    seed: u64,
    stream: u64,
    wpos: &mut [T],
    wneg: &mut [T],
) -> bool {
    let mut rng = Xoshiro256pp::stream(seed, stream);
    let ok = level.pos.draw(&mut rng, wpos);
    level.neg.draw(&mut rng, wneg) && ok
}

/// Mann-Whitney AUROC of one level from per-group draw counts (ties 1/2): a merge of the
/// positive and negative groups by run.
fn weighted_auc<T: Count>(level: &LevelOrder, wpos: &[T], wneg: &[T]) -> f64 {
    let (rp, rn) = (&level.pos.run, &level.neg.run);
    let (mut k, mut below_neg, mut mw2) = (0usize, 0u64, 0u64);
    for (j, &run) in rp.iter().enumerate() {
        while k < rn.len() && rn[k] < run {
            below_neg += wneg[k].into();
            k += 1;
        }
        let at = if k < rn.len() && rn[k] == run {
            wneg[k].into()
        } else {
            0
        };
        mw2 += wpos[j].into() * (2 * below_neg + at);
    }
    mw2 as f64 / (2.0 * f64::from(level.pos.n) * f64::from(level.neg.n))
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
            let mut rng = Xoshiro256pp::stream(99, r);
            let mut cases: Vec<usize> = Vec::new();
            for _ in 0..pos.len() {
                cases.push(pos[rng.below(pos.len() as u64) as usize]);
            }
            for _ in 0..neg.len() {
                cases.push(neg[rng.below(neg.len() as u64) as usize]);
            }
            let l: Vec<bool> = cases.iter().map(|&i| labels[i]).collect();
            let s: Vec<f64> = cases.iter().map(|&i| scores[i]).collect();
            let (auc, _) = naive_delong(&l, &s).unwrap();
            assert!((boot[r as usize] - auc).abs() < 1e-12);
        }
    }

    /// The byte counters give the same resamples as 32-bit ones, and a full byte counter is
    /// detected (a count of 255 needs a degenerate generator, so the detection is checked
    /// directly). Scores with ties and without (the identity map).
    #[test]
    fn byte_counters_equal_wide_counters() {
        for ties in [true, false] {
            let labels: Vec<bool> = (0..98).map(|i| i % 3 != 0).collect();
            let scores: Vec<f64> = (0..98)
                .map(|i| {
                    if ties {
                        f64::from((i * 7) % 11)
                    } else {
                        f64::from(i)
                    }
                })
                .collect();
            let prep = Prepared::new(&labels, &scores, &[], 0.5).unwrap();
            let o = &level_orders(&prep)[0];
            let (gp, gn) = (o.pos.run.len(), o.neg.run.len());
            assert_eq!(gp == o.pos.n as usize, !ties);
            let (mut p8, mut n8) = (vec![0u8; gp], vec![0u8; gn]);
            let (mut p32, mut n32) = (vec![0u32; gp], vec![0u32; gn]);
            for stream in 0..20 {
                assert!(draw(o, 5, stream, &mut p8, &mut n8));
                draw(o, 5, stream, &mut p32, &mut n32);
                assert!(p8.iter().zip(&p32).all(|(a, b)| u32::from(*a) == *b));
                assert!(n8.iter().zip(&n32).all(|(a, b)| u32::from(*a) == *b));
                assert_eq!(p32.iter().sum::<u32>(), o.pos.n);
                assert_eq!(n32.iter().sum::<u32>(), o.neg.n);
            }
        }
        let mut c = 254u8;
        assert!(!c.bump());
    }

    /// The generators against their authors' reference outputs: xoshiro256++ from state
    /// [1, 2, 3, 4] (the vector rand_xoshiro's tests take from Vigna's
    /// `xoshiro256plusplus.c`), SplitMix64 from state 0 (Vigna's `splitmix64.c`).
    #[test]
    fn generators_match_reference_outputs() {
        let mut x = Xoshiro256pp::from_state([1, 2, 3, 4]);
        let want: [u64; 10] = [
            41943041,
            58720359,
            3588806011781223,
            3591011842654386,
            9228616714210784205,
            9973669472204895162,
            14011001112246962877,
            12406186145184390807,
            15849039046786891736,
            10450023813501588000,
        ];
        assert_eq!(want.map(|_| x.next_u64()), want);
        let mut sm = SplitMix64(0);
        let want: [u64; 4] = [
            0xE220_A839_7B1D_CDAF,
            0x6E78_9E6A_A1B9_65F4,
            0x06C4_5D18_8009_454F,
            0xF88B_B8A8_724C_81EC,
        ];
        assert_eq!(want.map(|_| sm.next_u64()), want);
    }

    /// The documented stream scheme: stream `t` starts from SplitMix64 outputs `4t + 1 ..= 4t +
    /// 4` of `seed`, including streams of level > 0 (counter wrap-around).
    #[test]
    fn stream_state_is_the_documented_splitmix_window() {
        for (seed, t) in [
            (20_070_315u64, 0u64),
            (7, 3),
            (u64::MAX, 5),
            (1, (2 << 32) | 17),
        ] {
            let mut sm = SplitMix64(
                seed.wrapping_add(t.wrapping_mul(4).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            );
            let mut a = Xoshiro256pp::from_state([0; 4].map(|_| sm.next_u64()));
            let mut b = Xoshiro256pp::stream(seed, t);
            assert!((0..8).all(|_| a.next_u64() == b.next_u64()));
        }
        // Small t walked explicitly: 4t outputs skipped, then the next four.
        let mut sm = SplitMix64(99);
        for t in 0..4u64 {
            let s = [0; 4].map(|_| sm.next_u64());
            let mut a = Xoshiro256pp::from_state(s);
            assert_eq!(a.next_u64(), Xoshiro256pp::stream(99, t).next_u64());
        }
    }

    #[test]
    fn below_is_in_range_and_covers() {
        let mut rng = Xoshiro256pp::stream(1, 0);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[rng.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
        assert!((0..100).all(|_| rng.below(1) == 0));
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
