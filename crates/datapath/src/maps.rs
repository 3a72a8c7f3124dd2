//! Typed handles on the pinned maps of one node's datapath, opened from bpffs. Used by the loader
//! to program services and by the inspection commands, which need no programs loaded.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, IterableMap, Map, MapData};

use crate::abi::{
    self, Ct4Key, CtEntry, DpConfig, Lb4AffinityKey, Lb4Backend, Lb4Key, Lb4ReverseNat, Lb4Service, LbAffinityMatch,
    LbAffinityVal, LbMaglevTable, NatEntry, NetdevInfo,
};
use crate::capacity::LbUsage;
use crate::error::{Error, Result};
use crate::gc_sweep::{GC_BATCH, GcSweep, Phase};
use crate::lbstate::{LbState, Op};
use crate::nat_gc;
use crate::sys;

/// The maps of one node, opened from their pins.
pub struct PinnedMaps {
    pin_dir: PathBuf,
    pub services: HashMap<MapData, Lb4Key, Lb4Service>,
    pub backends: HashMap<MapData, u32, Lb4Backend>,
    pub revnat: HashMap<MapData, u16, Lb4ReverseNat>,
    pub maglev: HashMap<MapData, u32, LbMaglevTable>,
    pub affinity: HashMap<MapData, Lb4AffinityKey, LbAffinityVal>,
    pub affinity_match: HashMap<MapData, LbAffinityMatch, u8>,
    pub ct: HashMap<MapData, Ct4Key, CtEntry>,
    pub snat: HashMap<MapData, Ct4Key, NatEntry>,
    pub netdevs: HashMap<MapData, u32, NetdevInfo>,
    pub config: Array<MapData, DpConfig>,
    /// The service maps' sizes as created (a reused pin keeps the size it was made with).
    pub capacity: LbUsage,
}

fn open_map(pin_dir: &Path, name: &'static str) -> Result<Map> {
    let data = MapData::from_pin(pin_dir.join(name))
        .map_err(Error::map(name, format!("open pin in {}", pin_dir.display())))?;
    Map::from_map_data(data).map_err(Error::map(name, "inspect"))
}

macro_rules! typed {
    ($dir:expr, $name:expr, $ty:ident) => {
        $ty::try_from(open_map($dir, $name)?).map_err(Error::map($name, "open as typed map"))?
    };
}

impl PinnedMaps {
    /// Opens every map pinned in `pin_dir` (created by [`crate::Datapath::open`]).
    pub fn open(pin_dir: &Path) -> Result<Self> {
        let services: HashMap<MapData, Lb4Key, Lb4Service> = typed!(pin_dir, abi::MAP_SERVICES, HashMap);
        let backends: HashMap<MapData, u32, Lb4Backend> = typed!(pin_dir, abi::MAP_BACKENDS, HashMap);
        let revnat: HashMap<MapData, u16, Lb4ReverseNat> = typed!(pin_dir, abi::MAP_REVNAT, HashMap);
        let maglev: HashMap<MapData, u32, LbMaglevTable> = typed!(pin_dir, abi::MAP_MAGLEV, HashMap);
        let affinity_match: HashMap<MapData, LbAffinityMatch, u8> = typed!(pin_dir, abi::MAP_AFFINITY_MATCH, HashMap);
        let size = |map: &MapData, name: &'static str| -> Result<usize> {
            Ok(map.info().map_err(Error::map(name, "read its size"))?.max_entries() as usize)
        };
        let capacity = LbUsage {
            services: size(services.map(), abi::MAP_SERVICES)?,
            backends: size(backends.map(), abi::MAP_BACKENDS)?,
            revnat: size(revnat.map(), abi::MAP_REVNAT)?,
            maglev: size(maglev.map(), abi::MAP_MAGLEV)?,
            affinity_match: size(affinity_match.map(), abi::MAP_AFFINITY_MATCH)?,
        };
        Ok(PinnedMaps {
            pin_dir: pin_dir.to_path_buf(),
            services,
            backends,
            revnat,
            maglev,
            affinity: typed!(pin_dir, abi::MAP_AFFINITY, HashMap),
            affinity_match,
            ct: typed!(pin_dir, abi::MAP_CT, HashMap),
            snat: typed!(pin_dir, abi::MAP_SNAT, HashMap),
            netdevs: typed!(pin_dir, abi::MAP_NETDEVS, HashMap),
            config: typed!(pin_dir, abi::MAP_CONFIG, Array),
            capacity,
        })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Reads the service maps back, so a restarted agent diffs against what the kernel really
    /// holds and rewrites nothing that is already right.
    pub fn read_lb_state(&self) -> Result<LbState> {
        let mut s = LbState::default();
        for kv in self.services.iter() {
            let (k, v) = kv.map_err(Error::map(abi::MAP_SERVICES, "iterate"))?;
            s.services.insert(k, v);
        }
        for kv in self.backends.iter() {
            let (k, v) = kv.map_err(Error::map(abi::MAP_BACKENDS, "iterate"))?;
            s.backends.insert(k, v);
        }
        for kv in self.revnat.iter() {
            let (k, v) = kv.map_err(Error::map(abi::MAP_REVNAT, "iterate"))?;
            s.revnat.insert(k, v);
        }
        for kv in self.maglev.iter() {
            let (k, v) = kv.map_err(Error::map(abi::MAP_MAGLEV, "iterate"))?;
            s.maglev.insert(k, v.backend_ids.to_vec());
        }
        for kv in self.affinity_match.iter() {
            let (k, _) = kv.map_err(Error::map(abi::MAP_AFFINITY_MATCH, "iterate"))?;
            s.affinity_match.insert(k);
        }
        Ok(s)
    }

    /// Performs one planned write.
    pub fn apply(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::PutBackend(id, v) => {
                self.backends.insert(id, v, 0).map_err(Error::map(abi::MAP_BACKENDS, format!("insert backend {id}")))
            }
            Op::PutAffinityMatch(m) => {
                self.affinity_match.insert(m, 1, 0).map_err(Error::map(abi::MAP_AFFINITY_MATCH, "insert"))
            }
            Op::PutRevNat(id, v) => {
                self.revnat.insert(id, v, 0).map_err(Error::map(abi::MAP_REVNAT, format!("insert rev-NAT {id}")))
            }
            Op::PutMaglev(k, t) => {
                let mut table = Box::new(LbMaglevTable { backend_ids: [0; abi::LB_MAGLEV_LUT_SIZE] });
                table.backend_ids.copy_from_slice(t);
                // one update replaces the whole table, so lookups see the old or the new one
                self.maglev
                    .insert(k, table.as_ref(), 0)
                    .map_err(Error::map(abi::MAP_MAGLEV, format!("insert table {k:#x}")))
            }
            Op::PutService(k, v) => {
                self.services.insert(k, v, 0).map_err(Error::map(abi::MAP_SERVICES, format!("insert {k:?}")))
            }
            Op::DeleteService(k) => ignore_missing(self.services.remove(k), abi::MAP_SERVICES),
            Op::DeleteMaglev(k) => ignore_missing(self.maglev.remove(k), abi::MAP_MAGLEV),
            Op::DeleteRevNat(k) => ignore_missing(self.revnat.remove(k), abi::MAP_REVNAT),
            Op::DeleteAffinityMatch(m) => ignore_missing(self.affinity_match.remove(m), abi::MAP_AFFINITY_MATCH),
            Op::DeleteBackend(k) => ignore_missing(self.backends.remove(k), abi::MAP_BACKENDS),
        }
    }

    pub fn ct_entries(&self) -> Result<Vec<(Ct4Key, CtEntry)>> {
        self.ct.iter().collect::<Result<Vec<_>, _>>().map_err(Error::map(abi::MAP_CT, "iterate"))
    }

    pub fn snat_entries(&self) -> Result<Vec<(Ct4Key, NatEntry)>> {
        self.snat.iter().collect::<Result<Vec<_>, _>>().map_err(Error::map(abi::MAP_SNAT, "iterate"))
    }

    /// Removes expired conntrack entries (the LRU evicts too, but only under pressure), in one
    /// sweep. Returns how many it removed.
    pub fn gc_conntrack(&mut self, now_ns: u64) -> Result<usize> {
        let mut sweep = GcSweep::conntrack_only(now_ns);
        self.gc_slice(&mut sweep, Duration::MAX)?;
        Ok(sweep.stats().conntrack_removed)
    }

    /// Runs `sweep` ([`crate::gc_sweep`]) until it is done or `budget` is spent: batch by batch,
    /// at least one per call so that every slice makes progress.
    pub fn gc_slice(&mut self, sweep: &mut GcSweep, budget: Duration) -> Result<()> {
        let started = Instant::now();
        sweep.slice_started();
        let mut keys = vec![Ct4Key::default(); GC_BATCH];
        loop {
            match sweep.phase {
                Phase::Done => return Ok(()),
                Phase::Conntrack(cursor) => {
                    let mut values = vec![CtEntry::default(); GC_BATCH];
                    let (n, next) =
                        sys::map_lookup_batch(self.ct.map().fd().as_fd(), cursor, &mut keys, &mut values).map_err(
                            |source| Error::Syscall { call: "BPF_MAP_LOOKUP_BATCH (conntrack map)", source },
                        )?;
                    let batch: Vec<_> = keys[..n].iter().copied().zip(values[..n].iter().copied()).collect();
                    let expired = sweep.conntrack_batch(&batch, next);
                    let confirmed = self.still_expired(&expired, sweep.now_ns)?;
                    let removed = sys::map_delete_batch(self.ct.map().fd().as_fd(), &confirmed)
                        .map_err(|source| Error::Syscall { call: "BPF_MAP_DELETE_BATCH (conntrack map)", source })?;
                    sweep.conntrack_removed(removed);
                }
                Phase::Nat(cursor) => {
                    let mut values = vec![NatEntry::default(); GC_BATCH];
                    let (n, next) = sys::map_lookup_batch(self.snat.map().fd().as_fd(), cursor, &mut keys, &mut values)
                        .map_err(|source| Error::Syscall { call: "BPF_MAP_LOOKUP_BATCH (SNAT map)", source })?;
                    let batch: Vec<_> = keys[..n].iter().copied().zip(values[..n].iter().copied()).collect();
                    let planned = sweep.nat_batch(&batch, next);
                    let confirmed = self.nat_still_removable(&planned, sweep.now_ns)?;
                    let removed = sys::map_delete_batch(self.snat.map().fd().as_fd(), &confirmed)
                        .map_err(|source| Error::Syscall { call: "BPF_MAP_DELETE_BATCH (SNAT map)", source })?;
                    sweep.nat_removed(removed);
                }
            }
            if started.elapsed() >= budget {
                return Ok(());
            }
        }
    }

    /// The keys of `listed` whose entries are still expired at `now_ns`. The datapath starts a
    /// new flow on an old flow's tuple in that flow's entry, possibly since the batch was read:
    /// reading each again right before the batch delete keeps the new flow's entry (the window
    /// left is the rest of the batch's reads and the delete).
    fn still_expired(&self, listed: &[Ct4Key], now_ns: u64) -> Result<Vec<Ct4Key>> {
        let mut confirmed = Vec::with_capacity(listed.len());
        for k in listed {
            match self.ct.get(k, 0) {
                Ok(e) if e.expires_ns < now_ns => confirmed.push(*k),
                Ok(_) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(Error::Map { map: abi::MAP_CT, op: "lookup".into(), source: Box::new(e) }),
            }
        }
        Ok(confirmed)
    }

    /// The SNAT keys of `planned` (with their flow's conntrack key) that are still to go: a new
    /// flow may have taken the tuple since the batch was read, so both are looked up again.
    fn nat_still_removable(&self, planned: &[(Ct4Key, Ct4Key)], now_ns: u64) -> Result<Vec<Ct4Key>> {
        let mut confirmed = Vec::with_capacity(planned.len());
        for (k, flow) in planned {
            match self.ct.get(flow, 0) {
                Ok(e) if e.expires_ns >= now_ns => continue,
                Ok(_) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(Error::Map { map: abi::MAP_CT, op: "lookup".into(), source: Box::new(e) }),
            }
            match self.snat.get(k, 0) {
                Ok(e)
                    if nat_gc::flow_key(k, &e) == Some(*flow)
                        && now_ns.saturating_sub(e.last_seen_ns) >= nat_gc::NAT_GC_GRACE_NS =>
                {
                    confirmed.push(*k)
                }
                Ok(_) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(Error::Map { map: abi::MAP_SNAT, op: "lookup".into(), source: Box::new(e) }),
            }
        }
        Ok(confirmed)
    }

    /// Deletes the entry for `k` if it is still expired at `now_ns`. The datapath starts a new
    /// flow on an old flow's tuple in that flow's entry, and a pass over a large map takes long
    /// enough for that to happen to an entry it listed as expired: reading it again right before
    /// the delete keeps the new flow's entry (the window left is two system calls).
    pub fn remove_ct_if_expired(&mut self, k: &Ct4Key, now_ns: u64) -> Result<bool> {
        match self.ct.get(k, 0) {
            Ok(e) if e.expires_ns < now_ns => {
                ignore_missing(self.ct.remove(k), abi::MAP_CT)?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(Error::Map { map: abi::MAP_CT, op: "lookup".into(), source: Box::new(e) }),
        }
    }
}

/// Whether a map operation failed only because the key is not there.
fn is_missing(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// Deleting what is already gone (an LRU eviction, a concurrent cleanup) is success.
fn ignore_missing(r: Result<(), aya::maps::MapError>, map: &'static str) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(Error::Map { map, op: "delete".into(), source: Box::new(e) }),
    }
}

/// The datapath's clock (`now_ns` in bpf/lib/common.h) as seen from userspace: CLOCK_MONOTONIC,
/// never behind the coarse clock the programs read.
pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always readable");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}
