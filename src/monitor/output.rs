//! The monitoring outputs: `monitor.json`, `junit.xml`, `monitor.html`, `monitor.typ` +
//! `monitor.pdf` and the plot SVGs under `plots/`.
//!
//! `monitor.json` is the canonical record (sorted keys through [`crate::hash::canonical_json`],
//! shortest round-trip floats, no clock), so the same inputs give the same bytes. The HTML and
//! Typst documents are rendered from it with `templates/monitor.html` and
//! `templates/monitor.typ` in the report stage's template environment, which escapes every
//! interpolated value for its language. The PDF is compiled by the embedded Typst with the
//! date of the last closed window (not the clock).

use std::path::{Path, PathBuf};

use minijinja::Value;

use super::MonitorReport;
use super::plot;
use crate::error::{Error, Result};
use crate::report::junit::xml_escape;

/// Built-in monitoring templates.
pub const TEMPLATES: [(&str, &str); 2] = [
    ("monitor.html", include_str!("../../templates/monitor.html")),
    ("monitor.typ", include_str!("../../templates/monitor.typ")),
];

fn f(v: Option<f64>) -> String {
    match v {
        Some(x) if x != 0.0 && x.abs() < 1e-3 => format!("{x:.2e}"),
        Some(x) => format!("{x:.4}"),
        None => "n/a".into(),
    }
}

/// `2026-03-02T00:06:00Z` -> `2026-03-02 00:06`.
fn short(ts: &str) -> String {
    ts.get(..16)
        .map(|t| t.replace('T', " "))
        .unwrap_or_else(|| ts.to_string())
}

/// `junit.xml`: one test case per monitored statistic and scope (each chart, each drift
/// statistic), failing when it alarmed in any window.
pub fn junit(r: &MonitorReport) -> String {
    let mut cases: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut push = |name: String, class: String, failure: Option<String>| match cases
        .iter_mut()
        .find(|c| c.0 == name)
    {
        Some(c) => c.2.extend(failure),
        None => cases.push((name, class, failure.into_iter().collect())),
    };
    for w in &r.windows {
        for v in &w.values {
            push(
                format!("{} [{}]", v.id, v.scope),
                v.statistic.as_str().to_string(),
                v.alarm.then(|| {
                    format!(
                        "window {} ({} .. {}): {} = {} ({})",
                        w.window.index,
                        w.window.first,
                        w.window.last,
                        v.statistic.as_str(),
                        f(v.value),
                        v.rule
                    )
                }),
            );
        }
    }
    for c in &r.charts {
        let fails: Vec<String> = r
            .alarms
            .iter()
            .filter(|a| a.id == c.id && a.scope == c.scope)
            .map(|a| {
                format!(
                    "window {} ({} .. {}): {} = {}",
                    a.window,
                    a.window_first,
                    a.window_last,
                    a.rule,
                    f(a.value)
                )
            })
            .collect();
        let name = format!("{} [{}]", c.id, c.scope);
        push(name.clone(), c.design.chart.as_str().to_string(), None);
        for fl in fails {
            push(name.clone(), String::new(), Some(fl));
        }
    }
    let failures = cases.iter().filter(|c| !c.2.is_empty()).count();
    let suite = xml_escape(&format!("{} monitoring", r.protocol));
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"{suite}\" tests=\"{}\" failures=\"{failures}\">\n<testsuite name=\"{suite}\" tests=\"{}\" failures=\"{failures}\">\n",
        cases.len(),
        cases.len()
    ));
    for (name, class, fails) in &cases {
        let req = r
            .plan
            .statistics
            .iter()
            .find(|s| name.starts_with(&format!("{} [", s.id)))
            .map(|s| {
                format!(
                    "{}{}",
                    s.requirement,
                    s.risk_control
                        .as_ref()
                        .map(|rc| format!(", {rc}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        x.push_str(&format!(
            "  <testcase name=\"{}\" classname=\"{}\">\n    <properties><property name=\"traces_to\" value=\"{}\"/></properties>\n",
            xml_escape(name),
            xml_escape(&format!("monitor.{class}")),
            xml_escape(&req)
        ));
        if !fails.is_empty() {
            x.push_str(&format!(
                "    <failure message=\"{} alarm(s)\">{}</failure>\n",
                fails.len(),
                xml_escape(&fails.join("\n"))
            ));
        }
        x.push_str("  </testcase>\n");
    }
    x.push_str("</testsuite>\n</testsuites>\n");
    x
}

/// The view the templates get: the report plus preformatted figures.
fn view(r: &MonitorReport) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(r).map_err(|e| Error::Internal(e.to_string()))?;
    // One row per statistic and scope: first window, windows alarmed, last window.
    let mut grouped: Vec<(&super::engine::Alarm, u64, u64)> = Vec::new();
    for a in &r.alarms {
        match grouped
            .iter_mut()
            .find(|(g, _, _)| g.id == a.id && g.scope == a.scope)
        {
            Some((_, n, last)) => {
                *n += 1;
                *last = a.window;
            }
            None => grouped.push((a, 1, a.window)),
        }
    }
    let alarms: Vec<serde_json::Value> = grouped
        .iter()
        .map(|(a, n, last)| {
            serde_json::json!({
                "id": a.id, "statistic": a.statistic.as_str(), "scope": a.scope,
                "window": a.window, "first": a.window_first, "last": a.window_last,
                "windows": n, "last_window": last,
                "value": f(a.value), "rule": a.rule, "requirement": a.requirement,
                "risk_control": a.risk_control.clone().unwrap_or_else(|| "-".into()),
            })
        })
        .collect();
    let rows: Vec<serde_json::Value> = r
        .windows
        .iter()
        .map(|w| {
            let cells: Vec<serde_json::Value> = r
                .plan
                .statistics
                .iter()
                .filter(|s| !matches!(s.statistic, crate::protocol::monitoring::MonitorKind::Cusum | crate::protocol::monitoring::MonitorKind::Ewma))
                .map(|s| {
                    let val = w.values.iter().find(|v| v.id == s.id && v.is_overall());
                    serde_json::json!({
                        "text": val.map(|v| f(v.value)).unwrap_or_else(|| "n/a".into()),
                        "alarm": val.is_some_and(|v| v.alarm),
                    })
                })
                .collect();
            serde_json::json!({
                "index": w.window.index, "first": short(&w.window.first), "last": short(&w.window.last),
                "rows": w.window.rows, "evaluated": w.window.evaluated, "labelled": w.window.labelled,
                "small": w.window.small, "cells": cells,
            })
        })
        .collect();
    let columns: Vec<String> = r
        .plan
        .statistics
        .iter()
        .filter(|s| {
            !matches!(
                s.statistic,
                crate::protocol::monitoring::MonitorKind::Cusum
                    | crate::protocol::monitoring::MonitorKind::Ewma
            )
        })
        .map(|s| s.id.clone())
        .collect();
    let charts: Vec<serde_json::Value> = r
        .charts
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id, "scope": c.scope, "chart": c.design.chart.as_str(), "of": c.design.of.as_str(),
                "mu0": f(c.design.mu0), "sigma": f(c.design.sigma), "k": f(c.design.k), "h": f(c.design.h),
                "arl0": f(c.design.arl0), "lambda": f(c.design.lambda), "limit": f(c.design.limit),
                "first_alarm": c.first_alarm.map(|(w, _)| w.to_string()).unwrap_or_else(|| "none".into()),
                "note": c.note.clone().unwrap_or_default(),
                "file": format!("chart-{}-{}.svg", plot::safe_name(&c.id), plot::safe_name(&c.scope)),
            })
        })
        .collect();
    let excluded: Vec<serde_json::Value> = r
        .input
        .excluded
        .iter()
        .map(|(k, n)| serde_json::json!({"reason": k, "rows": n, "kind": "excluded"}))
        .chain(r.input.set_aside.iter().map(|(k, n)| serde_json::json!({"reason": k, "rows": n, "kind": "value set aside, row kept"})))
        .collect();
    let o = v
        .as_object_mut()
        .ok_or_else(|| Error::Internal("report view".into()))?;
    o.insert("alarm_rows".into(), alarms.into());
    o.insert("window_rows".into(), rows.into());
    o.insert("columns".into(), columns.into());
    o.insert("chart_rows".into(), charts.into());
    o.insert("excluded_rows".into(), excluded.into());
    o.insert("medgate_version".into(), env!("CARGO_PKG_VERSION").into());
    let drift: Vec<String> = plot::drift_svgs(r)
        .into_iter()
        .map(|(n, _)| format!("drift-{n}"))
        .collect();
    o.insert("drift_files".into(), drift.into());
    o.insert(
        "date".into(),
        r.windows
            .last()
            .map(|w| w.window.last.clone())
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
            .into(),
    );
    Ok(v)
}

/// Every plot: `(file name under plots/, svg)`.
pub fn plots(r: &MonitorReport) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = r
        .charts
        .iter()
        .map(|c| {
            (
                format!(
                    "chart-{}-{}.svg",
                    plot::safe_name(&c.id),
                    plot::safe_name(&c.scope)
                ),
                plot::chart_svg(c),
            )
        })
        .collect();
    out.extend(
        plot::drift_svgs(r)
            .into_iter()
            .map(|(n, s)| (format!("drift-{n}"), s)),
    );
    out
}

fn write(path: &Path, bytes: &[u8], written: &mut Vec<PathBuf>) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))?;
    written.push(path.to_path_buf());
    Ok(())
}

/// Writes every output into `dir`; returns the files written.
pub fn write_all(dir: &Path, r: &MonitorReport, pdf: bool) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir.join("plots")).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    let mut json = crate::hash::canonical_json(r)?;
    json.push('\n');
    write(&dir.join("monitor.json"), json.as_bytes(), &mut written)?;
    write(&dir.join("junit.xml"), junit(r).as_bytes(), &mut written)?;
    let plots = plots(r);
    for (name, svg) in &plots {
        write(&dir.join("plots").join(name), svg.as_bytes(), &mut written)?;
    }
    let env = crate::report::environment_with(&TEMPLATES)?;
    let view = view(r)?;
    let svgs: std::collections::BTreeMap<String, Value> = plots
        .iter()
        .map(|(n, s)| (n.clone(), Value::from_safe_string(s.clone())))
        .collect();
    let ctx = minijinja::context! { r => crate::report::json_value(&view), svg => Value::from_object(svgs) };
    let render = |name: &str| -> Result<String> {
        env.get_template(name)
            .and_then(|t| t.render(&ctx))
            .map_err(|e| Error::Internal(format!("template {name}: {e}")))
    };
    write(
        &dir.join("monitor.html"),
        render("monitor.html")?.as_bytes(),
        &mut written,
    )?;
    let typ = render("monitor.typ")?;
    write(&dir.join("monitor.typ"), typ.as_bytes(), &mut written)?;
    if pdf {
        let files: Vec<(String, Vec<u8>)> = plots
            .iter()
            .map(|(n, s)| (format!("plots/{n}"), s.as_bytes().to_vec()))
            .collect();
        let date = view["date"]
            .as_str()
            .unwrap_or("1970-01-01T00:00:00Z")
            .to_string();
        let bytes = crate::report::pdf::compile_pdf(typ, &files, &date, &r.results_sha256)?;
        write(&dir.join("monitor.pdf"), &bytes, &mut written)?;
    }
    Ok(written)
}
