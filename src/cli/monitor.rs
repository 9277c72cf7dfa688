//! `medgate monitor`: post-market monitoring of a production log against the release bundle.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::Result;
use crate::exit::Outcome;
use crate::monitor::MonitorOptions;

/// Check a production log against the verified release bundle, under the protocol's
/// `monitoring:` plan (drift, performance, CUSUM/EWMA charts).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate monitor protocols/demo-monitor.yaml --baseline runs/demo --log runs/stream.csv
  medgate monitor protocols/demo-monitor.yaml --baseline runs/demo --log day-042.parquet \\
      --state runs/demo-monitor.state.json --out runs/monitor

The baseline bundle is verified first (as `medgate verify`); the protocol must be the one it was
released under (a `monitoring:` section may have been added). Writes monitor.json, junit.xml,
monitor.html, monitor.typ and monitor.pdf to --out, and appends one entry to the monitoring
ledger (default BUNDLE.monitoring.jsonl beside the bundle).

With --state, only log files and rows not seen by earlier runs are processed, the open window is
carried over, and CUSUM/EWMA charts continue; rerunning on the same log changes nothing.

Exit 0: no alarm in any closed window. Exit 1: an alarm (listed with its window, requirement and
risk control). Exit 2: input error (bad protocol, baseline that does not verify, unreadable log,
a state file of another baseline).")]
pub struct MonitorArgs {
    /// Protocol with a `monitoring:` section (the released protocol).
    pub protocol: PathBuf,
    /// The release bundle (output of `medgate run`).
    #[arg(long)]
    pub baseline: PathBuf,
    /// Production log(s): CSV, Parquet or JSON lines (.jsonl).
    #[arg(long = "log", required = true, num_args = 1..)]
    pub logs: Vec<PathBuf>,
    /// Output directory (default BUNDLE-monitoring beside the bundle).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// State file for incremental runs (created when missing).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Close the last, incomplete window too (the stream has ended).
    #[arg(long)]
    pub flush: bool,
    /// Skip the PDF (faster).
    #[arg(long)]
    pub no_pdf: bool,
    /// Output format of the summary on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate monitor`.
pub fn run(args: MonitorArgs, global: &GlobalArgs) -> Result<Outcome> {
    let out = args.out.clone().unwrap_or_else(|| {
        let mut p = args.baseline.clone().into_os_string();
        p.push("-monitoring");
        PathBuf::from(p)
    });
    let opts = MonitorOptions {
        protocol: args.protocol.clone(),
        baseline: args.baseline.clone(),
        logs: args.logs.clone(),
        out: out.clone(),
        state: args.state.clone(),
        flush: args.flush,
        pdf: !args.no_pdf,
    };
    let world = crate::world::SystemWorld::default();
    let s = crate::monitor::run(&opts, &world)?;
    let r = &s.report;
    match args.format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "status": r.status,
                "windows": r.windows.len(),
                "new_windows": s.new_windows,
                "alarms": r.alarms,
                "new_alarms": s.new_alarms,
                "rows_read": s.rows_read,
                "files_skipped": s.files_skipped,
                "excluded": r.input.excluded,
                "set_aside": r.input.set_aside,
                "pending_rows": r.pending.rows,
                "results_sha256": r.results_sha256,
                "out": out.display().to_string(),
                "ledger": s.ledger_path.display().to_string(),
                "ledger_seq": s.ledger.seq,
            });
            let mut json = serde_json::to_string_pretty(&v).unwrap_or_default();
            json.push('\n');
            crate::cli::emit(&json)?;
        }
        OutputFormat::Text => {
            use std::fmt::Write as _;
            let mut text = String::new();
            let _ = writeln!(
                text,
                "{}: {} ({} windows, {} new; {} alarms, {} new)",
                r.protocol,
                if r.status == crate::monitor::MonitorStatus::Alarm {
                    "ALARM"
                } else {
                    "in control"
                },
                r.windows.len(),
                s.new_windows,
                r.alarms.len(),
                s.new_alarms
            );
            // One line per statistic and scope: its first alarm and how many windows alarmed.
            let mut firsts: Vec<(&crate::monitor::engine::Alarm, usize)> = Vec::new();
            for a in &r.alarms {
                match firsts
                    .iter_mut()
                    .find(|(f, _)| f.id == a.id && f.scope == a.scope)
                {
                    Some((_, n)) => *n += 1,
                    None => firsts.push((a, 1)),
                }
            }
            for (a, n) in firsts {
                let _ = writeln!(
                    text,
                    "  ALARM {} [{}] first in window {} ({} .. {}), {n} window(s): {} -> {}{}",
                    a.id,
                    a.scope,
                    a.window,
                    a.window_first,
                    a.window_last,
                    a.rule,
                    a.requirement,
                    a.risk_control
                        .as_ref()
                        .map(|r| format!(", {r}"))
                        .unwrap_or_default()
                );
            }
            for (k, n) in &r.input.excluded {
                let _ = writeln!(text, "  excluded {n} rows: {k}");
            }
            for (k, n) in &r.input.set_aside {
                let _ = writeln!(text, "  kept {n} rows with a value set aside: {k}");
            }
            crate::cli::emit(&text)?;
        }
    }
    if !global.quiet {
        eprintln!(
            "read {} rows ({} files skipped as already processed); wrote {} files to {}; ledger {} entry {}",
            s.rows_read,
            s.files_skipped.len(),
            s.written.len(),
            out.display(),
            s.ledger_path.display(),
            s.ledger.seq
        );
    }
    Ok(if r.status == crate::monitor::MonitorStatus::Alarm {
        Outcome::Fail
    } else {
        Outcome::Pass
    })
}
