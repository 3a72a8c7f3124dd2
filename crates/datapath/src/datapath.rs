//! [`Datapath`]: one node's loaded datapath, and [`LbDatapath`], the interface the agent's
//! controllers program it through (implemented by the fake as well).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::programs::SchedClassifier;

use crate::abi::{self, ConfigFlags, Ct4Key, CtEntry, DpConfig, NetdevFlags, NetdevInfo};
use crate::attach::{self, Direction};
use crate::capacity::LbUsage;
use crate::dump;
use crate::error::{Error, Result};
use crate::event_maps::{Count, DatapathCounters, EventMaps, EventReader, EventsLevel};
use crate::events::DropReason;
use crate::gc_sweep::GcSweep;
use crate::l2::{L2Entry, L2Maps, L2Row, L2SyncStats};
use crate::lbstate::{self, LbState, SyncStats};
use crate::loader::{self, DatapathConfig, Programs};
use crate::maps::{self, PinnedMaps};
use crate::objects;
use crate::service::ServiceEntry;
use crate::sys;

/// What the agent needs from the datapath. Everything is idempotent and desired-state: calling
/// twice with the same arguments changes nothing the second time.
pub trait LbDatapath: Send {
    /// Makes the service maps describe exactly `services` (one entry per frontend); frontends
    /// not listed are removed. Only changed rows are written, in an order that keeps every
    /// datapath lookup consistent. Nothing is written when `services` is invalid or does not fit
    /// ([`Error::Exhausted`](crate::Error::Exhausted) names the map).
    fn sync_services(&mut self, services: &[ServiceEntry]) -> Result<SyncStats>;

    /// How many entries each service map holds, when the maps have a fixed size.
    fn capacity(&self) -> Option<LbUsage> {
        None
    }

    /// Attaches `from_container` (tcx ingress) and `to_container` (tcx egress) to the host side
    /// of a pod veth, in the calling thread's network namespace, and marks it as a pod device so
    /// translated packets for the pod are handed to its peer directly. Packets the pod sends
    /// from any address but `pod_addr` are dropped.
    fn attach_pod_device(&mut self, ifname: &str, pod_addr: Ipv4Addr) -> Result<()>;

    /// Forgets devices the datapath was told about that no longer exist (veths of deleted
    /// pods). Returns how many were forgotten.
    fn forget_missing_devices(&mut self) -> Result<usize>;

    /// Attaches `from_netdev` (tcx ingress) to a node device such as eth1. North-south flows to
    /// remote backends leaving through it are SNATed to `snat_addr` (the device's node address).
    fn attach_netdev(&mut self, ifname: &str, snat_addr: Option<Ipv4Addr>) -> Result<()>;

    /// Detaches this datapath's programs from a device (a deleted pod's veth needs no call: its
    /// links die with it, and the next attach of the same name replaces the stale pins).
    fn detach_device(&mut self, ifname: &str) -> Result<()>;

    /// Attaches the socket-LB hooks to a cgroup v2 directory; they translate only for sockets of
    /// the calling thread's network namespace (the node's).
    fn attach_socket_lb(&mut self, cgroup: &Path) -> Result<()>;

    /// Detaches the socket-LB hooks and turns translation off.
    fn detach_socket_lb(&mut self) -> Result<()>;

    /// Removes expired conntrack entries (call periodically; the LRU maps also evict under
    /// pressure). Returns how many were removed.
    fn gc_conntrack(&mut self) -> Result<usize>;

    /// One garbage collection pass: expired conntrack entries, then the SNAT entries of flows
    /// whose conntrack entry is gone ([`crate::nat_gc`]). The default runs only
    /// [`Self::gc_conntrack`].
    fn gc(&mut self) -> Result<GcStats> {
        Ok(GcStats { conntrack_removed: self.gc_conntrack()?, ..GcStats::default() })
    }

    /// One slice of a garbage collection sweep ([`crate::gc_sweep`]): goes on from where the
    /// sweep stands until it is done or `budget` is spent. The default runs [`Self::gc`] whole.
    fn gc_slice(&mut self, sweep: &mut GcSweep, budget: Duration) -> Result<()> {
        let _ = budget;
        let stats = self.gc()?;
        sweep.finish_with(stats);
        Ok(())
    }

    /// Removes the link pins (tcx ingress and egress) of devices that no longer exist in the
    /// calling thread's network namespace, such as deleted pods' veths: each pin holds a defunct
    /// link and its program. Returns the devices whose pins went. The default removes nothing.
    fn remove_stale_links(&mut self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// The devices that have link pins, whoever pinned them (the agent or the CNI plugin's
    /// attach hook). The default has none.
    fn pinned_devices(&self) -> Vec<String> {
        Vec::new()
    }

    /// The service maps as last written (`cilia dbg NODE bpf lb list` shows them, formatted by
    /// [`crate::dump::lb_list`]).
    fn service_maps(&self) -> Result<LbState>;

    /// The conntrack entries (`cilia dbg NODE bpf ct list global` shows them, formatted by
    /// [`crate::dump::ct_list`]).
    fn conntrack_entries(&self) -> Result<Vec<(Ct4Key, CtEntry)>>;

    /// L2 announcements: makes the ARP/NDP responder maps hold exactly `entries` (one per
    /// announced IP and device). Keys not listed are removed (also ones this agent never wrote),
    /// missing ones added with a zero counter, a key whose MAC changed is rewritten keeping its
    /// counter; deleting an absent key is no error. Nothing is written when `entries` is invalid
    /// or does not fit the maps. The stats list the added keys (and the rewritten ones): announce those
    /// ([`crate::neigh_announce`]). The default implementation refuses (for test doubles that do
    /// not model L2).
    fn sync_l2(&mut self, entries: &[L2Entry]) -> Result<L2SyncStats> {
        let _ = entries;
        Err(Error::Unsupported { what: "L2 announcements (sync_l2)" })
    }

    /// The heartbeat of the L2 responder: it answers only while the last refresh is at most
    /// `max_age` old (use the lease duration, and refresh well within it). An agent that dies
    /// stops its node answering within `max_age`.
    fn refresh_l2_liveness(&mut self, max_age: Duration) -> Result<()> {
        let _ = max_age;
        Err(Error::Unsupported { what: "L2 announcements (refresh_l2_liveness)" })
    }

    /// Stops the L2 responder at once (graceful shutdown, leadership given up) without touching
    /// its entries; the next refresh turns it back on.
    fn clear_l2_liveness(&mut self) -> Result<()> {
        Err(Error::Unsupported { what: "L2 announcements (clear_l2_liveness)" })
    }

    /// The responder entries with their answer counters, ordered by IP then ifindex.
    fn l2_entries(&self) -> Result<Vec<L2Row>> {
        Err(Error::Unsupported { what: "L2 announcements (l2_entries)" })
    }

    /// The always-on counters: drops by reason, forwards by observation point, events lost. The
    /// default (test doubles) counts nothing.
    fn counters(&self) -> Result<DatapathCounters> {
        Ok(DatapathCounters::default())
    }

    /// Drops by reason, summed over CPUs.
    fn drop_counters(&self) -> Result<Vec<(DropReason, Count)>> {
        Ok(self.counters()?.drops)
    }

    /// Flow events the ring buffer had no room for.
    fn lost_events(&self) -> Result<u64> {
        Ok(self.counters()?.events_lost)
    }

    /// How many flow events the datapath writes (`bpf/lib/events.h`); the counters run at every
    /// level. The default ignores it.
    fn set_events_level(&mut self, level: EventsLevel) -> Result<()> {
        let _ = level;
        Ok(())
    }

    /// [`Self::set_events_level`] with Cilium's default aggregation when on.
    fn set_events_enabled(&mut self, enabled: bool) -> Result<()> {
        self.set_events_level(if enabled { EventsLevel::Medium } else { EventsLevel::Off })
    }

    /// A new consumer of the events ring buffer (one per node). The default has none.
    fn event_reader(&self) -> Result<Option<EventReader>> {
        Ok(None)
    }
}

/// What one [`LbDatapath::gc`] pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    pub conntrack_removed: usize,
    pub nat_removed: usize,
    /// SNAT entries left after the pass.
    pub nat_entries: usize,
}

/// One node's datapath: programs loaded, maps pinned under `pin_dir`
/// (e.g. `/sys/fs/bpf/cilia/<lab>/<node>/`), links pinned under `pin_dir/links/`.
///
/// Dropping it (or killing the agent) leaves everything attached and forwarding; a new
/// [`Datapath::open`] on the same directory picks up the maps and links again.
pub struct Datapath {
    pin_dir: PathBuf,
    programs: Programs,
    maps: PinnedMaps,
    l2: L2Maps,
    events: EventMaps,
    applied: LbState,
}

impl Datapath {
    /// Loads the datapath with default map sizes; see [`Datapath::open_with`].
    pub fn open(pin_dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(pin_dir, &DatapathConfig::default())
    }

    /// Loads the programs, creating the maps under `pin_dir` or reusing the ones pinned there,
    /// and reads back the services they hold. `pin_dir` must be on bpffs (see
    /// [`crate::ensure_bpffs`]); it is created if missing.
    pub fn open_with(pin_dir: impl AsRef<Path>, config: &DatapathConfig) -> Result<Self> {
        let pin_dir = pin_dir.as_ref().to_path_buf();
        loader::prepare_pin_dir(&pin_dir, config)?;
        let programs = Programs::load(&pin_dir, config)?;
        let maps = PinnedMaps::open(&pin_dir)?;
        let l2 = L2Maps::open(&pin_dir)?;
        let events = EventMaps::open(&pin_dir)?;
        let applied = maps.read_lb_state()?;
        Ok(Datapath { pin_dir, programs, maps, l2, events, applied })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The maps, for inspection and tests.
    pub fn maps(&self) -> &PinnedMaps {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut PinnedMaps {
        &mut self.maps
    }

    /// The L2 responder maps, for inspection and tests.
    pub fn l2_maps(&self) -> &L2Maps {
        &self.l2
    }

    pub fn l2_maps_mut(&mut self) -> &mut L2Maps {
        &mut self.l2
    }

    /// `cilia dbg NODE bpf l2 list`: the responder entries and the heartbeat's age. `ifname`
    /// names devices by ifindex when given.
    pub fn l2_list(&self, ifname: Option<&dyn Fn(u32) -> Option<String>>) -> Result<String> {
        Ok(dump::l2_list(&self.l2.rows()?, Some(&self.l2.liveness()?), maps::monotonic_ns(), ifname))
    }

    /// The service maps' contents as last written.
    pub fn lb_state(&self) -> &LbState {
        &self.applied
    }

    /// A loaded tc program (`from_container`, `to_container`, `from_netdev`), e.g. to run it
    /// with `BPF_PROG_TEST_RUN` through [`aya::programs::TestRun`].
    pub fn classifier(&self, name: &'static str) -> Result<&SchedClassifier> {
        self.programs.classifier(name)
    }

    /// Devices with programs attached (from the link pins), for status output.
    pub fn attached_devices(&self) -> Vec<(String, Direction)> {
        attach::attached_devices(&self.pin_dir)
    }

    pub fn nat_list(&self) -> Result<String> {
        Ok(dump::nat_list(&self.maps.snat_entries()?))
    }

    pub fn backend_list(&self) -> String {
        dump::backend_list(&self.applied)
    }

    fn write_config(&mut self, netns_cookie: u64, flags: ConfigFlags) -> Result<()> {
        let cfg = DpConfig { netns_cookie, flags, pad: 0 };
        self.maps.config.set(0, cfg, 0).map_err(Error::map(abi::MAP_CONFIG, "set"))
    }
}

impl LbDatapath for Datapath {
    fn sync_services(&mut self, services: &[ServiceEntry]) -> Result<SyncStats> {
        let desired = lbstate::desired(services, &self.applied)?;
        // Refused before any write, with the numbers, rather than failing part way with E2BIG.
        LbUsage::of(&desired).check_fits(&self.maps.capacity, services.len())?;
        let ops = lbstate::plan(&self.applied, &desired);
        for op in &ops {
            // On failure `applied` still matches the kernel up to the last successful write, so
            // the next sync resumes from there.
            self.maps.apply(op)?;
            self.applied.apply(op);
        }
        Ok(lbstate::stats(&ops))
    }

    fn capacity(&self) -> Option<LbUsage> {
        Some(self.maps.capacity)
    }

    fn attach_pod_device(&mut self, ifname: &str, pod_addr: Ipv4Addr) -> Result<()> {
        let ifindex = ifindex_of(ifname)?;
        let info = NetdevInfo { addr: pod_addr.octets(), flags: NetdevFlags::POD };
        self.maps.netdevs.insert(ifindex, info, 0).map_err(Error::map(abi::MAP_NETDEVS, format!("set {ifname}")))?;
        attach::attach_tcx(
            &mut self.programs,
            &self.pin_dir,
            objects::PROG_FROM_CONTAINER,
            ifname,
            Direction::Ingress,
        )?;
        attach::attach_tcx(&mut self.programs, &self.pin_dir, objects::PROG_TO_CONTAINER, ifname, Direction::Egress)
    }

    fn forget_missing_devices(&mut self) -> Result<usize> {
        let known: Vec<u32> = self.maps.netdevs.keys().filter_map(std::result::Result::ok).collect();
        let mut forgotten = 0;
        for ifindex in known {
            if sys::ifindex_exists(ifindex) {
                continue;
            }
            match self.maps.netdevs.remove(&ifindex) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => forgotten += 1,
                Err(e) => {
                    return Err(Error::Map {
                        map: abi::MAP_NETDEVS,
                        op: format!("remove {ifindex}"),
                        source: Box::new(e),
                    });
                }
            }
        }
        Ok(forgotten)
    }

    fn attach_netdev(&mut self, ifname: &str, snat_addr: Option<Ipv4Addr>) -> Result<()> {
        let ifindex = ifindex_of(ifname)?;
        match snat_addr {
            Some(a) => {
                let info = NetdevInfo { addr: a.octets(), flags: NetdevFlags::empty() };
                self.maps
                    .netdevs
                    .insert(ifindex, info, 0)
                    .map_err(Error::map(abi::MAP_NETDEVS, format!("set {ifname}")))?;
            }
            None => match self.maps.netdevs.remove(&ifindex) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => {
                    return Err(Error::Map {
                        map: abi::MAP_NETDEVS,
                        op: format!("remove {ifname}"),
                        source: Box::new(e),
                    });
                }
            },
        }
        attach::attach_tcx(&mut self.programs, &self.pin_dir, objects::PROG_FROM_NETDEV, ifname, Direction::Ingress)
    }

    fn detach_device(&mut self, ifname: &str) -> Result<()> {
        attach::detach_device(&self.pin_dir, ifname)
    }

    fn attach_socket_lb(&mut self, cgroup: &Path) -> Result<()> {
        let cookie = sys::current_netns_cookie()?;
        self.write_config(cookie, ConfigFlags::SOCKET_LB)?;
        attach::attach_cgroup(&mut self.programs, &self.pin_dir, cgroup)
    }

    fn detach_socket_lb(&mut self) -> Result<()> {
        self.write_config(0, ConfigFlags::empty())?;
        attach::detach_cgroup(&self.pin_dir)
    }

    fn gc_conntrack(&mut self) -> Result<usize> {
        self.maps.gc_conntrack(maps::monotonic_ns())
    }

    fn gc(&mut self) -> Result<GcStats> {
        let mut sweep = GcSweep::new(maps::monotonic_ns());
        self.maps.gc_slice(&mut sweep, Duration::MAX)?;
        Ok(sweep.stats())
    }

    fn gc_slice(&mut self, sweep: &mut GcSweep, budget: Duration) -> Result<()> {
        self.maps.gc_slice(sweep, budget)
    }

    fn remove_stale_links(&mut self) -> Result<Vec<String>> {
        attach::remove_links_of_missing_devices(&self.pin_dir)
    }

    fn pinned_devices(&self) -> Vec<String> {
        let mut names: Vec<String> =
            attach::attached_devices(&self.pin_dir).into_iter().map(|(name, _)| name).collect();
        names.dedup();
        names
    }

    fn service_maps(&self) -> Result<LbState> {
        Ok(self.applied.clone())
    }

    fn conntrack_entries(&self) -> Result<Vec<(Ct4Key, CtEntry)>> {
        self.maps.ct_entries()
    }

    fn sync_l2(&mut self, entries: &[L2Entry]) -> Result<L2SyncStats> {
        self.l2.sync(entries)
    }

    fn refresh_l2_liveness(&mut self, max_age: Duration) -> Result<()> {
        self.l2.refresh_liveness(max_age)
    }

    fn clear_l2_liveness(&mut self) -> Result<()> {
        self.l2.clear_liveness()
    }

    fn l2_entries(&self) -> Result<Vec<L2Row>> {
        self.l2.rows()
    }

    fn counters(&self) -> Result<DatapathCounters> {
        self.events.counters()
    }

    fn set_events_level(&mut self, level: EventsLevel) -> Result<()> {
        self.events.set_level(level)
    }

    fn event_reader(&self) -> Result<Option<EventReader>> {
        EventReader::open(&self.pin_dir).map(Some)
    }
}

/// `bpf lb list` straight from the pins, without loading programs (for the CLI).
pub fn lb_list_pinned(pin_dir: &Path) -> Result<String> {
    Ok(dump::lb_list(&PinnedMaps::open(pin_dir)?.read_lb_state()?))
}

/// `bpf ct list global` straight from the pins, without loading programs (for the CLI).
pub fn ct_list_pinned(pin_dir: &Path) -> Result<String> {
    Ok(dump::ct_list(&PinnedMaps::open(pin_dir)?.ct_entries()?, maps::monotonic_ns()))
}

/// `bpf nat list` straight from the pins.
pub fn nat_list_pinned(pin_dir: &Path) -> Result<String> {
    Ok(dump::nat_list(&PinnedMaps::open(pin_dir)?.snat_entries()?))
}

fn ifindex_of(ifname: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(ifname)
        .map_err(|e| Error::Interface { ifname: ifname.into(), reason: format!("no such device: {e}") })
}
