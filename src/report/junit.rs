//! `junit.xml`: one test case per acceptance criterion, for CI systems.
//!
//! A criterion that passes is a passing test; FAIL and NOT EVALUABLE are failures (both fail
//! the release gate), with the observed values in the failure text. Every test case, passing
//! or not, carries its observations (estimate, interval, tested value per unit) in
//! `<system-out>`, which the Jenkins/Ant JUnit schema allows there (it has no test-case
//! `<properties>`). The suite's `time` is the run's real duration (finished_at - started_at);
//! a criterion has no duration of its own, so a test case's `time` is 0. Every string is
//! XML-escaped.

use crate::trace::{CriterionResult, Evidence, Verdict};

/// Escapes text for XML attribute values and element content.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even when escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn fmt(v: Option<f64>) -> String {
    super::view::fmt_fixed(v, 4)
}

/// The failure message: the criterion, its verdict and the deciding observation (the same
/// one the console summary and the reports show, [`CriterionResult::deciding`]).
fn failure_message(c: &CriterionResult) -> String {
    match c.deciding() {
        Some(o) => format!(
            "{} {}: {} tested {} (goal {} {})",
            c.id,
            c.verdict.label(),
            o.unit,
            fmt(o.tested),
            c.comparator.ascii(),
            c.goal
        ),
        None => format!("{} {}", c.id, c.verdict.label()),
    }
}

/// Seconds between two RFC 3339 times (0 when either does not parse or the order is odd).
fn duration_s(start: &str, end: &str) -> f64 {
    match (
        chrono::DateTime::parse_from_rfc3339(start),
        chrono::DateTime::parse_from_rfc3339(end),
    ) {
        (Ok(a), Ok(b)) => ((b - a).num_milliseconds().max(0) as f64) / 1000.0,
        _ => 0.0,
    }
}

/// One observation as a line of text.
fn observation_line(o: &crate::trace::Observation) -> String {
    format!(
        "{}: n={} estimate={} [{}, {}] tested={} -> {}{}",
        o.unit,
        o.n,
        fmt(o.estimate),
        fmt(o.lower),
        fmt(o.upper),
        fmt(o.tested),
        o.verdict.label(),
        o.note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    )
}

/// Renders the JUnit XML for an evidence record.
pub fn render(ev: &Evidence) -> String {
    let tests = ev.criteria.len();
    let failures = ev
        .criteria
        .iter()
        .filter(|c| c.verdict != Verdict::Pass)
        .count();
    let suite = xml_escape(&ev.protocol.protocol);
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let time = duration_s(&ev.provenance.started_at, &ev.provenance.finished_at);
    x.push_str(&format!(
        "<testsuites name=\"medgate\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">\n"
    ));
    x.push_str(&format!(
        "  <testsuite name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{time:.3}\" timestamp=\"{}\" hostname=\"{}\">\n",
        xml_escape(ev.provenance.started_at.get(..19).unwrap_or(&ev.provenance.started_at)),
        xml_escape(&ev.provenance.host.hostname)
    ));
    x.push_str("    <properties>\n");
    let props = [
        ("run_id", ev.run_id.clone()),
        ("protocol_version", ev.protocol.version.clone()),
        ("protocol_sha256", ev.protocol_file.sha256.clone()),
        ("golden_set_root", ev.golden_set.root_hash.clone()),
        ("model_sha256", ev.model.sha256.clone().unwrap_or_default()),
        ("results_sha256", ev.results_sha256.clone()),
        ("verdict", ev.verdict.label().to_string()),
    ];
    for (k, v) in props {
        x.push_str(&format!(
            "      <property name=\"{k}\" value=\"{}\"/>\n",
            xml_escape(&v)
        ));
    }
    x.push_str("    </properties>\n");
    for c in &ev.criteria {
        let name = format!(
            "{}: {} {} {} {}",
            c.id,
            c.metric,
            c.bound.as_str(),
            c.comparator.ascii(),
            c.goal
        )
        .to_lowercase()
        .replace(&c.id.to_lowercase(), &c.id);
        x.push_str(&format!(
            "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"0\">\n",
            suite,
            xml_escape(&c.requirement),
            xml_escape(&name)
        ));
        let detail: Vec<String> = c.observations.iter().map(observation_line).collect();
        if c.verdict != Verdict::Pass {
            x.push_str(&format!(
                "      <failure type=\"{}\" message=\"{}\">{}</failure>\n",
                xml_escape(c.verdict.label()),
                xml_escape(&failure_message(c)),
                xml_escape(&detail.join("\n"))
            ));
        }
        x.push_str(&format!(
            "      <system-out>{} {}\n{}</system-out>\n",
            xml_escape(&c.id),
            xml_escape(c.verdict.label()),
            xml_escape(&detail.join("\n"))
        ));
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// Writes `junit.xml` ([`render`]) into the bundle directory `out_dir`.
pub fn write(ev: &Evidence, out_dir: &std::path::Path) -> crate::error::Result<()> {
    // Never through a symlink planted in the bundle.
    crate::fsx::write_inside(
        out_dir,
        std::path::Path::new(crate::trace::bundle::JUNIT_FILE),
        render(ev).as_bytes(),
    )
    .map(|_| ())
}
