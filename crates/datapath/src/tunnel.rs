//! Tunnel mode: the overlay programs (`bpf/bpf_overlay.c`), their pinned maps and links.
//!
//! `to_overlay` runs on the egress of the host device (`cilium_host`), through which the node
//! routes other nodes' pod CIDRs in tunnel mode; `from_overlay` runs on the ingress of the
//! flow-based VXLAN device. Pods' packets are encapsulated earlier, by `from_container` on their
//! veths (`bpf_lxc.o`), which shares the two maps by their pins. The tunnel map (an LPM trie, like Cilium 1.18's ipcache prefixes)
//! says which prefixes are behind which node; [`Overlay::sync`] makes it equal to a desired list,
//! writing only differences, so a node joining or leaving changes one entry.
//!
//! Maps are pinned in the node's bpffs directory beside the service maps, links in its `links/`
//! directory as `overlay_<direction>_<ifname>`; both survive the agent.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData};
use aya::programs::SchedClassifier;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use ipnet::Ipv4Net as Prefix;

use crate::error::{Error, Result};
use crate::loader;
use crate::objects;
use crate::pins;
use crate::sys;
use crate::tunnel_abi::{self, OverlayConfig, TunnelAddr, TunnelFlags, TunnelInfo};

pub const PROG_TO_OVERLAY: &str = "to_overlay";
pub const PROG_FROM_OVERLAY: &str = "from_overlay";
/// `bpf_lxc.o`'s delivery of decapsulated packets into local pods (reverse NAT, then
/// `bpf_redirect_peer`), attached instead of `from_overlay` when the service datapath is there.
pub const PROG_OVERLAY_DELIVER: &str = "overlay_deliver";

/// One tunnel map entry: a prefix and what packets to or from it get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TunnelEntry {
    pub prefix: Prefix,
    /// The node IP packets to this prefix are encapsulated to (remote prefixes).
    pub endpoint: Option<Ipv4Addr>,
    /// VNI of packets from this prefix (local prefixes); informational for remote ones.
    pub identity: u32,
    /// A prefix of this node (its pod CIDR, the router IP).
    pub local: bool,
}

impl TunnelEntry {
    /// A remote node's pod CIDR behind `endpoint`.
    pub fn remote(prefix: Prefix, endpoint: Ipv4Addr, identity: u32) -> Self {
        TunnelEntry { prefix, endpoint: Some(endpoint), identity, local: false }
    }

    /// A prefix of this node whose packets carry `identity`.
    pub fn local(prefix: Prefix, identity: u32) -> Self {
        TunnelEntry { prefix, endpoint: None, identity, local: true }
    }

    fn value(&self) -> TunnelInfo {
        let mut flags = TunnelFlags::empty();
        flags.set(TunnelFlags::ENCAP, self.endpoint.is_some());
        flags.set(TunnelFlags::LOCAL, self.local);
        TunnelInfo {
            endpoint: self.endpoint.map_or(0, |ip| u32::from_ne_bytes(ip.octets())),
            identity: self.identity,
            flags,
        }
    }

    fn from_map(prefix: Prefix, v: &TunnelInfo) -> Self {
        let endpoint = v.flags.contains(TunnelFlags::ENCAP).then(|| Ipv4Addr::from(v.endpoint.to_ne_bytes()));
        TunnelEntry { prefix, endpoint, identity: v.identity, local: v.flags.contains(TunnelFlags::LOCAL) }
    }
}

impl std::fmt::Display for TunnelEntry {
    /// Like `cilium-dbg bpf ipcache list`: `172.20.2.0/24 identity=258 tunnelendpoint=192.168.20.100 flags=hastunnel`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} identity={}", self.prefix, self.identity)?;
        match self.endpoint {
            Some(ep) => write!(f, " tunnelendpoint={ep} flags=hastunnel"),
            None => write!(f, " tunnelendpoint=0.0.0.0 flags=local"),
        }
    }
}

/// What [`Overlay::sync`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelSyncStats {
    pub written: usize,
    pub deleted: usize,
}

/// The writes that turn `current` into `desired`: entries to write (new or different) and
/// prefixes to delete. Pure; the same prefix listed twice in `desired` keeps the last.
pub fn tunnel_changes(current: &[TunnelEntry], desired: &[TunnelEntry]) -> (Vec<TunnelEntry>, Vec<Prefix>) {
    let have: BTreeMap<Prefix, &TunnelEntry> = current.iter().map(|e| (e.prefix, e)).collect();
    let want: BTreeMap<Prefix, &TunnelEntry> = desired.iter().map(|e| (e.prefix, e)).collect();
    let write = want.values().filter(|w| have.get(&w.prefix) != Some(w)).map(|w| **w).collect();
    let delete = have.keys().filter(|p| !want.contains_key(p)).copied().collect();
    (write, delete)
}

/// The overlay programs of one node, loaded with their maps pinned in `pin_dir`.
pub struct Overlay {
    ebpf: Ebpf,
    /// `bpf_lxc.o` with only [`PROG_OVERLAY_DELIVER`] loaded, on the service datapath's pins.
    deliver: Option<Ebpf>,
    pin_dir: PathBuf,
}

impl Overlay {
    /// Loads `bpf_overlay.o`, reusing the pinned maps of a previous run.
    pub fn open(pin_dir: &Path) -> Result<Self> {
        pins::create_pin_dir(pin_dir)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .map_max_entries(tunnel_abi::MAP_TUNNEL, tunnel_abi::TUNNEL_MAP_SIZE)
            .load(objects::BPF_OVERLAY)
            .map_err(|source| Error::Load {
                object: "bpf_overlay.o",
                pin_dir: pin_dir.into(),
                source: Box::new(source),
            })?;
        for name in [PROG_TO_OVERLAY, PROG_FROM_OVERLAY] {
            classifier(&mut ebpf, name)?.load().map_err(Error::program(name, "load (verifier)"))?;
        }
        let deliver = load_deliver(pin_dir)?;
        Ok(Overlay { ebpf, deliver, pin_dir: pin_dir.into() })
    }

    /// Whether decapsulated packets for local pods go straight into the pod
    /// ([`PROG_OVERLAY_DELIVER`]) rather than through the pod's veth (`from_overlay`).
    pub fn delivers_to_pods(&self) -> bool {
        self.deliver.is_some()
    }

    /// Attaches `to_overlay` to `host_dev` (egress) and `from_overlay` to `tunnel_dev` (ingress),
    /// and points the encapsulation at `tunnel_ifindex`. Idempotent; a re-attach swaps programs
    /// behind the pinned links.
    pub fn attach(&mut self, host_dev: &str, tunnel_dev: &str, tunnel_ifindex: u32) -> Result<()> {
        self.set_config(OverlayConfig { encap_ifindex: tunnel_ifindex, host_identity: tunnel_abi::IDENTITY_HOST })?;
        attach(&mut self.ebpf, &self.pin_dir, PROG_TO_OVERLAY, host_dev, TcAttachType::Egress)?;
        match &mut self.deliver {
            Some(lxc) => attach(lxc, &self.pin_dir, PROG_OVERLAY_DELIVER, tunnel_dev, TcAttachType::Ingress),
            None => attach(&mut self.ebpf, &self.pin_dir, PROG_FROM_OVERLAY, tunnel_dev, TcAttachType::Ingress),
        }
    }

    /// Points the encapsulation (`to_overlay`, and `from_container` on pod veths) at the VXLAN
    /// device `tunnel_ifindex` without attaching anything; 0 turns it off.
    pub fn set_encap_device(&mut self, tunnel_ifindex: u32) -> Result<()> {
        self.set_config(OverlayConfig { encap_ifindex: tunnel_ifindex, host_identity: tunnel_abi::IDENTITY_HOST })
    }

    /// A loaded program of the overlay, e.g. for `BPF_PROG_TEST_RUN`.
    pub fn classifier(&self, name: &'static str) -> Result<&SchedClassifier> {
        let ebpf = match (&self.deliver, name) {
            (Some(lxc), PROG_OVERLAY_DELIVER) => lxc,
            _ => &self.ebpf,
        };
        let prog = ebpf.program(name).ok_or_else(|| loader::missing(name))?;
        prog.try_into().map_err(Error::program(name, "as tc classifier"))
    }

    fn set_config(&mut self, config: OverlayConfig) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(tunnel_abi::MAP_OVERLAY_CONFIG)
            .ok_or(Error::MissingMap { map: tunnel_abi::MAP_OVERLAY_CONFIG })?;
        let mut array: Array<&mut MapData, OverlayConfig> =
            Array::try_from(map).map_err(Error::map(tunnel_abi::MAP_OVERLAY_CONFIG, "open"))?;
        array.set(0, config, 0).map_err(Error::map(tunnel_abi::MAP_OVERLAY_CONFIG, "write"))
    }

    /// Makes the tunnel map hold exactly `desired`: new and changed entries are written before
    /// stale ones are deleted, so a prefix moving between nodes is never missing. The peers map
    /// follows: VXLAN packets are taken from the endpoints of `desired` only, and a new peer is
    /// known before the first prefix that leads to it.
    pub fn sync(&mut self, desired: &[TunnelEntry]) -> Result<TunnelSyncStats> {
        let peers: std::collections::BTreeSet<[u8; 4]> =
            desired.iter().filter_map(|e| e.endpoint).map(|a| a.octets()).collect();
        let current_peers =
            self.with_peers(|map| Ok(map.keys().filter_map(std::result::Result::ok).collect::<Vec<_>>()))?;
        self.with_peers(|map| {
            for peer in peers.iter().filter(|p| !current_peers.contains(*p)) {
                map.insert(peer, 1, 0)
                    .map_err(Error::map(tunnel_abi::MAP_TUNNEL_PEERS, format!("add {}", Ipv4Addr::from(*peer))))?;
            }
            Ok(())
        })?;
        let stats = self.sync_prefixes(desired)?;
        self.with_peers(|map| {
            for gone in current_peers.iter().filter(|p| !peers.contains(*p)) {
                map.remove(gone)
                    .map_err(Error::map(tunnel_abi::MAP_TUNNEL_PEERS, format!("remove {}", Ipv4Addr::from(*gone))))?;
            }
            Ok(())
        })?;
        Ok(stats)
    }

    fn with_peers<T>(&mut self, f: impl FnOnce(&mut HashMap<&mut MapData, [u8; 4], u32>) -> Result<T>) -> Result<T> {
        let name = tunnel_abi::MAP_TUNNEL_PEERS;
        let map = self.ebpf.map_mut(name).ok_or(Error::MissingMap { map: name })?;
        let mut peers = HashMap::try_from(map).map_err(Error::map(name, "open"))?;
        f(&mut peers)
    }

    fn sync_prefixes(&mut self, desired: &[TunnelEntry]) -> Result<TunnelSyncStats> {
        let map = self.ebpf.map_mut(tunnel_abi::MAP_TUNNEL).ok_or(Error::MissingMap { map: tunnel_abi::MAP_TUNNEL })?;
        let mut trie: LpmTrie<&mut MapData, TunnelAddr, TunnelInfo> =
            LpmTrie::try_from(map).map_err(Error::map(tunnel_abi::MAP_TUNNEL, "open"))?;
        let current = read_entries(&trie)?;
        let (write, delete) = tunnel_changes(&current, desired);
        for e in &write {
            trie.insert(&key(e.prefix), e.value(), 0)
                .map_err(Error::map(tunnel_abi::MAP_TUNNEL, format!("write {}", e.prefix)))?;
        }
        for p in &delete {
            trie.remove(&key(*p)).map_err(Error::map(tunnel_abi::MAP_TUNNEL, format!("delete {p}")))?;
        }
        Ok(TunnelSyncStats { written: write.len(), deleted: delete.len() })
    }
}

/// Loads [`PROG_OVERLAY_DELIVER`] from `bpf_lxc.o` when every map it shares with the service
/// datapath is pinned already (the agent opens the datapath first), so that loading it creates no
/// map, in particular none of the service datapath's with a size other than the datapath's.
/// Without the service datapath, `from_overlay` delivers through the pods' veths.
fn load_deliver(pin_dir: &Path) -> Result<Option<Ebpf>> {
    if !crate::abi::ALL_MAPS.iter().chain(tunnel_abi::TUNNEL_MAPS.iter()).all(|m| pin_dir.join(m).exists()) {
        return Ok(None);
    }
    let mut lxc = EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .load(objects::BPF_LXC)
        .map_err(|source| Error::Load { object: "bpf_lxc.o", pin_dir: pin_dir.into(), source: Box::new(source) })?;
    classifier(&mut lxc, PROG_OVERLAY_DELIVER)?
        .load()
        .map_err(Error::program(PROG_OVERLAY_DELIVER, "load (verifier)"))?;
    Ok(Some(lxc))
}

fn key(prefix: Prefix) -> Key<TunnelAddr> {
    Key::new(u32::from(prefix.prefix_len()), u32::from_ne_bytes(prefix.network().octets()))
}

fn read_entries<T: std::borrow::Borrow<MapData>>(
    trie: &LpmTrie<T, TunnelAddr, TunnelInfo>,
) -> Result<Vec<TunnelEntry>> {
    let mut out = Vec::new();
    for item in trie.iter() {
        let (k, v) = item.map_err(Error::map(tunnel_abi::MAP_TUNNEL, "iterate"))?;
        let addr = Ipv4Addr::from(k.data().to_ne_bytes());
        let len = u8::try_from(k.prefix_len()).unwrap_or(32).min(32);
        let prefix = Prefix::new(addr, len).expect("length clamped to 32");
        out.push(TunnelEntry::from_map(prefix, &v));
    }
    out.sort();
    Ok(out)
}

/// The tunnel map of a node read from its pin (`cilia dbg NODE bpf tunnel list`); empty when
/// the node has never run in tunnel mode.
pub fn tunnel_list_pinned(pin_dir: &Path) -> Result<Vec<TunnelEntry>> {
    let path = pin_dir.join(tunnel_abi::MAP_TUNNEL);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let data = MapData::from_pin(&path).map_err(Error::map(tunnel_abi::MAP_TUNNEL, "open pin"))?;
    let map = Map::from_map_data(data).map_err(Error::map(tunnel_abi::MAP_TUNNEL, "inspect"))?;
    let trie: LpmTrie<MapData, TunnelAddr, TunnelInfo> =
        LpmTrie::try_from(map).map_err(Error::map(tunnel_abi::MAP_TUNNEL, "open as LPM trie"))?;
    read_entries(&trie)
}

/// The tunnel map of a node as a table, like `cilium-dbg bpf tunnel list` with the identity and
/// flags of Cilium 1.18's ipcache entries: one row per prefix, sorted by prefix; remote prefixes
/// have their node's IP as endpoint and `hastunnel`, the node's own ones `0.0.0.0` and `local`.
/// Empty when the node has no tunnel map (native mode).
pub fn tunnel_table_pinned(pin_dir: &Path) -> Result<String> {
    Ok(tunnel_table(&tunnel_list_pinned(pin_dir)?))
}

/// The table of [`tunnel_table_pinned`].
pub fn tunnel_table(entries: &[TunnelEntry]) -> String {
    use std::fmt::Write as _;
    if entries.is_empty() {
        return String::new();
    }
    let mut out = format!("{:<20} {:<17} {:<9} {}\n", "PREFIX", "ENDPOINT", "IDENTITY", "FLAGS");
    for e in entries {
        let endpoint = e.endpoint.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let mut flags = Vec::new();
        if e.endpoint.is_some() {
            flags.push("hastunnel");
        }
        if e.local {
            flags.push("local");
        }
        let _ = writeln!(
            out,
            "{:<20} {:<17} {:<9} {}",
            e.prefix.to_string(),
            endpoint.to_string(),
            e.identity,
            flags.join(",")
        );
    }
    out
}

/// Leaving tunnel mode: detaches both programs and removes the overlay's map pins, so nothing of
/// the mode stays behind. Safe when nothing is there.
///
/// The pod veths' `from_container` (bpf_lxc.o) shares the two maps and keeps them after the pins
/// are gone, so the encapsulation is switched off in them first: the config's device is zeroed
/// and the tunnel map emptied.
pub fn remove_overlay(pin_dir: &Path, host_dev: &str, tunnel_dev: &str) -> Result<()> {
    disable_pinned(pin_dir)?;
    for (dev, dir) in [(host_dev, TcAttachType::Egress), (tunnel_dev, TcAttachType::Ingress)] {
        let pin = link_pin(pin_dir, dev, dir);
        sys::detach_pinned_link(&pin).map_err(|source| Error::Link { path: pin.clone(), op: "detach", source })?;
    }
    remove_map_pins(pin_dir)
}

/// Zeroes the pinned overlay config and empties the pinned tunnel map (whichever exists).
fn disable_pinned(pin_dir: &Path) -> Result<()> {
    let path = pin_dir.join(tunnel_abi::MAP_OVERLAY_CONFIG);
    if path.exists() {
        let name = tunnel_abi::MAP_OVERLAY_CONFIG;
        let data = MapData::from_pin(&path).map_err(Error::map(name, "open pin"))?;
        let map = Map::from_map_data(data).map_err(Error::map(name, "inspect"))?;
        let mut array: Array<MapData, OverlayConfig> = Array::try_from(map).map_err(Error::map(name, "open"))?;
        array.set(0, OverlayConfig::default(), 0).map_err(Error::map(name, "write"))?;
    }
    let path = pin_dir.join(tunnel_abi::MAP_TUNNEL);
    if path.exists() {
        let name = tunnel_abi::MAP_TUNNEL;
        let data = MapData::from_pin(&path).map_err(Error::map(name, "open pin"))?;
        let map = Map::from_map_data(data).map_err(Error::map(name, "inspect"))?;
        let mut trie: LpmTrie<MapData, TunnelAddr, TunnelInfo> =
            LpmTrie::try_from(map).map_err(Error::map(name, "open as LPM trie"))?;
        for e in read_entries(&trie)? {
            trie.remove(&key(e.prefix)).map_err(Error::map(name, format!("delete {}", e.prefix)))?;
        }
    }
    Ok(())
}

/// Removes the overlay's map pins (part of [`crate::remove_pins`]).
pub(crate) fn remove_map_pins(pin_dir: &Path) -> Result<()> {
    for name in tunnel_abi::TUNNEL_MAPS {
        let path = pin_dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Io { op: "remove map pin", path, source: e });
            }
            _ => {}
        }
    }
    Ok(())
}

fn link_pin(pin_dir: &Path, ifname: &str, dir: TcAttachType) -> PathBuf {
    let d = if dir == TcAttachType::Egress { "egress" } else { "ingress" };
    pin_dir.join("links").join(format!("overlay_{d}_{ifname}"))
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier> {
    let prog = ebpf.program_mut(name).ok_or_else(|| loader::missing(name))?;
    prog.try_into().map_err(Error::program(name, "as tc classifier"))
}

/// tcx attach with a pinned link; an existing pin gets the new program with BPF_LINK_UPDATE, a
/// defunct one (its device was recreated) is replaced.
fn attach(ebpf: &mut Ebpf, pin_dir: &Path, program: &'static str, ifname: &str, dir: TcAttachType) -> Result<()> {
    let pin = link_pin(pin_dir, ifname, dir);
    let prog = classifier(ebpf, program)?;
    if pin.exists() {
        let reused = PinnedLink::from_pin(&pin)
            .ok()
            .and_then(|pinned| SchedClassifierLink::try_from(FdLink::from(pinned)).ok())
            .map(|link| prog.attach_to_link(link));
        if let Some(Ok(id)) = reused {
            drop(prog.take_link(id).map_err(Error::program(program, "release link"))?);
            return Ok(());
        }
        sys::detach_pinned_link(&pin).map_err(|source| Error::Link {
            path: pin.clone(),
            op: "remove stale",
            source,
        })?;
    }
    let id = prog
        .attach(ifname, dir)
        .map_err(|e| Error::Interface { ifname: ifname.into(), reason: format!("tcx attach of {program}: {e}") })?;
    let link = prog.take_link(id).map_err(Error::program(program, "take link"))?;
    crate::attach::pin_link(link, &pin, "convert tcx link")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn changes_write_new_and_different_entries_and_delete_stale_ones() {
        let ep = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let current = vec![
            TunnelEntry::local(p("172.20.0.0/24"), 256),
            TunnelEntry::remote(p("172.20.1.0/24"), ep("192.168.10.101"), 257),
            TunnelEntry::remote(p("172.20.2.0/24"), ep("192.168.20.100"), 258),
        ];
        let desired = vec![
            TunnelEntry::local(p("172.20.0.0/24"), 256),
            TunnelEntry::remote(p("172.20.1.0/24"), ep("192.168.10.111"), 257),
            TunnelEntry::remote(p("172.20.3.0/24"), ep("192.168.20.103"), 259),
        ];
        let (write, delete) = tunnel_changes(&current, &desired);
        assert_eq!(write, [desired[1], desired[2]]);
        assert_eq!(delete, [p("172.20.2.0/24")]);
        let (write, delete) = tunnel_changes(&desired, &desired);
        assert!(write.is_empty() && delete.is_empty());
    }

    #[test]
    fn values_round_trip_through_the_map_layout() {
        let e = TunnelEntry::remote(p("172.20.2.0/24"), "192.168.20.100".parse().unwrap(), 258);
        let v = e.value();
        assert_eq!(v.endpoint.to_ne_bytes(), [192, 168, 20, 100]);
        assert_eq!(v.flags, TunnelFlags::ENCAP);
        assert_eq!(TunnelEntry::from_map(e.prefix, &v), e);
        let l = TunnelEntry::local(p("172.20.0.1/32"), 1);
        assert_eq!(TunnelEntry::from_map(l.prefix, &l.value()), l);
        assert_eq!(e.to_string(), "172.20.2.0/24 identity=258 tunnelendpoint=192.168.20.100 flags=hastunnel");
    }

    #[test]
    fn table_lists_prefix_endpoint_identity_and_flags() {
        let entries = [
            TunnelEntry::local(p("172.20.0.0/24"), 256),
            TunnelEntry::remote(p("172.20.2.0/24"), "192.168.20.100".parse().unwrap(), 258),
        ];
        let table = tunnel_table(&entries);
        let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(lines[0], ["PREFIX", "ENDPOINT", "IDENTITY", "FLAGS"]);
        assert_eq!(lines[1], ["172.20.0.0/24", "0.0.0.0", "256", "local"]);
        assert_eq!(lines[2], ["172.20.2.0/24", "192.168.20.100", "258", "hastunnel"]);
        assert_eq!(tunnel_table(&[]), "");
    }
}
