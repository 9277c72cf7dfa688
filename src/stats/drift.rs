//! Distribution-drift statistics for post-market monitoring: pure computation, no I/O.
//!
//! `medgate monitor` compares each window of production scores (and acquisition attributes)
//! with the release baseline. This module owns the statistics that need no labels:
//!
//! - [`psi`]: population stability index over bins fixed on the baseline ([`quantile_edges`],
//!   [`bin_counts`]);
//! - [`ks_2samp`]: the two-sample Kolmogorov-Smirnov statistic with its two-sided p-value,
//!   exact (Hodges 1958 lattice-path counting, as `scipy.stats.ks_2samp(method="exact")`) or
//!   asymptotic (Kolmogorov's limiting distribution), chosen as scipy's `method="auto"` does;
//! - [`wasserstein`]: the first Wasserstein (earth mover's) distance between two empirical
//!   distributions (`scipy.stats.wasserstein_distance`);
//! - [`chi2_contingency`]: Pearson's chi-square test of homogeneity of an r x c table, with
//!   Yates' continuity correction when the table has one degree of freedom (as
//!   `scipy.stats.chi2_contingency(correction=True)`, its default).
//!
//! Exact KS p-values are memoised by sample sizes and lattice distance (pure results, so the
//! cache changes no value, only how often the `O(n m)` lattice count runs).
//!
//! Reference values: `tests/fixtures/monitor/` (scipy, numpy; tool versions in its README).
//! Every function returns `None` instead of NaN when the statistic is undefined (an empty
//! sample, a table with fewer than two non-empty rows).

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Interior bin edges at the baseline's `i / bins` quantiles, `i = 1 .. bins - 1`.
///
/// # Formula
/// The quantile at probability `q` of the sorted sample `x_0 <= ... <= x_{n-1}` is
/// `x_j + (x_{j+1} - x_j) (h - j)` with `h = (n - 1) q`, `j = floor(h)` (Hyndman & Fan type 7,
/// numpy's default `np.quantile(x, q)`). `sorted` must be sorted ascending and not empty.
pub fn quantile_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    if sorted.is_empty() || bins < 2 {
        return Vec::new();
    }
    let n = sorted.len();
    (1..bins)
        .map(|i| {
            let q = i as f64 / bins as f64;
            let h = (n - 1) as f64 * q;
            let j = h.floor() as usize;
            if j + 1 >= n {
                sorted[n - 1]
            } else {
                sorted[j] + (sorted[j + 1] - sorted[j]) * (h - j as f64)
            }
        })
        .collect()
}

/// The bin of `x` for interior `edges` (ascending): the number of edges `<= x`, so bin `i`
/// is `[e_{i-1}, e_i)`, the first bin is open below and the last open above
/// (`np.searchsorted(edges, x, side="right")`).
pub fn bin_of(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|e| *e <= x)
}

/// Counts of `values` in the `edges.len() + 1` bins of [`bin_of`].
pub fn bin_counts(edges: &[f64], values: &[f64]) -> Vec<u64> {
    let mut counts = vec![0u64; edges.len() + 1];
    for v in values {
        counts[bin_of(edges, *v)] += 1;
    }
    counts
}

/// The proportion floor of [`psi`]: an empty bin counts as this share, so the logarithm
/// stays finite.
pub const PSI_FLOOR: f64 = 1e-4;

/// Population stability index of the `current` bin counts against the `baseline` counts.
///
/// # Formula
/// `PSI = sum_i (p_i - q_i) ln(p_i / q_i)`, `p_i` the current and `q_i` the baseline share of
/// bin `i`, each floored at [`PSI_FLOOR`] (Siddiqi 2006, *Credit Risk Scorecards*; the usual
/// reading: < 0.1 stable, 0.1 - 0.25 moderate shift, > 0.25 major shift). `None` when either
/// side has no observations or the bin counts differ in length.
pub fn psi(baseline: &[u64], current: &[u64]) -> Option<f64> {
    if baseline.len() != current.len() || baseline.is_empty() {
        return None;
    }
    let nb: u64 = baseline.iter().sum();
    let nc: u64 = current.iter().sum();
    if nb == 0 || nc == 0 {
        return None;
    }
    let mut total = 0.0;
    for (b, c) in baseline.iter().zip(current) {
        let q = (*b as f64 / nb as f64).max(PSI_FLOOR);
        let p = (*c as f64 / nc as f64).max(PSI_FLOOR);
        total += (p - q) * (p / q).ln();
    }
    Some(total)
}

/// How a Kolmogorov-Smirnov p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KsMethod {
    /// Exact lattice-path count (both samples of at most [`KS_EXACT_MAX_N`] values).
    Exact,
    /// Kolmogorov's limiting distribution of `sqrt(n m / (n + m)) D`.
    Asymptotic,
}

/// The largest sample size for which [`ks_2samp`] computes the exact p-value (scipy's
/// `MAX_AUTO_N` of `method="auto"`).
pub const KS_EXACT_MAX_N: usize = 10_000;

/// A two-sample Kolmogorov-Smirnov test result.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KsResult {
    /// `D = sup_x |F_1(x) - F_2(x)|`.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// How the p-value was computed.
    pub method: KsMethod,
}

/// Two-sided two-sample Kolmogorov-Smirnov test of `a` against `b` (both sorted ascending,
/// finite, not empty).
///
/// # Formula
/// `D = max_x |F_a(x) - F_b(x)|` over the pooled values (right-continuous ECDFs, so ties are
/// handled as scipy does). With `g = gcd(n, m)` and `l = n m / g`, `h = round(D l)`:
/// - **exact** (when `max(n, m) <=` [`KS_EXACT_MAX_N`]): for `n = m`,
///   `P = 2 sum_{j >= 1} (-1)^{j+1} C(2n, n - j h) / C(2n, n)`, evaluated by a Horner scheme;
///   otherwise `P = 1 - #{lattice paths (0,0) -> (m,n) with |x n/g - y m/g| < h} / C(n+m, n)`,
///   counted column by column as probabilities (Hodges 1958, Ark. Mat. 3:469; the `1 - p`
///   recursion of Viehmann 2021, arXiv:2102.08037);
/// - **asymptotic**: `P = Q_KS(sqrt(e) D)`, `e = n m / (n + m)`,
///   `Q_KS(z) = 2 sum_{j >= 1} (-1)^{j-1} exp(-2 j^2 z^2)` (`scipy.stats.kstwobign.sf`). Note
///   that scipy's own `method="asymp"` uses `kstwo.sf(D, round(e))` instead; the two agree
///   to about `1 / sqrt(e)`.
///
/// Reference: `scipy.stats.ks_2samp(a, b)` (method auto) for sizes up to 10 000.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Option<KsResult> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let d = ks_statistic(a, b);
    if n1.max(n2) <= KS_EXACT_MAX_N {
        let g = gcd(n1 as u64, n2 as u64);
        let lcm = (n1 as u64 / g) * n2 as u64;
        let h = (d * lcm as f64).round() as u64;
        let d_exact = h as f64 / lcm as f64;
        let p = exact_p_memo(n1 as u64, n2 as u64, h, || {
            if h == 0 {
                1.0
            } else if n1 == n2 {
                prob_outside_square(n1 as u64, h)
            } else {
                prob_outside_band(n1 as u64, n2 as u64, g, h)
            }
        });
        if p.is_finite() && (0.0..=1.0).contains(&p) {
            return Some(KsResult {
                statistic: d_exact,
                p_value: p,
                method: KsMethod::Exact,
            });
        }
    }
    let en = (n1 as f64 * n2 as f64) / (n1 + n2) as f64;
    Some(KsResult {
        statistic: d,
        p_value: kolmogorov_sf(en.sqrt() * d).clamp(0.0, 1.0),
        method: KsMethod::Asymptotic,
    })
}

/// Exact p-values already computed, by `(n, m, h)`: the exact p-value depends on nothing else,
/// and a monitoring run asks for the same few sizes (window against baseline) with a few
/// hundred distinct `h` over thousands of windows, while each lattice count costs up to
/// `n m` steps. A cache of pure results: the value returned is the one computed, bit for bit.
/// Bounded at [`KS_MEMO_MAX`] entries (cleared when full).
fn exact_p_memo(n: u64, m: u64, h: u64, compute: impl FnOnce() -> f64) -> f64 {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Memo = Mutex<HashMap<(u64, u64, u64), f64>>;
    static MEMO: OnceLock<Memo> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    let key = (n, m, h);
    if let Some(&p) = memo.lock().ok().as_ref().and_then(|t| t.get(&key)) {
        return p;
    }
    let p = compute();
    if let Ok(mut t) = memo.lock() {
        if t.len() >= KS_MEMO_MAX {
            t.clear();
        }
        t.insert(key, p);
    }
    p
}

/// Most exact KS p-values [`ks_2samp`] keeps (a few MB).
const KS_MEMO_MAX: usize = 100_000;

/// `max |F_a - F_b|` for sorted samples (evaluated after every distinct pooled value).
fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut d: f64 = 0.0;
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.min(*y),
            (Some(x), None) => *x,
            (None, Some(y)) => *y,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n1 - j as f64 / n2).abs());
    }
    d
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `P(D_{n,n} >= h / n)` for equal sample sizes.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    // P = 2 A_1 (1 - A_2 / A_1 (1 - ...)): each ratio C(2n, n - kh) / C(2n, n - (k-1)h) is a
    // product of h simple factors, so no large binomial is formed.
    let mut p = 0.0;
    let mut k = n / h;
    loop {
        let mut p1 = 1.0;
        for j in 0..h {
            // (n - k h - j) / (n + k h + j + 1), in floats (k h may exceed n: the factor is then
            // <= 0 only when the term vanishes).
            let num = n as f64 - (k * h) as f64 - j as f64;
            let den = n as f64 + (k * h) as f64 + j as f64 + 1.0;
            p1 = num * p1 / den;
        }
        p = p1 * (1.0 - p);
        if k == 0 {
            break;
        }
        k -= 1;
    }
    2.0 * p
}

/// `1 - P(all lattice paths stay strictly inside |x ng - y mg| < h)` for `m != n`.
fn prob_outside_band(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = (m / g, n / g);
    let (m_, n_) = (m as usize, n as usize);
    // q[j] for the current column x = i: the probability that a uniformly random monotone
    // path from (0, 0) to (i, j) has left the band. Outside the band q = 1.
    // The band of column i is { j : |i ng - j mg| < h } = (i ng - h, i ng + h) / mg.
    let band = |i: u64| -> (usize, usize) {
        let c = i * ng;
        // smallest j with j mg > c - h
        let lo = if c < h { 0 } else { (c - h) / mg + 1 };
        // largest j with j mg < c + h, plus one
        let hi = (c + h).div_ceil(mg);
        (lo.min(n + 1) as usize, hi.min(n + 1) as usize)
    };
    let mut q = vec![1.0f64; n_ + 1];
    let (lo0, hi0) = band(0);
    for v in q.iter_mut().take(hi0).skip(lo0) {
        *v = 0.0;
    }
    let (mut last_lo, mut last_hi) = (lo0, hi0);
    for i in 1..=m_ {
        let (lo, hi) = band(i as u64);
        if hi <= lo {
            return 1.0;
        }
        // Entries of the previous column that left the band are "exited" (1).
        for v in q.iter_mut().take(lo.min(last_hi)).skip(last_lo) {
            *v = 1.0;
        }
        let fi = i as f64;
        let mut below = if lo == 0 { 0.0 } else { 1.0 };
        for (j, v) in q.iter_mut().enumerate().take(hi).skip(lo) {
            // q(i, j) = (i q(i-1, j) + j q(i, j-1)) / (i + j), with the weights computed off
            // the dependency chain through `below` (one multiply-add per step instead of a
            // division: the loop is latency-bound).
            let fj = j as f64;
            let r = 1.0 / (fi + fj);
            below = *v * (fi * r) + below * (fj * r);
            *v = below;
        }
        (last_lo, last_hi) = (lo, hi);
    }
    q[n_]
}

/// Survival function of Kolmogorov's limiting distribution, `Q_KS(z) = P(K > z)`.
///
/// # Formula
/// `Q_KS(z) = 2 sum_{j >= 1} (-1)^{j-1} exp(-2 j^2 z^2)` for `z >= 1`; for small `z` the
/// equivalent `1 - sqrt(2 pi) / z sum_{j >= 1} exp(-(2j - 1)^2 pi^2 / (8 z^2))`, which converges
/// fast there (Feller 1948).
fn kolmogorov_sf(z: f64) -> f64 {
    if z <= 0.0 {
        return 1.0;
    }
    if z < 1.0 {
        let mut s = 0.0;
        for j in 1..=20 {
            let t = (2 * j - 1) as f64;
            s += (-(t * t) * std::f64::consts::PI * std::f64::consts::PI / (8.0 * z * z)).exp();
        }
        return (1.0 - (2.0 * std::f64::consts::PI).sqrt() / z * s).clamp(0.0, 1.0);
    }
    let mut s = 0.0;
    for j in 1..=100 {
        let jf = j as f64;
        let term = (-2.0 * jf * jf * z * z).exp();
        s += if j % 2 == 1 { term } else { -term };
        if term < 1e-300 {
            break;
        }
    }
    (2.0 * s).clamp(0.0, 1.0)
}

/// First Wasserstein distance between the empirical distributions of `a` and `b` (sorted
/// ascending, not empty).
///
/// # Formula
/// `W_1 = integral |F_a(x) - F_b(x)| dx`, a finite sum over the pooled sorted values
/// (`scipy.stats.wasserstein_distance(a, b)` with unit weights).
pub fn wasserstein(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    let mut prev: Option<f64> = None;
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.min(*y),
            (Some(x), None) => *x,
            (None, Some(y)) => *y,
            (None, None) => break,
        };
        if let Some(p) = prev {
            total += (i as f64 / n1 - j as f64 / n2).abs() * (x - p);
        }
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        prev = Some(x);
    }
    Some(total)
}

/// A chi-square test of homogeneity.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChiSquare {
    /// Pearson's statistic (Yates-corrected when `dof = 1`).
    pub statistic: f64,
    /// Degrees of freedom `(r - 1)(c - 1)` over the non-empty rows.
    pub dof: u64,
    /// Upper-tail p-value of the chi-square distribution.
    pub p_value: f64,
    /// Whether Yates' continuity correction was applied.
    pub yates: bool,
}

/// Pearson's chi-square test of homogeneity of `table` (rows: categories, columns: samples).
///
/// # Formula
/// Rows whose total is zero (a category seen in no sample) are left out. Expected counts
/// `E_ij = R_i C_j / N`; with one degree of freedom each observed count is first moved
/// towards its expected count by `min(0.5, |E - O|)` (Yates); `X^2 = sum (O - E)^2 / E`,
/// `p = P(chi2_dof > X^2)`. `None` when fewer than two rows or columns are non-empty.
/// Reference: `scipy.stats.chi2_contingency(table)` (default `correction=True`).
pub fn chi2_contingency(table: &[Vec<u64>]) -> Option<ChiSquare> {
    let rows: Vec<&Vec<u64>> = table.iter().filter(|r| r.iter().sum::<u64>() > 0).collect();
    let c = rows.first()?.len();
    if rows.len() < 2 || c < 2 || rows.iter().any(|r| r.len() != c) {
        return None;
    }
    let col: Vec<u64> = (0..c).map(|j| rows.iter().map(|r| r[j]).sum()).collect();
    if col.contains(&0) {
        return None;
    }
    let total: u64 = col.iter().sum();
    let dof = ((rows.len() - 1) * (c - 1)) as u64;
    let yates = dof == 1;
    let mut stat = 0.0;
    for r in &rows {
        let rs: u64 = r.iter().sum();
        for (j, o) in r.iter().enumerate() {
            let e = rs as f64 * col[j] as f64 / total as f64;
            let mut o = *o as f64;
            if yates {
                let diff = e - o;
                o += diff.abs().min(0.5) * diff.signum();
            }
            stat += (o - e) * (o - e) / e;
        }
    }
    let dist = ChiSquared::new(dof as f64).ok()?;
    Some(ChiSquare {
        statistic: stat,
        dof,
        p_value: dist.sf(stat),
        yates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_do_not_drift() {
        let a: Vec<f64> = (0..50).map(|i| i as f64 / 50.0).collect();
        let ks = ks_2samp(&a, &a).unwrap();
        assert_eq!(ks.statistic, 0.0);
        assert_eq!(ks.p_value, 1.0);
        assert_eq!(wasserstein(&a, &a), Some(0.0));
        let e = quantile_edges(&a, 10);
        let c = bin_counts(&e, &a);
        assert_eq!(psi(&c, &c), Some(0.0));
    }

    #[test]
    fn undefined_is_none() {
        assert!(ks_2samp(&[], &[1.0]).is_none());
        assert!(wasserstein(&[1.0], &[]).is_none());
        assert!(psi(&[0, 0], &[1, 2]).is_none());
        assert!(chi2_contingency(&[vec![3, 4], vec![0, 0]]).is_none());
    }

    #[test]
    fn disjoint_samples_have_distance_of_their_shift() {
        let a = [0.0, 1.0, 2.0];
        let b = [10.0, 11.0, 12.0];
        assert!((wasserstein(&a, &b).unwrap() - 10.0).abs() < 1e-12);
        assert_eq!(ks_2samp(&a, &b).unwrap().statistic, 1.0);
    }
}
