//! The control-plane cost of L2 announcements, by simulation: 100 agents running the pure logic of
//! this crate (real heartbeat encoding and MAC checks, real liveness, real assignment, real Lease
//! planning) against an in-memory datastore that counts every request.
//!
//! Phases, for S Services with one LoadBalancer IP each and N nodes under one policy:
//! (a) initial convergence: the agents start, hear each other, join, and publish Leases;
//! (b) steady state for 60 simulated seconds: datastore requests (must be 0 writes) and heartbeat
//!     datagrams per node (must not depend on S: shown for 1 000 and 10 000 Services);
//! (c) one node fails: Lease writes until every agent has reconverged (about S/N).
//!
//! Then Cilium's cost for the same S and N by its formulas (l2.md §2.7), an agent's memory for
//! 10 000 announced IPs and the time of one full assignment.
//!
//! `cargo run --release -p l2 --example l2-control-plane-sim`

use std::{
    alloc::System,
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use api::{Object, ObjectRef, ResourceKind, Selector, kinds};
use async_trait::async_trait;
use l2::{
    Assignment, CompiledPolicy, Heartbeat, Inputs, Interface, Liveness, LivenessConfig, ServiceInfo,
    lease::{self, LeaseOp},
};
use serde_json::json;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use store::{LeaseId, MemoryStore, ObjectList, Store, WatchStream};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const NODES: usize = 100;
const KEY: &[u8] = b"simulated cluster heartbeat key, 32+ bytes";
/// The simulation's clock resolution.
const TICK: Duration = Duration::from_millis(25);

/// Datastore requests, by verb.
#[derive(Default)]
struct Counts {
    gets: AtomicU64,
    lists: AtomicU64,
    creates: AtomicU64,
    updates: AtomicU64,
    deletes: AtomicU64,
    watches: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Snapshot {
    gets: u64,
    lists: u64,
    creates: u64,
    updates: u64,
    deletes: u64,
    watches: u64,
}

impl Snapshot {
    fn writes(&self) -> u64 {
        self.creates + self.updates + self.deletes
    }
    fn reads(&self) -> u64 {
        self.gets + self.lists
    }
    fn since(&self, before: &Snapshot) -> Snapshot {
        Snapshot {
            gets: self.gets - before.gets,
            lists: self.lists - before.lists,
            creates: self.creates - before.creates,
            updates: self.updates - before.updates,
            deletes: self.deletes - before.deletes,
            watches: self.watches - before.watches,
        }
    }
}

/// A [`Store`] that counts requests and delegates them to a [`MemoryStore`].
struct CountingStore {
    inner: MemoryStore,
    counts: Counts,
}

impl CountingStore {
    fn snapshot(&self) -> Snapshot {
        let c = &self.counts;
        Snapshot {
            gets: c.gets.load(Ordering::Relaxed),
            lists: c.lists.load(Ordering::Relaxed),
            creates: c.creates.load(Ordering::Relaxed),
            updates: c.updates.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
            watches: c.watches.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, object: &ObjectRef) -> store::Result<Option<Object>> {
        bump(&self.counts.gets);
        self.inner.get(object).await
    }
    async fn list(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> store::Result<ObjectList> {
        bump(&self.counts.lists);
        self.inner.list(kind, namespace, selector).await
    }
    async fn create_with_lease(&self, object: Object, lease: Option<LeaseId>) -> store::Result<Object> {
        bump(&self.counts.creates);
        self.inner.create_with_lease(object, lease).await
    }
    async fn update_with_lease(&self, object: Object, lease: Option<LeaseId>) -> store::Result<Object> {
        bump(&self.counts.updates);
        self.inner.update_with_lease(object, lease).await
    }
    async fn delete(&self, object: &ObjectRef, precondition: Option<&str>) -> store::Result<Option<Object>> {
        bump(&self.counts.deletes);
        self.inner.delete(object, precondition).await
    }
    async fn watch(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        after_revision: i64,
    ) -> store::Result<WatchStream> {
        bump(&self.counts.watches);
        self.inner.watch(kind, namespace, after_revision).await
    }
    async fn grant_lease(&self, ttl: Duration) -> store::Result<LeaseId> {
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> store::Result<Duration> {
        self.inner.keep_alive(lease).await
    }
    async fn revoke_lease(&self, lease: LeaseId) -> store::Result<()> {
        self.inner.revoke_lease(lease).await
    }
    async fn revision(&self) -> store::Result<i64> {
        self.inner.revision().await
    }
    async fn compact(&self, revision: i64) -> store::Result<()> {
        self.inner.compact(revision).await
    }
    fn fenced(&self, fence: store::Fence) -> std::sync::Arc<dyn Store> {
        // The agents the simulation runs write unfenced; only the operator fences its writes.
        self.inner.fenced(fence)
    }
}

fn node_name(i: usize) -> String {
    format!("node-{i:03}")
}

fn node_interfaces(i: usize) -> Vec<Interface> {
    let addr = format!("192.168.{}.{}/16", i / 250, i % 250 + 1);
    vec![Interface::new("eth0", true, vec![addr.parse().expect("a CIDR")])]
}

fn service_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc0a8_6400u32 + i as u32))
}

/// The cluster's objects: S LoadBalancer Services, N Nodes, one policy.
async fn seed(store: &MemoryStore, services: usize) {
    for i in 0..NODES {
        let mut node = Object::new(&kinds::NODE, None, &node_name(i));
        node.metadata.labels.insert(api::labels::HOSTNAME.into(), node_name(i));
        store.create(node).await.expect("create node");
    }
    let mut policy = Object::new(&kinds::L2_ANNOUNCEMENT_POLICY, None, "lb");
    policy.body.insert("spec".into(), json!({"loadBalancerIPs": true, "interfaces": ["^eth0$"]}));
    store.create(policy).await.expect("create policy");
    for i in 0..services {
        let mut svc = Object::new(&kinds::SERVICE, Some("default"), &format!("svc-{i:05}"));
        svc.body.insert("spec".into(), json!({"type": "LoadBalancer", "ports": [{"port": 80}]}));
        svc.body.insert("status".into(), json!({"loadBalancer": {"ingress": [{"ip": service_ip(i).to_string()}]}}));
        store.create(svc).await.expect("create service");
    }
}

/// What every agent reads from the datastore (identical on every node).
struct ClusterView {
    services: Vec<ServiceInfo>,
    policies: Vec<CompiledPolicy>,
    nodes: BTreeMap<String, BTreeMap<String, String>>,
}

/// One agent's start-up reads: a list (then a watch) of each kind it follows.
async fn agent_reads(store: &CountingStore, parse: bool) -> Option<ClusterView> {
    let all = Selector::everything();
    let services = store.list(&kinds::SERVICE, None, &all).await.expect("list");
    let slices = store.list(&kinds::ENDPOINT_SLICE, None, &all).await.expect("list");
    let policies = store.list(&kinds::L2_ANNOUNCEMENT_POLICY, None, &all).await.expect("list");
    let nodes = store.list(&kinds::NODE, None, &all).await.expect("list");
    let leases = store.list(&kinds::LEASE, Some(lease::NAMESPACE), &all).await.expect("list");
    for (kind, ns, rev) in [
        (&kinds::SERVICE, None, services.revision),
        (&kinds::ENDPOINT_SLICE, None, slices.revision),
        (&kinds::L2_ANNOUNCEMENT_POLICY, None, policies.revision),
        (&kinds::NODE, None, nodes.revision),
        (&kinds::LEASE, Some(lease::NAMESPACE), leases.revision),
    ] {
        // Opened and dropped: what is measured is requests, and watch events are pushed to every
        // open watch (their fan-out is reported separately).
        drop(store.watch(kind, ns, rev).await.expect("watch"));
    }
    if !parse {
        return None;
    }
    let mut infos: Vec<ServiceInfo> =
        services.items.iter().map(|o| ServiceInfo::from_object(o).expect("a Service")).collect();
    l2::service::fill_local_backends_from_objects(&mut infos, &slices.items);
    let (compiled, problems) = l2::policy::compile_all(&policies.items);
    assert!(problems.is_empty());
    Some(ClusterView {
        services: infos,
        policies: compiled,
        nodes: nodes.items.iter().map(|o| (o.name().to_string(), o.metadata.labels.clone())).collect(),
    })
}

struct Agent {
    name: String,
    index: usize,
    alive: bool,
    liveness: Liveness,
    incarnation: u64,
    seq: u64,
    /// Offset of this agent's heartbeat timer within the interval, in ticks.
    phase: u64,
    candidates: BTreeSet<String>,
    assignment: Option<Assignment>,
}

/// What one run of the simulation measured.
struct Figures {
    services: usize,
    convergence: Snapshot,
    convergence_time: Duration,
    steady: Snapshot,
    steady_secs: u64,
    datagrams_per_node_per_sec: f64,
    datagram_bytes: usize,
    rejected: u64,
    failover: Option<(Snapshot, Duration, usize)>,
    assigns: u64,
    /// Fewest and most IPs one node owns at the end.
    owned_range: (usize, usize),
    wall: Duration,
}

/// Runs the agents for S Services: convergence, `steady_secs` of steady state, then (if asked)
/// the failure of one node.
async fn run(services: usize, steady_secs: u64, fail_one: bool) -> Figures {
    let store = Arc::new(CountingStore { inner: MemoryStore::new(), counts: Counts::default() });
    seed(&store.inner, services).await;

    let config = LivenessConfig::default();
    let interval_ticks = (config.interval.as_nanos() / TICK.as_nanos()) as u64;
    // Simulated time starts here; the wall time of the run is measured from here too.
    let t0 = Instant::now();
    let at = |tick: u64| t0 + TICK * tick as u32;

    // Start-up reads of every agent; the parsed view is the same for all, so parse it once.
    let start = store.snapshot();
    let mut view = None;
    for i in 0..NODES {
        let v = agent_reads(&store, i == 0).await;
        view = view.or(v);
    }
    let view = view.expect("agent 0 parsed");
    let mut agents: Vec<Agent> = (0..NODES)
        .map(|i| Agent {
            name: node_name(i),
            index: i,
            alive: true,
            liveness: Liveness::new(node_name(i), config, at(0)).expect("valid config"),
            incarnation: 1,
            seq: 0,
            phase: (i as u64 * 7) % interval_ticks,
            candidates: BTreeSet::new(),
            assignment: None,
        })
        .collect();
    // Every agent's Lease informer converges to the stored Leases; one shared mirror stands for them.
    let mut leases: Vec<Object> = Vec::new();
    let all_interfaces: BTreeMap<String, Vec<Interface>> =
        (0..NODES).map(|i| (node_name(i), node_interfaces(i))).collect();

    let mut datagrams = 0u64;
    let mut datagram_bytes = 0usize;
    let mut rejected = 0u64;
    let mut assigns = 0u64;
    let mut in_flight: Vec<Vec<u8>> = Vec::new();
    let converge_by = 5_000 / TICK.as_millis() as u64;
    let steady_from = converge_by;
    let steady_to = steady_from + steady_secs * 1000 / TICK.as_millis() as u64;
    let fail_at = steady_to;
    let end = if fail_one { fail_at + 3_000 / TICK.as_millis() as u64 } else { steady_to + 1 };
    let victim = NODES / 2 - 8;

    let mut convergence = Snapshot::default();
    let mut convergence_time = Duration::ZERO;
    let mut steady_start = Snapshot::default();
    let mut steady = Snapshot::default();
    let mut steady_datagrams = 0u64;
    let mut fail_start = Snapshot::default();
    let mut last_change_after_failure = None;
    let mut moved = 0;

    for tick in 0..end {
        let now = at(tick);
        if tick == steady_from {
            steady_start = store.snapshot();
            steady_datagrams = datagrams;
        }
        if tick == steady_to {
            steady = store.snapshot().since(&steady_start);
            steady_datagrams = datagrams - steady_datagrams;
        }
        if fail_one && tick == fail_at {
            // A crash: no more heartbeats, no goodbye.
            agents[victim].alive = false;
            fail_start = store.snapshot();
        }
        // Deliver what was sent last tick (delay: one tick), to every other live agent.
        for bytes in in_flight.drain(..) {
            for agent in agents.iter_mut().filter(|a| a.alive) {
                match Heartbeat::decode(&bytes, KEY) {
                    Ok(hb) => {
                        agent.liveness.on_heartbeat(&hb, now);
                    }
                    Err(_) => rejected += 1,
                }
            }
        }
        // Send: each live agent, once per interval, to its N−1 peers.
        for agent in agents.iter_mut().filter(|a| a.alive && tick % interval_ticks == a.phase) {
            agent.seq += 1;
            let hb = Heartbeat {
                node: agent.name.clone(),
                incarnation: agent.incarnation,
                seq: agent.seq,
                ready: true,
                leaving: false,
                interfaces: node_interfaces(agent.index),
            };
            let bytes = hb.encode(KEY).expect("fits");
            datagram_bytes = bytes.len();
            datagrams += (NODES - 1) as u64;
            in_flight.push(bytes);
        }
        // Decide: an agent reassigns only when its candidates changed, then plans its Leases.
        for agent in agents.iter_mut().filter(|a| a.alive) {
            agent.liveness.expire(now);
            let candidates = agent.liveness.candidates(now, true);
            if candidates == agent.candidates && agent.assignment.is_some() {
                continue;
            }
            agent.candidates = candidates;
            let mut interfaces = agent.liveness.interfaces();
            interfaces.insert(agent.name.clone(), all_interfaces[&agent.name].clone());
            let assignment = l2::assign(&Inputs {
                services: &view.services,
                policies: &view.policies,
                nodes: &view.nodes,
                interfaces: &interfaces,
                candidates: &agent.candidates,
            });
            assigns += 1;
            if let Some(previous) = &agent.assignment
                && tick >= fail_at
                && agent.index == 0
            {
                moved = assignment.owner_changes(previous).len();
            }
            let ops = lease::plan_at(
                &agent.name,
                &assignment.lease_holders(),
                &leases,
                "2026-01-01T00:00:00Z",
                config.lease_duration_seconds(),
            );
            for op in ops {
                let written = match op {
                    LeaseOp::Create(o) => store.create(o).await.expect("create"),
                    LeaseOp::Update(o) => store.update(o).await.expect("update"),
                    LeaseOp::Delete { name, resource_version } => {
                        let r = ObjectRef::new(&kinds::LEASE, Some(lease::NAMESPACE), &name);
                        store.delete(&r, resource_version.as_deref()).await.expect("delete");
                        leases.retain(|l| l.name() != name);
                        continue;
                    }
                };
                match leases.iter_mut().find(|l| l.name() == written.name()) {
                    Some(slot) => *slot = written,
                    None => leases.push(written),
                }
                if tick >= fail_at {
                    last_change_after_failure = Some(tick);
                } else if tick < steady_from {
                    convergence_time = TICK * tick as u32;
                }
            }
            agent.assignment = Some(assignment);
        }
        if tick + 1 == converge_by {
            convergence = store.snapshot().since(&start);
            // Every Service published, each by its owner, and every agent agrees.
            assert_eq!(leases.len(), services, "every Service has its Lease");
            let reference = agents[0].assignment.as_ref().expect("assigned");
            assert!(agents.iter().all(|a| a.assignment.as_ref() == Some(reference)), "agents disagree");
        }
    }

    let failover = fail_one.then(|| {
        let writes = store.snapshot().since(&fail_start);
        let took = last_change_after_failure.map_or(Duration::ZERO, |t| TICK * (t - fail_at) as u32);
        // Every live agent agrees again, and the victim holds nothing.
        let live: Vec<&Agent> = agents.iter().filter(|a| a.alive).collect();
        let reference = live[0].assignment.as_ref().expect("assigned");
        assert!(live.iter().all(|a| a.assignment.as_ref() == Some(reference)), "agents disagree after failure");
        assert!(reference.entries_for(&node_name(victim)).is_empty());
        assert!(leases.iter().all(|l| lease::holder_of(l) != Some(node_name(victim).as_str())));
        (writes, took, moved)
    });
    let mut owned: BTreeMap<&str, usize> = BTreeMap::new();
    if let Some(a) = agents[0].assignment.as_ref() {
        for (_, owner) in a.owners() {
            *owned.entry(owner.unwrap_or("-")).or_default() += 1;
        }
    }
    let owned_range = (owned.values().min().copied().unwrap_or(0), owned.values().max().copied().unwrap_or(0));
    Figures {
        services,
        convergence,
        convergence_time,
        steady,
        steady_secs,
        datagrams_per_node_per_sec: steady_datagrams as f64 / steady_secs as f64 / NODES as f64,
        datagram_bytes,
        rejected,
        failover,
        assigns,
        owned_range,
        wall: t0.elapsed(),
    }
}

/// One agent's memory for S announced IPs: its inputs, the Assignment and its own entries, as
/// bytes still allocated after building them; and the time of one full assignment.
fn agent_memory_and_assign_time(services: usize) -> (usize, usize, usize, Duration) {
    let objects: Vec<Object> = (0..services)
        .map(|i| {
            let mut svc = Object::new(&kinds::SERVICE, Some("default"), &format!("svc-{i:05}"));
            svc.body.insert("spec".into(), json!({"type": "LoadBalancer"}));
            svc.body.insert("status".into(), json!({"loadBalancer": {"ingress": [{"ip": service_ip(i).to_string()}]}}));
            svc
        })
        .collect();
    let mut policy = Object::new(&kinds::L2_ANNOUNCEMENT_POLICY, None, "lb");
    policy.body.insert("spec".into(), json!({"loadBalancerIPs": true, "interfaces": ["^eth0$"]}));

    let region = Region::new(GLOBAL);
    let infos: Vec<ServiceInfo> = objects.iter().map(|o| ServiceInfo::from_object(o).expect("a Service")).collect();
    let policies = vec![CompiledPolicy::compile(&policy).expect("compiles")];
    let nodes: BTreeMap<String, BTreeMap<String, String>> =
        (0..NODES).map(|i| (node_name(i), [(api::labels::HOSTNAME.to_string(), node_name(i))].into())).collect();
    let interfaces: BTreeMap<String, Vec<Interface>> = (0..NODES).map(|i| (node_name(i), node_interfaces(i))).collect();
    let candidates: BTreeSet<String> = nodes.keys().cloned().collect();
    let inputs_bytes = live_bytes(&region);
    let inputs = Inputs {
        services: &infos,
        policies: &policies,
        nodes: &nodes,
        interfaces: &interfaces,
        candidates: &candidates,
    };
    let assignment = l2::assign(&inputs);
    let assignment_bytes = live_bytes(&region) - inputs_bytes;
    let entries = assignment.entries_for(&node_name(0));
    let entries_bytes = live_bytes(&region) - inputs_bytes - assignment_bytes;
    assert_eq!(assignment.len(), services);
    assert!(!entries.is_empty());

    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let a = l2::assign(&inputs);
            let took = t.elapsed();
            assert_eq!(a.len(), services);
            took
        })
        .collect();
    times.sort();
    (inputs_bytes, assignment_bytes, entries_bytes, times[2])
}

fn live_bytes(region: &Region<'_, System>) -> usize {
    let c = region.change();
    // Reallocations count only their net change, signed.
    let net = c.bytes_allocated as isize - c.bytes_deallocated as isize + c.bytes_reallocated;
    usize::try_from(net).unwrap_or(0)
}

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let wall = Instant::now();
    let config = LivenessConfig::default();
    println!("L2 announcements: control-plane cost by simulation");
    println!(
        "N = {NODES} agents, one policy, one LoadBalancer IP per Service; heartbeat every {:?}, dead after {:?}, join delay {:?}",
        config.interval, config.dead_after, config.join_delay
    );

    let big = run(10_000, 60, true).await;
    let small = run(1_000, 10, false).await;

    for f in [&big, &small] {
        println!();
        println!("S = {} Services", f.services);
        println!(
            "  (a) initial convergence: {} lease creates, {} updates, {} deletes; {} lists + {} watches at agent start ({} per agent), {} gets; last lease written {:.2} s after start",
            f.convergence.creates,
            f.convergence.updates,
            f.convergence.deletes,
            f.convergence.lists,
            f.convergence.watches,
            (f.convergence.lists + f.convergence.watches) / NODES as u64,
            f.convergence.gets,
            f.convergence_time.as_secs_f64()
        );
        println!(
            "  (b) steady state, {} s: {} writes ({:.2}/s), {} reads ({:.2}/s) to the datastore; heartbeats: {:.0} datagrams/s sent per node ({} B each, {:.1} kB/s), {} rejected",
            f.steady_secs,
            f.steady.writes(),
            f.steady.writes() as f64 / f.steady_secs as f64,
            f.steady.reads(),
            f.steady.reads() as f64 / f.steady_secs as f64,
            f.datagrams_per_node_per_sec,
            f.datagram_bytes,
            f.datagrams_per_node_per_sec * f.datagram_bytes as f64 / 1000.0,
            f.rejected
        );
        if let Some((writes, took, moved)) = &f.failover {
            println!(
                "  (c) one node fails: {} IPs moved, {} lease writes ({} updates, {} creates, {} deletes; S/N = {}), {} reads; last write {:.2} s after the crash",
                moved,
                writes.writes(),
                writes.updates,
                writes.creates,
                writes.deletes,
                f.services / NODES,
                writes.reads(),
                took.as_secs_f64()
            );
            println!(
                "      lease write fan-out to watchers: {} events (each write reaches the N agents' Lease watches)",
                writes.writes() * NODES as u64
            );
        }
        println!(
            "  IPs owned per node at the end: {} to {}; full assignments computed (all agents, all phases): {}; wall time {:.1} s",
            f.owned_range.0,
            f.owned_range.1,
            f.assigns,
            f.wall.as_secs_f64()
        );
    }
    assert_eq!(big.steady.writes(), 0, "steady state must not write");
    assert_eq!(big.steady.reads(), 0, "steady state must not poll");
    assert!((big.datagrams_per_node_per_sec - small.datagrams_per_node_per_sec).abs() < 1e-9, "heartbeats depend on S");

    println!();
    let (s, n, rp) = (10_000.0f64, NODES as f64, 2.0f64);
    let cilium_writes = s / rp;
    let cilium_reads = s * (n - 1.0) / (1.6 * rp);
    println!(
        "Cilium for S = 10000, N = {NODES} (l2.md §2.7, RP = 2 s): S/RP = {cilium_writes:.0} lease writes/s + S(N-1)/(1.6 RP) = {cilium_reads:.0} GETs/s"
    );
    println!(
        "  over 60 s of steady state: Cilium {:.0} datastore requests, cilia {} (ratio: unbounded; cilia's steady cost is {:.0} heartbeat datagrams/s per node, off the datastore, whatever S)",
        60.0 * (cilium_writes + cilium_reads),
        big.steady.writes() + big.steady.reads(),
        big.datagrams_per_node_per_sec
    );
    if let Some((writes, ..)) = &big.failover {
        println!(
            "  one failover: cilia {} writes once; Cilium writes {:.0} per second forever, i.e. {:.0}x cilia's failover writes every second",
            writes.writes(),
            cilium_writes,
            cilium_writes / writes.writes().max(1) as f64
        );
    }

    println!();
    let (inputs, assignment, entries, took) = agent_memory_and_assign_time(10_000);
    println!(
        "Agent memory for 10000 announced IPs (N = {NODES}): inputs {}, Assignment {}, own entries {}; total {}",
        mib(inputs),
        mib(assignment),
        mib(entries),
        mib(inputs + assignment + entries)
    );
    println!("One full assign (10000 IPs x {NODES} nodes): {:.2} ms (median of 5)", took.as_secs_f64() * 1000.0);
    println!();
    println!("(simulation wall time {:.1} s)", wall.elapsed().as_secs_f64());
}
