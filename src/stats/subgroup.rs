//! Subgroups as coded factors, and the one sorted order every level's statistics come from.
//!
//! # Why one sort
//! The AUROC of a subgroup needs its cases in score order. Sorting each level again costs
//! `O(n log n)` per level; instead [`Prepared`] sorts all cases once, stores for each sorted
//! position the global ids of the levels it belongs to (the whole set is level 0), and every
//! statistic — confusion counts at the threshold, the Mann-Whitney AUROC, the DeLong structural
//! components, each bootstrap resample — is one linear pass over that order that updates each
//! case's levels. Within a run of tied scores, a level's positives are credited 1/2 for each of
//! the level's negatives in the run.
//!
//! # Levels
//! A [`Factor`] is one attribute (or an intersection of attributes): its levels sorted by
//! string (byte) order, and each case's level code. Intersections are named `a x b` with values
//! `va x vb`, and only combinations that occur are levels.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rayon::prelude::*;

/// A fast multiply-rotate hasher (the Fx hash of rustc) for coding level names: the map only
/// numbers the distinct values, which are then renumbered in sorted order, so the hash never
/// shows in a result, and crafted values can at worst slow the coding of one column.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ rest.len() as u64);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

use super::StatsError;

/// A categorical attribute: level names (sorted) and each case's level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    /// Attribute name (for intersections `a x b`).
    pub name: String,
    /// Level names in string order.
    pub levels: Vec<String>,
    /// Each case's index into `levels`.
    pub codes: Vec<u32>,
}

/// A string of at most 15 bytes as one integer: its bytes, zero-padded, and its length in the
/// last byte (so "a" and "a\0" differ); `None` for longer strings.
pub(crate) fn short_key(v: &str) -> Option<u128> {
    let b = v.as_bytes();
    if b.len() > 15 {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..b.len()].copy_from_slice(b);
    buf[15] = b.len() as u8;
    Some(u128::from_le_bytes(buf))
}

impl Factor {
    /// Codes a column of level names; levels are sorted by string order.
    pub fn from_values<'s, I>(name: &str, values: I) -> Factor
    where
        I: IntoIterator<Item = &'s str>,
    {
        // Level names are usually short ("site-B", "65+"): a name of at most 15 bytes is
        // coded by its bytes and length packed into one integer, so a lookup hashes and
        // compares one `u128` instead of a string. Longer names go through a string map.
        // Both give codes in first-seen order; the names are sorted afterwards.
        let values = values.into_iter();
        // Up to SCAN short names are looked up by a linear scan of their keys (cheaper than
        // hashing for the few levels an attribute usually has); past that, by a hash map.
        const SCAN: usize = 16;
        let mut scan: Vec<(u128, u32)> = Vec::with_capacity(SCAN);
        let mut short: FxMap<u128, u32> = FxMap::default();
        let mut long: FxMap<&'s str, u32> = FxMap::default();
        let mut seen: Vec<&'s str> = Vec::new();
        let mut raw = Vec::with_capacity(values.size_hint().0);
        for v in values {
            let next = seen.len() as u32;
            let code = match short_key(v) {
                Some(k) if short.is_empty() => match scan.iter().find(|e| e.0 == k) {
                    Some(e) => e.1,
                    None if scan.len() < SCAN => {
                        scan.push((k, next));
                        next
                    }
                    None => {
                        short.extend(scan.iter().copied());
                        short.insert(k, next);
                        next
                    }
                },
                Some(k) => *short.entry(k).or_insert(next),
                None => *long.entry(v).or_insert(next),
            };
            if code == next {
                seen.push(v);
            }
            raw.push(code);
        }
        let mut names: Vec<(&str, u32)> = seen.into_iter().zip(0u32..).collect();
        names.sort_unstable();
        let mut remap = vec![0u32; names.len()];
        for (new, &(_, old)) in names.iter().enumerate() {
            remap[old as usize] = new as u32;
        }
        for c in &mut raw {
            *c = remap[*c as usize];
        }
        Factor {
            name: name.to_string(),
            levels: names.into_iter().map(|(s, _)| s.to_string()).collect(),
            codes: raw,
        }
    }

    /// The intersection of several factors: one level per combination that occurs, named
    /// `va x vb`, sorted by that name.
    pub fn intersection(parts: &[&Factor]) -> Factor {
        let n = parts.first().map_or(0, |f| f.codes.len());
        let name = parts
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(" x ");
        let mut index: FxMap<Vec<u32>, u32> = FxMap::default();
        let mut raw = Vec::with_capacity(n);
        for i in 0..n {
            let key: Vec<u32> = parts.iter().map(|f| f.codes[i]).collect();
            let next = index.len() as u32;
            raw.push(*index.entry(key).or_insert(next));
        }
        let mut names: Vec<(String, u32)> = index
            .into_iter()
            .map(|(key, id)| {
                let label = key
                    .iter()
                    .zip(parts)
                    .map(|(&c, f)| f.levels[c as usize].as_str())
                    .collect::<Vec<_>>()
                    .join(" x ");
                (label, id)
            })
            .collect();
        names.sort_unstable();
        let mut remap = vec![0u32; names.len()];
        for (new, (_, old)) in names.iter().enumerate() {
            remap[*old as usize] = new as u32;
        }
        Factor {
            name,
            levels: names.into_iter().map(|(s, _)| s).collect(),
            codes: raw.into_iter().map(|c| remap[c as usize]).collect(),
        }
    }
}

/// All cases sorted once by score, with each position's levels: the shared input of every
/// linear pass.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Cases.
    pub n: usize,
    /// Levels per case including the whole set (1 + number of factors).
    pub stride: usize,
    /// Total levels (index 0 is the whole set).
    pub n_levels: usize,
    /// First global level id of each factor.
    pub offsets: Vec<usize>,
    /// Label of the case at each sorted position.
    pub positive: Vec<bool>,
    /// Global level ids of the case at each sorted position (`stride` per position).
    pub levels: Vec<u32>,
    /// Start of each run of equal scores, then `n`.
    pub runs: Vec<usize>,
    /// The index into `runs` of the first run with score `>= threshold` (`runs.len() - 1` when
    /// none).
    pub cut_run: usize,
}

/// `rows` (`stride` codes per case, in input order) gathered into the order of `pairs`. For
/// the usual few attributes the row is copied as a fixed-size array (a copy of unknown length
/// per case would be a `memcpy` call per case).
fn gather_rows(rows: &[u32], stride: usize, pairs: &[(u64, u32)]) -> Vec<u32> {
    fn fixed<const S: usize>(rows: &[u32], pairs: &[(u64, u32)]) -> Vec<u32> {
        let src: &[[u32; S]] = rows.as_chunks::<S>().0;
        let mut out: Vec<[u32; S]> = Vec::with_capacity(pairs.len());
        out.extend(pairs.iter().map(|&(_, i)| src[i as usize]));
        out.into_flattened()
    }
    match stride {
        1 => fixed::<1>(rows, pairs),
        2 => fixed::<2>(rows, pairs),
        3 => fixed::<3>(rows, pairs),
        4 => fixed::<4>(rows, pairs),
        5 => fixed::<5>(rows, pairs),
        6 => fixed::<6>(rows, pairs),
        7 => fixed::<7>(rows, pairs),
        8 => fixed::<8>(rows, pairs),
        _ => {
            let mut out = Vec::with_capacity(pairs.len() * stride);
            for &(_, i) in pairs {
                let i = i as usize;
                out.extend_from_slice(&rows[i * stride..(i + 1) * stride]);
            }
            out
        }
    }
}

impl Prepared {
    /// Sorts the cases and lays out their levels. Scores must not be NaN (checked by the
    /// caller); `-0.0` and `0.0` are one score.
    pub fn new(
        labels: &[bool],
        scores: &[f64],
        factors: &[Factor],
        threshold: f64,
    ) -> Result<Prepared, StatsError> {
        let n = labels.len();
        if scores.len() != n {
            return Err(StatsError::LengthMismatch {
                labels: n,
                scores: scores.len(),
            });
        }
        if let Some(index) = scores.iter().position(|s| s.is_nan()) {
            return Err(StatsError::NanScore { index });
        }
        for f in factors {
            if f.codes.len() != n {
                return Err(StatsError::AttributeLength {
                    name: f.name.clone(),
                    got: f.codes.len(),
                    expected: n,
                });
            }
        }
        // Adding 0.0 turns -0.0 into 0.0; the key maps each score's bits to an unsigned integer
        // in the order of `f64::total_cmp` (flip every bit of a negative, the sign bit of a
        // positive), so the sort compares integers. The index breaks ties, so the order (and
        // every float sum over it) is unique whatever the thread count.
        let key = |s: f64| {
            let b = (s + 0.0).to_bits();
            if b >> 63 == 1 { !b } else { b | (1 << 63) }
        };
        let mut pairs: Vec<(u64, u32)> = scores
            .iter()
            .enumerate()
            .map(|(i, &s)| (key(s), i as u32))
            .collect();
        pairs.par_sort_unstable();
        let stride = 1 + factors.len();
        let mut offsets = Vec::with_capacity(factors.len());
        let mut n_levels = 1;
        for f in factors {
            offsets.push(n_levels);
            n_levels += f.levels.len();
        }
        // Each case's levels laid out in input order first (sequential reads of every column),
        // so that the sorted layout below gathers one contiguous row per case.
        let mut rows = vec![0u32; n * stride];
        for (j, (f, &off)) in factors.iter().zip(&offsets).enumerate() {
            let col = 1 + j;
            for (row, &c) in rows.chunks_exact_mut(stride).zip(&f.codes) {
                row[col] = off as u32 + c;
            }
        }
        let mut positive = Vec::with_capacity(n);
        let levels = gather_rows(&rows, stride, &pairs);
        let mut runs = Vec::new();
        let mut cut_run = None;
        for (pos, &(k, i)) in pairs.iter().enumerate() {
            let i = i as usize;
            positive.push(labels[i]);
            if pos == 0 || k != pairs[pos - 1].0 {
                if cut_run.is_none() && scores[i] + 0.0 >= threshold {
                    cut_run = Some(runs.len());
                }
                runs.push(pos);
            }
        }
        let cut_run = cut_run.unwrap_or(runs.len());
        runs.push(n);
        Ok(Prepared {
            n,
            stride,
            n_levels,
            offsets,
            positive,
            levels,
            runs,
            cut_run,
        })
    }

    fn levels_at(&self, pos: usize) -> &[u32] {
        &self.levels[pos * self.stride..(pos + 1) * self.stride]
    }
}

/// Per-level totals from one pass: the 2x2 counts and twice the Mann-Whitney sum.
#[derive(Debug, Clone, Default)]
pub struct LevelCounts {
    /// Positives (weighted) per level.
    pub pos: Vec<u64>,
    /// Negatives (weighted) per level.
    pub neg: Vec<u64>,
    /// Positives below the threshold (false negatives) per level.
    pub fn_: Vec<u64>,
    /// Negatives below the threshold (true negatives) per level.
    pub tn: Vec<u64>,
    /// `2 * sum over positive-negative pairs of [pos > neg] + 1/2 [pos = neg]`, per level.
    pub mw2: Vec<u64>,
}

impl LevelCounts {
    /// Zeroed accumulators for `n_levels` levels.
    pub fn new(n_levels: usize) -> Self {
        LevelCounts {
            pos: vec![0; n_levels],
            neg: vec![0; n_levels],
            fn_: vec![0; n_levels],
            tn: vec![0; n_levels],
            mw2: vec![0; n_levels],
        }
    }

    fn reset(&mut self) {
        for v in [
            &mut self.pos,
            &mut self.neg,
            &mut self.fn_,
            &mut self.tn,
            &mut self.mw2,
        ] {
            v.iter_mut().for_each(|x| *x = 0);
        }
    }

    /// The AUROC of level `l`, `None` when a class is absent.
    pub fn auc(&self, l: usize) -> Option<f64> {
        let pairs = self.pos[l] as f64 * self.neg[l] as f64;
        (pairs > 0.0).then(|| self.mw2[l] as f64 / (2.0 * pairs))
    }
}

/// Scratch space for runs of tied scores.
#[derive(Debug, Clone)]
pub struct RunScratch {
    gpos: Vec<u64>,
    gneg: Vec<u64>,
    touched: Vec<u32>,
}

impl RunScratch {
    /// Scratch for `n_levels` levels.
    pub fn new(n_levels: usize) -> Self {
        RunScratch {
            gpos: vec![0; n_levels],
            gneg: vec![0; n_levels],
            touched: Vec::new(),
        }
    }
}

/// One linear pass over the sorted cases with a weight per case (1 for the sample itself, the
/// resample count in a bootstrap). `weight(pos)` is called once per sorted position, in order.
pub(crate) fn count_pass(
    prep: &Prepared,
    mut weight: impl FnMut(usize) -> u64,
    acc: &mut LevelCounts,
    scratch: &mut RunScratch,
) {
    acc.reset();
    // pos/neg double as the running "below" counters until the end.
    let nruns = prep.runs.len() - 1;
    for r in 0..nruns {
        if r == prep.cut_run {
            acc.fn_.copy_from_slice(&acc.pos);
            acc.tn.copy_from_slice(&acc.neg);
        }
        let (s, e) = (prep.runs[r], prep.runs[r + 1]);
        if e - s == 1 {
            // No ties: the common case with continuous scores.
            let w = weight(s);
            if w == 0 {
                continue;
            }
            if prep.positive[s] {
                for &l in prep.levels_at(s) {
                    let l = l as usize;
                    acc.mw2[l] += 2 * w * acc.neg[l];
                    acc.pos[l] += w;
                }
            } else {
                for &l in prep.levels_at(s) {
                    acc.neg[l as usize] += w;
                }
            }
            continue;
        }
        for p in s..e {
            let w = weight(p);
            if w == 0 {
                continue;
            }
            for &l in prep.levels_at(p) {
                let li = l as usize;
                if scratch.gpos[li] == 0 && scratch.gneg[li] == 0 {
                    scratch.touched.push(l);
                }
                if prep.positive[p] {
                    scratch.gpos[li] += w;
                } else {
                    scratch.gneg[li] += w;
                }
            }
        }
        for &l in &scratch.touched {
            let l = l as usize;
            let (gp, gn) = (scratch.gpos[l], scratch.gneg[l]);
            acc.mw2[l] += gp * (2 * acc.neg[l] + gn);
            acc.pos[l] += gp;
            acc.neg[l] += gn;
            scratch.gpos[l] = 0;
            scratch.gneg[l] = 0;
        }
        scratch.touched.clear();
    }
    if prep.cut_run >= nruns {
        acc.fn_.copy_from_slice(&acc.pos);
        acc.tn.copy_from_slice(&acc.neg);
    }
}

/// DeLong structural-component variance of each level's AUROC (second pass over the sample,
/// unit weights), `None` where a class has fewer than two cases.
///
/// # Formula
/// For positive `i` of a level, `V10_i = (#neg below + 1/2 #neg tied) / N`; for negative `j`,
/// `V01_j = (#pos above + 1/2 #pos tied) / P`; `S10 = sum (V10_i - A)^2 / (P - 1)`,
/// `S01 = sum (V01_j - A)^2 / (N - 1)`, `Var(A) = S10 / P + S01 / N` (DeLong, DeLong &
/// Clarke-Pearson 1988, Biometrics 44:837; midrank form of Sun & Xu 2014, IEEE SPL 21:1389).
/// All cases of a level in one run of tied scores share `V10` (or `V01`), so each run costs
/// one update per level.
pub fn delong_variances(prep: &Prepared, counts: &LevelCounts) -> Vec<Option<f64>> {
    let nl = prep.n_levels;
    let auc: Vec<f64> = (0..nl).map(|l| counts.auc(l).unwrap_or(0.0)).collect();
    let mut below_pos = vec![0u64; nl];
    let mut below_neg = vec![0u64; nl];
    let mut s10 = vec![0f64; nl];
    let mut s01 = vec![0f64; nl];
    let mut scratch = RunScratch::new(nl);
    for r in 0..prep.runs.len() - 1 {
        for p in prep.runs[r]..prep.runs[r + 1] {
            for &l in prep.levels_at(p) {
                let li = l as usize;
                if scratch.gpos[li] == 0 && scratch.gneg[li] == 0 {
                    scratch.touched.push(l);
                }
                if prep.positive[p] {
                    scratch.gpos[li] += 1;
                } else {
                    scratch.gneg[li] += 1;
                }
            }
        }
        for &l in &scratch.touched {
            let l = l as usize;
            let (gp, gn) = (scratch.gpos[l], scratch.gneg[l]);
            let (np, nn) = (counts.pos[l], counts.neg[l]);
            if np > 0 && nn > 0 {
                let v10 = (below_neg[l] as f64 + 0.5 * gn as f64) / nn as f64;
                let above_pos = np - below_pos[l] - gp;
                let v01 = (above_pos as f64 + 0.5 * gp as f64) / np as f64;
                s10[l] += gp as f64 * (v10 - auc[l]) * (v10 - auc[l]);
                s01[l] += gn as f64 * (v01 - auc[l]) * (v01 - auc[l]);
            }
            below_pos[l] += gp;
            below_neg[l] += gn;
            scratch.gpos[l] = 0;
            scratch.gneg[l] = 0;
        }
        scratch.touched.clear();
    }
    (0..nl)
        .map(|l| {
            let (np, nn) = (counts.pos[l] as f64, counts.neg[l] as f64);
            (np >= 2.0 && nn >= 2.0)
                .then(|| s10[l] / ((np - 1.0) * np) + s01[l] / ((nn - 1.0) * nn))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_codes_match_a_sorted_map_for_short_long_and_padded_names() {
        let long = "a-level-name-longer-than-fifteen-bytes";
        let few: Vec<String> = [
            "a",
            "a\0",
            "",
            long,
            "b",
            long,
            "a",
            "exactly15bytes!",
            "a\0",
            "",
        ]
        .iter()
        .map(|v| v.to_string())
        .collect();
        // More levels than the linear scan holds, short and long, each seen several times.
        let many: Vec<String> = (0..200)
            .map(|i| match i % 3 {
                0 => format!("s{}", (i * 7) % 40),
                1 => format!("{long}-{}", i % 5),
                _ => format!("s{}", i % 23),
            })
            .collect();
        for vals in [few, many] {
            let f = Factor::from_values("x", vals.iter().map(String::as_str));
            let sorted: std::collections::BTreeSet<&str> =
                vals.iter().map(String::as_str).collect();
            let levels: Vec<&str> = sorted.iter().copied().collect();
            assert_eq!(f.levels, levels);
            let want: Vec<u32> = vals
                .iter()
                .map(|v| levels.iter().position(|l| l == v).unwrap() as u32)
                .collect();
            assert_eq!(f.codes, want);
        }
    }

    #[test]
    fn factor_levels_sorted_and_coded() {
        let f = Factor::from_values("site", ["b", "a", "c", "a"]);
        assert_eq!(f.levels, ["a", "b", "c"]);
        assert_eq!(f.codes, [1, 0, 2, 0]);
        let g = Factor::from_values("sex", ["M", "F", "F", "M"]);
        let x = Factor::intersection(&[&f, &g]);
        assert_eq!(x.name, "site x sex");
        assert_eq!(x.levels, ["a x F", "a x M", "b x M", "c x F"]);
        assert_eq!(x.codes, [2, 0, 3, 1]);
    }

    #[test]
    fn pass_counts_and_ties() {
        // Scores with a tie between a positive and a negative at 0.5 (the threshold).
        let labels = [true, false, true, false, true];
        let scores = [0.9, 0.5, 0.5, 0.1, -0.0];
        let prep = Prepared::new(&labels, &scores, &[], 0.5).unwrap();
        let mut acc = LevelCounts::new(1);
        count_pass(&prep, |_| 1, &mut acc, &mut RunScratch::new(1));
        assert_eq!((acc.pos[0], acc.neg[0]), (3, 2));
        // TP: 0.9, 0.5 -> 2; FN: -0.0 -> 1; TN: 0.1 -> 1; FP: 0.5 -> 1.
        assert_eq!((acc.fn_[0], acc.tn[0]), (1, 1));
        // Pairs: 0.9 beats both (2), 0.5 beats 0.1 and ties 0.5 (1.5), -0.0 beats none: 3.5/6.
        assert_eq!(acc.auc(0), Some(3.5 / 6.0));
    }
}
