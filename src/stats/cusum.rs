//! Control charts for post-market monitoring: CUSUM (as FDA's AIM-CU runs it) and EWMA.
//! Pure computation, no I/O.
//!
//! # CUSUM design: `h` from `k` and a target in-control ARL
//! AIM-CU (FDA DIDSR, `aim-cu` on PyPI) chooses the normalised threshold `h` for a normalised
//! reference value `k` so that a one-sided CUSUM of standard normal observations has the
//! in-control average run length `ARL0`: `get_threshold(k, ARL0)` calls R spc's
//! `xcusum.crit(k, ARL0, mu0 = 0, hs = 0, sided = "one", r = 30)` and rounds to 4 decimals.
//! [`cusum_arl`] computes that ARL by the Nyström method on the integral equation of Brook &
//! Evans (1972, Biometrika 59:539) with `r` Gauss-Legendre nodes on `[0, h]` plus the atom at 0
//! (Vance 1986, J Qual Technol 18:189; Knoth's spc); [`cusum_crit`] solves `ARL(h) = ARL0` by a
//! bracketed secant search to `|ARL - ARL0| <= 1e-6`.
//!
//! # CUSUM path and alarm
//! With in-control mean `mu0` and standard deviation `sigma` (AIM-CU estimates both from the
//! in-control observations, `sigma` with `ddof = 0`), `K = k sigma`, `H = h sigma`:
//! `S+_t = max(0, S+_{t-1} + x_t - mu0 - K)`, `S-_t = max(0, S-_{t-1} + mu0 - K - x_t)`,
//! alarm at the first `t` where `S+_t > H` or `S-_t > H` ([`Cusum`]).
//!
//! AIM-CU's `compute_cusum` differs from that textbook recursion in two ways: it sets
//! `S_0 = 0` *at* the first observation (the first value is never accumulated) and rounds the
//! path to 2 decimals (in the metric's own units) before comparing it with `H`, which can move
//! the alarm by many observations when `sigma` is small (0.02 in the fixture: 47 instead of
//! 55). [`aimcu_path`] reproduces AIM-CU exactly, and it is the one path `medgate monitor`
//! charts and alarms on (h, k, statistic path and alarm index as AIM-CU 0.2.1 gives them, so a
//! reviewer can rerun AIM-CU on the chart's observations and get the same chart).
//! [`Cusum::path`] is the unrounded textbook recursion from `S = 0`; nothing in medgate
//! charts it any more (it stays as the form the reference test compares AIM-CU's rounding
//! against). The reference test checks both: the unrounded
//! path against AIM-CU's within its rounding, and [`aimcu_path`]'s path and alarm index against
//! AIM-CU's exactly; `tests/monitor.rs` checks the monitor's charts end to end against the
//! same fixture.
//!
//! # EWMA
//! `Z_t = lambda x_t + (1 - lambda) Z_{t-1}`, `Z_0 = mu0`; control limits
//! `mu0 +- L sigma sqrt(lambda / (2 - lambda) (1 - (1 - lambda)^(2t)))` (Roberts 1959; Lucas &
//! Saccucci 1990, Technometrics 32:1, "exact" time-varying limits) ([`Ewma`]).

use statrs::distribution::{ContinuousCDF, Normal};

fn pdf(x: f64, mu: f64) -> f64 {
    let z = x - mu;
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn cdf(x: f64, mu: f64) -> f64 {
    Normal::standard().cdf(x - mu)
}

/// Gauss-Legendre nodes and weights of order `n` on `[a, b]`.
///
/// # Formula
/// The nodes are the roots of the Legendre polynomial `P_n`, found by Newton's method from
/// `cos(pi (i + 3/4) / (n + 1/2))`; weights `w_i = 2 / ((1 - x_i^2) P_n'(x_i)^2)`, both mapped
/// linearly to `[a, b]` (Abramowitz & Stegun 25.4.29).
fn gauss_legendre(n: usize, a: f64, b: f64) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
    let m = n.div_ceil(2);
    let nf = n as f64;
    for i in 0..m {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (nf + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, z);
            for j in 1..n {
                let jf = j as f64;
                let p2 = ((2.0 * jf + 1.0) * z * p1 - jf * p0) / (jf + 1.0);
                p0 = p1;
                p1 = p2;
            }
            if n == 0 {
                break;
            }
            // p1 = P_n(z), p0 = P_{n-1}(z)
            dp = nf * (z * p1 - p0) / (z * z - 1.0);
            let z1 = z - p1 / dp;
            let done = (z1 - z).abs() < 1e-15;
            z = z1;
            if done {
                break;
            }
        }
        // recompute derivative at the final z
        let (mut p0, mut p1) = (1.0, z);
        for j in 1..n {
            let jf = j as f64;
            let p2 = ((2.0 * jf + 1.0) * z * p1 - jf * p0) / (jf + 1.0);
            p0 = p1;
            p1 = p2;
        }
        if n > 1 {
            dp = nf * (z * p1 - p0) / (z * z - 1.0);
        }
        let wi = 2.0 / ((1.0 - z * z) * dp * dp);
        x[i] = mid - half * z;
        x[n - 1 - i] = mid + half * z;
        w[i] = half * wi;
        w[n - 1 - i] = half * wi;
    }
    (x, w)
}

/// Solves `A g = b` in place by Gaussian elimination with partial pivoting (row-major `A`).
fn solve(a: &mut [f64], b: &mut [f64], n: usize) -> bool {
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .unwrap_or(col);
        if a[piv * n + col] == 0.0 {
            return false;
        }
        if piv != col {
            for j in 0..n {
                a.swap(piv * n + j, col * n + j);
            }
            b.swap(piv, col);
        }
        let p = a[col * n + col];
        for i in col + 1..n {
            let f = a[i * n + col] / p;
            if f != 0.0 {
                for j in col..n {
                    a[i * n + j] -= f * a[col * n + j];
                }
                b[i] -= f * b[col];
            }
        }
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for j in i + 1..n {
            s -= a[i * n + j] * b[j];
        }
        b[i] = s / a[i * n + i];
    }
    true
}

/// Average run length of the one-sided upper CUSUM `S_t = max(0, S_{t-1} + X_t - k)`,
/// `X_t ~ N(mu, 1)`, alarm when `S_t > h`, started at `S_0 = hs`.
///
/// # Formula
/// `L(s) = 1 + L(0) Phi(k - s) + integral_0^h L(z) phi(z + k - s) dz` (Brook & Evans 1972),
/// discretised on `r` Gauss-Legendre nodes `z_j` (weights `w_j`) plus the atom `L(0)`; the
/// `(r + 1)`-square linear system is solved and `L(hs)` evaluated by the same quadrature.
/// R: `spc::xcusum.arl(k, h, mu, hs, sided = "one", r = r)`.
pub fn cusum_arl(k: f64, h: f64, hs: f64, mu: f64, r: usize) -> f64 {
    let (z, w) = gauss_legendre(r, 0.0, h);
    let nn = r + 1;
    let mut a = vec![0.0; nn * nn];
    for i in 0..r {
        for j in 0..r {
            a[i * nn + j] = -w[j] * pdf(z[j] + k - z[i], mu);
        }
        a[i * nn + i] += 1.0;
        a[i * nn + r] = -cdf(k - z[i], mu);
    }
    for j in 0..r {
        a[r * nn + j] = -w[j] * pdf(z[j] + k, mu);
    }
    a[r * nn + r] = 1.0 - cdf(k, mu);
    let mut g = vec![1.0; nn];
    if !solve(&mut a, &mut g, nn) {
        return f64::NAN;
    }
    let mut arl = 1.0 + cdf(k - hs, mu) * g[r];
    for j in 0..r {
        arl += w[j] * pdf(z[j] + k - hs, mu) * g[j];
    }
    arl
}

/// The normalised decision threshold `h` of a one-sided CUSUM with reference value `k` whose
/// in-control (`mu = 0`) ARL is `arl0`, with `r` quadrature nodes (AIM-CU uses 30).
///
/// # Formula
/// `h` with `cusum_arl(k, h, 0, 0, r) = arl0`: bracketed by steps of 0.5 from 0, then the
/// secant method until `|ARL - arl0| <= 1e-6` or the step is below `1e-9`.
/// R: `spc::xcusum.crit(k, arl0, mu0 = 0, hs = 0, sided = "one", r = r)`; AIM-CU's
/// `get_threshold(k, arl0)` is that value rounded to 4 decimals. `None` for `k < 0`,
/// `arl0 < 1` or `r < 4`.
pub fn cusum_crit(k: f64, arl0: f64, r: usize) -> Option<f64> {
    if k.is_nan() || k < 0.0 || arl0.is_nan() || arl0 < 1.0 || r < 4 || !arl0.is_finite() {
        return None;
    }
    let arl = |h: f64| cusum_arl(k, h, 0.0, 0.0, r);
    let mut c2 = 0.0;
    let mut l2;
    loop {
        c2 += 0.5;
        l2 = arl(c2);
        if !l2.is_finite() || c2 > 1e3 {
            return None;
        }
        if l2 >= arl0 {
            break;
        }
    }
    let mut c1 = c2 - 0.5;
    let mut l1 = arl(c1);
    let mut c3 = c2;
    for _ in 0..200 {
        if (l2 - l1).abs() < 1e-300 {
            break;
        }
        c3 = c1 + (arl0 - l1) / (l2 - l1) * (c2 - c1);
        let l3 = arl(c3);
        let dc = c3 - c2;
        (c1, l1, c2, l2) = (c2, l2, c3, l3);
        if (arl0 - l3).abs() <= 1e-6 || dc.abs() <= 1e-9 {
            break;
        }
    }
    Some(c3)
}

/// Rounds to `d` decimals (half away from zero, as numpy's `round` does for these values).
pub fn round_to(x: f64, d: i32) -> f64 {
    let f = 10f64.powi(d);
    (x * f).round() / f
}

/// A two-sided tabular CUSUM on observations of in-control mean `mu0` and standard deviation
/// `sigma`, with normalised reference value `k` and threshold `h` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cusum {
    /// In-control mean.
    pub mu0: f64,
    /// In-control standard deviation.
    pub sigma: f64,
    /// Normalised reference value (allowance), in units of `sigma`.
    pub k: f64,
    /// Normalised decision threshold, in units of `sigma`.
    pub h: f64,
}

/// The state a CUSUM carries from one observation (and one monitoring run) to the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CusumState {
    /// Upper statistic `S+` (detects an increase).
    pub s_hi: f64,
    /// Lower statistic `S-` (detects a decrease).
    pub s_lo: f64,
}

/// Which side of a chart signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The statistic rose above its in-control level.
    Upper,
    /// The statistic fell below its in-control level.
    Lower,
}

impl Cusum {
    /// One step from `state` with observation `x`; returns the new state and the side that
    /// exceeds `H` (upper first when both do).
    pub fn step(&self, state: CusumState, x: f64) -> (CusumState, Option<Side>) {
        let kk = self.k * self.sigma;
        let hh = self.h * self.sigma;
        let s_hi = (state.s_hi + x - self.mu0 - kk).max(0.0);
        let s_lo = (state.s_lo + self.mu0 - kk - x).max(0.0);
        let side = if s_hi > hh {
            Some(Side::Upper)
        } else if s_lo > hh {
            Some(Side::Lower)
        } else {
            None
        };
        (CusumState { s_hi, s_lo }, side)
    }

    /// The statistic path over `xs` from `start`, and the first alarm (index, side).
    pub fn path(&self, start: CusumState, xs: &[f64]) -> (Vec<CusumState>, Option<(usize, Side)>) {
        let mut s = start;
        let mut out = Vec::with_capacity(xs.len());
        let mut first = None;
        for (i, x) in xs.iter().enumerate() {
            let (n, side) = self.step(s, *x);
            s = n;
            out.push(s);
            if first.is_none() {
                first = side.map(|sd| (i, sd));
            }
        }
        (out, first)
    }
}

/// AIM-CU's `CUSUM.change_detection`, reproduced exactly; `medgate monitor` draws its CUSUM
/// charts and takes their alarm times from this path: the path starts at 0 *on* the first
/// observation, every value is rounded to 2 decimals (in the observations' own units) before it
/// is compared with `H = h sigma`, and when both sides first exceed `H` at the same index the
/// lower side is reported ([`aimcu_signal`]). Returns the rounded `(S+, S-)` path and the first
/// alarm.
pub fn aimcu_path(c: &Cusum, xs: &[f64]) -> (Vec<CusumState>, Option<(usize, Side)>) {
    let kk = c.k * c.sigma;
    let mut raw = CusumState::default();
    let mut out = Vec::with_capacity(xs.len());
    for (i, x) in xs.iter().enumerate() {
        if i > 0 {
            raw = CusumState {
                s_hi: (raw.s_hi + x - c.mu0 - kk).max(0.0),
                s_lo: (raw.s_lo + c.mu0 - kk - x).max(0.0),
            };
        }
        out.push(CusumState {
            s_hi: round_to(raw.s_hi, 2),
            s_lo: round_to(raw.s_lo, 2),
        });
    }
    let alarm = out
        .iter()
        .enumerate()
        .find_map(|(i, s)| aimcu_signal(c, s, true, true).map(|sd| (i, sd)));
    (out, alarm)
}

/// The side one point `s` of [`aimcu_path`] signals on, among the sides monitored (`upper`,
/// `lower`): a side signals when its statistic exceeds `H = h sigma`; when both do, the lower
/// one, as AIM-CU reports it (its alarm is the first index of either side, S- on a tie). So the
/// first point with a signal is [`aimcu_path`]'s alarm.
pub fn aimcu_signal(c: &Cusum, s: &CusumState, upper: bool, lower: bool) -> Option<Side> {
    let hh = c.h * c.sigma;
    if lower && s.s_lo > hh {
        Some(Side::Lower)
    } else if upper && s.s_hi > hh {
        Some(Side::Upper)
    } else {
        None
    }
}

/// Mean and population standard deviation (`ddof = 0`, numpy's `np.std`) of `xs`.
pub fn mean_sd(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    Some((m, v.sqrt()))
}

/// An EWMA chart with smoothing `lambda` in (0, 1] and limit width `l` (in sigmas of the
/// EWMA statistic).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ewma {
    /// In-control mean.
    pub mu0: f64,
    /// In-control standard deviation of one observation.
    pub sigma: f64,
    /// Smoothing constant.
    pub lambda: f64,
    /// Limit width.
    pub l: f64,
}

/// The state an EWMA carries over: the statistic and how many observations it has seen.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EwmaState {
    /// `Z_t`.
    pub z: f64,
    /// `t`.
    pub t: u64,
}

/// One EWMA point.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EwmaPoint {
    /// `Z_t`.
    pub z: f64,
    /// Lower control limit at `t`.
    pub lcl: f64,
    /// Upper control limit at `t`.
    pub ucl: f64,
}

impl Ewma {
    /// The state before the first observation (`Z_0 = mu0`).
    pub fn start(&self) -> EwmaState {
        EwmaState { z: self.mu0, t: 0 }
    }

    /// One step: new state, the point, and the side outside its limit.
    pub fn step(&self, s: EwmaState, x: f64) -> (EwmaState, EwmaPoint, Option<Side>) {
        let z = self.lambda * x + (1.0 - self.lambda) * s.z;
        let t = s.t + 1;
        let var = self.lambda / (2.0 - self.lambda)
            * (1.0 - (1.0 - self.lambda).powi((2 * t).min(i32::MAX as u64) as i32));
        let half = self.l * self.sigma * var.sqrt();
        let p = EwmaPoint {
            z,
            lcl: self.mu0 - half,
            ucl: self.mu0 + half,
        };
        let side = if z > p.ucl {
            Some(Side::Upper)
        } else if z < p.lcl {
            Some(Side::Lower)
        } else {
            None
        };
        (EwmaState { z, t }, p, side)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        let (x, w) = gauss_legendre(5, 0.0, 2.0);
        // degree 9 is exact for 5 nodes: int_0^2 x^9 dx = 2^10 / 10
        let s: f64 = x.iter().zip(&w).map(|(x, w)| w * x.powi(9)).sum();
        assert!((s - 102.4).abs() < 1e-10, "{s}");
    }

    #[test]
    fn arl_grows_with_h_and_crit_inverts_it() {
        let h = cusum_crit(0.5, 100.0, 30).unwrap();
        assert!((cusum_arl(0.5, h, 0.0, 0.0, 30) - 100.0).abs() < 1e-5);
        assert!(cusum_arl(0.5, h + 0.1, 0.0, 0.0, 30) > 100.0);
        assert!(cusum_crit(-1.0, 100.0, 30).is_none());
    }

    #[test]
    fn cusum_alarms_on_a_shift() {
        let c = Cusum {
            mu0: 0.0,
            sigma: 1.0,
            k: 0.5,
            h: 4.0,
        };
        let xs = [0.0, 0.0, 2.0, 2.0, 2.0, 2.0];
        let (path, alarm) = c.path(CusumState::default(), &xs);
        assert_eq!(path[2].s_hi, 1.5);
        assert_eq!(alarm, Some((4, Side::Upper)));
    }
}
