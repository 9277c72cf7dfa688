//! Human summaries printed at the end of `run` (and `verify`).

use std::fmt::Write;

use crate::pipeline::RunSummary;
use crate::trace::Verdict;

fn paint(s: &str, verdict: Verdict, color: bool) -> String {
    if !color {
        return s.to_string();
    }
    let code = match verdict {
        Verdict::Pass => "32",
        Verdict::Fail => "31",
        Verdict::NotEvaluable => "33",
    };
    format!("\x1b[1;{code}m{s}\x1b[0m")
}

fn f3(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into())
}

/// The text summary of a run.
pub fn run_summary(s: &RunSummary, color: bool) -> String {
    let ev = &s.evidence;
    let mut o = String::new();
    let a = &ev.accountability;
    let _ = writeln!(
        o,
        "{} v{}: {}",
        ev.protocol.protocol, ev.protocol.version, ev.protocol.title
    );
    let _ = writeln!(
        o,
        "cases: {} enrolled, {} evaluated, {} equivocal, {} not evaluated  ({} inferred now, {} from journal)",
        a.enrolled,
        a.evaluated,
        a.equivocal,
        a.not_evaluated.len(),
        s.inferred,
        s.resumed
    );
    let _ = writeln!(o);
    let width = ev
        .criteria
        .iter()
        .map(|c| c.id.len())
        .max()
        .unwrap_or(2)
        .max(9);
    let mw = ev
        .criteria
        .iter()
        .map(|c| c.metric.len() + c.scope.len() + 3)
        .max()
        .unwrap_or(14)
        .max(14);
    let _ = writeln!(
        o,
        "  {:<width$}  {:<14} {:<mw$}  {:<8}  {:<9} verdict",
        "criterion", "requirement", "metric (scope)", "goal", "tested"
    );
    for c in &ev.criteria {
        // The observation the report shows as deciding, so both print the same tested value.
        let worst = crate::report::view::deciding(c);
        let observed = worst.map(|o| f3(o.tested)).unwrap_or_else(|| "n/a".into());
        let cmp = if c.comparator == "at_most" {
            "<="
        } else {
            ">="
        };
        let _ = writeln!(
            o,
            "  {:<width$}  {:<14} {:<mw$}  {:<8}  {:<9} {}",
            c.id,
            c.requirement,
            format!("{} ({})", c.metric, c.scope),
            format!("{cmp} {}", c.goal),
            observed,
            paint(c.verdict.label(), c.verdict, color)
        );
    }
    let _ = writeln!(o);
    for w in &ev.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    let _ = writeln!(
        o,
        "verdict: {}",
        paint(ev.verdict.label(), ev.verdict, color)
    );
    let _ = writeln!(o, "results_sha256: {}", ev.results_sha256);
    let _ = writeln!(o, "bundle: {}", s.out_dir.display());
    for f in &s.files {
        if f.starts_with("report.") {
            let _ = writeln!(o, "  report: {}", s.out_dir.join(f).display());
        }
    }
    let _ = writeln!(o, "verify with: medgate verify {}", s.out_dir.display());
    o
}
