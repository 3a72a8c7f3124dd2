//! L2 announcements on this node: which LoadBalancer and external IPs it answers ARP for.
//!
//! Every agent runs the same pure assignment ([`l2::assign`]) over the same inputs and so agrees,
//! without talking about Services, on one owner per IP: the live, eligible node with the highest
//! rendezvous score. The inputs are the cluster's objects (Services, EndpointSlices, policies,
//! Nodes; from informers, so they stay while the datastore is down) and the live set, which comes
//! from heartbeats between the agents ([`crate::heartbeat_socket`]), not from the datastore. The
//! result goes to the BPF responder map (with gratuitous ARP for what this node takes over), to
//! `l2-announce.json` in the state dir (`cilia dbg NODE db show l2-announce`), and to the lease
//! publisher ([`crate::l2_leases`]), which writes the `cilium-l2announce-*` Leases only when
//! ownership changes: nothing is written per Service in steady state.
//!
//! Timing: heartbeats every `interval`; a peer silent for `dead_after` is out. The responder's
//! liveness gate is `dead_after - interval`, so a hung agent's node stops answering before the
//! others take over. A graceful stop clears this node's entries first and then says it is
//! leaving, so the next owner starts only after this one stopped: no moment with two answers.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use api::error::Chain;
use api::{Object, kinds};
use datapath::L2Entry;
use l2::{Assignment, CompiledPolicy, Heartbeat, Liveness, LivenessConfig, ServiceInfo, ServiceKey};
use netconf::Netconf;
use serde::Serialize;
use store::{Informer, Store, reconcile::sleep_until_some};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    datapath_worker::DatapathHandle,
    heartbeat_key,
    heartbeat_socket::HeartbeatSocket,
    l2_leases,
    node_view::NodeView,
    own_interfaces::{self, OwnInterface},
};

/// Object changes arriving within this window are handled by one pass. Liveness changes are
/// handled at once: they are what failover waits for.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// How often the node's own devices are looked at (link state, addresses).
const RESCAN: Duration = Duration::from_secs(1);
/// Gratuitous ARP after a takeover: at once, then repeated for receivers that missed it.
const ANNOUNCE_AT: [Duration; 4] =
    [Duration::ZERO, Duration::from_millis(250), Duration::from_secs(1), Duration::from_secs(2)];
/// The table `cilia dbg NODE db show l2-announce` prints.
pub const TABLE_FILE: &str = "l2-announce.json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Config {
    pub heartbeat_interval: Duration,
    pub dead_after: Duration,
    pub port: u16,
    /// The agent's `--devices`; empty = auto-detected, as for the datapath.
    pub devices: Vec<String>,
    /// Send gratuitous ARP / unsolicited NA on takeover (`enable-l2-neigh-discovery`).
    pub neigh_discovery: bool,
    /// Where the announcement table is written.
    pub state_dir: PathBuf,
}

impl L2Config {
    fn liveness(&self) -> LivenessConfig {
        LivenessConfig {
            interval: self.heartbeat_interval,
            dead_after: self.dead_after,
            // A joining node waits as long as a dead one takes to leave: by then every peer has
            // heard it, whatever the order of their timers.
            join_delay: self.dead_after,
        }
    }

    /// The responder answers only this long after the agent's last refresh.
    fn responder_max_age(&self) -> Duration {
        self.dead_after.saturating_sub(self.heartbeat_interval).max(self.heartbeat_interval)
    }
}

/// One row of the announcement table file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TableRow {
    pub ip: IpAddr,
    pub interface: String,
    pub origins: Vec<String>,
}

/// What this node's heartbeat says, kept by the announcer and sent by [`send_beats`].
#[derive(Debug, Clone, PartialEq, Default)]
struct BeatState {
    ready: bool,
    interfaces: Vec<l2::Interface>,
    peers: Vec<SocketAddr>,
}

/// Sends the heartbeat every `interval` on its own task, so that nothing the announcer waits
/// for (the datapath's lock, a large reassignment) can make this node look dead.
async fn send_beats(
    socket: Arc<HeartbeatSocket>,
    node: String,
    incarnation: u64,
    interval: Duration,
    mut state: watch::Receiver<BeatState>,
    seq: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // At every interval, and at once when readiness or interfaces change.
        tokio::select! {
            _ = tick.tick() => {}
            changed = state.changed() => if changed.is_err() { return },
        }
        let (beat, peers) = {
            let s = state.borrow_and_update();
            let beat = Heartbeat {
                node: node.clone(),
                incarnation,
                seq: seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                ready: s.ready,
                leaving: false,
                interfaces: s.interfaces.clone(),
            };
            (beat, s.peers.clone())
        };
        socket.send(&beat, &peers).await;
    }
}

/// The parsed cluster objects, rebuilt only when an informer reports a change.
struct Parsed {
    services: Vec<ServiceInfo>,
    policies: Vec<CompiledPolicy>,
    node_labels: BTreeMap<String, BTreeMap<String, String>>,
    peers: Vec<SocketAddr>,
}

/// Runs L2 announcements on this node until `shutdown`, then hands over.
pub async fn run(
    store: Arc<dyn Store>,
    node: String,
    config: L2Config,
    datapath: DatapathHandle,
    unreachable: watch::Sender<BTreeSet<String>>,
    shutdown: CancellationToken,
) {
    let key = loop {
        match heartbeat_key::get_or_create(store.as_ref()).await {
            Ok(k) => break k,
            Err(e) => tracing::warn!(error = %Chain(&e), "cannot read the heartbeat key; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return,
        }
    };
    let socket = match HeartbeatSocket::bind(config.port, key).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(port = config.port, error = %Chain(&e), "cannot open the heartbeat socket; L2 announcements are off");
            return;
        }
    };
    let kernel = match Netconf::current() {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %Chain(&e), "cannot open netlink; L2 announcements are off");
            return;
        }
    };
    let (beats_tx, beats_rx) = mpsc::channel(1024);
    let receiver = tokio::spawn(receive(socket.clone(), beats_tx));
    let (holders_tx, holders_rx) = watch::channel(None);
    let publisher = tokio::spawn(l2_leases::publish(store.clone(), node.clone(), holders_rx, shutdown.clone()));

    let outputs = Outputs { holders: holders_tx, unreachable };
    let mut announcer = Announcer::new(store, node, config, datapath, socket, kernel, outputs);
    let sender = tokio::spawn(send_beats(
        announcer.socket.clone(),
        announcer.node.clone(),
        announcer.incarnation,
        announcer.config.heartbeat_interval,
        announcer.beat_state.subscribe(),
        announcer.seq.clone(),
    ));
    announcer.follow(beats_rx, &shutdown).await;
    sender.abort();
    announcer.hand_over().await;
    receiver.abort();
    let _ = publisher.await;
}

async fn receive(socket: Arc<HeartbeatSocket>, beats: mpsc::Sender<Heartbeat>) {
    loop {
        match socket.recv().await {
            Ok((beat, _from)) => {
                if beats.send(beat).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "receiving heartbeats failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Where the announcer's results go besides the datapath.
struct Outputs {
    /// Service → owner, for the lease publisher.
    holders: watch::Sender<Option<BTreeMap<ServiceKey, String>>>,
    /// Peers gone silent, for the service controller.
    unreachable: watch::Sender<BTreeSet<String>>,
}

struct Announcer {
    node: String,
    config: L2Config,
    datapath: DatapathHandle,
    socket: Arc<HeartbeatSocket>,
    kernel: Netconf,
    holders: watch::Sender<Option<BTreeMap<ServiceKey, String>>>,
    /// Peers gone silent, for the service controller ([`crate::services::BuildOptions`]).
    unreachable: watch::Sender<BTreeSet<String>>,
    services: Informer,
    slices: Informer,
    policies: Informer,
    nodes: Informer,
    liveness: Liveness,
    incarnation: u64,
    seq: Arc<std::sync::atomic::AtomicU64>,
    beat_state: watch::Sender<BeatState>,
    own: Vec<OwnInterface>,
    /// The own devices were looked at once.
    scanned: bool,
    parsed: Option<Parsed>,
    readable: api::LastReadable<api::types::Service>,
    /// The candidate set the last assignment used.
    candidates: BTreeSet<String>,
    /// What the responder map holds, as last synced.
    applied: Option<Vec<L2Entry>>,
    table: Vec<TableRow>,
    /// Takeovers still announcing; a newer takeover of the same key replaces the older.
    announcing: BTreeMap<(IpAddr, u32), tokio::task::JoinHandle<()>>,
}

impl Announcer {
    fn new(
        store: Arc<dyn Store>,
        node: String,
        config: L2Config,
        datapath: DatapathHandle,
        socket: Arc<HeartbeatSocket>,
        kernel: Netconf,
        outputs: Outputs,
    ) -> Self {
        let liveness = Liveness::new(node.as_str(), config.liveness(), std::time::Instant::now())
            .expect("the agent's configuration checked the heartbeat timing");
        Announcer {
            services: Informer::start(store.clone(), &kinds::SERVICE, None),
            slices: Informer::start(store.clone(), &kinds::ENDPOINT_SLICE, None),
            policies: Informer::start(store.clone(), &kinds::L2_ANNOUNCEMENT_POLICY, None),
            nodes: Informer::start(store, &kinds::NODE, None),
            node,
            config,
            datapath,
            socket,
            kernel,
            holders: outputs.holders,
            unreachable: outputs.unreachable,
            liveness,
            // Grows across restarts, so that peers tell a restart from a replay.
            incarnation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            seq: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            beat_state: watch::Sender::new(BeatState::default()),
            own: Vec::new(),
            scanned: false,
            parsed: None,
            readable: api::LastReadable::default(),
            candidates: BTreeSet::new(),
            applied: None,
            table: Vec::new(),
            announcing: BTreeMap::new(),
        }
    }

    fn synced(&self) -> bool {
        self.services.is_synced() && self.slices.is_synced() && self.policies.is_synced() && self.nodes.is_synced()
    }

    /// Ready to own IPs: the cluster's objects are known and the own devices were looked at.
    fn ready(&self) -> bool {
        self.synced() && self.scanned
    }

    async fn follow(&mut self, mut beats: mpsc::Receiver<Heartbeat>, shutdown: &CancellationToken) {
        let mut subs =
            [self.services.subscribe(), self.slices.subscribe(), self.policies.subscribe(), self.nodes.subscribe()];
        let mut tick = tokio::time::interval(self.config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rescan = tokio::time::interval(RESCAN);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut due: Option<Instant> = None;
        loop {
            let deadline = self.liveness.next_deadline().map(Instant::from_std);
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    self.publish_beat_state();
                    self.refresh_responder().await;
                    self.reassign_if_candidates_changed().await;
                }
                _ = rescan.tick() => {
                    match own_interfaces::scan(&self.kernel, &self.config.devices).await {
                        Ok(own) if own != self.own || !self.scanned => {
                            self.scanned = true;
                            tracing::info!(devices = ?own.iter().map(|i| &i.name).collect::<Vec<_>>(), "devices for L2 announcements changed");
                            self.own = own;
                            due.get_or_insert_with(Instant::now);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %Chain(&e), "listing this node's devices failed"),
                    }
                }
                Some(beat) = beats.recv() => {
                    if self.liveness.on_heartbeat(&beat, std::time::Instant::now()).is_change() {
                        self.assign().await;
                    }
                }
                () = sleep_until_some(deadline) => {
                    // Heartbeats that queued while this task was busy count first: a late
                    // reader must not declare a live peer dead.
                    let mut changed = false;
                    while let Ok(beat) = beats.try_recv() {
                        changed |= self.liveness.on_heartbeat(&beat, std::time::Instant::now()).is_change();
                    }
                    changed |= !self.liveness.expire(std::time::Instant::now()).is_empty();
                    if changed {
                        self.assign().await;
                    }
                }
                open = recv_any(&mut subs) => {
                    if !open {
                        return;
                    }
                    self.parsed = None;
                    due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                }
                () = sleep_until_some(due) => {
                    due = None;
                    if self.synced() {
                        self.assign().await;
                    }
                }
            }
        }
    }

    /// Updates what the heartbeat sender says about this node.
    fn publish_beat_state(&self) {
        let state = BeatState {
            ready: self.ready(),
            interfaces: self.own.iter().map(OwnInterface::report).collect(),
            peers: self.parsed.as_ref().map_or_else(|| self.peers(), |p| p.peers.clone()),
        };
        self.beat_state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }

    /// Every other node's heartbeat address, from the Nodes' InternalIPs.
    fn peers(&self) -> Vec<SocketAddr> {
        self.nodes
            .snapshot()
            .iter()
            .filter(|o| o.name() != self.node)
            .filter_map(|o| NodeView::of(o).internal_ip)
            .map(|ip| SocketAddr::new(IpAddr::V4(ip), self.config.port))
            .collect()
    }

    /// Keeps the responder answering while this agent runs and owns something.
    async fn refresh_responder(&self) {
        if self.applied.as_ref().is_none_or(Vec::is_empty) {
            return;
        }
        let max_age = self.config.responder_max_age();
        let result = self.datapath.try_call(move |dp| dp.refresh_l2_liveness(max_age)).await;
        if let Err(e) = result {
            tracing::warn!(error = %Chain(&e), "refreshing the ARP responder's liveness failed");
        }
    }

    /// The candidate set moves with time alone (a joining node's delay passes): reassign when it did.
    async fn reassign_if_candidates_changed(&mut self) {
        if !self.synced() {
            return;
        }
        let now = self.liveness.candidates(std::time::Instant::now(), self.ready());
        if now != self.candidates {
            self.assign().await;
        }
    }

    fn parse(&mut self) -> &Parsed {
        if self.parsed.is_none() {
            // A Service that stops parsing keeps being announced as it last read.
            let mut services: Vec<ServiceInfo> =
                self.readable.read(&self.services.snapshot()).iter().map(ServiceInfo::from_service).collect();
            l2::service::fill_local_backends_from_objects(&mut services, &self.slices.snapshot());
            // A policy with problems is not applied; the operator reports them in its status.
            let policies = self.policies.snapshot().iter().filter_map(|o| CompiledPolicy::compile(o).ok()).collect();
            let node_labels = self
                .nodes
                .snapshot()
                .iter()
                .map(|o: &Object| (o.name().to_string(), o.metadata.labels.clone()))
                .collect();
            self.parsed = Some(Parsed { services, policies, node_labels, peers: self.peers() });
        }
        self.parsed.as_ref().expect("parsed above")
    }

    /// Computes the assignment and applies this node's part of it.
    async fn assign(&mut self) {
        let now = std::time::Instant::now();
        let silent: BTreeSet<String> = self.liveness.silent_peers().map(str::to_string).collect();
        self.unreachable.send_if_modified(|s| {
            let changed = *s != silent;
            *s = silent;
            changed
        });
        self.parse();
        let ready = self.ready();
        let candidates = self.liveness.candidates(now, ready);
        let mut interfaces = self.liveness.interfaces();
        interfaces.insert(self.node.clone(), self.own.iter().map(OwnInterface::report).collect());
        let parsed = self.parsed.as_ref().expect("parsed above");
        let assignment = l2::assign(&l2::assignment::Inputs {
            services: &parsed.services,
            policies: &parsed.policies,
            nodes: &parsed.node_labels,
            interfaces: &interfaces,
            candidates: &candidates,
        });
        self.candidates = candidates;
        self.apply(&assignment).await;
    }

    async fn apply(&mut self, assignment: &Assignment) {
        let wanted = assignment.entries_for(&self.node);
        let mut entries = Vec::with_capacity(wanted.len());
        for e in &wanted {
            match self.own.iter().find(|i| i.name == e.interface) {
                Some(dev) => entries.push(L2Entry { ip: e.ip, ifindex: dev.index, mac: dev.mac }),
                None => tracing::warn!(ip = %e.ip, interface = %e.interface, "no such device here; not announced"),
            }
        }
        if self.applied.as_ref() != Some(&entries) {
            let (wanted, max_age) = (entries.clone(), self.config.responder_max_age());
            let stats = self
                .datapath
                .try_call(move |dp| {
                    let stats = dp.sync_l2(&wanted);
                    // Answer at once: the liveness gate may have lapsed while nothing was owned.
                    if stats.is_ok() && !wanted.is_empty() {
                        let _ = dp.refresh_l2_liveness(max_age);
                    }
                    stats
                })
                .await;
            match stats {
                Ok(stats) => {
                    crate::metrics::l2_ownership_changed(stats.added.len(), stats.removed);
                    if !stats.added.is_empty() || stats.removed > 0 {
                        tracing::info!(
                            added = stats.added.len(),
                            removed = stats.removed,
                            owned = entries.len(),
                            "L2 announcements changed"
                        );
                    }
                    // An address that moved away must not be announced from here any more:
                    // a late repeat would point neighbours back at this node.
                    self.announcing.retain(|key, task| {
                        let kept = entries.iter().any(|e| (e.ip, e.ifindex) == *key);
                        if !kept {
                            task.abort();
                        }
                        kept
                    });
                    for key in stats.added.iter().chain(&stats.updated) {
                        self.announce(key.ip, key.ifindex);
                    }
                    self.applied = Some(entries);
                }
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "programming the ARP responder failed; retrying at the next change")
                }
            }
        }
        let table: Vec<TableRow> = wanted
            .into_iter()
            .map(|e| TableRow {
                ip: e.ip,
                interface: e.interface,
                origins: e.origins.iter().map(ToString::to_string).collect(),
            })
            .collect();
        if table != self.table {
            self.write_table(&table);
            self.table = table;
        }
        let holders = assignment.lease_holders();
        if self.holders.borrow().as_ref() != Some(&holders) {
            self.holders.send_replace(Some(holders));
        }
    }

    /// Gratuitous ARP (or an unsolicited NA) for a key this node just took over, repeated.
    fn announce(&mut self, ip: IpAddr, ifindex: u32) {
        if !self.config.neigh_discovery {
            return;
        }
        let Some(mac) = self.own.iter().find(|i| i.index == ifindex).map(|i| i.mac) else { return };
        let task = tokio::spawn(async move {
            let start = Instant::now();
            for at in ANNOUNCE_AT {
                tokio::time::sleep_until(start + at).await;
                let sent = match ip {
                    IpAddr::V4(v4) => datapath::neigh_announce::send_gratuitous_arp(ifindex, mac, v4),
                    IpAddr::V6(v6) => datapath::neigh_announce::send_unsolicited_na(ifindex, mac, v6),
                };
                if let Err(e) = sent {
                    // The map entry is in place either way; receivers still get answers.
                    tracing::warn!(%ip, ifindex, error = %Chain(&e), "gratuitous announcement not sent");
                }
            }
        });
        if let Some(old) = self.announcing.insert((ip, ifindex), task) {
            old.abort();
        }
        self.announcing.retain(|_, t| !t.is_finished());
    }

    fn write_table(&self, rows: &[TableRow]) {
        let path = self.config.state_dir.join(TABLE_FILE);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(rows).expect("rows serialize");
        let written = std::fs::create_dir_all(&self.config.state_dir)
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %Chain(&e), "cannot write the L2 announcement table");
        }
    }

    /// The graceful stop: stop answering, then tell the others, so that the next owner starts
    /// only after this node stopped.
    async fn hand_over(&mut self) {
        for (_, task) in std::mem::take(&mut self.announcing) {
            task.abort();
        }
        let cleared = self.datapath.try_call(|dp| dp.sync_l2(&[])).await;
        if let Err(e) = cleared {
            tracing::warn!(error = %Chain(&e), "clearing the ARP responder failed; it stops answering when its liveness lapses");
        }
        self.write_table(&[]);
        let beat = Heartbeat {
            node: self.node.clone(),
            incarnation: self.incarnation,
            seq: self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            ready: false,
            leaving: true,
            interfaces: Vec::new(),
        };
        let peers = self.peers();
        // Twice: a lost datagram would turn the hand-over into a failover.
        self.socket.send(&beat, &peers).await;
        self.socket.send(&beat, &peers).await;
        tracing::info!("L2 announcements handed over");
    }
}

/// The next change of any informer; false once one has stopped (the agent is stopping).
async fn recv_any(subs: &mut [store::Subscription; 4]) -> bool {
    let [a, b, c, d] = subs;
    tokio::select! {
        c = a.recv() => c.is_some(),
        c = b.recv() => c.is_some(),
        c = c.recv() => c.is_some(),
        c = d.recv() => c.is_some(),
    }
}

/// Reads the table an agent wrote, for `cilia dbg NODE db show l2-announce`.
pub fn read_table(state_dir: &std::path::Path) -> std::io::Result<Vec<TableRow>> {
    let text = std::fs::read_to_string(state_dir.join(TABLE_FILE))?;
    serde_json::from_str(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
