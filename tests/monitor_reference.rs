//! Monitoring statistics against external references (tests/fixtures/monitor/README.md):
//! scipy 1.17 (`ks_2samp`, `wasserstein_distance`, `chi2_contingency`, `kstwobign`), numpy
//! (PSI over fixed baseline bins), R spc 0.6.7 (`xcusum.arl`, `xcusum.crit`) and FDA's AIM-CU
//! 0.2.1 (`get_threshold`, `CUSUM.change_detection`).

use medgate::stats::cusum::{
    Cusum, CusumState, aimcu_path, cusum_arl, cusum_crit, mean_sd, round_to,
};
use medgate::stats::drift::{
    KsMethod, bin_counts, chi2_contingency, ks_2samp, psi, quantile_edges, wasserstein,
};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = format!(
        "{}/tests/fixtures/monitor/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    let scale = b.abs().max(1.0);
    assert!(
        (a - b).abs() <= tol * scale,
        "{what}: medgate {a} vs reference {b}"
    );
}

#[test]
fn ks_wasserstein_psi_match_scipy_and_numpy() {
    let f = fixture("drift.json");
    for s in f["samples"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let a = floats(&s["a"]);
        let b = floats(&s["b"]);
        let ks = ks_2samp(&a, &b).unwrap();
        close(
            ks.statistic,
            s["ks_statistic"].as_f64().unwrap(),
            1e-12,
            name,
        );
        match s["ks_method"].as_str().unwrap() {
            "exact" => {
                assert_eq!(ks.method, KsMethod::Exact, "{name}");
                // exact p-values: relative 1e-9, so tiny p-values are checked too
                let r = s["ks_pvalue_scipy_auto"].as_f64().unwrap();
                assert!(
                    (ks.p_value - r).abs() <= 1e-9 * r,
                    "{name}: KS p {} vs scipy {r}",
                    ks.p_value
                );
            }
            _ => {
                assert_eq!(ks.method, KsMethod::Asymptotic, "{name}");
                close(
                    ks.p_value,
                    s["ks_pvalue_kstwobign"].as_f64().unwrap(),
                    1e-9,
                    name,
                );
            }
        }
        close(
            wasserstein(&a, &b).unwrap(),
            s["wasserstein"].as_f64().unwrap(),
            1e-9,
            name,
        );
        let bins = s["psi_bins"].as_u64().unwrap() as usize;
        let edges = quantile_edges(&a, bins);
        for (e, r) in edges.iter().zip(floats(&s["psi_edges"])) {
            close(*e, r, 1e-12, name);
        }
        let cb = bin_counts(&edges, &a);
        let cc = bin_counts(&edges, &b);
        let rb: Vec<u64> = s["psi_base_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        let rc: Vec<u64> = s["psi_cur_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(cb, rb, "{name}: baseline bin counts");
        assert_eq!(cc, rc, "{name}: current bin counts");
        close(
            psi(&cb, &cc).unwrap(),
            s["psi"].as_f64().unwrap(),
            1e-9,
            name,
        );
    }
}

#[test]
fn chi_square_matches_scipy_chi2_contingency() {
    let f = fixture("drift.json");
    for c in f["chi2"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let table: Vec<Vec<u64>> = c["table"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .collect()
            })
            .collect();
        let r = chi2_contingency(&table).unwrap();
        close(r.statistic, c["statistic"].as_f64().unwrap(), 1e-9, name);
        assert_eq!(r.dof, c["dof"].as_u64().unwrap(), "{name}");
        close(r.p_value, c["pvalue"].as_f64().unwrap(), 1e-9, name);
    }
}

#[test]
fn cusum_arl_and_threshold_match_r_spc_and_aimcu() {
    let f = fixture("cusum.json");
    for a in f["arl"].as_array().unwrap() {
        let (k, h, mu) = (
            a["k"].as_f64().unwrap(),
            a["h"].as_f64().unwrap(),
            a["mu"].as_f64().unwrap(),
        );
        close(
            cusum_arl(k, h, 0.0, mu, 30),
            a["arl"].as_f64().unwrap(),
            1e-9,
            &format!("xcusum.arl k={k} h={h} mu={mu}"),
        );
    }
    for c in f["crit"].as_array().unwrap() {
        let (k, arl0) = (c["k"].as_f64().unwrap(), c["arl0"].as_f64().unwrap());
        let h = cusum_crit(k, arl0, 30).unwrap();
        let what = format!("xcusum.crit k={k} ARL0={arl0}");
        close(h, c["h_spc"].as_f64().unwrap(), 1e-6, &what);
        assert_eq!(
            round_to(h, 4),
            c["h_aimcu"].as_f64().unwrap(),
            "AIM-CU get_threshold {what}"
        );
    }
}

#[test]
fn cusum_path_and_alarm_match_aimcu() {
    let f = fixture("cusum.json");
    for r in f["runs"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let x = floats(&r["x"]);
        let init = r["init_days"].as_u64().unwrap() as usize;
        let (mu0, sigma) = mean_sd(&x[..init]).unwrap();
        close(mu0, r["in_mu"].as_f64().unwrap(), 1e-12, name);
        close(sigma, r["in_std"].as_f64().unwrap(), 1e-12, name);
        let k = r["k"].as_f64().unwrap();
        let h = round_to(cusum_crit(k, r["arl0"].as_f64().unwrap(), 30).unwrap(), 4);
        assert_eq!(h, r["h"].as_f64().unwrap(), "{name}: h");
        let c = Cusum { mu0, sigma, k, h };
        // AIM-CU starts its path at 0 on the first observation: feed from the second value.
        let (path, alarm) = c.path(CusumState::default(), &x[1..]);
        let s_hi = floats(&r["s_hi"]);
        let s_lo = floats(&r["s_lo"]);
        assert_eq!(s_hi[0], 0.0);
        for (t, p) in path.iter().enumerate() {
            // AIM-CU rounds its path to 2 decimals.
            assert!(
                (p.s_hi - s_hi[t + 1]).abs() <= 0.005 + 1e-12,
                "{name} S_hi[{}]",
                t + 1
            );
            assert!(
                (p.s_lo - s_lo[t + 1]).abs() <= 0.005 + 1e-12,
                "{name} S_lo[{}]",
                t + 1
            );
        }
        let expected = r["alarm_index"].as_u64().map(|v| v as usize);
        // AIM-CU's own conventions reproduced exactly: path and alarm index.
        let (apath, aalarm) = aimcu_path(&c, &x);
        for (t, p) in apath.iter().enumerate() {
            assert_eq!(p.s_hi, s_hi[t], "{name} AIM-CU S_hi[{t}]");
            assert_eq!(p.s_lo, s_lo[t], "{name} AIM-CU S_lo[{t}]");
        }
        assert_eq!(
            aalarm.map(|(i, _)| i),
            expected,
            "{name}: AIM-CU alarm index"
        );
        // medgate's unrounded chart alarms no earlier than AIM-CU's rounded one.
        if let (Some((i, _)), Some(e)) = (alarm, expected) {
            assert!(
                i + 1 >= e,
                "{name}: unrounded alarm {} before AIM-CU's {e}",
                i + 1
            );
        }
    }
}
