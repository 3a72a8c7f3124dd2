//! The agent's metrics (`:9962/metrics`, Cilium's names under `cilia_`) and health
//! (`/healthz`, `/readyz`), served on the node's address and on `<state dir>/metrics.sock`
//! ([`telemetry`]).
//!
//! Two kinds of values:
//! - kept by the agent as things happen ([`TELEMETRY`]): Services and backends programmed, the
//!   programming latency, L2 ownership changes, flow events lost;
//! - read from the kernel at scrape time ([`scraped`]): packets forwarded and dropped by reason
//!   and flow events lost (the datapath's per-CPU counters), map entries and fill ratios
//!   (conntrack, SNAT, ...), attached programs, ARP replies the responder sent, garbage
//!   collection totals, IPAM usage.
//!
//! Ready means: services synced to the datapath at least once and the datapath's programs
//! attached (with kube-proxy replacement; without it both checks pass as "off").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use cni::PodNetwork;
use datapath::{DatapathCounters, EventMaps, L2Row, inventory::MapCount};
use ipnet::Ipv4Net;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram};
use prometheus_client::registry::{Registry, Unit};
use telemetry::{Endpoints, Health, Listen, ScrapeCollector, ScrapedFamily, ScrapedKind};
use tokio_util::sync::CancellationToken;

use crate::datapath_gc::COUNTERS;
use crate::flows::{FlowHub, FlowHubStatus};

/// Readiness checks.
pub const CHECK_POD_NETWORK: &str = "pod-network";
pub const CHECK_SERVICES: &str = "services";
pub const CHECK_DATAPATH: &str = "datapath";
/// How often the datapath check looks at the attached programs.
const DATAPATH_CHECK: Duration = Duration::from_millis(500);

/// Flow events the agent itself could not keep (its reader fell behind); exported, added to the
/// datapath's own count of events its ring buffer had no room for, as
/// `cilia_flow_events_lost_total`.
pub static FLOW_EVENTS_LOST: AtomicU64 = AtomicU64::new(0);

/// What the agent records as it works. One agent per process.
pub static TELEMETRY: LazyLock<AgentTelemetry> = LazyLock::new(AgentTelemetry::new);

#[derive(Debug)]
pub struct AgentTelemetry {
    pub health: Arc<Health>,
    services: Gauge,
    services_left_out: Gauge,
    backends: Gauge,
    syncs: Counter,
    delay: Histogram,
    /// By `change`: `acquired` or `released`.
    l2_changes: Family<Vec<(String, String)>, Counter>,
}

impl AgentTelemetry {
    fn new() -> Self {
        let l2_changes: Family<Vec<(String, String)>, Counter> = Family::default();
        // Both series exist from the start, at zero, so a scraper sees the family before any change.
        for change in ["acquired", "released"] {
            let _ = l2_changes.get_or_create(&vec![("change".into(), change.into())]);
        }
        AgentTelemetry {
            health: Arc::new(Health::new(&[CHECK_POD_NETWORK, CHECK_SERVICES, CHECK_DATAPATH])),
            services: Gauge::default(),
            services_left_out: Gauge::default(),
            backends: Gauge::default(),
            syncs: Counter::default(),
            // 100 µs to about 1.6 s.
            delay: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 15)),
            l2_changes,
        }
    }
}

/// A sync of the service datapath succeeded: `took` from the start of the pass to the maps
/// written, and what the maps hold now.
pub fn services_programmed(took: Duration, frontends: usize, backends: usize) {
    let t = &*TELEMETRY;
    t.delay.observe(took.as_secs_f64());
    t.syncs.inc();
    t.services.set(i64::try_from(frontends).unwrap_or(i64::MAX));
    t.backends.set(i64::try_from(backends).unwrap_or(i64::MAX));
    t.health.set(CHECK_SERVICES, true, format!("{frontends} frontends, {backends} backends programmed"));
}

/// How many Services the datapath's maps had no room for (0 when all fit).
pub fn services_left_out(count: usize) {
    TELEMETRY.services_left_out.set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// L2 announcements this node took over and gave up in one sync.
pub fn l2_ownership_changed(acquired: usize, released: usize) {
    for (change, n) in [("acquired", acquired), ("released", released)] {
        if n > 0 {
            TELEMETRY.l2_changes.get_or_create(&vec![("change".into(), change.into())]).inc_by(n as u64);
        }
    }
}

/// What the scrape reads from.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The node's bpffs directory with the datapath's pins; None without kube-proxy replacement.
    pub bpf_dir: Option<PathBuf>,
    pub network: Arc<PodNetwork>,
    pub pod_cidr: Ipv4Net,
    /// The node's flow buffer.
    pub flows: Arc<FlowHub>,
}

/// What the scrape reads from, once pod networking is up ([`start`]).
static SOURCES: Mutex<Option<Sources>> = Mutex::new(None);

/// The registry: the recorded metrics and the scraped ones.
pub fn registry() -> Registry {
    let t = &*TELEMETRY;
    let mut r = Registry::with_prefix("cilia");
    r.register("services_programmed", "Service frontends programmed in the datapath", t.services.clone());
    r.register(
        "services_left_out",
        "Services left out of the datapath because its maps are full (the newest first; see bpf-lb-map-max)",
        t.services_left_out.clone(),
    );
    r.register(
        "service_backends_programmed",
        "Backends of all frontends programmed in the datapath",
        t.backends.clone(),
    );
    r.register("service_syncs", "Successful syncs of the service datapath", t.syncs.clone());
    r.register_with_unit(
        "service_implementation_delay",
        "Time to program the datapath for a change of Services, endpoints or nodes",
        Unit::Seconds,
        t.delay.clone(),
    );
    r.register(
        "l2_announcement_ownership_changes",
        "L2 announcements this node took over (acquired) or gave up (released)",
        t.l2_changes.clone(),
    );
    r.register_collector(Box::new(ScrapeCollector::new(|| {
        let sources = SOURCES.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut out = match sources {
            Some(s) => scraped(&s),
            // Before the node has its pod network: the families, without node figures.
            None => {
                let mut out = gc_families();
                out.extend(packet_families(None));
                out
            }
        };
        out.extend(telemetry::unreadable_families(store::unreadable::objects(), store::unreadable::values_seen()));
        out
    })));
    r
}

/// Everything read at scrape time. Unreadable parts are left out (the families stay).
fn scraped(sources: &Sources) -> Vec<ScrapedFamily> {
    let (maps, links, l2) = match &sources.bpf_dir {
        Some(dir) => (
            datapath::inventory::map_counts(dir).unwrap_or_default(),
            datapath::inventory::link_pins(dir),
            datapath::l2_entries_pinned(dir).unwrap_or_default(),
        ),
        None => (Vec::new(), 0, Vec::new()),
    };
    let mut out = datapath_families(&maps, links, &l2);
    out.extend(gc_families());
    out.extend(ipam_families(sources.network.allocations().len(), sources.pod_cidr));
    out.extend(flow_buffer_families(&sources.flows.status()));
    let counters = sources.bpf_dir.as_deref().and_then(|dir| EventMaps::open(dir).and_then(|m| m.counters()).ok());
    out.extend(packet_families(counters.as_ref()));
    out
}

/// Map fill, conntrack and NAT entries, attached programs, ARP replies.
pub fn datapath_families(maps: &[MapCount], links: usize, l2: &[L2Row]) -> Vec<ScrapedFamily> {
    let mut entries = ScrapedFamily::new("bpf_map_entries", "Entries in a BPF map.", ScrapedKind::Gauge);
    let mut capacity = ScrapedFamily::new("bpf_map_capacity", "Maximum entries of a BPF map.", ScrapedKind::Gauge);
    let mut pressure =
        ScrapedFamily::new("bpf_map_pressure", "Fill ratio of a BPF map (entries / capacity).", ScrapedKind::Gauge);
    for m in maps {
        let name = [("map_name", m.name.as_str())];
        entries = entries.sample(&name, m.entries as f64);
        capacity = capacity.sample(&name, f64::from(m.max_entries));
        pressure = pressure.sample(&name, fill_ratio(m));
    }
    let count = |name: &str| maps.iter().find(|m| m.name == name).map_or(0.0, |m| m.entries as f64);
    let replies: u64 = l2.iter().map(|r| r.responses).sum();
    vec![
        entries,
        capacity,
        pressure,
        ScrapedFamily::single(
            "conntrack_entries",
            "Entries in the conntrack map.",
            ScrapedKind::Gauge,
            count(datapath::abi::MAP_CT),
        ),
        ScrapedFamily::single(
            "nat_entries",
            "Entries in the SNAT map.",
            ScrapedKind::Gauge,
            count(datapath::abi::MAP_SNAT),
        ),
        ScrapedFamily::single(
            "datapath_programs_attached",
            "BPF programs attached through pinned links (devices, pods, socket-LB).",
            ScrapedKind::Gauge,
            links as f64,
        ),
        ScrapedFamily::single(
            "l2_announcements",
            "Addresses this node answers ARP for.",
            ScrapedKind::Gauge,
            l2.len() as f64,
        ),
        ScrapedFamily::single(
            "l2_arp_replies",
            "ARP replies the datapath sent for announced addresses.",
            ScrapedKind::Counter,
            replies as f64,
        ),
    ]
}

fn fill_ratio(m: &MapCount) -> f64 {
    if m.max_entries == 0 { 0.0 } else { m.entries as f64 / f64::from(m.max_entries) }
}

fn gc_families() -> Vec<ScrapedFamily> {
    let gc = COUNTERS.snapshot();
    let counter = |name, help, v: u64| ScrapedFamily::single(name, help, ScrapedKind::Counter, v as f64);
    vec![
        counter("conntrack_gc_deleted", "Expired conntrack entries removed by the agent.", gc.conntrack_removed),
        counter("nat_gc_deleted", "SNAT entries of finished flows removed by the agent.", gc.nat_removed),
        counter("device_gc_deleted", "Device-map entries of devices that are gone.", gc.device_entries_removed),
        counter("device_links_unpinned", "Link pins of devices that are gone.", gc.devices_unpinned),
    ]
}

/// The flow buffer: flows held, its capacity, flows seen, records that did not decode.
pub fn flow_buffer_families(status: &FlowHubStatus) -> Vec<ScrapedFamily> {
    let gauge = |name, help, v: u64| ScrapedFamily::single(name, help, ScrapedKind::Gauge, v as f64);
    let counter = |name, help, v: u64| ScrapedFamily::single(name, help, ScrapedKind::Counter, v as f64);
    vec![
        gauge("flow_buffer_flows", "Flows in the node's flow buffer.", status.num_flows),
        gauge("flow_buffer_capacity", "Flows the node's flow buffer holds at most.", status.max_flows),
        counter("flows_seen", "Flows the node's flow buffer received.", status.seen_flows),
        counter("flow_events_undecodable", "Datapath event records that did not decode.", status.undecodable),
    ]
}

/// Pod IPs in use and the pod CIDR's room (less network, broadcast and the router IP).
pub fn ipam_families(allocated: usize, pod_cidr: Ipv4Net) -> Vec<ScrapedFamily> {
    let size = 1u64 << (32 - u32::from(pod_cidr.prefix_len()));
    let capacity = size.saturating_sub(3);
    vec![
        ScrapedFamily::single(
            "ipam_ip_addresses",
            "Pod IPs allocated on this node.",
            ScrapedKind::Gauge,
            allocated as f64,
        ),
        ScrapedFamily::single(
            "ipam_capacity",
            "Pod IPs this node's pod CIDR can hand out.",
            ScrapedKind::Gauge,
            capacity as f64,
        ),
    ]
}

/// Packets forwarded by observation point and dropped by reason, with their bytes (Cilium's
/// `forward_count_total`, `drop_count_total{reason}`), from the datapath's per-CPU counters.
/// The families are declared also when the counters cannot be read (no datapath).
pub fn packet_families(counters: Option<&DatapathCounters>) -> Vec<ScrapedFamily> {
    let mut fwd = ScrapedFamily::new("forward_count", "Packets forwarded, by observation point.", ScrapedKind::Counter);
    let mut fwd_bytes =
        ScrapedFamily::new("forward_bytes", "Bytes forwarded, by observation point.", ScrapedKind::Counter);
    let mut drop = ScrapedFamily::new("drop_count", "Packets dropped, by reason.", ScrapedKind::Counter);
    let mut drop_bytes = ScrapedFamily::new("drop_bytes", "Bytes dropped, by reason.", ScrapedKind::Counter);
    if let Some(c) = counters {
        for (point, count) in &c.forwards {
            let labels = [("point", point.name())];
            fwd = fwd.sample(&labels, count.packets as f64);
            fwd_bytes = fwd_bytes.sample(&labels, count.bytes as f64);
        }
        for (reason, count) in &c.drops {
            let labels = [("reason", reason.description())];
            drop = drop.sample(&labels, count.packets as f64);
            drop_bytes = drop_bytes.sample(&labels, count.bytes as f64);
        }
    }
    // Lost in the ring buffer (the datapath's count) and after it (the agent's).
    let lost = counters.map_or(0, |c| c.events_lost) + FLOW_EVENTS_LOST.load(Ordering::Relaxed);
    vec![
        fwd,
        fwd_bytes,
        drop,
        drop_bytes,
        ScrapedFamily::single(
            "flow_events_lost",
            "Flow events lost: no room in the datapath's ring buffer, or dropped by the agent.",
            ScrapedKind::Counter,
            lost as f64,
        ),
    ]
}

/// Serves the endpoints on the agent's socket from its start until `shutdown`, so that `status`
/// tells an agent that waits (for the datastore, for a pod CIDR) from one that is not running.
/// Failing to listen is logged, never fatal: the node works without its metrics.
pub async fn serve_socket(socket: PathBuf, shutdown: CancellationToken) {
    let health = TELEMETRY.health.clone();
    health.set(CHECK_POD_NETWORK, false, "waiting for the datastore and this node's pod CIDR");
    if let Some(dir) = socket.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the directory of the metrics socket");
    }
    let listen = Listen { tcp: None, unix: Some(socket.clone()), tls: None };
    match telemetry::serve(endpoints(), &listen, shutdown.clone()).await {
        Ok(_) => tracing::info!(socket = %socket.display(), "metrics and health endpoints listening"),
        Err(e) => tracing::warn!(error = &e as &dyn std::error::Error, "metrics and health endpoints are not served"),
    }
    shutdown.cancelled().await;
    // A socket left behind would read as "not running" rather than missing.
    let _ = std::fs::remove_file(&socket);
}

/// Pod networking is up: the scrape reads the node's figures from `sources`, the node's address
/// is served (TLS with client certificates) and the datapath check runs until `shutdown`.
pub async fn start(sources: Sources, tcp: Option<SocketAddr>, shutdown: CancellationToken) {
    let health = TELEMETRY.health.clone();
    let bpf_dir = sources.bpf_dir.clone();
    health.set(CHECK_POD_NETWORK, true, format!("pod CIDR {}", sources.pod_cidr));
    if bpf_dir.is_none() {
        health.set(CHECK_SERVICES, true, "off (no kube-proxy replacement)");
        health.set(CHECK_DATAPATH, true, "off (no kube-proxy replacement)");
    }
    *SOURCES.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sources);
    if tcp.is_some() {
        let listen = Listen { tcp, unix: None, tls: telemetry::tls::TlsFiles::from_env() };
        if let Err(e) = telemetry::serve(endpoints(), &listen, shutdown.clone()).await {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "metrics and health endpoints are not served on the node's address"
            );
        }
    }
    match bpf_dir {
        Some(dir) => check_datapath(&health, &dir, &shutdown).await,
        None => shutdown.cancelled().await,
    }
}

/// The endpoints over the process's one registry.
fn endpoints() -> Endpoints {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(registry);
    let metrics = Arc::new(|| {
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, &REGISTRY) {
            Ok(()) => text,
            Err(e) => format!("# encoding failed: {e}\n# EOF\n"),
        }
    });
    Endpoints { metrics, health: TELEMETRY.health.clone() }
}

/// Keeps the datapath check in line with the programs attached (pinned links) until `shutdown`.
async fn check_datapath(health: &Health, dir: &std::path::Path, shutdown: &CancellationToken) {
    let mut tick = tokio::time::interval(DATAPATH_CHECK);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let links = datapath::inventory::link_pins(dir);
        if links > 0 {
            health.set(CHECK_DATAPATH, true, format!("{links} programs attached"));
        } else {
            health.set(CHECK_DATAPATH, false, format!("no programs attached under {}", dir.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_fill_conntrack_nat_and_arp_replies_from_the_inventory() {
        let maps = [
            MapCount { name: datapath::abi::MAP_CT.into(), entries: 100, max_entries: 400 },
            MapCount { name: datapath::abi::MAP_SNAT.into(), entries: 3, max_entries: 0 },
        ];
        let row = |responses| L2Row { ip: "192.168.10.211".parse().unwrap(), ifindex: 2, mac: [0; 6], responses };
        let families = datapath_families(&maps, 7, &[row(4), row(5)]);
        let get = |name: &str| families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name}"));
        let ct = vec![("map_name".to_string(), datapath::abi::MAP_CT.to_string())];
        assert!(get("bpf_map_pressure").samples.contains(&(ct.clone(), 0.25)));
        assert!(get("bpf_map_pressure").samples.iter().all(|(_, v)| v.is_finite()), "no division by zero");
        assert!(get("bpf_map_capacity").samples.contains(&(ct, 400.0)));
        assert_eq!(get("conntrack_entries").samples[0].1, 100.0);
        assert_eq!(get("nat_entries").samples[0].1, 3.0);
        assert_eq!(get("datapath_programs_attached").samples[0].1, 7.0);
        assert_eq!(get("l2_announcements").samples[0].1, 2.0);
        assert_eq!((get("l2_arp_replies").kind, get("l2_arp_replies").samples[0].1), (ScrapedKind::Counter, 9.0));
    }

    #[test]
    fn forwards_by_point_and_drops_by_reason_with_the_losses() {
        let mut c = DatapathCounters::default();
        c.forwards.push((datapath::ObservationPoint::ToOverlay, datapath::Count { packets: 5, bytes: 500 }));
        c.drops.push((datapath::DropReason::NO_SERVICE, datapath::Count { packets: 2, bytes: 120 }));
        c.events_lost = 7;
        let families = packet_families(Some(&c));
        let get = |name: &str| families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name}"));
        let point = vec![("point".to_string(), "to-overlay".to_string())];
        assert_eq!(get("forward_count").samples, [(point.clone(), 5.0)]);
        assert_eq!(get("forward_bytes").samples, [(point, 500.0)]);
        let reason = vec![("reason".to_string(), "Service backend not found".to_string())];
        assert_eq!(get("drop_count").samples, [(reason, 2.0)]);
        assert!(get("flow_events_lost").samples[0].1 >= 7.0);
        let none = packet_families(None);
        assert!(none.iter().take(4).all(|f| f.samples.is_empty()), "declared, without samples");
    }

    #[test]
    fn the_flow_buffer_reports_its_fill() {
        let status = FlowHubStatus { num_flows: 12, max_flows: 4096, seen_flows: 40, ..FlowHubStatus::default() };
        let values: Vec<(&str, f64)> = flow_buffer_families(&status).iter().map(|f| (f.name, f.samples[0].1)).collect();
        assert_eq!(
            values,
            [
                ("flow_buffer_flows", 12.0),
                ("flow_buffer_capacity", 4096.0),
                ("flows_seen", 40.0),
                ("flow_events_undecodable", 0.0)
            ]
        );
    }

    #[test]
    fn ipam_capacity_leaves_out_network_broadcast_and_router() {
        let f = ipam_families(5, "172.20.1.0/24".parse().unwrap());
        assert_eq!((f[0].samples[0].1, f[1].samples[0].1), (5.0, 253.0));
    }
}
