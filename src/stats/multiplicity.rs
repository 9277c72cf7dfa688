//! Multiplicity adjustment across a family of hypotheses (here: every subgroup gap in a
//! report), so the overall type I error stays at the protocol's level (FDA AI draft guidance:
//! "multiplicity handled").

use crate::protocol::Multiplicity;

/// Bonferroni-adjusted p-values: `min(1, m p_i)` for `m` hypotheses.
pub fn bonferroni(p: &[f64]) -> Vec<f64> {
    let m = p.len() as f64;
    p.iter().map(|&x| (x * m).min(1.0)).collect()
}

/// Holm-Bonferroni step-down adjusted p-values, in the input order.
///
/// # Formula
/// Sort ascending `p_(1) <= ... <= p_(m)`; `adj_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))`.
/// Holm (1979), Scand J Stat 6:65. Reference: statsmodels `multipletests(method="holm")`, R
/// `p.adjust(method = "holm")`.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    // Stable on ties, so equal p-values keep their input order.
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Adjusts `p` by `method`.
pub fn adjust(p: &[f64], method: Multiplicity) -> Vec<f64> {
    match method {
        Multiplicity::None => p.to_vec(),
        Multiplicity::Bonferroni => bonferroni(p),
        Multiplicity::Holm => holm(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_statsmodels() {
        for line in include_str!("../../tests/fixtures/stats/multiplicity.csv")
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split(',').collect();
            let parse = |s: &str| {
                s.split(' ')
                    .map(|x| x.parse::<f64>().unwrap())
                    .collect::<Vec<_>>()
            };
            let (p, want) = (parse(f[1]), parse(f[2]));
            let got = match f[0] {
                "holm" => holm(&p),
                _ => bonferroni(&p),
            };
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{}: {got:?} vs {want:?}", f[0]);
            }
        }
        assert!(holm(&[]).is_empty());
    }
}
