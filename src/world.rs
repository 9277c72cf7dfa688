//! The outside world (clock, environment, host facts) behind one trait.
//!
//! The pipeline never calls `SystemTime::now()` or reads environment variables directly: it
//! asks a [`World`]. The real one is [`SystemWorld`]; tests pass a [`FixedWorld`] so that
//! timestamps and latencies are reproducible. Setting `SOURCE_DATE_EPOCH` (the
//! reproducible-builds convention) freezes the system world's clock the same way, so two
//! runs of the same inputs give byte-identical bundles.

use chrono::{DateTime, TimeZone, Utc};

/// Clock, environment and host facts.
pub trait World: Send + Sync {
    /// The current time (UTC).
    fn now(&self) -> DateTime<Utc>;
    /// A monotonic reading in seconds, for latencies; frozen worlds return 0.
    fn monotonic_s(&self) -> f64;
    /// An environment variable.
    fn env(&self, key: &str) -> Option<String>;
    /// Facts about this machine, recorded as provenance.
    fn host(&self) -> HostInfo;
    /// Who is running medgate (for ledgers and document control).
    fn user(&self) -> String {
        self.env("MEDGATE_USER")
            .or_else(|| self.env("USER"))
            .or_else(|| self.env("USERNAME"))
            .unwrap_or_else(|| "unknown".into())
    }
}

/// Machine facts recorded in evidence.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Operating system (`std::env::consts::OS`) and kernel where known.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// CPU model name where known.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
}

/// The real world. Honours `SOURCE_DATE_EPOCH` by freezing the clock.
#[derive(Debug)]
pub struct SystemWorld {
    start: std::time::Instant,
    frozen: Option<DateTime<Utc>>,
}

impl Default for SystemWorld {
    fn default() -> Self {
        let frozen = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .and_then(|s| Utc.timestamp_opt(s, 0).single());
        SystemWorld {
            start: std::time::Instant::now(),
            frozen,
        }
    }
}

impl World for SystemWorld {
    fn user(&self) -> String {
        self.env("MEDGATE_USER")
            .or_else(|| self.env("USER"))
            .or_else(|| self.env("USERNAME"))
            .or_else(passwd_user)
            .unwrap_or_else(|| "unknown".into())
    }

    fn now(&self) -> DateTime<Utc> {
        self.frozen.unwrap_or_else(Utc::now)
    }
    fn monotonic_s(&self) -> f64 {
        if self.frozen.is_some() {
            0.0
        } else {
            self.start.elapsed().as_secs_f64()
        }
    }
    fn env(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
    fn host(&self) -> HostInfo {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|s| s.trim().to_string())
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!(" {}", s.trim()))
            .unwrap_or_default();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        HostInfo {
            hostname,
            os: format!("{}{kernel}", std::env::consts::OS),
            arch: std::env::consts::ARCH.into(),
            cpu,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

/// The login name of this process's real user from `/etc/passwd`, where the environment
/// does not say (services and containers often run without `USER`).
fn passwd_user() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
    })
}

/// A world with a fixed clock and environment, for tests.
#[derive(Debug, Clone)]
pub struct FixedWorld {
    /// The frozen time.
    pub now: DateTime<Utc>,
    /// Environment variables visible to the pipeline.
    pub env: std::collections::BTreeMap<String, String>,
}

impl Default for FixedWorld {
    fn default() -> Self {
        FixedWorld {
            now: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .expect("valid date"),
            env: Default::default(),
        }
    }
}

impl World for FixedWorld {
    fn now(&self) -> DateTime<Utc> {
        self.now
    }
    fn monotonic_s(&self) -> f64 {
        0.0
    }
    fn env(&self, key: &str) -> Option<String> {
        self.env.get(key).cloned()
    }
    fn host(&self) -> HostInfo {
        HostInfo {
            hostname: "fixed-host".into(),
            os: "test".into(),
            arch: "test".into(),
            cpu: "test".into(),
            cpus: 1,
        }
    }
}
