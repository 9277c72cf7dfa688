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
evidence.json from cases.parquet and the protocol and compares them exactly, re-renders
junit.xml and every report and compares the bytes, checks provenance (protocol hash, case
count, model hash, journal, ledger), and checks every signature. Works offline.

Two levels: internally consistent (what the bundle alone shows: whoever edits a bundle can
make it consistent) and anchored (checked against what you hold: --golden-set, --protocol
or --repo, --trusted-key). Nothing is read from a path the bundle names.

Examples:
  medgate verify runs/VP-PTX-001
  medgate verify runs/VP-PTX-001 --golden-set golden-sets/demo-cxr --protocol protocols/demo-cxr.yaml
  medgate verify runs/VP-PTX-001 --golden-set golden-sets/demo-cxr --repo . \
      --trusted-key keys/qa-lead.key.pub --require-signature approved --require-anchored
  medgate verify runs/VP-PTX-001 --rerun --tolerance 1e-5

Exit status: 0 identical (and anchored with --require-anchored), 1 a difference, a moved
case, an invalid or missing required signature, or not anchored when required,
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
    /// A public key you trust (repeatable; `KEY.pub` from `medgate keygen`): at least one
    /// valid signature by one of them is then required; other keys are reported untrusted.
    #[arg(long = "trusted-key", value_name = "PUBKEY")]
    pub trusted_keys: Vec<PathBuf>,
    /// Require a valid trusted signature by the protocol's signatory of this role or meaning
    /// (repeatable), e.g. `approved`.
    #[arg(long = "require-signature", value_name = "ROLE")]
    pub require_signatures: Vec<String>,
    /// Your copy of the protocol: the bundle's protocol.yaml must be byte-identical to it, and
    /// the recomputation uses it (anchors the protocol).
    #[arg(long, value_name = "FILE", conflicts_with = "repo")]
    pub protocol: Option<PathBuf>,
    /// Your clone of the protocol's repository: the protocol is the git blob at the commit
    /// the bundle records (anchors the protocol).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// With --repo: the approved revision (commit, tag, branch) the run must have used.
    #[arg(long, value_name = "REV", requires = "repo")]
    pub commit: Option<String>,
    /// The audit ledger to check [default: the anchored protocol's ledger.path, else
    /// LEDGER.jsonl in --golden-set].
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// Your site templates, for re-rendering the reports of a protocol that uses them.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Exit 1 unless the golden set, the protocol and a trusted signature all anchor.
    #[arg(long)]
    pub require_anchored: bool,
    /// With --rerun of a server backend: your endpoint (the bundle's is never used).
    #[arg(long, value_name = "URL", requires = "rerun")]
    pub base_url: Option<String>,
    /// With --rerun --base-url: the environment variable holding your API key.
    #[arg(long, value_name = "VAR", requires = "rerun")]
    pub api_key_env: Option<String>,
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
        protocol: args.protocol.clone(),
        repo: args.repo.clone(),
        commit: args.commit.clone(),
        ledger: args.ledger.clone(),
        templates: args.templates.clone(),
        require_anchored: args.require_anchored,
        require_signatures: args.require_signatures.clone(),
        base_url: args.base_url.clone(),
        api_key_env: args.api_key_env.clone(),
    };
    let world = SystemWorld::default();
    let report = verify::verify_bundle(&args.bundle, &opts, &world)?;
    match args.format {
        OutputFormat::Json => {
            let mut v =
                serde_json::to_value(&report).map_err(|e| Error::Internal(e.to_string()))?;
            if let Some(m) = v.as_object_mut() {
                m.insert("identical".into(), report.identical().into());
                m.insert(
                    "internally_consistent".into(),
                    report.internally_consistent().into(),
                );
                m.insert("anchored".into(), report.anchored().into());
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
    use crate::fsx::printable as p;
    let mut o = String::new();
    let _ = writeln!(o, "bundle: {}", p(&r.bundle));
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
        let _ = writeln!(o, "    {:<9} {}", f.problem, p(&f.path));
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
            if d.kind == crate::verify::jsondiff::DiffKind::Value {
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
        let _ = writeln!(o, "[{}] {}: {}", mark(c.ok, color), c.name, p(&c.detail));
    }
    if !r.cases.is_empty() {
        let _ = writeln!(
            o,
            "[{}] cases: {} case(s) disagree",
            mark(false, color),
            r.cases.len()
        );
        for c in r.cases.iter().take(50) {
            let _ = writeln!(o, "    {}: {}", p(&c.case_id), p(&c.problem));
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
            let m = match (s.valid, s.trusted) {
                (true, true) => mark(true, color),
                (false, _) => mark(false, color),
                (true, false) if color => "\x1b[33muntrusted\x1b[0m".to_string(),
                (true, false) => "untrusted".to_string(),
            };
            let _ = writeln!(
                o,
                "[{}] {} \"{}\" at {}, key {}{}  ({})",
                m,
                if s.name.is_empty() {
                    "?".to_string()
                } else {
                    p(&s.name)
                },
                p(&s.meaning),
                p(&s.signed_at),
                s.key_fingerprint,
                if s.trusted {
                    ", trusted key"
                } else {
                    ", UNTRUSTED key"
                },
                p(&s.file)
            );
            for pr in &s.problems {
                let _ = writeln!(o, "    {}", p(pr));
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
                p(&m.case_id),
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
    let _ = writeln!(o, "anchors:");
    for a in &r.anchors {
        let state = match a.state {
            crate::verify::AnchorState::Anchored => mark(true, color),
            crate::verify::AnchorState::Failed => mark(false, color),
            crate::verify::AnchorState::NotGiven => "--".to_string(),
        };
        let _ = writeln!(o, "[{state}] {}: {}", a.name, p(&a.detail));
    }
    if !r.not_recomputed.is_empty() {
        let _ = writeln!(o, "not recomputable (recorded as stated):");
        for n in &r.not_recomputed {
            let _ = writeln!(o, "    {n}");
        }
    }
    let _ = writeln!(o);
    let level = if r.anchored() {
        "internally consistent and anchored (golden set, protocol, trusted signature)".to_string()
    } else {
        let missing: Vec<&str> = ["golden_set", "protocol", "signature"]
            .into_iter()
            .filter(|n| {
                !r.anchors
                    .iter()
                    .any(|a| a.name == *n && a.state == crate::verify::AnchorState::Anchored)
            })
            .collect();
        format!(
            "internally consistent; NOT anchored ({} not anchored)",
            missing.join(", ")
        )
    };
    if r.identical() {
        let _ = writeln!(o, "result: IDENTICAL: {level}");
    } else if r.internally_consistent() {
        let _ = writeln!(o, "result: NOT ANCHORED: --require-anchored, and {level}");
    } else {
        let _ = writeln!(o, "result: DIFFERENT ({} problem(s))", r.problem_count());
    }
    o
}
