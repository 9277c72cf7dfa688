//! `medgate verify`: recompute a bundle and report every difference.

use std::fmt::Write;
use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::verify::{self, VerifyOptions, VerifyReport};
use crate::world::SystemWorld;

/// Verify an evidence bundle by recomputing it.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks SHA256SUMS, recomputes every metric, interval, gap and verdict in
evidence.json from cases.parquet and the bundle's protocol.yaml and compares them exactly,
checks provenance (protocol hash, case count, model hash, journal), and checks every
signature. Works offline, on any machine.

Examples:
  medgate verify runs/VP-PTX-001
  medgate verify runs/VP-PTX-001 --golden-set golden-sets/demo-cxr
  medgate verify runs/VP-PTX-001 --trusted-key keys/qa-lead.key.pub --format json
  medgate verify runs/VP-PTX-001 --rerun --tolerance 1e-5

Exit status: 0 identical, 1 a difference, a moved case or an invalid signature,
2 the bundle cannot be read (no evidence.json, unparseable files)."
)]
pub struct VerifyArgs {
    /// The bundle directory written by `medgate run`.
    pub bundle: PathBuf,
    /// Check the recorded golden-set identity and the labels against this set.
    #[arg(long, value_name = "DIR")]
    pub golden_set: Option<PathBuf>,
    /// Re-run inference with the recorded backend and settings and compare per-case scores.
    #[arg(long)]
    pub rerun: bool,
    /// Directory the recorded protocol's relative paths resolve against (for --rerun)
    /// [default: the directory of the recorded protocol path].
    #[arg(long, value_name = "DIR")]
    pub protocol_dir: Option<PathBuf>,
    /// Largest tolerated absolute difference of a re-run score.
    #[arg(long, default_value_t = 1e-6)]
    pub tolerance: f64,
    /// Accept only signatures by this public key (repeatable; `KEY.pub` from `medgate keygen`).
    #[arg(long = "trusted-key", value_name = "PUBKEY")]
    pub trusted_keys: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate verify`.
pub fn run(args: VerifyArgs, global: &GlobalArgs) -> Result<Outcome> {
    if args.tolerance.is_nan() || args.tolerance < 0.0 {
        return Err(Error::input_hint(
            format!(
                "--tolerance {} is not a non-negative number",
                args.tolerance
            ),
            "e.g. --tolerance 1e-6",
        ));
    }
    let trusted_keys = args
        .trusted_keys
        .iter()
        .map(|p| verify::sign::read_public_key(p))
        .collect::<Result<Vec<_>>>()?;
    let opts = VerifyOptions {
        golden_set: args.golden_set.clone(),
        rerun: args.rerun,
        protocol_dir: args.protocol_dir.clone(),
        tolerance: args.tolerance,
        trusted_keys,
    };
    let world = SystemWorld::default();
    let report = verify::verify_bundle(&args.bundle, &opts, &world)?;
    match args.format {
        OutputFormat::Json => {
            let mut v =
                serde_json::to_value(&report).map_err(|e| Error::Internal(e.to_string()))?;
            if let Some(m) = v.as_object_mut() {
                m.insert("identical".into(), report.identical().into());
            }
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        OutputFormat::Text => {
            if !global.quiet || !report.identical() {
                print!("{}", render_text(&report, global.color_stdout()));
            }
        }
    }
    Ok(if report.identical() {
        Outcome::Pass
    } else {
        Outcome::Fail
    })
}

fn mark(ok: bool, color: bool) -> String {
    match (ok, color) {
        (true, true) => "\x1b[32mok\x1b[0m".into(),
        (false, true) => "\x1b[1;31mFAIL\x1b[0m".into(),
        (true, false) => "ok".into(),
        (false, false) => "FAIL".into(),
    }
}

fn short_json(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(77).map(|c| c.0).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

/// The text report of a verification.
pub fn render_text(r: &VerifyReport, color: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "bundle: {}", r.bundle);
    if !r.run_id.is_empty() {
        let _ = writeln!(
            o,
            "run: {}  (protocol {}, recorded verdict {})",
            r.run_id, r.protocol, r.verdict
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "[{}] files: {} listed in SHA256SUMS{}",
        mark(r.files.is_empty(), color),
        r.files_checked,
        if r.files.is_empty() {
            ", every hash matches".to_string()
        } else {
            format!(", {} problem(s)", r.files.len())
        }
    );
    for f in &r.files {
        let _ = writeln!(o, "    {:<9} {}", f.problem, f.path);
    }
    let _ = writeln!(
        o,
        "[{}] recomputation: {} values recomputed from cases.parquet and protocol.yaml{}",
        mark(r.discrepancies.is_empty(), color),
        r.values_compared,
        if r.discrepancies.is_empty() {
            ", all identical".to_string()
        } else {
            format!(", {} differ", r.discrepancies.len())
        }
    );
    for d in r.discrepancies.iter().take(50) {
        let _ = writeln!(
            o,
            "    {}: recomputed {}, recorded {}{}",
            d.path,
            short_json(&d.expected),
            short_json(&d.found),
            if d.kind == "value" {
                String::new()
            } else {
                format!(" ({})", d.kind)
            }
        );
    }
    if r.discrepancies.len() > 50 {
        let _ = writeln!(
            o,
            "    ... and {} more (use --format json for all)",
            r.discrepancies.len() - 50
        );
    }
    for c in &r.checks {
        let _ = writeln!(o, "[{}] {}: {}", mark(c.ok, color), c.name, c.detail);
    }
    if !r.cases.is_empty() {
        let _ = writeln!(
            o,
            "[{}] cases: {} case(s) disagree",
            mark(false, color),
            r.cases.len()
        );
        for c in r.cases.iter().take(50) {
            let _ = writeln!(o, "    {}: {}", c.case_id, c.problem);
        }
        if r.cases.len() > 50 {
            let _ = writeln!(
                o,
                "    ... and {} more (use --format json for all)",
                r.cases.len() - 50
            );
        }
    }
    if r.signatures.is_empty() {
        let _ = writeln!(o, "signatures: none");
    } else {
        let _ = writeln!(o, "signatures:");
        for s in &r.signatures {
            let trust = match s.trusted {
                Some(true) => ", trusted key",
                Some(false) => ", UNTRUSTED key",
                None => "",
            };
            let _ = writeln!(
                o,
                "[{}] {} \"{}\" at {}, key {}{}  ({})",
                mark(s.valid, color),
                if s.name.is_empty() { "?" } else { &s.name },
                s.meaning,
                s.signed_at,
                s.key_fingerprint,
                trust,
                s.file
            );
            for p in &s.problems {
                let _ = writeln!(o, "    {p}");
            }
        }
    }
    if let Some(rr) = &r.rerun {
        let _ = writeln!(
            o,
            "[{}] rerun ({}): {} cases, max |score difference| {:.3e} (tolerance {:.1e}), {} moved, {} verdict change(s)",
            mark(rr.consistent(), color),
            rr.backend,
            rr.cases,
            rr.max_abs_diff,
            rr.tolerance,
            rr.moved.len(),
            rr.verdict_changes.len()
        );
        if !rr.model_sha256_matches {
            let _ = writeln!(
                o,
                "    model hash now {}: differs from the recorded one",
                rr.model_sha256.as_deref().unwrap_or("none")
            );
        }
        if !rr.settings_match {
            let _ = writeln!(o, "    effective settings differ from the recorded ones");
        }
        for m in rr.moved.iter().take(50) {
            let f = |s: Option<f64>| {
                s.map(|v| format!("{v:.6}"))
                    .unwrap_or_else(|| "none".into())
            };
            let _ = writeln!(
                o,
                "    {}: {} {} -> {} {}",
                m.case_id,
                f(m.recorded_score),
                m.recorded_status.as_str(),
                f(m.rerun_score),
                m.rerun_status.as_str(),
            );
        }
        for v in &rr.verdict_changes {
            let _ = writeln!(
                o,
                "    verdict of {} would change: {} -> {}",
                v.criterion,
                v.recorded.label(),
                v.rerun.label()
            );
        }
    }
    let _ = writeln!(o);
    if r.identical() {
        let _ = writeln!(o, "result: IDENTICAL");
    } else {
        let _ = writeln!(o, "result: DIFFERENT ({} problem(s))", r.problem_count());
    }
    o
}
