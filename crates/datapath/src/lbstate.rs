//! The load-balancing maps' contents as plain data, how to compute them from desired services,
//! and how to go from one content to another in an order that never shows a datapath lookup a
//! half-written service. Pure: no kernel, so the agent's tests and [`crate::FakeDatapath`] use it
//! unprivileged, and the real datapath applies the very same operations to its maps.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::abi::{self, Lb4Backend, Lb4Key, Lb4ReverseNat, Lb4Service, LbAffinityMatch, SvcFlags};
use crate::error::{Error, Result};
use crate::maglev::{self, MaglevBackend};
use crate::service::{BackendState, LbAlgorithm, ServiceEntry, ServiceKind};

/// Everything the service maps hold (conntrack and NAT are the datapath's own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbState {
    pub services: BTreeMap<Lb4Key, Lb4Service>,
    pub backends: BTreeMap<u32, Lb4Backend>,
    pub revnat: BTreeMap<u16, Lb4ReverseNat>,
    /// Key `rev_nat_index | scope << 16`; value the table of backend ids.
    pub maglev: BTreeMap<u32, Vec<u32>>,
    pub affinity_match: BTreeSet<LbAffinityMatch>,
}

/// One write to one map. [`plan`] returns them in the order they must be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    PutBackend(u32, Lb4Backend),
    PutAffinityMatch(LbAffinityMatch),
    PutRevNat(u16, Lb4ReverseNat),
    PutMaglev(u32, Vec<u32>),
    PutService(Lb4Key, Lb4Service),
    DeleteService(Lb4Key),
    DeleteMaglev(u32),
    DeleteRevNat(u16),
    DeleteAffinityMatch(LbAffinityMatch),
    DeleteBackend(u32),
}

/// How many writes a sync made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub upserts: usize,
    pub deletes: usize,
}

pub fn maglev_key(rev_nat_index: u16, scope: u8) -> u32 {
    u32::from(rev_nat_index) | (u32::from(scope) << 16)
}

impl LbState {
    /// Applies one operation to this in-memory copy.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::PutBackend(id, v) => {
                self.backends.insert(*id, *v);
            }
            Op::PutAffinityMatch(m) => {
                self.affinity_match.insert(*m);
            }
            Op::PutRevNat(id, v) => {
                self.revnat.insert(*id, *v);
            }
            Op::PutMaglev(k, t) => {
                self.maglev.insert(*k, t.clone());
            }
            Op::PutService(k, v) => {
                self.services.insert(*k, *v);
            }
            Op::DeleteService(k) => {
                self.services.remove(k);
            }
            Op::DeleteMaglev(k) => {
                self.maglev.remove(k);
            }
            Op::DeleteRevNat(k) => {
                self.revnat.remove(k);
            }
            Op::DeleteAffinityMatch(m) => {
                self.affinity_match.remove(m);
            }
            Op::DeleteBackend(k) => {
                self.backends.remove(k);
            }
        }
    }

    /// The frontend rows (slot 0, scope ALL, TCP/UDP) and their rev-NAT index.
    fn frontend_ids(&self) -> BTreeMap<(Ipv4Addr, u16, u8), u16> {
        self.services
            .iter()
            .filter(|(k, _)| k.backend_slot == 0 && k.scope == abi::LB_SCOPE_ALL && k.proto != abi::IPPROTO_ICMP)
            .map(|(k, v)| ((abi::addr(k.address), k.port(), k.proto), v.rev_nat_index))
            .collect()
    }

    fn backend_ids(&self) -> BTreeMap<(Ipv4Addr, u16, u8), u32> {
        self.backends.iter().map(|(id, b)| ((abi::addr(b.address), abi::port_host(b.port), b.proto), *id)).collect()
    }
}

/// Computes the maps' contents for `services`, keeping the ids that `current` already gave to
/// the same frontends and backends.
pub fn desired(services: &[ServiceEntry], current: &LbState) -> Result<LbState> {
    validate(services)?;
    let ids = Ids::assign(services, current)?;
    let mut out = LbState { backends: backend_rows(services, &ids.backends), ..LbState::default() };
    let mut maglev = MaglevTables::reusing(&current.maglev);
    for (s, &rev) in services.iter().zip(&ids.rev_nat) {
        let active = active_backends(s, &ids.backends);
        out.revnat.insert(rev, revnat_row(s));
        out.affinity_match.extend(affinity_rows(s, rev, &active));
        for (scope, slot_ids) in scopes(s, &active) {
            out.services.extend(frontend_rows(s, rev, scope, &slot_ids));
            if s.algorithm == LbAlgorithm::Maglev && !slot_ids.is_empty() {
                let key = maglev_key(rev, scope);
                let table = maglev.table(key, &slot_ids, &out.backends);
                out.maglev.insert(key, table);
            }
        }
    }
    out.services.extend(icmp_rows(services));
    Ok(out)
}

/// A backend as the maps identify it: address, port, protocol number.
type BackendKey = (Ipv4Addr, u16, u8);

fn backend_key(address: Ipv4Addr, port: u16, s: &ServiceEntry) -> BackendKey {
    (address, port, s.frontend.protocol.number())
}

/// The ids of one sync: a backend id per backend, a rev-NAT index per service (in the order of
/// the services).
struct Ids {
    backends: BTreeMap<BackendKey, u32>,
    rev_nat: Vec<u16>,
}

impl Ids {
    /// Backends first, then frontends, each in the order the services list them, so that the
    /// same services and maps always get the same ids.
    fn assign(services: &[ServiceEntry], current: &LbState) -> Result<Ids> {
        let mut backend_ids = IdAllocator::new(current.backend_ids(), u64::from(u32::MAX), "backend ids");
        let mut backends = BTreeMap::new();
        for s in services {
            for b in &s.backends {
                let key = backend_key(b.address, b.port, s);
                backends.insert(key, backend_ids.get(key)?);
            }
        }
        let mut frontends = IdAllocator::new(current.frontend_ids(), u64::from(u16::MAX), "rev-NAT indices");
        let rev_nat = services
            .iter()
            .map(|s| frontends.get((s.frontend.address, s.frontend.port, s.frontend.protocol.number())))
            .collect::<Result<_>>()?;
        Ok(Ids { backends, rev_nat })
    }
}

/// Hands out ids that stay stable for an object across syncs and restarts (they are recovered
/// from the maps), and are not reused right after release: a conntrack entry of a deleted backend
/// or frontend must not suddenly point at a new one.
struct IdAllocator<K: Ord, V> {
    by_key: BTreeMap<K, V>,
    taken: BTreeSet<u64>,
    next: u64,
    max: u64,
    what: &'static str,
}

impl<K: Ord + Copy, V: Ord + Copy + TryFrom<u64> + Into<u64>> IdAllocator<K, V> {
    fn new(existing: BTreeMap<K, V>, max: u64, what: &'static str) -> Self {
        let next = existing.values().map(|v| (*v).into()).max().unwrap_or(0) + 1;
        let taken = existing.values().map(|v| (*v).into()).collect();
        IdAllocator { by_key: existing, taken, next, max, what }
    }

    fn get(&mut self, key: K) -> Result<V> {
        if let Some(id) = self.by_key.get(&key) {
            return Ok(*id);
        }
        for _ in 0..self.max {
            let candidate = if self.next > self.max { 1 } else { self.next };
            self.next = candidate + 1;
            if self.taken.insert(candidate) {
                let id = V::try_from(candidate).ok().expect("candidate within max fits the id type");
                self.by_key.insert(key, id);
                return Ok(id);
            }
        }
        Err(Error::Exhausted { what: self.what, detail: format!("all {} ids in use", self.max) })
    }
}

fn validate(services: &[ServiceEntry]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for s in services {
        let invalid = |reason: String| Error::InvalidService { frontend: s.frontend, reason };
        if !seen.insert(s.frontend) {
            return Err(invalid("listed twice".into()));
        }
        if s.frontend.port == 0 {
            return Err(invalid("port 0".into()));
        }
        // 0.0.0.0 is a node port's surrogate frontend, which socket-LB uses for the loopback
        if s.frontend.address.is_unspecified() && s.kind != ServiceKind::NodePort {
            return Err(invalid(format!("address 0.0.0.0 is for node ports only, not {:?}", s.kind)));
        }
        if let Some(b) = s.backends.iter().find(|b| b.port == 0 || b.address.is_unspecified()) {
            return Err(invalid(format!("backend {}:{} has no address or port", b.address, b.port)));
        }
        if s.backends.len() > usize::from(u16::MAX) {
            return Err(invalid(format!("{} backends, at most {}", s.backends.len(), u16::MAX)));
        }
        if s.affinity_timeout == Some(0) {
            return Err(invalid("session affinity timeout 0".into()));
        }
    }
    Ok(())
}

/// One row per backend; backends are shared by every frontend that lists the same address, port
/// and protocol, and one listing as active wins over another as terminating.
fn backend_rows(services: &[ServiceEntry], ids: &BTreeMap<BackendKey, u32>) -> BTreeMap<u32, Lb4Backend> {
    let mut rows = BTreeMap::new();
    for s in services {
        for b in &s.backends {
            let key = backend_key(b.address, b.port, s);
            let entry = rows.entry(ids[&key]).or_insert(Lb4Backend {
                address: b.address.octets(),
                port: abi::port_be(b.port),
                proto: key.2,
                flags: abi::BE_STATE_TERMINATING,
            });
            if b.state == BackendState::Active {
                entry.flags = (entry.flags & !abi::BE_STATE_MASK) | abi::BE_STATE_ACTIVE;
            }
            if b.node_local {
                entry.flags |= abi::BE_F_NODE_LOCAL;
            }
        }
    }
    rows
}

/// The ids of a service's active backends and whether each is node-local, in id order: a stable
/// slot layout where new backends append.
fn active_backends(s: &ServiceEntry, ids: &BTreeMap<BackendKey, u32>) -> Vec<(u32, bool)> {
    let mut active: Vec<(u32, bool)> = s
        .backends
        .iter()
        .filter(|b| b.state == BackendState::Active)
        .map(|b| (ids[&backend_key(b.address, b.port, s)], b.node_local))
        .collect();
    active.sort_unstable();
    active.dedup();
    active
}

fn kind_flags(kind: ServiceKind) -> SvcFlags {
    match kind {
        ServiceKind::ClusterIp => SvcFlags::empty(),
        ServiceKind::NodePort => SvcFlags::NODEPORT | SvcFlags::ROUTABLE,
        ServiceKind::LoadBalancer => SvcFlags::LOADBALANCER | SvcFlags::ROUTABLE,
        ServiceKind::ExternalIp => SvcFlags::EXTERNAL_IP | SvcFlags::ROUTABLE,
    }
}

/// The flags of a service's frontend rows: its kind, its traffic policies, session affinity.
fn service_flags(s: &ServiceEntry) -> SvcFlags {
    let mut flags = kind_flags(s.kind);
    // a ClusterIP has no north-south traffic for externalTrafficPolicy to restrict
    if s.external_traffic_local && s.kind != ServiceKind::ClusterIp {
        flags |= SvcFlags::ETP_LOCAL;
    }
    if s.internal_traffic_local {
        flags |= SvcFlags::ITP_LOCAL;
    }
    if s.affinity_timeout.is_some() {
        flags |= SvcFlags::AFFINITY;
    }
    flags
}

fn revnat_row(s: &ServiceEntry) -> Lb4ReverseNat {
    Lb4ReverseNat { address: s.frontend.address.octets(), port: abi::port_be(s.frontend.port), pad: 0 }
}

/// With session affinity, which backends a client of this frontend may stick to.
fn affinity_rows(s: &ServiceEntry, rev: u16, active: &[(u32, bool)]) -> Vec<LbAffinityMatch> {
    if s.affinity_timeout.is_none() {
        return Vec::new();
    }
    active.iter().map(|(id, _)| LbAffinityMatch { backend_id: *id, rev_nat_index: rev, pad: 0 }).collect()
}

/// The backends of each scope a service has rows for: all of them, and with a Local traffic
/// policy the node-local ones.
fn scopes(s: &ServiceEntry, active: &[(u32, bool)]) -> Vec<(u8, Vec<u32>)> {
    let mut scopes = vec![(abi::LB_SCOPE_ALL, active.iter().map(|(id, _)| *id).collect())];
    if service_flags(s).intersects(SvcFlags::ETP_LOCAL | SvcFlags::ITP_LOCAL) {
        scopes.push((abi::LB_SCOPE_LOCAL, active.iter().filter(|(_, local)| *local).map(|(id, _)| *id).collect()));
    }
    scopes
}

/// A frontend row of one scope (slot 0: flags, algorithm, backend count, affinity timeout) and
/// its slot rows 1..=count, one per backend.
fn frontend_rows(s: &ServiceEntry, rev: u16, scope: u8, backend_ids: &[u32]) -> Vec<(Lb4Key, Lb4Service)> {
    let key = Lb4Key::new(s.frontend.address, s.frontend.port, s.frontend.protocol.number(), 0, scope);
    let algorithm = match s.algorithm {
        LbAlgorithm::Random => abi::LB_ALG_RANDOM,
        LbAlgorithm::Maglev => abi::LB_ALG_MAGLEV,
    };
    let frontend = Lb4Service {
        backend_id: s.affinity_timeout.unwrap_or(0),
        count: u16::try_from(backend_ids.len()).expect("validated: at most u16::MAX backends"),
        rev_nat_index: rev,
        flags: service_flags(s),
        algorithm,
        pad: [0; 2],
    };
    let slots = backend_ids.iter().enumerate().map(|(i, id)| {
        let slot = u16::try_from(i + 1).expect("validated: at most u16::MAX backends");
        (
            Lb4Key { backend_slot: slot, ..key },
            Lb4Service { backend_id: *id, rev_nat_index: rev, ..Lb4Service::default() },
        )
    });
    std::iter::once((key, frontend)).chain(slots).collect()
}

/// Maglev tables of one sync. Frontends of one service (ClusterIP, NodePorts, LB IPs) share
/// their backends, so a table built for one id set serves every frontend with that set.
struct MaglevTables<'a> {
    current: &'a BTreeMap<u32, Vec<u32>>,
    built: BTreeMap<Vec<u32>, Vec<u32>>,
}

impl<'a> MaglevTables<'a> {
    fn reusing(current: &'a BTreeMap<u32, Vec<u32>>) -> Self {
        MaglevTables { current, built: BTreeMap::new() }
    }

    /// The table at `key` over `ids` (sorted, deduplicated, in `backends`).
    fn table(&mut self, key: u32, ids: &[u32], backends: &BTreeMap<u32, Lb4Backend>) -> Vec<u32> {
        // A table depends only on its backends, and ids stand for the same backends across
        // syncs: an existing table over the same id set is the table to write.
        if let Some(old) = self.current.get(&key).filter(|t| same_ids(t, ids)) {
            return old.clone();
        }
        if let Some(t) = self.built.get(ids) {
            return t.clone();
        }
        let mb: Vec<MaglevBackend> = ids
            .iter()
            .map(|id| {
                let b = &backends[id];
                MaglevBackend { address: abi::addr(b.address), port: abi::port_host(b.port), proto: b.proto }
            })
            .collect();
        let table: Vec<u32> =
            maglev::build_table(&mb, abi::LB_MAGLEV_LUT_SIZE).into_iter().map(|i| ids[i as usize]).collect();
        self.built.insert(ids.to_vec(), table.clone());
        table
    }
}

/// Whether a Maglev table names exactly the backends `ids` (sorted, deduplicated).
fn same_ids(table: &[u32], ids: &[u32]) -> bool {
    let mut seen = vec![false; ids.len()];
    for id in table {
        match ids.binary_search(id) {
            Ok(i) => seen[i] = true,
            Err(_) => return false,
        }
    }
    seen.iter().all(|s| *s)
}

/// One ICMP echo row per VIP, answered when any service on it has an active backend; routable
/// when any of them is. Not for node ports: the node's own stack answers for node addresses.
fn icmp_rows(services: &[ServiceEntry]) -> BTreeMap<Lb4Key, Lb4Service> {
    let mut by_vip: BTreeMap<Ipv4Addr, Lb4Service> = BTreeMap::new();
    for s in services.iter().filter(|s| s.kind != ServiceKind::NodePort) {
        let row = by_vip
            .entry(s.frontend.address)
            .or_insert(Lb4Service { flags: SvcFlags::ICMP_ECHO, ..Lb4Service::default() });
        row.flags |= kind_flags(s.kind) & SvcFlags::ROUTABLE;
        if s.backends.iter().any(|b| b.state == BackendState::Active) {
            row.count = 1;
        }
    }
    by_vip
        .into_iter()
        .map(|(address, row)| (Lb4Key::new(address, 0, abi::IPPROTO_ICMP, 0, abi::LB_SCOPE_ALL), row))
        .collect()
}

/// The writes that turn `current` into `desired`, ordered so that every intermediate state is
/// consistent for the datapath: what a row points to exists before the row, and a frontend's
/// count never exceeds the slot rows present.
pub fn plan(current: &LbState, desired: &LbState) -> Vec<Op> {
    let mut ops = Vec::new();
    // Frontends that go away entirely give their service rows back first (frontend row, then its
    // slots): a full map then has room for the rows this sync adds, and nothing that stays is
    // ever missing a row.
    let gone = |k: &Lb4Key| !desired.services.contains_key(k);
    let gone_frontends: BTreeSet<Lb4Key> =
        current.services.keys().filter(|k| k.backend_slot == 0 && gone(k)).copied().collect();
    let of_gone_frontend = |k: &Lb4Key| gone_frontends.contains(&Lb4Key { backend_slot: 0, ..*k });
    for k in &gone_frontends {
        ops.push(Op::DeleteService(*k));
    }
    for k in current.services.keys().filter(|k| k.backend_slot != 0 && gone(k) && of_gone_frontend(k)) {
        ops.push(Op::DeleteService(*k));
    }
    for (id, b) in &desired.backends {
        if current.backends.get(id) != Some(b) {
            ops.push(Op::PutBackend(*id, *b));
        }
    }
    for m in desired.affinity_match.difference(&current.affinity_match) {
        ops.push(Op::PutAffinityMatch(*m));
    }
    for (id, r) in &desired.revnat {
        if current.revnat.get(id) != Some(r) {
            ops.push(Op::PutRevNat(*id, *r));
        }
    }
    for (k, t) in &desired.maglev {
        if current.maglev.get(k) != Some(t) {
            ops.push(Op::PutMaglev(*k, t.clone()));
        }
    }
    // slot rows before the frontend rows that count them
    let changed = |k: &Lb4Key, v: &Lb4Service| current.services.get(k) != Some(v);
    for (k, v) in desired.services.iter().filter(|(k, _)| k.backend_slot != 0) {
        if changed(k, v) {
            ops.push(Op::PutService(*k, *v));
        }
    }
    for (k, v) in desired.services.iter().filter(|(k, _)| k.backend_slot == 0) {
        if changed(k, v) {
            ops.push(Op::PutService(*k, *v));
        }
    }
    // the rest of the removals in reverse: slots a frontend no longer counts, then what slots
    // pointed to
    for k in current.services.keys().filter(|k| k.backend_slot != 0 && gone(k) && !of_gone_frontend(k)) {
        ops.push(Op::DeleteService(*k));
    }
    for k in current.maglev.keys().filter(|k| !desired.maglev.contains_key(k)) {
        ops.push(Op::DeleteMaglev(*k));
    }
    for k in current.revnat.keys().filter(|k| !desired.revnat.contains_key(k)) {
        ops.push(Op::DeleteRevNat(*k));
    }
    for m in current.affinity_match.difference(&desired.affinity_match) {
        ops.push(Op::DeleteAffinityMatch(*m));
    }
    for k in current.backends.keys().filter(|k| !desired.backends.contains_key(k)) {
        ops.push(Op::DeleteBackend(*k));
    }
    ops
}

/// Checks the invariants the datapath relies on: every frontend's slots 1..count exist, and every
/// slot and Maglev entry names an existing backend. Holds after every single [`Op`] of a [`plan`].
pub fn check_consistent(state: &LbState) -> std::result::Result<(), String> {
    for (k, v) in state.services.iter().filter(|(k, _)| k.backend_slot == 0 && k.proto != abi::IPPROTO_ICMP) {
        for slot in 1..=v.count {
            let Some(row) = state.services.get(&Lb4Key { backend_slot: slot, ..*k }) else {
                return Err(format!("{k:?}: slot {slot} of {} missing", v.count));
            };
            if !state.backends.contains_key(&row.backend_id) {
                return Err(format!("{k:?}: slot {slot} names missing backend {}", row.backend_id));
            }
        }
    }
    for (k, t) in &state.maglev {
        if let Some(id) = t.iter().find(|id| !state.backends.contains_key(id)) {
            return Err(format!("maglev table {k:#x} names missing backend {id}"));
        }
    }
    Ok(())
}

pub fn stats(ops: &[Op]) -> SyncStats {
    let deletes = ops
        .iter()
        .filter(|op| {
            matches!(
                op,
                Op::DeleteService(_)
                    | Op::DeleteMaglev(_)
                    | Op::DeleteRevNat(_)
                    | Op::DeleteAffinityMatch(_)
                    | Op::DeleteBackend(_)
            )
        })
        .count();
    SyncStats { upserts: ops.len() - deletes, deletes }
}

#[cfg(test)]
#[path = "lbstate_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "lbstate_rows_tests.rs"]
mod rows_tests;
