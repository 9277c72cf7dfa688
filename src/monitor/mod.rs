//! Post-market monitoring (`medgate monitor`): production logs checked against the verified
//! release bundle, under the `monitoring:` plan of the protocol the device was released under.
//!
//! A consumer beside the stages (it imports `protocol`, `trace`, `verify`, `stats`, `report`):
//!
//! 1. **Binding.** The protocol must be the released one: equal to the bundle's recorded
//!    protocol in every field except `monitoring:` (when the bundle's protocol has a monitoring
//!    section too, it must be the same). The bundle is verified first with
//!    [`crate::verify::verify_bundle`]; a bundle that does not verify is an input error.
//! 2. **Baseline** ([`engine::Baseline`]): `cases.parquet` of the bundle: score distribution,
//!    positive rate, sensitivity/specificity/PPV overall and per subgroup level, at the
//!    released threshold.
//! 3. **Log** ([`log`]): CSV, Parquet or JSON lines; rows of another model hash, bad
//!    timestamps, non-numeric scores and repeated case IDs are excluded and counted; labels
//!    that are not 0/1 are set aside (row kept) and counted; unsorted rows are counted and
//!    sorted stably; every problem is listed (up to [`log::MAX_PROBLEMS`]) by file, row and
//!    case ID.
//! 4. **Windows** ([`engine`]): by case count or calendar time; each closed window gets every
//!    statistic of the plan, overall and per level of `by`; charts (CUSUM as AIM-CU designs it,
//!    EWMA) run over the sequence of windows.
//! 5. **Incremental** ([`state`]): a state file keeps the closed windows, the chart
//!    observations, the rows of the still-open window, the hashes of the log files already
//!    read and a watermark `(timestamp, case ID)`; a later run reads only new files and rows
//!    after the watermark, so a daily run processes only unseen rows, the charts carry over,
//!    and rerunning on the same log gives the same `monitor.json`.
//! 6. **Outputs** ([`output`]): `monitor.json`, `junit.xml`, `monitor.html`, `monitor.typ` and
//!    `monitor.pdf`, and one entry in the hash-chained monitoring ledger beside the baseline: a
//!    [`crate::trace::ledger::MonitorEntry`] on the project's one ledger chain
//!    ([`crate::trace::ledger`]), so `medgate ledger BUNDLE.monitoring.jsonl --verify` (or
//!    `medgate ledger BUNDLE --verify`) checks it and a broken chain refuses the next run.
//!
//! # Exit status
//! 0 when no alarm has fired in any closed window, 1 when one has (alarms stay until the state
//! is reset, as a quality record should), 2 for input errors (bad protocol, unverifiable
//! baseline, unreadable log, a state file of another baseline or plan).

pub mod engine;
pub mod log;
pub mod output;
pub mod plot;
pub mod state;
pub mod stream;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::protocol::monitoring::{MonitorKind, MonitoringSpec, WindowSpec};
use crate::trace::Evidence;
use crate::trace::bundle::{CASES_FILE, EVIDENCE_FILE};
use crate::world::World;

use engine::{Alarm, BaseCase, BaseSummary, Baseline, Chart, Context, WindowInfo, WindowResult};
use log::{LogSpec, RowOutcome, RowProblem};
use state::{FileRecord, MonitorState};

/// `monitor.json` format version.
pub const MONITOR_FORMAT: u32 = 1;

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Protocol file (with a `monitoring:` section).
    pub protocol: PathBuf,
    /// The release bundle.
    pub baseline: PathBuf,
    /// Log files, in order.
    pub logs: Vec<PathBuf>,
    /// Output directory.
    pub out: PathBuf,
    /// State file (incremental runs); `None`: no state (every run starts afresh).
    pub state: Option<PathBuf>,
    /// Close the last, incomplete window too (end of a stream).
    pub flush: bool,
    /// Render the PDF (the embedded Typst compiler).
    pub pdf: bool,
}

/// The baseline as identified in `monitor.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineIdentity {
    /// Run ID of the release bundle.
    pub run_id: String,
    /// Its `results_sha256`.
    pub results_sha256: String,
    /// Its verdict.
    pub verdict: String,
    /// Released model hash (rows of other hashes are excluded).
    pub model_sha256: Option<String>,
    /// Released threshold.
    pub threshold: f64,
    /// Whether `medgate verify` found the bundle identical (always true: otherwise no run).
    pub verified: bool,
    /// Whether the release protocol already held this monitoring plan.
    pub plan_in_release: bool,
    /// Overall baseline summary.
    pub summary: BaseSummary,
}

/// Input accounting over every run so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputSummary {
    /// Log files read (path as given, SHA-256, rows).
    pub files: Vec<FileRecord>,
    /// Rows read from them.
    pub rows_read: u64,
    /// Rows accepted into windows (or pending).
    pub rows_accepted: u64,
    /// Excluded rows by reason.
    pub excluded: BTreeMap<String, u64>,
    /// Accepted rows with a value set aside, by reason.
    pub set_aside: BTreeMap<String, u64>,
    /// Rows at or before the watermark of an earlier run (read again, not counted twice).
    pub already_processed: u64,
    /// Out-of-order rows (sorted stably before windowing).
    pub unsorted_rows: u64,
    /// Rows sharing the previous row's timestamp.
    pub duplicate_timestamps: u64,
    /// Columns the plan does not use.
    pub ignored_columns: Vec<String>,
    /// Protocol attributes missing from a log.
    pub missing_attributes: Vec<String>,
    /// Problems (up to the cap), by file and row.
    pub problems: Vec<RowProblem>,
    /// Problems found in all (the list above may be capped).
    pub problems_total: u64,
}

/// The open window carried to the next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// Rows waiting for their window to close.
    pub rows: u64,
    /// First timestamp.
    pub first: Option<String>,
    /// Last timestamp.
    pub last: Option<String>,
}

/// The monitor's overall state: an alarm in any closed window makes it `alarm`. Serialized as
/// `in_control` / `alarm` (the spelling monitor.json, the ledger and the templates read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorStatus {
    /// No alarm in any closed window.
    InControl,
    /// At least one alarm.
    Alarm,
}

impl MonitorStatus {
    /// The serialized spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorStatus::InControl => "in_control",
            MonitorStatus::Alarm => "alarm",
        }
    }
}

/// `monitor.json`: see `docs/monitoring.md` for the format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    /// Format version.
    pub medgate_monitor: u32,
    /// Protocol ID.
    pub protocol: String,
    /// Protocol version.
    pub protocol_version: String,
    /// Protocol title.
    pub title: String,
    /// SHA-256 of the monitoring plan's canonical JSON.
    pub plan_sha256: String,
    /// The plan.
    pub plan: MonitoringSpec,
    /// The baseline.
    pub baseline: BaselineIdentity,
    /// Input accounting.
    pub input: InputSummary,
    /// Closed windows with their statistics.
    pub windows: Vec<WindowResult>,
    /// Control charts.
    pub charts: Vec<Chart>,
    /// Alarms, each traced to its requirement and risk control.
    pub alarms: Vec<Alarm>,
    /// The open window.
    pub pending: Pending,
    /// `in_control` or `alarm`.
    pub status: MonitorStatus,
    /// SHA-256 of the canonical JSON of everything above.
    pub results_sha256: String,
}

/// What one run did (for the command's summary and the ledger).
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The report.
    pub report: MonitorReport,
    /// Windows closed in this run.
    pub new_windows: u64,
    /// Alarms in windows closed in this run.
    pub new_alarms: u64,
    /// Rows read in this run.
    pub rows_read: u64,
    /// Log files skipped because an earlier run read the same bytes.
    pub files_skipped: Vec<String>,
    /// Files written.
    pub written: Vec<PathBuf>,
    /// The ledger entry appended.
    pub ledger: crate::trace::ledger::MonitorEntry,
    /// Ledger path.
    pub ledger_path: PathBuf,
}

fn strip_monitoring(p: &crate::protocol::Protocol) -> crate::protocol::Protocol {
    let mut p = p.clone();
    p.monitoring = None;
    p
}

/// The attributes the plan uses, in order: the protocol's subgroup attributes, then any other
/// attribute a statistic names.
fn plan_attributes(
    p: &crate::protocol::Protocol,
    plan: &MonitoringSpec,
) -> (Vec<String>, Vec<String>) {
    let mut attrs = p.subgroups.attributes.clone();
    let mut required = Vec::new();
    for s in &plan.statistics {
        for a in [&s.by, &s.attribute].into_iter().flatten() {
            if !attrs.contains(a) {
                attrs.push(a.clone());
            }
            if !required.contains(a) {
                required.push(a.clone());
            }
        }
    }
    (attrs, required)
}

/// Checks the plan itself; every problem at once.
pub fn check_plan(p: &crate::protocol::Protocol, plan: &MonitoringSpec) -> Vec<String> {
    let mut out = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    match plan.window {
        WindowSpec::Cases(0) | WindowSpec::Days(0) | WindowSpec::Hours(0) => {
            out.push("monitoring.window: must be at least 1".into())
        }
        _ => {}
    }
    if plan.psi_bins < 2 {
        out.push("monitoring.psi_bins: at least 2".into());
    }
    if plan.statistics.is_empty() {
        out.push("monitoring.statistics: at least one statistic".into());
    }
    for (i, s) in plan.statistics.iter().enumerate() {
        let at = format!("monitoring.statistics[{i}] ({})", s.id);
        if !ids.insert(s.id.clone()) {
            out.push(format!("{at}: duplicate ID"));
        }
        if s.requirement.trim().is_empty() {
            out.push(format!("{at}: requirement is empty"));
        }
        for a in [&s.by, &s.attribute].into_iter().flatten() {
            if !p.subgroups.attributes.contains(a) {
                out.push(format!(
                    "{at}: attribute `{a}` is not one of subgroups.attributes {:?} (the baseline has no values for it)",
                    p.subgroups.attributes
                ));
            }
        }
        if s.statistic == MonitorKind::AttributeMix && s.attribute.is_none() {
            out.push(format!("{at}: attribute_mix needs `attribute`"));
        }
        if let Some(k) = s.k
            && (k.is_nan() || k < 0.0)
        {
            out.push(format!("{at}: k must be >= 0"));
        }
        if let Some(a) = s.arl0
            && (a.is_nan() || a < 1.0)
        {
            out.push(format!("{at}: arl0 must be >= 1"));
        }
        if let Some(l) = s.lambda
            && !(l > 0.0 && l <= 1.0)
        {
            out.push(format!("{at}: lambda must be in (0, 1]"));
        }
    }
    out
}

/// One window's identity, statistics and chart observations.
type EvaluatedWindow = (
    WindowInfo,
    Vec<engine::StatValue>,
    Vec<(String, engine::ChartObs)>,
);

/// Runs one monitoring pass (see the module docs).
pub fn run(opts: &MonitorOptions, world: &dyn World) -> Result<RunSummary> {
    let lp = crate::protocol::load(&opts.protocol)?;
    let protocol = &lp.protocol;
    let Some(plan) = protocol.monitoring.clone() else {
        return Err(Error::input_hint(
            format!("{}: no `monitoring:` section", opts.protocol.display()),
            "add a monitoring plan (windows, statistics, alarm thresholds, requirements); see protocols/demo-monitor.yaml",
        ));
    };
    let problems = check_plan(protocol, &plan);
    if !problems.is_empty() {
        return Err(Error::input(format!(
            "{}: {}",
            opts.protocol.display(),
            problems.join("; ")
        )));
    }

    // 1. The baseline: verified, and released under this protocol.
    let vr = crate::verify::verify_bundle(
        &opts.baseline,
        &crate::verify::VerifyOptions::default(),
        world,
    )?;
    if !vr.identical() {
        return Err(Error::input_hint(
            format!(
                "{}: the baseline bundle does not verify ({} problems)",
                opts.baseline.display(),
                vr.problem_count()
            ),
            format!(
                "run `medgate verify {}` to see them; monitor only against an intact release bundle",
                opts.baseline.display()
            ),
        ));
    }
    let ev_path = opts.baseline.join(EVIDENCE_FILE);
    let text = std::fs::read_to_string(&ev_path).map_err(|e| Error::io(&ev_path, e))?;
    let evidence: Evidence = serde_json::from_str(&text)
        .map_err(|e| Error::input(format!("{}: {e}", ev_path.display())))?;
    if strip_monitoring(&evidence.protocol) != strip_monitoring(protocol) {
        return Err(Error::input_hint(
            format!(
                "{}: is not the protocol the baseline was released under ({} {} in the bundle)",
                opts.protocol.display(),
                evidence.protocol.protocol,
                evidence.protocol.version
            ),
            "monitor with the released protocol; only the `monitoring:` section may be added after release",
        ));
    }
    let plan_in_release = match &evidence.protocol.monitoring {
        Some(m) if *m != plan => {
            return Err(Error::input(format!(
                "{}: the monitoring plan differs from the one released in the bundle",
                opts.protocol.display()
            )));
        }
        Some(_) => true,
        None => false,
    };
    let (attributes, required) = plan_attributes(protocol, &plan);
    let cases = crate::trace::bundle::read_cases(&opts.baseline.join(CASES_FILE))?;
    let threshold = protocol.task.threshold;
    let baseline = Baseline {
        attributes: attributes.clone(),
        cases: cases
            .iter()
            .map(|c| BaseCase {
                score: c.score,
                positive: match c.status {
                    crate::harness::CaseStatus::Evaluated => c.score.map(|s| s >= threshold),
                    _ => None,
                },
                label: c.label,
                outcome: match c.status {
                    crate::harness::CaseStatus::Evaluated => RowOutcome::Evaluated,
                    crate::harness::CaseStatus::Equivocal => RowOutcome::Equivocal,
                    crate::harness::CaseStatus::NotEvaluated => RowOutcome::NotEvaluated,
                },
                attrs: attributes
                    .iter()
                    .map(|a| c.attributes.get(a).cloned().unwrap_or_default())
                    .collect(),
            })
            .collect(),
        threshold,
    };
    let plan_sha256 = crate::hash::canonical_sha256(&plan)?;

    // 2. State.
    let mut st = match &opts.state {
        Some(p) if p.is_file() => {
            let s = state::load(p)?;
            if s.baseline_run_id != evidence.run_id || s.plan_sha256 != plan_sha256 {
                return Err(Error::input_hint(
                    format!(
                        "{}: state of another baseline or monitoring plan (baseline {}, plan {})",
                        p.display(),
                        s.baseline_run_id,
                        &s.plan_sha256[..12.min(s.plan_sha256.len())]
                    ),
                    "use a new --state file for a new release or plan",
                ));
            }
            s
        }
        _ => MonitorState::new(&evidence.run_id, &plan_sha256),
    };

    // 3. Logs: skip files already read byte for byte. A file can be skipped only when the
    // state has seen files; otherwise the files are hashed while they are read (hashing is
    // one core's work, and reading leaves a core idle part of the time).
    let spec = LogSpec {
        columns: plan.log.clone(),
        attributes: attributes.clone(),
        required_attributes: required,
        model_sha256: evidence.model.sha256.clone(),
        threshold,
        answer_positive: protocol.task.answer.positive.clone(),
        answer_negative: protocol.task.answer.negative.clone(),
    };
    let hash_all = |files: &[PathBuf]| -> Result<Vec<String>> {
        files
            .iter()
            .map(|f| crate::hash::sha256_file(f).map(|(sha, _)| sha))
            .collect()
    };
    let record = |f: &PathBuf, sha: String| FileRecord {
        path: f.display().to_string(),
        sha256: sha,
    };
    let mut skipped = Vec::new();
    let mut records = Vec::new();
    let mut read = if st.input.files.is_empty() {
        let (hashes, read) = rayon::join(
            || hash_all(&opts.logs),
            || log::read_logs(&opts.logs, &spec, &st.pending),
        );
        records = opts
            .logs
            .iter()
            .zip(hashes?)
            .map(|(f, sha)| record(f, sha))
            .collect();
        read?
    } else {
        let mut files = Vec::new();
        for (f, sha) in opts.logs.iter().zip(hash_all(&opts.logs)?) {
            if st.input.files.iter().any(|r| r.sha256 == sha) {
                skipped.push(f.display().to_string());
            } else {
                files.push(f.clone());
                records.push(record(f, sha));
            }
        }
        log::read_logs(&files, &spec, &st.pending)?
    };
    let pending_n = st.pending.len();
    // Rows at or before the watermark were read by an earlier run.
    let mut already = 0u64;
    if let Some((wts, wid)) = st.watermark.clone() {
        let cases = &read.cases;
        let mut i = 0usize;
        read.rows.retain(|r| {
            let seen = i >= pending_n && (r.ts_ms, cases.get(r.case)) <= (wts, wid.as_str());
            i += 1;
            already += seen as u64;
            !seen
        });
    }
    let rows_read = read.rows_read;
    let inp = &mut st.input;
    // The files this run read, for its ledger entry.
    let read_files = records.clone();
    inp.files.extend(records);
    inp.rows_read += read.rows_read;
    inp.rows_accepted += (read.rows.len() - pending_n.min(read.rows.len())) as u64;
    for (k, v) in &read.excluded {
        *inp.excluded.entry(k.clone()).or_insert(0) += v;
    }
    for (k, v) in &read.set_aside {
        *inp.set_aside.entry(k.clone()).or_insert(0) += v;
    }
    inp.already_processed += already;
    inp.unsorted_rows += read.unsorted_rows;
    inp.duplicate_timestamps += read.duplicate_timestamps;
    for c in &read.ignored_columns {
        if !inp.ignored_columns.contains(c) {
            inp.ignored_columns.push(c.clone());
        }
    }
    for c in &read.missing_attributes {
        if !inp.missing_attributes.contains(c) {
            inp.missing_attributes.push(c.clone());
        }
    }
    inp.problems_total +=
        read.excluded.values().sum::<u64>() + read.set_aside.values().sum::<u64>();
    for p in &read.problems {
        if inp.problems.len() < log::MAX_PROBLEMS {
            inp.problems.push(p.clone());
        }
    }
    if let Some(last) = read.rows.last() {
        let w = (last.ts_ms, read.case_id(last).to_string());
        if st.watermark.as_ref().is_none_or(|old| w > *old) {
            st.watermark = Some(w);
        }
    }

    // 4. Windows.
    let confidence = protocol.statistics.confidence;
    // A context per worker (its caches are not shared); `ctx` serves the sequential steps.
    let new_ctx = || Context {
        plan: &plan,
        baseline: &baseline,
        attributes: &attributes,
        log: &read,
        confidence,
        interval: protocol.statistics.interval,
        summaries: Default::default(),
        edges: Default::default(),
    };
    let ctx = new_ctx();
    let rows = &read.rows;
    let mut groups: Vec<(i64, std::ops::Range<usize>)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let key = engine::window_key(plan.window, st.rows_windowed + i as u64, r.ts_ms);
        match groups.last_mut() {
            Some((k, range)) if *k == key => range.end = i + 1,
            _ => groups.push((key, i..i + 1)),
        }
    }
    let mut closed = groups.len();
    if let Some((_, last)) = groups.last() {
        let complete = match plan.window {
            WindowSpec::Cases(n) => last.len() as u64 == n,
            _ => false,
        };
        if !complete && !opts.flush {
            closed -= 1;
        }
    }
    let mut new_windows = 0u64;
    let first_new_window = st.windows.len() as u64 + 1;
    // Each closed window is a pure function of its rows, the baseline and the plan: they are
    // evaluated in parallel (each worker with its own caches) and collected in window order,
    // so the result is the same as one window after the other.
    let base_index = st.windows.len() as u64;
    let evaluated_windows: Vec<EvaluatedWindow> = {
        use rayon::prelude::*;
        let read = &read;
        groups[..closed]
            .par_iter()
            .enumerate()
            .map_init(new_ctx, |ctx, (w, (key, range))| {
                let wrows = &rows[range.clone()];
                let index = base_index + w as u64 + 1;
                let count = |o: RowOutcome| wrows.iter().filter(|r| r.outcome == o).count() as u64;
                let evaluated = count(RowOutcome::Evaluated);
                let info = WindowInfo {
                    index,
                    first: log::format_timestamp(wrows[0].ts_ms),
                    last: log::format_timestamp(wrows[wrows.len() - 1].ts_ms),
                    span: engine::window_span(plan.window, *key)
                        .map(|(a, b)| (log::format_timestamp(a), log::format_timestamp(b))),
                    cases: (
                        read.case_id(&wrows[0]).to_string(),
                        read.case_id(&wrows[wrows.len() - 1]).to_string(),
                    ),
                    rows: wrows.len() as u64,
                    evaluated,
                    equivocal: count(RowOutcome::Equivocal),
                    not_evaluated: count(RowOutcome::NotEvaluated),
                    labelled: wrows.iter().filter(|r| r.label.is_some()).count() as u64,
                    small: (evaluated as usize) < plan.min_window_cases,
                };
                let values = engine::evaluate_window(ctx, &info, wrows);
                let obs = engine::chart_observations(ctx, index, wrows);
                (info, values, obs)
            })
            .collect()
    };
    for ((info, values, obs), (_, range)) in evaluated_windows.into_iter().zip(&groups) {
        for (k, o) in obs {
            st.chart_obs.entry(k).or_default().push(o);
        }
        st.windows.push(WindowResult {
            window: info,
            values,
        });
        st.rows_windowed += range.len() as u64;
        new_windows += 1;
    }
    st.pending = groups
        .iter()
        .skip(closed)
        .flat_map(|(_, r)| rows[r.clone()].iter().map(|row| read.store(row)))
        .collect();

    // 5. Charts and alarms over everything so far.
    let charts = engine::build_charts(&ctx, &st.chart_obs);
    let alarms = engine::alarms(&plan, &st.windows, &charts);
    let new_alarms = alarms
        .iter()
        .filter(|a| a.window >= first_new_window)
        .count() as u64;
    let summary = baseline.summary(None);
    let status = if alarms.is_empty() {
        MonitorStatus::InControl
    } else {
        MonitorStatus::Alarm
    };
    let mut report = MonitorReport {
        medgate_monitor: MONITOR_FORMAT,
        protocol: protocol.protocol.clone(),
        protocol_version: protocol.version.clone(),
        title: protocol.title.clone(),
        plan_sha256: plan_sha256.clone(),
        plan: plan.clone(),
        baseline: BaselineIdentity {
            run_id: evidence.run_id.clone(),
            results_sha256: evidence.results_sha256.clone(),
            verdict: evidence.verdict.label().to_string(),
            model_sha256: evidence.model.sha256.clone(),
            threshold,
            verified: true,
            plan_in_release,
            summary,
        },
        input: st.input.clone(),
        windows: st.windows.clone(),
        charts,
        alarms,
        pending: Pending {
            rows: st.pending.len() as u64,
            first: st.pending.first().map(|r| log::format_timestamp(r.ts_ms)),
            last: st.pending.last().map(|r| log::format_timestamp(r.ts_ms)),
        },
        status,
        results_sha256: String::new(),
    };
    report.results_sha256 = results_sha256(&report)?;

    // 6. Ledger entry sealed first (a broken chain stops the run before anything is written),
    //    then outputs and state, then the entry appended.
    let ledger_path = plan
        .ledger
        .as_ref()
        .map(|p| lp.resolve(p))
        .unwrap_or_else(|| default_ledger(&opts.baseline));
    let entry = crate::trace::ledger::seal(
        &ledger_path,
        &crate::trace::ledger::read_chain(&ledger_path)?,
        crate::trace::ledger::MonitorEntry {
            seq: 0,
            time: world
                .now()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            user: world.user(),
            medgate_version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: format!("{} {}", protocol.protocol, protocol.version),
            baseline_run_id: evidence.run_id.clone(),
            log_files: read_files,
            rows_read,
            new_windows,
            windows_total: report.windows.len() as u64,
            new_alarms,
            alarms_total: report.alarms.len() as u64,
            status: report.status.as_str().to_string(),
            results_sha256: report.results_sha256.clone(),
            prev_hash: String::new(),
            hash: String::new(),
        },
    )?;
    let written = output::write_all(&opts.out, &report, opts.pdf)?;
    if let Some(p) = &opts.state {
        state::save(p, &st)?;
    }
    crate::trace::ledger::commit(&ledger_path, &entry)?;
    Ok(RunSummary {
        report,
        new_windows,
        new_alarms,
        rows_read,
        files_skipped: skipped,
        written,
        ledger: entry,
        ledger_path,
    })
}

/// The default ledger: `<bundle>.monitoring.jsonl` beside the bundle directory (never inside
/// it, where it would be an unlisted file to `medgate verify`).
pub fn default_ledger(bundle: &Path) -> PathBuf {
    let name = bundle
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "bundle".into());
    bundle
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("{name}.monitoring.jsonl"))
}

/// SHA-256 of the canonical JSON of the report without its `results_sha256`.
pub fn results_sha256(r: &MonitorReport) -> Result<String> {
    let mut v = serde_json::to_value(r).map_err(|e| Error::Internal(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.remove("results_sha256");
    }
    crate::hash::canonical_sha256(&v)
}
