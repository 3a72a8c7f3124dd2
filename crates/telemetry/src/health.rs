//! What `/healthz` and `/readyz` answer.
//!
//! Healthy means the process's event loop still turns: a task beats every [`BEAT`], and the
//! process is unhealthy when the last beat is older than [`STALLED`]. Ready means every named
//! check passed (the agent: services synced and datapath attached; the operator: leading or
//! standing by, datastore connected).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How often the heartbeat task beats.
pub const BEAT: Duration = Duration::from_millis(100);
/// A heartbeat older than this means the process's runtime is stuck.
pub const STALLED: Duration = Duration::from_secs(1);

/// One readiness check's last result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub ok: bool,
    /// What it is when ok, what is wrong when not.
    pub detail: String,
}

/// The body of `/healthz` and `/readyz` (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// Time since the last heartbeat of the process's event loop.
    pub heartbeat_age_ms: u64,
    pub uptime_seconds: u64,
    pub healthy: bool,
    pub ready: bool,
    pub checks: BTreeMap<String, Check>,
}

impl HealthReport {
    /// The failing checks as `name: detail`.
    pub fn not_ready(&self) -> Vec<String> {
        self.checks.iter().filter(|(_, c)| !c.ok).map(|(n, c)| format!("{n}: {}", c.detail)).collect()
    }
}

#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Milliseconds after `started` of the last beat.
    last_beat_ms: AtomicU64,
    checks: Mutex<BTreeMap<String, Check>>,
}

impl Health {
    /// A process with `checks` (all failing with "not yet" until set).
    pub fn new(checks: &[&str]) -> Self {
        let checks =
            checks.iter().map(|n| (n.to_string(), Check { ok: false, detail: "not yet checked".into() })).collect();
        Health { started: Instant::now(), last_beat_ms: AtomicU64::new(0), checks: Mutex::new(checks) }
    }

    pub fn set(&self, name: &str, ok: bool, detail: impl Into<String>) {
        let mut checks = self.checks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        checks.insert(name.to_string(), Check { ok, detail: detail.into() });
    }

    pub fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    pub fn report(&self) -> HealthReport {
        let now = self.started.elapsed();
        let age = now.saturating_sub(Duration::from_millis(self.last_beat_ms.load(Ordering::Relaxed)));
        let checks = self.checks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        HealthReport {
            heartbeat_age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
            uptime_seconds: now.as_secs(),
            healthy: age < STALLED,
            ready: age < STALLED && checks.values().all(|c| c.ok),
            checks,
        }
    }

    /// Beats every [`BEAT`] until `shutdown`.
    pub async fn beat_until(&self, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(BEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => self.beat(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_every_check_and_a_fresh_heartbeat() {
        let h = Health::new(&["services", "datapath"]);
        h.beat();
        let r = h.report();
        assert!(r.healthy);
        assert!(!r.ready);
        assert_eq!(r.not_ready(), ["datapath: not yet checked", "services: not yet checked"]);
        h.set("services", true, "synced");
        h.set("datapath", true, "14 programs attached");
        assert!(h.report().ready);
        h.set("datapath", false, "no programs attached");
        assert_eq!(h.report().not_ready(), ["datapath: no programs attached"]);
    }

    #[test]
    fn a_stale_heartbeat_is_unhealthy() {
        let h = Health { started: Instant::now() - Duration::from_secs(5), ..Health::new(&[]) };
        let r = h.report();
        assert!(!r.healthy, "{r:?}");
        assert!(!r.ready);
        assert!(r.heartbeat_age_ms >= 5000);
        h.beat();
        assert!(h.report().healthy);
    }

    #[test]
    fn the_report_is_camel_case_json() {
        let h = Health::new(&["leader"]);
        h.set("leader", true, "leading");
        let json = serde_json::to_value(h.report()).unwrap();
        assert_eq!(json["checks"]["leader"]["detail"], "leading");
        assert!(json.get("heartbeatAgeMs").is_some());
        let back: HealthReport = serde_json::from_value(json).unwrap();
        assert_eq!(back.checks["leader"].detail, "leading");
    }
}
