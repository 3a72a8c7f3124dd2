//! Who announces which address, computed the same way on every node: for each IP, the nodes able
//! to serve it (eligible), and among the live ones the one with the highest rendezvous score.
//!
//! Rendezvous (highest-random-weight) hashing gives each (node, IP) pair an independent
//! pseudo-random score and lets the best live eligible node win. Removing a node moves only the
//! IPs it owned (each to its runner-up); adding one takes over only the IPs it now scores best on,
//! about 1/N of them. No coordination is needed: every agent with the same inputs computes the
//! same owners.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::IpAddr,
};

use crate::{
    interfaces::Interface,
    policy::{CompiledPolicy, selection_labels},
    service::{ServiceInfo, ServiceKey},
};

/// Everything the assignment reads. Every agent must pass the same values to agree.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The Services (order does not matter).
    pub services: &'a [ServiceInfo],
    /// The policies that compiled; a policy with problems is not applied.
    pub policies: &'a [CompiledPolicy],
    /// Node name → the Node's labels. A node absent here is never eligible.
    pub nodes: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// Node name → the interfaces it reported. A node that reported none is never eligible.
    pub interfaces: &'a BTreeMap<String, Vec<Interface>>,
    /// The live candidate nodes (`Liveness::candidates`): only these can own.
    pub candidates: &'a BTreeSet<String>,
}

/// One announced address: where it comes from, who could serve it, who does, and on what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpAssignment<'a> {
    /// The address.
    pub ip: IpAddr,
    /// The node announcing it, `None` when no eligible node is live.
    pub owner: Option<&'a str>,
    /// Every node able to serve it (live or not), sorted by name.
    pub eligible: Vec<&'a str>,
    /// The owner's interfaces to announce on, sorted; empty without an owner.
    pub interfaces: &'a [String],
    /// The Services carrying it through some policy, sorted.
    pub origins: &'a [ServiceKey],
}

/// One row of a node's `l2-announce` table: answer ARP/NDP for `ip` arriving on `interface`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AnnounceEntry {
    /// The address.
    pub ip: IpAddr,
    /// The interface name.
    pub interface: String,
    /// The Services it is announced for (a reference count: the row stays while one remains).
    pub origins: Vec<ServiceKey>,
}

/// The assignment of every selected address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Node names sorted; rows refer to nodes by index so that an eligible set costs a few words.
    nodes: Vec<String>,
    /// Sorted by IP.
    rows: Vec<Row>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    ip: IpAddr,
    owner: Option<u32>,
    /// Bit i set = `nodes[i]` eligible.
    eligible: Box<[u64]>,
    interfaces: Vec<String>,
    origins: Vec<ServiceKey>,
}

/// The rendezvous score of `node` for `ip`: FNV-1a 64 over the node name's bytes, a 0 byte and the
/// address's octets (4 or 16), then the splitmix64 finalizer to spread FNV's weak low bits. It is
/// fixed by this definition (no per-process seed, unlike std's `RandomState`), so every node and
/// every platform computes the same value.
pub fn score(node: &str, ip: IpAddr) -> u64 {
    finish_score(node_prefix(node), ip)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The FNV state after the node's name and the separator: the same for every IP, so computed once.
fn node_prefix(node: &str) -> u64 {
    fnv(fnv(FNV_OFFSET, node.as_bytes()), &[0])
}

fn finish_score(prefix: u64, ip: IpAddr) -> u64 {
    let h = match ip {
        IpAddr::V4(v4) => fnv(prefix, &v4.octets()),
        IpAddr::V6(v6) => fnv(prefix, &v6.octets()),
    };
    splitmix64(h)
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Computes the owner of every address the policies select.
///
/// For each IP, a node is eligible when some (Service, policy) pair yielding the IP has a policy
/// that selects the node and the node reports an up interface matching that policy's regexes;
/// and, for every such Service with `externalTrafficPolicy: Local`, the node has a ready local
/// backend (otherwise the traffic it attracts is dropped). If some eligible node has a matching
/// interface whose subnet holds the IP, only those nodes stay eligible, on those interfaces only:
/// announcing 192.168.10.x from a node that is only on 192.168.20.0/24 reaches nobody. The owner is
/// the live eligible node with the highest [`score`], ties going to the smaller name.
pub fn assign(inputs: &Inputs<'_>) -> Assignment {
    let nodes: Vec<&String> = inputs.nodes.keys().collect();
    let no_interfaces: Vec<Interface> = Vec::new();
    let node_ifaces: Vec<&[Interface]> =
        nodes.iter().map(|n| inputs.interfaces.get(*n).unwrap_or(&no_interfaces).as_slice()).collect();
    // Each interface's subnets as masks, for the per-IP subnet test (`IpNet::contains` is slow).
    let node_nets: Vec<Vec<Vec<Net>>> =
        node_ifaces.iter().map(|ifs| ifs.iter().map(|i| i.addrs.iter().map(Net::from).collect()).collect()).collect();
    let live: Vec<bool> = nodes.iter().map(|n| inputs.candidates.contains(*n)).collect();
    let prefixes: Vec<u64> = nodes.iter().map(|n| node_prefix(n)).collect();
    let words = nodes.len().div_ceil(64);

    // Per policy and node: the node's interfaces (indices) the policy may announce on; empty when
    // the policy does not select the node or no interface of it is up and matching.
    let policy_ifaces: Vec<Vec<Vec<u16>>> = inputs
        .policies
        .iter()
        .map(|p| {
            nodes
                .iter()
                .zip(&node_ifaces)
                .map(|(name, ifaces)| {
                    if !p.selects_node(&inputs.nodes[*name]) {
                        return Vec::new();
                    }
                    (0u16..)
                        .zip(ifaces.iter())
                        .filter(|(_, i)| i.up && p.matches_interface(&i.name))
                        .map(|(idx, _)| idx)
                        .collect()
                })
                .collect()
        })
        .collect();

    // Every (Service, policy) pair yielding each IP, as indices.
    #[derive(Default)]
    struct Pairs {
        policies: Vec<u32>,
        services: Vec<u32>,
    }
    let any_service_selector = inputs.policies.iter().any(|p| p.service_selector.is_some());
    let no_labels = BTreeMap::new();
    let mut by_ip: BTreeMap<IpAddr, Pairs> = BTreeMap::new();
    for (si, svc) in (0u32..).zip(inputs.services) {
        // The pseudo-labels cost a map per Service; only selectors read them.
        let labels = if any_service_selector { selection_labels(svc) } else { BTreeMap::new() };
        let labels = if any_service_selector { &labels } else { &no_labels };
        for (pi, policy) in (0u32..).zip(inputs.policies) {
            for ip in policy.ips_for(svc, labels) {
                let pairs = by_ip.entry(ip).or_default();
                pairs.policies.push(pi);
                pairs.services.push(si);
            }
        }
    }

    // The nodes (with their interfaces) that a set of policies makes eligible, before the
    // per-IP rules (local backends, subnet): the same for every IP of that set, so built once.
    let mut by_policy_set: BTreeMap<Vec<u32>, Vec<(u32, Vec<u16>)>> = BTreeMap::new();
    let mut rows = Vec::with_capacity(by_ip.len());
    // Scratch, reused across IPs: (index into the base list, on the IP's subnet) per candidate.
    let mut candidates: Vec<(usize, bool)> = Vec::with_capacity(nodes.len());
    for (ip, mut pairs) in by_ip {
        pairs.policies.sort_unstable();
        pairs.policies.dedup();
        pairs.services.sort_unstable_by(|a, b| inputs.services[*a as usize].key.cmp(&inputs.services[*b as usize].key));
        pairs.services.dedup();
        let local_only: Vec<&ServiceInfo> =
            pairs.services.iter().map(|s| &inputs.services[*s as usize]).filter(|s| s.etp_local).collect();
        let base = by_policy_set.entry(pairs.policies).or_insert_with_key(|policies| {
            (0u32..)
                .zip(&nodes)
                .filter_map(|(ni, _)| {
                    let mut ifs: Vec<u16> =
                        policies.iter().flat_map(|p| &policy_ifaces[*p as usize][ni as usize]).copied().collect();
                    ifs.sort_unstable();
                    ifs.dedup();
                    (!ifs.is_empty()).then_some((ni, ifs))
                })
                .collect()
        });

        let on_subnet = |ni: u32, idx: u16| node_nets[ni as usize][idx as usize].iter().any(|n| n.contains(ip));
        candidates.clear();
        for (k, (ni, ifs)) in base.iter().enumerate() {
            if !local_only.iter().all(|s| s.local_backend_nodes.contains(nodes[*ni as usize])) {
                continue;
            }
            candidates.push((k, ifs.iter().any(|&idx| on_subnet(*ni, idx))));
        }
        // Subnet preference: keep only nodes (and interfaces) directly on the IP's subnet, if any.
        let any_on_subnet = candidates.iter().any(|(_, on)| *on);

        let mut eligible = vec![0u64; words].into_boxed_slice();
        let mut best: Option<(u64, usize)> = None;
        for &(k, on) in &candidates {
            if any_on_subnet && !on {
                continue;
            }
            let ni = base[k].0 as usize;
            eligible[ni / 64] |= 1 << (ni % 64);
            if !live[ni] {
                continue;
            }
            let sc = finish_score(prefixes[ni], ip);
            // Candidates are in name order, so a strictly greater score is needed to displace an
            // earlier (smaller) name: ties go to the smaller name.
            if best.is_none_or(|(b, _)| sc > b) {
                best = Some((sc, k));
            }
        }
        let (owner, interfaces) = match best {
            Some((_, k)) => {
                let (ni, ifs) = &base[k];
                let mut names: Vec<String> = ifs
                    .iter()
                    .filter(|&&idx| !any_on_subnet || on_subnet(*ni, idx))
                    .map(|&idx| node_ifaces[*ni as usize][idx as usize].name.clone())
                    .collect();
                names.sort();
                // Two reported interfaces of the same name would be the same kernel device.
                names.dedup();
                (Some(*ni), names)
            }
            None => (None, Vec::new()),
        };
        let origins = pairs.services.iter().map(|s| inputs.services[*s as usize].key.clone()).collect();
        rows.push(Row { ip, owner, eligible, interfaces, origins });
    }
    Assignment { nodes: nodes.into_iter().cloned().collect(), rows }
}

/// A subnet as address and mask bits, IPv4 in the low 32 bits: `contains` is two operations.
#[derive(Clone, Copy, Debug)]
struct Net {
    v6: bool,
    network: u128,
    mask: u128,
}

impl From<&ipnet::IpNet> for Net {
    fn from(net: &ipnet::IpNet) -> Self {
        match net {
            ipnet::IpNet::V4(n) => {
                let mask = u128::from(u32::from(n.netmask()));
                Net { v6: false, network: u128::from(u32::from(n.network())), mask }
            }
            ipnet::IpNet::V6(n) => Net { v6: true, network: u128::from(n.network()), mask: u128::from(n.netmask()) },
        }
    }
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => !self.v6 && u128::from(u32::from(a)) & self.mask == self.network,
            IpAddr::V6(a) => self.v6 && u128::from(a) & self.mask == self.network,
        }
    }
}

impl Assignment {
    /// How many addresses are selected (owned or not).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no address is selected.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn view<'a>(&'a self, row: &'a Row) -> IpAssignment<'a> {
        let eligible = (0..self.nodes.len())
            .filter(|i| row.eligible[i / 64] & (1 << (i % 64)) != 0)
            .map(|i| self.nodes[i].as_str())
            .collect();
        IpAssignment {
            ip: row.ip,
            owner: row.owner.map(|o| self.nodes[o as usize].as_str()),
            eligible,
            interfaces: &row.interfaces,
            origins: &row.origins,
        }
    }

    fn row(&self, ip: IpAddr) -> Option<&Row> {
        self.rows.binary_search_by(|r| r.ip.cmp(&ip)).ok().map(|i| &self.rows[i])
    }

    /// The assignment of one address, if it is selected.
    pub fn get(&self, ip: IpAddr) -> Option<IpAssignment<'_>> {
        self.row(ip).map(|r| self.view(r))
    }

    /// The owner of one address.
    pub fn owner(&self, ip: IpAddr) -> Option<&str> {
        self.row(ip)?.owner.map(|o| self.nodes[o as usize].as_str())
    }

    /// Every selected address, in address order.
    pub fn iter(&self) -> impl Iterator<Item = IpAssignment<'_>> {
        self.rows.iter().map(|r| self.view(r))
    }

    /// Every (address, owner), in address order; `None` for addresses nobody can announce.
    pub fn owners(&self) -> impl Iterator<Item = (IpAddr, Option<&str>)> {
        self.rows.iter().map(|r| (r.ip, r.owner.map(|o| self.nodes[o as usize].as_str())))
    }

    /// What `node` must answer ARP/NDP for: one entry per (owned IP, interface), sorted by (ip,
    /// interface). This is the node's `l2-announce` table.
    pub fn entries_for(&self, node: &str) -> Vec<AnnounceEntry> {
        let Ok(index) = self.nodes.binary_search_by(|n| n.as_str().cmp(node)) else { return Vec::new() };
        let mut out = Vec::new();
        for row in self.rows.iter().filter(|r| r.owner == Some(index as u32)) {
            // Rows are in IP order and interfaces sorted, so `out` comes out sorted.
            for interface in &row.interfaces {
                out.push(AnnounceEntry { ip: row.ip, interface: interface.clone(), origins: row.origins.clone() });
            }
        }
        out
    }

    /// The holder to publish in each announced Service's Lease: the owner of the Service's lowest
    /// owned address. Services with no owned address have no holder (and no Lease).
    pub fn lease_holders(&self) -> BTreeMap<ServiceKey, String> {
        let mut out = BTreeMap::new();
        // Rows are in IP order: the first owned row seen for a Service is its lowest owned IP.
        for row in &self.rows {
            let Some(owner) = row.owner else { continue };
            for origin in &row.origins {
                out.entry(origin.clone()).or_insert_with(|| self.nodes[owner as usize].clone());
            }
        }
        out
    }

    /// The addresses whose owner differs between `previous` and `self` (including addresses that
    /// appeared or disappeared with an owner).
    pub fn owner_changes(&self, previous: &Assignment) -> Vec<IpAddr> {
        let before: BTreeMap<IpAddr, Option<&str>> = previous.owners().collect();
        let after: BTreeMap<IpAddr, Option<&str>> = self.owners().collect();
        let ips: BTreeSet<IpAddr> = before.keys().chain(after.keys()).copied().collect();
        ips.into_iter().filter(|ip| before.get(ip).copied().flatten() != after.get(ip).copied().flatten()).collect()
    }
}

/// Renders entries as `cilium-dbg shell -- db/show l2-announce` does: `IP` and `NetworkInterface`
/// columns, left-aligned.
pub fn render_table(entries: &[AnnounceEntry]) -> String {
    let ips: Vec<String> = entries.iter().map(|e| e.ip.to_string()).collect();
    let width = ips.iter().map(String::len).chain([2]).max().unwrap_or(2) + 3;
    let mut out = format!("{:<width$}NetworkInterface\n", "IP");
    for (ip, e) in ips.iter().zip(entries) {
        let _ = writeln!(out, "{ip:<width$}{}", e.interface);
    }
    out
}

#[cfg(test)]
#[path = "assignment_tests.rs"]
mod tests;
