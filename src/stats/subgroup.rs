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
//! The sort ([`ScoreOrder`]) needs only the scores, so a caller can run it while it still codes
//! the attributes. It is a least-significant-digit radix sort of `(key, index)` pairs whose
//! passes run on the threads; the index breaks ties, so the order is unique whatever the
//! thread count. The sample's own passes (counts, then DeLong) split the row slots among the
//! threads ([`counts_and_variances`]): each level's sums still run over the one sorted order,
//! so the split changes no bit of any result.
//!
//! # Levels
//! A [`Factor`] is one attribute (or an intersection of attributes): its levels sorted by
//! string (byte) order, and each case's level code. A column is coded as [`LevelSegment`]s
//! (a table's chunks, as they are) in parallel, each in first-seen order with short names
//! looked up as one packed integer, and the segments' levels are merged and renumbered in
//! sorted order. Intersections are named `a x b` with values `va x vb`, and only combinations
//! that occur are levels.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

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

/// A level name's identity while a column is coded: a short name packed into one integer by
/// the [`LevelSegment`] (any packing that is one-to-one on the names it packs, such as
/// [`short_key`]), or the name itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LevelKey<'s> {
    /// A packed short name.
    Packed(u128),
    /// Any other name.
    Name(&'s str),
}

/// A run of consecutive rows of one attribute column, read by row: the input of
/// [`Factor::from_segments`]. Segments are coded in parallel, so a table's chunks (or slices
/// of them) are segments as they are, without copying the names.
pub trait LevelSegment: Sync {
    /// Rows in the segment.
    fn len(&self) -> usize;
    /// Whether the segment has no rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The key of row `i`'s level. Every segment of one column must use the same packing.
    fn key(&self, i: usize) -> LevelKey<'_>;
    /// The name of row `i`'s level.
    fn name(&self, i: usize) -> &str;
}

/// Rows of `&str` as a segment, packed with [`short_key`].
struct StrSegment<'a, 's>(&'a [&'s str]);

impl LevelSegment for StrSegment<'_, '_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn key(&self, i: usize) -> LevelKey<'_> {
        let v = self.0[i];
        short_key(v).map_or(LevelKey::Name(v), LevelKey::Packed)
    }
    fn name(&self, i: usize) -> &str {
        self.0[i]
    }
}

/// Rows per segment when [`Factor::from_values`] splits a column for the threads.
const SEGMENT_ROWS: usize = 1 << 16;

/// Slots of the small table [`code_segment`] looks packed keys up in first.
const TABLE_SLOTS: usize = 64;

/// The slot of packed key `k` in the small table (a multiplicative hash of both halves).
#[inline]
fn table_slot(k: u128) -> usize {
    let x = (k as u64) ^ ((k >> 64) as u64).rotate_left(29);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - TABLE_SLOTS.trailing_zeros())) as usize
}

/// Codes one segment into `out` in first-seen order; returns the first row of each code.
fn code_segment<S: LevelSegment + ?Sized>(seg: &S, out: &mut [u32]) -> Vec<usize> {
    // Packed keys are looked up in a small open-addressing table while it is at most half
    // full (the few levels an attribute usually has: one hash and, almost always, one
    // comparison that succeeds, so the branch is predictable), then in a hash map; names that
    // are not packed go through a string map.
    const EMPTY: u32 = u32::MAX;
    let mut table = [(0u128, EMPTY); TABLE_SLOTS];
    let mut in_table = 0usize;
    let mut packed: FxMap<u128, u32> = FxMap::default();
    let mut named: FxMap<&str, u32> = FxMap::default();
    let mut first: Vec<usize> = Vec::new();
    for (i, slot) in out.iter_mut().enumerate() {
        let next = first.len() as u32;
        let code = match seg.key(i) {
            LevelKey::Packed(k) if packed.is_empty() => {
                let mut t = table_slot(k);
                loop {
                    let (key, code) = table[t];
                    if code == EMPTY {
                        if in_table < TABLE_SLOTS / 2 {
                            table[t] = (k, next);
                            in_table += 1;
                        } else {
                            packed.extend(table.iter().filter(|e| e.1 != EMPTY).copied());
                            packed.insert(k, next);
                        }
                        break next;
                    }
                    if key == k {
                        break code;
                    }
                    t = (t + 1) % TABLE_SLOTS;
                }
            }
            LevelKey::Packed(k) => *packed.entry(k).or_insert(next),
            LevelKey::Name(v) => *named.entry(v).or_insert(next),
        };
        if code == next {
            first.push(i);
        }
        *slot = code;
    }
    first
}

impl Factor {
    /// Codes a column of level names; levels are sorted by string order.
    pub fn from_values<'s, I>(name: &str, values: I) -> Factor
    where
        I: IntoIterator<Item = &'s str>,
    {
        let values: Vec<&'s str> = values.into_iter().collect();
        let segments: Vec<StrSegment<'_, 's>> =
            values.chunks(SEGMENT_ROWS).map(StrSegment).collect();
        Factor::from_segments(name, &segments)
    }

    /// Codes a column given as consecutive segments; levels are sorted by string order.
    ///
    /// Each segment is coded on its own (in parallel) in first-seen order, the segments'
    /// levels are merged by key and sorted by name, and each segment's codes are renumbered
    /// through its own small table. The result does not depend on how the column is split.
    pub fn from_segments<S: LevelSegment>(name: &str, segments: &[S]) -> Factor {
        let n: usize = segments.iter().map(|s| s.len()).sum();
        let mut codes = vec![0u32; n];
        let mut parts: Vec<&mut [u32]> = Vec::with_capacity(segments.len());
        let mut rest = codes.as_mut_slice();
        for seg in segments {
            let (head, tail) = rest.split_at_mut(seg.len());
            parts.push(head);
            rest = tail;
        }
        let firsts: Vec<Vec<usize>> = segments
            .par_iter()
            .zip(parts.par_iter_mut())
            .map(|(seg, out)| code_segment(seg, out))
            .collect();
        // Merge: one provisional id per distinct key, in order of first appearance.
        let mut ids: FxMap<LevelKey<'_>, u32> = FxMap::default();
        let mut names: Vec<(&str, u32)> = Vec::new();
        let local_to_id: Vec<Vec<u32>> = segments
            .iter()
            .zip(&firsts)
            .map(|(seg, first)| {
                first
                    .iter()
                    .map(|&row| {
                        let next = names.len() as u32;
                        let id = *ids.entry(seg.key(row)).or_insert(next);
                        if id == next {
                            names.push((seg.name(row), id));
                        }
                        id
                    })
                    .collect()
            })
            .collect();
        names.sort_unstable();
        let mut rank = vec![0u32; names.len()];
        for (new, &(_, id)) in names.iter().enumerate() {
            rank[id as usize] = new as u32;
        }
        parts
            .par_iter_mut()
            .zip(local_to_id.par_iter())
            .for_each(|(out, local)| {
                let remap: Vec<u32> = local.iter().map(|&id| rank[id as usize]).collect();
                for c in out.iter_mut() {
                    *c = remap[*c as usize];
                }
            });
        Factor {
            name: name.to_string(),
            levels: names.into_iter().map(|(s, _)| s.to_string()).collect(),
            codes,
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

/// `(key, index)` for every index of `keys`, sorted by key and, within equal keys, by index:
/// a least-significant-digit radix sort, one stable counting pass per byte of the key (bytes
/// that every key shares are skipped), so the order is the unique one `(key, index)` defines.
///
/// Each pass runs on the threads: the input is cut into one part per thread, each part counts
/// its digits, and the output is cut into one slice per (digit, part), digit-major, so every
/// part scatters into its own slices (which keeps the pass stable and needs no locking).
fn radix_sort(keys: Vec<u64>) -> Vec<(u64, u32)> {
    type Pair = (u64, u32);
    const BITS: usize = 8;
    const BUCKETS: usize = 1 << BITS;
    const MASK: u64 = BUCKETS as u64 - 1;
    let n = keys.len();
    let Some(&k0) = keys.first() else {
        return Vec::new();
    };
    // The bits in which some key differs from the first: a byte with none is skipped.
    let varying = keys
        .par_iter()
        .fold(|| 0u64, |acc, &k| acc | (k ^ k0))
        .reduce(|| 0, |a, b| a | b);
    let part_len = n.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let mut src: Vec<Pair> = keys.into_par_iter().zip(0..n as u32).collect();
    let mut dst: Vec<Pair> = vec![(0, 0); n];
    for shift in (0..64).step_by(BITS) {
        if (varying >> shift) & MASK == 0 {
            continue;
        }
        let digit = |p: &Pair| ((p.0 >> shift) & MASK) as usize;
        let counts: Vec<[usize; BUCKETS]> = src
            .par_chunks(part_len)
            .map(|part| {
                let mut c = [0usize; BUCKETS];
                for p in part {
                    c[digit(p)] += 1;
                }
                c
            })
            .collect();
        let mut outs: Vec<Vec<&mut [Pair]>> = (0..counts.len())
            .map(|_| Vec::with_capacity(BUCKETS))
            .collect();
        let mut rest = dst.as_mut_slice();
        for d in 0..BUCKETS {
            for (out, c) in outs.iter_mut().zip(&counts) {
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(c[d]);
                out.push(head);
                rest = tail;
            }
        }
        src.par_chunks(part_len)
            .zip(outs.into_par_iter())
            .for_each(|(part, out)| {
                let mut slots: Vec<std::slice::IterMut<'_, Pair>> =
                    out.into_iter().map(|s| s.iter_mut()).collect();
                for p in part {
                    if let Some(slot) = slots[digit(p)].next() {
                        *slot = *p;
                    }
                }
            });
        std::mem::swap(&mut src, &mut dst);
    }
    src
}

/// The cases in score order: each case's sort key and index, sorted by key and, among equal
/// scores, by index, so the order (and every float sum over it) is unique whatever the thread
/// count. Computed once per sample, and it needs only the scores, so a caller can sort while
/// it still codes the subgroup columns ([`Prepared::with_order`]).
#[derive(Debug, Clone)]
pub struct ScoreOrder {
    pairs: Vec<(u64, u32)>,
}

impl ScoreOrder {
    /// Sorts `scores`. A NaN score is an error; `-0.0` and `0.0` are one score.
    pub fn new(scores: &[f64]) -> Result<ScoreOrder, StatsError> {
        if let Some(index) = scores.iter().position(|s| s.is_nan()) {
            return Err(StatsError::NanScore { index });
        }
        // Adding 0.0 turns -0.0 into 0.0; the key maps each score's bits to an unsigned
        // integer in the order of `f64::total_cmp` (flip every bit of a negative, the sign bit
        // of a positive), so the sort compares integers.
        let key = |s: f64| {
            let b = (s + 0.0).to_bits();
            if b >> 63 == 1 { !b } else { b | (1 << 63) }
        };
        Ok(ScoreOrder {
            pairs: radix_sort(scores.iter().map(|&s| key(s)).collect()),
        })
    }

    /// Cases ordered.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no cases.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Positions laid out per task in [`Prepared::with_order`].
const LAYOUT_CHUNK: usize = 1 << 16;

/// Each case's row in input order: its label in slot 0 (the whole set's level id, always 0, is
/// put there after the gather), then `offsets[j] + codes_j[case]`, so that the gather into
/// score order reads one contiguous row per case.
fn input_rows<const S: usize>(labels: &[bool], cols: &[(&[u32], u32)]) -> Vec<[u32; S]> {
    let mut rows = vec![[0u32; S]; labels.len()];
    rows.par_chunks_mut(LAYOUT_CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let base = c * LAYOUT_CHUNK;
            for (k, row) in chunk.iter_mut().enumerate() {
                let i = base + k;
                row[0] = u32::from(labels[i]);
                for j in 1..S {
                    let (codes, off) = cols[j - 1];
                    row[j] = off + codes[i];
                }
            }
        });
    rows
}

/// The rows of [`input_rows`] gathered into score order (`all`), in parallel chunks: the
/// labels in sorted order, the rows with slot 0 set to 0, and the sorted positions where a run
/// of equal scores starts.
fn gather<const S: usize>(
    all: &[(u64, u32)],
    labels: &[bool],
    cols: &[(&[u32], u32)],
) -> (Vec<bool>, Vec<u32>, Vec<usize>) {
    let rows = input_rows::<S>(labels, cols);
    let n = all.len();
    let mut levels = vec![[0u32; S]; n];
    let mut positive = vec![false; n];
    let starts: Vec<Vec<usize>> = levels
        .par_chunks_mut(LAYOUT_CHUNK)
        .zip(positive.par_chunks_mut(LAYOUT_CHUNK))
        .enumerate()
        .map(|(c, (lv, pv))| {
            let base = c * LAYOUT_CHUNK;
            let mut starts = Vec::new();
            for (k, (out, p)) in lv.iter_mut().zip(pv).enumerate() {
                let pos = base + k;
                let (key, i) = all[pos];
                let mut row = rows[i as usize];
                *p = row[0] == 1;
                row[0] = 0;
                *out = row;
                if pos == 0 || key != all[pos - 1].0 {
                    starts.push(pos);
                }
            }
            starts
        })
        .collect();
    let mut runs = Vec::with_capacity(starts.iter().map(Vec::len).sum::<usize>() + 1);
    for s in starts {
        runs.extend(s);
    }
    (positive, levels.into_flattened(), runs)
}

/// [`gather`] for any number of levels per case (a copy of unknown length per case).
fn gather_any(
    all: &[(u64, u32)],
    labels: &[bool],
    cols: &[(&[u32], u32)],
) -> (Vec<bool>, Vec<u32>, Vec<usize>) {
    let stride = 1 + cols.len();
    let mut levels = Vec::with_capacity(all.len() * stride);
    let mut positive = Vec::with_capacity(all.len());
    let mut runs = Vec::new();
    for (pos, &(key, i)) in all.iter().enumerate() {
        let i = i as usize;
        positive.push(labels[i]);
        levels.push(0);
        levels.extend(cols.iter().map(|&(codes, off)| off + codes[i]));
        if pos == 0 || key != all[pos - 1].0 {
            runs.push(pos);
        }
    }
    (positive, levels, runs)
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
        if scores.len() != labels.len() {
            return Err(StatsError::LengthMismatch {
                labels: labels.len(),
                scores: scores.len(),
            });
        }
        let order = ScoreOrder::new(scores)?;
        Prepared::with_order(labels, scores, &order, factors, threshold)
    }

    /// Lays out the cases in `order` (the sorted `scores`) with their levels, in parallel
    /// chunks of sorted positions.
    pub fn with_order<F: Borrow<Factor>>(
        labels: &[bool],
        scores: &[f64],
        order: &ScoreOrder,
        factors: &[F],
        threshold: f64,
    ) -> Result<Prepared, StatsError> {
        let n = labels.len();
        if scores.len() != n {
            return Err(StatsError::LengthMismatch {
                labels: n,
                scores: scores.len(),
            });
        }
        if order.len() != n {
            return Err(StatsError::LengthMismatch {
                labels: n,
                scores: order.len(),
            });
        }
        for f in factors {
            let f = f.borrow();
            if f.codes.len() != n {
                return Err(StatsError::AttributeLength {
                    name: f.name.clone(),
                    got: f.codes.len(),
                    expected: n,
                });
            }
        }
        let stride = 1 + factors.len();
        let mut offsets = Vec::with_capacity(factors.len());
        let mut n_levels = 1;
        for f in factors {
            offsets.push(n_levels);
            n_levels += f.borrow().levels.len();
        }
        let cols: Vec<(&[u32], u32)> = factors
            .iter()
            .zip(&offsets)
            .map(|(f, &off)| (f.borrow().codes.as_slice(), off as u32))
            .collect();
        let all = order.pairs.as_slice();
        let (positive, levels, mut runs) = match stride {
            1 => gather::<1>(all, labels, &cols),
            2 => gather::<2>(all, labels, &cols),
            3 => gather::<3>(all, labels, &cols),
            4 => gather::<4>(all, labels, &cols),
            5 => gather::<5>(all, labels, &cols),
            6 => gather::<6>(all, labels, &cols),
            7 => gather::<7>(all, labels, &cols),
            8 => gather::<8>(all, labels, &cols),
            _ => gather_any(all, labels, &cols),
        };
        // Scores ascend along the runs: the first run at or above the threshold (none for a
        // NaN threshold, which no score reaches).
        let cut_run = if threshold.is_nan() {
            runs.len()
        } else {
            runs.partition_point(|&pos| scores[all[pos].1 as usize] + 0.0 < threshold)
        };
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

    /// The level ids of sorted position `pos` in slots `cols`.
    fn levels_in(&self, pos: usize, cols: &Range<usize>) -> &[u32] {
        let row = pos * self.stride;
        &self.levels[row + cols.start..row + cols.end]
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
    weight: impl FnMut(usize) -> u64,
    acc: &mut LevelCounts,
    scratch: &mut RunScratch,
) {
    count_pass_cols(prep, &(0..prep.stride), weight, acc, scratch);
}

/// [`count_pass`] over the levels in row slots `cols` only (the other levels stay 0).
fn count_pass_cols(
    prep: &Prepared,
    cols: &Range<usize>,
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
                for &l in prep.levels_in(s, cols) {
                    let l = l as usize;
                    acc.mw2[l] += 2 * w * acc.neg[l];
                    acc.pos[l] += w;
                }
            } else {
                for &l in prep.levels_in(s, cols) {
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
            for &l in prep.levels_in(p, cols) {
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

/// The sample's counts ([`count_pass`] with unit weights) and DeLong variances
/// ([`delong_variances`]), with the row slots split among the threads: each thread makes both
/// passes for the levels of its slots. Every level's sums run over the same sorted order as in
/// one pass, so the result is the same bit for bit whatever the split.
pub(crate) fn counts_and_variances(prep: &Prepared) -> (LevelCounts, Vec<Option<f64>>) {
    let groups = rayon::current_num_threads().clamp(1, prep.stride);
    let ranges: Vec<Range<usize>> = (0..groups)
        .map(|g| g * prep.stride / groups..(g + 1) * prep.stride / groups)
        .collect();
    let parts: Vec<(Range<usize>, LevelCounts, Vec<Option<f64>>)> = ranges
        .into_par_iter()
        .map(|cols| {
            let mut counts = LevelCounts::new(prep.n_levels);
            let mut scratch = RunScratch::new(prep.n_levels);
            count_pass_cols(prep, &cols, |_| 1, &mut counts, &mut scratch);
            let var = delong_cols(prep, &cols, &counts);
            (cols, counts, var)
        })
        .collect();
    // Level ids of slot 0 are {0}; of slot j >= 1, offsets[j - 1].. the next offset.
    let slot_levels = |j: usize| -> Range<usize> {
        if j == 0 {
            0..1
        } else {
            let start = prep.offsets[j - 1];
            start..prep.offsets.get(j).copied().unwrap_or(prep.n_levels)
        }
    };
    let mut counts = LevelCounts::new(prep.n_levels);
    let mut variances = vec![None; prep.n_levels];
    for (cols, c, v) in parts {
        for l in cols.flat_map(slot_levels) {
            counts.pos[l] = c.pos[l];
            counts.neg[l] = c.neg[l];
            counts.fn_[l] = c.fn_[l];
            counts.tn[l] = c.tn[l];
            counts.mw2[l] = c.mw2[l];
            variances[l] = v[l];
        }
    }
    (counts, variances)
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
    delong_cols(prep, &(0..prep.stride), counts)
}

/// [`delong_variances`] of the levels in row slots `cols` (the others' entries are
/// meaningless).
fn delong_cols(prep: &Prepared, cols: &Range<usize>, counts: &LevelCounts) -> Vec<Option<f64>> {
    let nl = prep.n_levels;
    let auc: Vec<f64> = (0..nl).map(|l| counts.auc(l).unwrap_or(0.0)).collect();
    let mut below_pos = vec![0u64; nl];
    let mut below_neg = vec![0u64; nl];
    let mut s10 = vec![0f64; nl];
    let mut s01 = vec![0f64; nl];
    let mut scratch = RunScratch::new(nl);
    for r in 0..prep.runs.len() - 1 {
        let (s, e) = (prep.runs[r], prep.runs[r + 1]);
        if e - s == 1 {
            // A run of one case (no ties): the general update below with one count of 1 and
            // the other 0, which gives the same sums bit for bit.
            if prep.positive[s] {
                for &l in prep.levels_in(s, cols) {
                    let l = l as usize;
                    let nn = counts.neg[l];
                    if counts.pos[l] > 0 && nn > 0 {
                        let d = below_neg[l] as f64 / nn as f64 - auc[l];
                        s10[l] += d * d;
                    }
                    below_pos[l] += 1;
                }
            } else {
                for &l in prep.levels_in(s, cols) {
                    let l = l as usize;
                    let np = counts.pos[l];
                    if np > 0 && counts.neg[l] > 0 {
                        let d = (np - below_pos[l]) as f64 / np as f64 - auc[l];
                        s01[l] += d * d;
                    }
                    below_neg[l] += 1;
                }
            }
            continue;
        }
        for p in s..e {
            for &l in prep.levels_in(p, cols) {
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

    use rand::{Rng, SeedableRng};

    /// A seeded sample: labels, scores on a coarse grid (many ties) or continuous, and three
    /// attributes with 3, 40 and 5 levels (the 40 pass the small lookup table).
    fn sample(n: usize, ties: bool, seed: u64) -> (Vec<bool>, Vec<f64>, Vec<Factor>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let labels: Vec<bool> = (0..n).map(|_| rng.random_bool(0.4)).collect();
        let scores: Vec<f64> = labels
            .iter()
            .map(|&y| {
                let s: f64 = rng.random::<f64>() * 0.7 + if y { 0.3 } else { 0.0 };
                if ties { (s * 20.0).round() / 20.0 } else { s }
            })
            .collect();
        let a: Vec<String> = (0..n)
            .map(|_| format!("a{}", rng.random_range(0..3)))
            .collect();
        let b: Vec<String> = (0..n)
            .map(|_| format!("b{}", rng.random_range(0..40)))
            .collect();
        let c: Vec<String> = (0..n)
            .map(|_| format!("a-level-longer-than-16-bytes-{}", rng.random_range(0..5)))
            .collect();
        let factors = [("a", a), ("b", b), ("c", c)]
            .iter()
            .map(|(name, v)| Factor::from_values(name, v.iter().map(String::as_str)))
            .collect();
        (labels, scores, factors)
    }

    #[test]
    fn coding_across_segments_matches_a_sorted_map() {
        // Over 64K rows, so the column is coded as several segments and merged; the 40-level
        // attribute passes the small table in every segment.
        let (_, _, factors) = sample(150_000, true, 7);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let raw: Vec<String> = (0..150_000)
            .map(|i| {
                if i == 149_999 {
                    "only-in-the-last-segment".to_string()
                } else {
                    format!("v{}", rng.random_range(0..70))
                }
            })
            .collect();
        let f = Factor::from_values("v", raw.iter().map(String::as_str));
        let sorted: std::collections::BTreeSet<&str> = raw.iter().map(String::as_str).collect();
        let levels: Vec<&str> = sorted.iter().copied().collect();
        assert_eq!(f.levels, levels);
        for (code, v) in f.codes.iter().zip(&raw) {
            assert_eq!(levels[*code as usize], v.as_str());
        }
        for f in &factors {
            let mut seen = f.levels.clone();
            seen.sort();
            seen.dedup();
            assert_eq!(seen, f.levels);
        }
    }

    #[test]
    fn radix_sort_gives_the_order_of_a_comparison_sort() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let cases: Vec<Vec<u64>> = vec![
            vec![],
            vec![42],
            (0..100_000).map(|_| rng.random_range(0..50)).collect(),
            (0..100_000).map(|_| rng.random::<u64>()).collect(),
            // Keys that differ only in the top byte, or only in the lowest.
            (0..5_000).map(|i| (i % 7) << 56).collect(),
            (0..5_000)
                .map(|i| 0xabcd_0000_0000_0000 | (i % 3))
                .collect(),
        ];
        for keys in cases {
            let mut want: Vec<(u64, u32)> = keys.iter().copied().zip(0u32..).collect();
            want.sort_unstable();
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| radix_sort(keys.clone()));
                assert_eq!(got, want, "{} keys, {threads} threads", keys.len());
            }
        }
    }

    /// Counts and DeLong variances by their definitions, pair by pair, for the cases `rows`.
    fn brute_force(labels: &[bool], scores: &[f64], rows: &[usize], t: f64) -> [f64; 6] {
        let pos: Vec<f64> = rows
            .iter()
            .filter(|&&i| labels[i])
            .map(|&i| scores[i])
            .collect();
        let neg: Vec<f64> = rows
            .iter()
            .filter(|&&i| !labels[i])
            .map(|&i| scores[i])
            .collect();
        let psi = |x: f64, y: f64| {
            if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            }
        };
        let (np, nn) = (pos.len() as f64, neg.len() as f64);
        let v10: Vec<f64> = pos
            .iter()
            .map(|&x| neg.iter().map(|&y| psi(x, y)).sum::<f64>() / nn)
            .collect();
        let v01: Vec<f64> = neg
            .iter()
            .map(|&y| pos.iter().map(|&x| psi(x, y)).sum::<f64>() / np)
            .collect();
        let auc = v10.iter().sum::<f64>() / np;
        let s10 = v10.iter().map(|v| (v - auc).powi(2)).sum::<f64>() / (np - 1.0);
        let s01 = v01.iter().map(|v| (v - auc).powi(2)).sum::<f64>() / (nn - 1.0);
        let fn_ = pos.iter().filter(|&&x| x < t).count() as f64;
        let tn = neg.iter().filter(|&&y| y < t).count() as f64;
        [np, nn, fn_, tn, auc, s10 / np + s01 / nn]
    }

    #[test]
    fn split_passes_match_the_definitions_pair_by_pair() {
        for ties in [true, false] {
            let (labels, scores, factors) = sample(600, ties, 11);
            let prep = Prepared::new(&labels, &scores, &factors, 0.5).unwrap();
            let mut results = Vec::new();
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                results.push(pool.install(|| counts_and_variances(&prep)));
            }
            // The split is exact: the same bits whatever the thread count.
            for (c, v) in &results[1..] {
                assert_eq!(c.mw2, results[0].0.mw2);
                assert_eq!(c.fn_, results[0].0.fn_);
                assert_eq!(c.tn, results[0].0.tn);
                assert_eq!(v, &results[0].1);
            }
            let (counts, var) = &results[0];
            let mut levels: Vec<Vec<usize>> = vec![(0..labels.len()).collect()];
            for f in &factors {
                for l in 0..f.levels.len() {
                    levels.push(
                        (0..labels.len())
                            .filter(|&i| f.codes[i] as usize == l)
                            .collect(),
                    );
                }
            }
            assert_eq!(levels.len(), prep.n_levels);
            for (l, rows) in levels.iter().enumerate() {
                let [np, nn, fn_, tn, auc, v] = brute_force(&labels, &scores, rows, 0.5);
                assert_eq!(counts.pos[l] as f64, np);
                assert_eq!(counts.neg[l] as f64, nn);
                assert_eq!(counts.fn_[l] as f64, fn_);
                assert_eq!(counts.tn[l] as f64, tn);
                let got = counts.auc(l).unwrap();
                assert!((got - auc).abs() < 1e-12, "level {l}: auc {got} vs {auc}");
                let got = var[l].unwrap();
                assert!(
                    (got - v).abs() < 1e-12 * v.max(1e-3),
                    "level {l}: var {got} vs {v}"
                );
            }
        }
    }
}
