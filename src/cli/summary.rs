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

use crate::report::view::fmt3 as f3;

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
        .map(|c| c.metric.as_str().len() + c.scope.to_string().len() + 3)
        .max()
        .unwrap_or(14)
        .max(14);
    let _ = writeln!(
        o,
        "  {:<width$}  {:<14} {:<mw$}  {:<8}  {:<9} verdict",
        "criterion", "requirement", "metric (scope)", "goal", "tested"
    );
    for c in &ev.criteria {
        let observed = c
            .deciding()
            .map(|o| f3(o.tested))
            .unwrap_or_else(|| "n/a".into());
        let cmp = c.comparator.ascii();
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
    for (w, n) in distinct(&ev.warnings) {
        match n {
            1 => {
                let _ = writeln!(o, "warning: {w}");
            }
            n => {
                let _ = writeln!(o, "warning ({n}x): {w}");
            }
        }
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

/// Identical lines once each, in the order first raised, with how often each was raised.
fn distinct(lines: &[String]) -> Vec<(&str, usize)> {
    let mut out: Vec<(&str, usize)> = Vec::new();
    for l in lines {
        match out.iter_mut().find(|(s, _)| *s == l.as_str()) {
            Some((_, n)) => *n += 1,
            None => out.push((l.as_str(), 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn identical_warnings_are_printed_once_with_a_count() {
        let w: Vec<String> = ["b", "a", "b", "b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(super::distinct(&w), vec![("b", 3), ("a", 1)]);
    }
}
