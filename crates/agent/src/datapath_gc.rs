//! Garbage collection of the datapath's flow state, its counters, and a rate limit for the
//! service sync's log line.
//!
//! Every [`collect`] removes expired conntrack entries and then the SNAT entries of flows whose
//! conntrack entry is gone ([`datapath::nat_gc`]); what it removed is added to [`COUNTERS`] and
//! logged with the totals. Device-map entries and link pins of devices that are gone are counted
//! there too ([`crate::datapath_attach`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use api::error::Chain;

use crate::service_controller::SharedDatapath;

/// What the agent's datapath garbage collection removed since the agent started.
#[derive(Debug, Default)]
pub struct GcCounters {
    pub conntrack_removed: AtomicU64,
    pub nat_removed: AtomicU64,
    pub device_entries_removed: AtomicU64,
    pub devices_unpinned: AtomicU64,
    /// SNAT entries after the last pass.
    pub nat_entries: AtomicU64,
}

/// A copy of [`GcCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcSnapshot {
    pub conntrack_removed: u64,
    pub nat_removed: u64,
    pub device_entries_removed: u64,
    pub devices_unpinned: u64,
    pub nat_entries: u64,
}

impl GcCounters {
    pub const fn new() -> Self {
        GcCounters {
            conntrack_removed: AtomicU64::new(0),
            nat_removed: AtomicU64::new(0),
            device_entries_removed: AtomicU64::new(0),
            devices_unpinned: AtomicU64::new(0),
            nat_entries: AtomicU64::new(0),
        }
    }

    pub fn snapshot(&self) -> GcSnapshot {
        GcSnapshot {
            conntrack_removed: self.conntrack_removed.load(Ordering::Relaxed),
            nat_removed: self.nat_removed.load(Ordering::Relaxed),
            device_entries_removed: self.device_entries_removed.load(Ordering::Relaxed),
            devices_unpinned: self.devices_unpinned.load(Ordering::Relaxed),
            nat_entries: self.nat_entries.load(Ordering::Relaxed),
        }
    }
}

/// The agent's counters (one agent per process).
pub static COUNTERS: GcCounters = GcCounters::new();

/// One garbage collection pass over the datapath; logs what it removed, with the totals.
pub fn collect(datapath: &SharedDatapath) {
    let result = datapath.lock().unwrap_or_else(std::sync::PoisonError::into_inner).gc();
    match result {
        Ok(stats) => {
            COUNTERS.conntrack_removed.fetch_add(stats.conntrack_removed as u64, Ordering::Relaxed);
            COUNTERS.nat_removed.fetch_add(stats.nat_removed as u64, Ordering::Relaxed);
            COUNTERS.nat_entries.store(stats.nat_entries as u64, Ordering::Relaxed);
            if stats.conntrack_removed + stats.nat_removed > 0 {
                let totals = COUNTERS.snapshot();
                tracing::info!(
                    conntrack_removed = stats.conntrack_removed,
                    nat_removed = stats.nat_removed,
                    nat_entries = stats.nat_entries,
                    conntrack_removed_total = totals.conntrack_removed,
                    nat_removed_total = totals.nat_removed,
                    "datapath garbage collected"
                );
            }
        }
        Err(e) => tracing::warn!(error = %Chain(&e), "datapath garbage collection failed"),
    }
}

/// At most one "services synced" line per [`SyncLog::EVERY`]: the first sync is logged at once,
/// later ones are summed up (syncs, rows written and removed) into the next line. A burst of
/// Service changes syncs up to dozens of times a second.
#[derive(Debug, Default)]
pub struct SyncLog {
    last: Option<Instant>,
    syncs: u64,
    upserts: usize,
    deletes: usize,
    frontends: usize,
}

impl SyncLog {
    pub const EVERY: Duration = Duration::from_secs(10);

    /// A sync that wrote something (or the first one). Returns whether it logged.
    pub fn synced(&mut self, frontends: usize, upserts: usize, deletes: usize) -> bool {
        self.syncs += 1;
        self.upserts += upserts;
        self.deletes += deletes;
        self.frontends = frontends;
        if self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return false;
        }
        self.log();
        true
    }

    /// Whether the first line was logged.
    pub fn started(&self) -> bool {
        self.last.is_some()
    }

    /// Logs what was summed up since the last line, if anything and if the interval has passed.
    pub fn flush(&mut self) -> bool {
        if self.syncs == 0 || self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return false;
        }
        self.log();
        true
    }

    fn log(&mut self) {
        tracing::info!(
            frontends = self.frontends,
            upserts = self.upserts,
            deletes = self.deletes,
            syncs = self.syncs,
            "services synced to the datapath"
        );
        *self = SyncLog { last: Some(Instant::now()), ..SyncLog::default() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_syncs_logs_once() {
        let mut log = SyncLog::default();
        assert!(log.synced(1, 5, 0), "the first sync is logged");
        let logged = (0..250).filter(|i| log.synced(2, 1, usize::from(i % 2 == 0))).count();
        assert_eq!(logged, 0, "a burst within the interval is summed up");
        assert_eq!((log.syncs, log.upserts, log.deletes), (250, 250, 125));
        assert!(!log.flush(), "not before the interval");
        log.last = Some(Instant::now() - SyncLog::EVERY);
        assert!(log.flush());
        assert_eq!(log.syncs, 0);
        assert!(!log.flush(), "nothing left");
    }
}
