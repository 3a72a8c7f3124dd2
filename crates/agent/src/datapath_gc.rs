//! Garbage collection of the datapath's flow state, its counters, and a rate limit for the
//! service sync's log line.
//!
//! Every `conntrack-gc-interval` [`run`] sweeps the flow state ([`datapath::gc_sweep`]): expired
//! conntrack entries, then the SNAT entries of flows whose conntrack entry is gone
//! ([`datapath::nat_gc`]). A sweep goes to the datapath thread in slices of [`SLICE_BUDGET`], so
//! work queued meanwhile (a new pod's programs, a service sync) waits one slice at most, even
//! while a full map is swept. What a sweep removed is added to [`COUNTERS`] and logged with the
//! totals. Device-map entries and link pins of devices that are gone are counted there too
//! ([`crate::datapath_attach`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datapath::{GcStats, GcSweep};
use tokio_util::sync::CancellationToken;

use crate::datapath_worker::DatapathHandle;

/// How long one slice of a sweep may hold the datapath thread. After each slice the sweep rests
/// as long as the slice took, so that a sweep of a full map takes at most half a CPU from the
/// node's other work (DNS, CNI, the pods' own traffic), however long it runs.
pub const SLICE_BUDGET: Duration = Duration::from_millis(5);

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

/// Sweeps the flow state every `interval` until `shutdown`.
pub async fn run(datapath: DatapathHandle, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
        match sweep(&datapath, SLICE_BUDGET, &shutdown).await {
            Ok(Some(stats)) => record(stats),
            Ok(None) => return,
            Err(e) => tracing::warn!(error = %api::error::Chain(&e), "datapath garbage collection failed"),
        }
    }
}

/// One sweep, slice by slice, each at most `budget` long on the datapath thread and followed by a
/// rest as long. Returns what it removed, or `None` when shut down part way.
pub async fn sweep(
    datapath: &DatapathHandle,
    budget: Duration,
    shutdown: &CancellationToken,
) -> Result<Option<GcStats>, datapath::Error> {
    let mut sweep = GcSweep::new(datapath::maps::monotonic_ns());
    while !sweep.is_done() {
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        // The sweep travels to the datapath thread and back with each slice; anything sent in
        // the meantime runs before the next slice.
        let (back, result, took) = datapath
            .call(move |dp| {
                let started = Instant::now();
                let result = dp.gc_slice(&mut sweep, budget);
                (sweep, result, started.elapsed())
            })
            .await?;
        sweep = back;
        result?;
        if !sweep.is_done() {
            tokio::time::sleep(took).await;
        }
    }
    tracing::debug!(slices = sweep.slices(), "datapath sweep done");
    Ok(Some(sweep.stats()))
}

/// Adds a sweep's work to [`COUNTERS`] and logs it with the totals.
fn record(stats: GcStats) {
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
    use std::net::Ipv4Addr;
    use std::path::Path;

    use datapath::abi::{Ct4Key, CtEntry};
    use datapath::lbstate::{LbState, SyncStats};
    use datapath::{LbDatapath, ServiceEntry};

    use super::*;

    /// A datapath whose sweep takes `slices` slices, each spending its whole budget.
    struct SlowSweep {
        slices: usize,
    }

    impl LbDatapath for SlowSweep {
        fn sync_services(&mut self, _: &[ServiceEntry]) -> datapath::Result<SyncStats> {
            Ok(SyncStats::default())
        }
        fn attach_pod_device(&mut self, _: &str, _: Ipv4Addr) -> datapath::Result<()> {
            Ok(())
        }
        fn forget_missing_devices(&mut self) -> datapath::Result<usize> {
            Ok(0)
        }
        fn attach_netdev(&mut self, _: &str, _: Option<Ipv4Addr>) -> datapath::Result<()> {
            Ok(())
        }
        fn detach_device(&mut self, _: &str) -> datapath::Result<()> {
            Ok(())
        }
        fn attach_socket_lb(&mut self, _: &Path) -> datapath::Result<()> {
            Ok(())
        }
        fn detach_socket_lb(&mut self) -> datapath::Result<()> {
            Ok(())
        }
        fn gc_conntrack(&mut self) -> datapath::Result<usize> {
            Ok(0)
        }
        fn gc_slice(&mut self, sweep: &mut GcSweep, budget: Duration) -> datapath::Result<()> {
            std::thread::sleep(budget);
            self.slices -= 1;
            if self.slices == 0 {
                sweep.finish_with(GcStats { conntrack_removed: 7, ..GcStats::default() });
            }
            Ok(())
        }
        fn service_maps(&self) -> datapath::Result<LbState> {
            Ok(LbState::default())
        }
        fn conntrack_entries(&self) -> datapath::Result<Vec<(Ct4Key, CtEntry)>> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn work_sent_during_a_long_sweep_runs_between_its_slices() {
        let datapath = DatapathHandle::spawn(Box::new(SlowSweep { slices: 40 })).unwrap();
        let budget = Duration::from_millis(10);
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        let sweeping = {
            let datapath = datapath.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { sweep(&datapath, budget, &shutdown).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A pod's programs, sent while the sweep is under way.
        let sent = Instant::now();
        datapath.call(|dp| dp.attach_pod_device("lxc1", Ipv4Addr::new(10, 0, 0, 2))).await.unwrap().unwrap();
        let waited = sent.elapsed();
        let stats = sweeping.await.unwrap().unwrap().expect("not shut down");
        assert_eq!(stats.conntrack_removed, 7);
        let whole = started.elapsed();
        // 40 slices, each followed by a rest as long but the last.
        assert!(whole >= budget * 79, "the sweep took {whole:?}: it did not rest between slices");
        assert!(waited < Duration::from_millis(100), "the attach waited {waited:?} behind a sweep of {whole:?}");
    }

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
