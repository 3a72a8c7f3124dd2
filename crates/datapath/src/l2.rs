//! L2 announcements in the datapath: the responder maps `from_netdev` answers ARP requests and
//! IPv6 neighbour solicitations from (`bpf/lib/l2_responder.h`), and the agent's heartbeat that
//! keeps the answers on.
//!
//! The agent describes every (announced IP, device) pair this node holds with [`L2Entry`] and
//! calls [`crate::LbDatapath::sync_l2`] with the full set; the maps then hold exactly that. It
//! refreshes the heartbeat ([`crate::LbDatapath::refresh_l2_liveness`]) more often than the
//! max age it passes; when it stops (crash, hang, lost lease), the node stops answering.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use aya::maps::{Array, HashMap, IterableMap, Map, MapData};

use crate::abi::{self, L2Liveness, L2ResponderEntry, L2ResponderV4Key, L2ResponderV6Key};
use crate::error::{Error, Result};

/// One announced address on one device: the datapath answers ARP (IPv4) or NS (IPv6) for `ip`
/// arriving on `ifindex` with `mac` (normally the device's own MAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct L2Entry {
    pub ip: IpAddr,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// A responder map entry as the kernel holds it, with the number of answers sent from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct L2Row {
    pub ip: IpAddr,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub responses: u64,
}

/// What a [`crate::LbDatapath::sync_l2`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L2SyncStats {
    /// The keys that were not in the maps, with the MAC written. Neighbours may still hold
    /// another node's MAC for these addresses: the caller announces them (gratuitous ARP /
    /// unsolicited NA, [`crate::neigh_announce`]).
    pub added: Vec<L2Entry>,
    /// The keys whose MAC was rewritten (their counters are kept); they deserve an announcement
    /// as well.
    pub updated: Vec<L2Entry>,
    /// How many keys were removed: no longer desired, or never written by this agent.
    pub removed: usize,
}

/// The responder maps' contents keyed as the datapath looks them up: (ip, ifindex) → (mac,
/// responses).
pub type L2Table = BTreeMap<(IpAddr, u32), ([u8; 6], u64)>;

/// The writes that take `current` to `desired`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct L2Plan {
    pub remove: Vec<(IpAddr, u32)>,
    /// New keys and MAC rewrites, with the counter to write (0, or the one kept).
    pub put: Vec<(L2Entry, u64)>,
    pub stats: L2SyncStats,
}

/// Checks the desired entries and reduces them to one MAC per key. A key listed twice with
/// different MACs, a group or zero MAC, an ifindex of 0 or an address no host can own is refused:
/// nothing is written for an invalid set.
pub(crate) fn desired(entries: &[L2Entry]) -> Result<BTreeMap<(IpAddr, u32), [u8; 6]>> {
    let mut out = BTreeMap::new();
    for e in entries {
        let invalid = |reason: &str| Error::InvalidL2Entry { ip: e.ip, ifindex: e.ifindex, reason: reason.into() };
        if e.ifindex == 0 {
            return Err(invalid("ifindex 0 names no device"));
        }
        if e.mac == [0; 6] || e.mac[0] & 1 != 0 {
            return Err(invalid("the MAC must be a unicast address"));
        }
        let unusable = match e.ip {
            IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
        };
        if unusable {
            return Err(invalid("not a unicast address"));
        }
        if let Some(prev) = out.insert((e.ip, e.ifindex), e.mac)
            && prev != e.mac
        {
            return Err(invalid("listed twice with different MACs"));
        }
    }
    Ok(out)
}

/// Full reconcile: keys not desired go (rogue ones too), missing keys come with a zero counter,
/// keys whose MAC changed are rewritten keeping their counter, the rest is left alone.
pub(crate) fn plan(current: &L2Table, desired: &BTreeMap<(IpAddr, u32), [u8; 6]>) -> L2Plan {
    let mut p = L2Plan::default();
    for key in current.keys() {
        if !desired.contains_key(key) {
            p.remove.push(*key);
        }
    }
    for (&(ip, ifindex), &mac) in desired {
        let entry = L2Entry { ip, ifindex, mac };
        match current.get(&(ip, ifindex)) {
            None => {
                p.put.push((entry, 0));
                p.stats.added.push(entry);
            }
            Some(&(old, responses)) if old != mac => {
                p.put.push((entry, responses));
                p.stats.updated.push(entry);
            }
            Some(_) => {}
        }
    }
    p.stats.removed = p.remove.len();
    p
}

/// Applies a plan to an in-memory table (the fake datapath's maps).
pub(crate) fn apply_in_memory(table: &mut L2Table, p: &L2Plan) {
    for k in &p.remove {
        table.remove(k);
    }
    for (e, responses) in &p.put {
        table.insert((e.ip, e.ifindex), (e.mac, *responses));
    }
}

pub(crate) fn rows_of(table: &L2Table) -> Vec<L2Row> {
    table.iter().map(|(&(ip, ifindex), &(mac, responses))| L2Row { ip, ifindex, mac, responses }).collect()
}

/// The responder maps of one node, opened from their pins.
pub struct L2Maps {
    pub v4: HashMap<MapData, L2ResponderV4Key, L2ResponderEntry>,
    pub v6: HashMap<MapData, L2ResponderV6Key, L2ResponderEntry>,
    pub liveness: Array<MapData, L2Liveness>,
    /// Sizes as created (a reused pin keeps the size it was made with).
    pub v4_capacity: u32,
    pub v6_capacity: u32,
}

fn open_map(pin_dir: &Path, name: &'static str) -> Result<Map> {
    let data = MapData::from_pin(pin_dir.join(name))
        .map_err(Error::map(name, format!("open pin in {}", pin_dir.display())))?;
    Map::from_map_data(data).map_err(Error::map(name, "inspect"))
}

fn v4_key(ip: Ipv4Addr, ifindex: u32) -> L2ResponderV4Key {
    L2ResponderV4Key { ip4: ip.octets(), ifindex }
}

fn v6_key(ip: Ipv6Addr, ifindex: u32) -> L2ResponderV6Key {
    L2ResponderV6Key { ip6: ip.octets(), ifindex, pad: 0 }
}

/// Whether a map operation failed only because the key is not there.
fn is_missing(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

impl L2Maps {
    /// Opens the responder maps pinned in `pin_dir` (created by [`crate::Datapath::open`]).
    pub fn open(pin_dir: &Path) -> Result<Self> {
        let v4: HashMap<MapData, L2ResponderV4Key, L2ResponderEntry> =
            HashMap::try_from(open_map(pin_dir, abi::MAP_L2_RESP4)?)
                .map_err(Error::map(abi::MAP_L2_RESP4, "open as typed map"))?;
        let v6: HashMap<MapData, L2ResponderV6Key, L2ResponderEntry> =
            HashMap::try_from(open_map(pin_dir, abi::MAP_L2_RESP6)?)
                .map_err(Error::map(abi::MAP_L2_RESP6, "open as typed map"))?;
        let liveness = Array::try_from(open_map(pin_dir, abi::MAP_L2_LIVENESS)?)
            .map_err(Error::map(abi::MAP_L2_LIVENESS, "open as typed map"))?;
        let v4_capacity = v4.map().info().map_err(Error::map(abi::MAP_L2_RESP4, "read its size"))?.max_entries();
        let v6_capacity = v6.map().info().map_err(Error::map(abi::MAP_L2_RESP6, "read its size"))?.max_entries();
        Ok(L2Maps { v4, v6, liveness, v4_capacity, v6_capacity })
    }

    /// Both maps as the kernel holds them now.
    pub fn table(&self) -> Result<L2Table> {
        let mut t = L2Table::new();
        for kv in self.v4.iter() {
            let (k, v) = kv.map_err(Error::map(abi::MAP_L2_RESP4, "iterate"))?;
            t.insert((IpAddr::V4(Ipv4Addr::from(k.ip4)), k.ifindex), (v.mac, v.responses));
        }
        for kv in self.v6.iter() {
            let (k, v) = kv.map_err(Error::map(abi::MAP_L2_RESP6, "iterate"))?;
            t.insert((IpAddr::V6(Ipv6Addr::from(k.ip6)), k.ifindex), (v.mac, v.responses));
        }
        Ok(t)
    }

    /// Every entry with its counter, ordered by address then ifindex.
    pub fn rows(&self) -> Result<Vec<L2Row>> {
        Ok(rows_of(&self.table()?))
    }

    /// Makes the maps hold exactly `entries` (see [`crate::LbDatapath::sync_l2`]). Read from the
    /// kernel each time, so entries written by anyone else are found and removed. Removals run
    /// first, so the maps never hold more than the larger of the old and the new set.
    pub fn sync(&mut self, entries: &[L2Entry]) -> Result<L2SyncStats> {
        let desired = desired(entries)?;
        let v4 = desired.keys().filter(|(ip, _)| ip.is_ipv4()).count();
        let v6 = desired.len() - v4;
        for (family, n, cap, map) in
            [("IPv4", v4, self.v4_capacity, abi::MAP_L2_RESP4), ("IPv6", v6, self.v6_capacity, abi::MAP_L2_RESP6)]
        {
            if n > cap as usize {
                return Err(Error::Exhausted {
                    what: map,
                    detail: format!(
                        "{n} {family} (address, device) pairs to announce, the map holds {cap}; raise \
                         l2_responder_max before the map is first created"
                    ),
                });
            }
        }
        let p = plan(&self.table()?, &desired);
        for &(ip, ifindex) in &p.remove {
            self.remove(ip, ifindex)?;
        }
        for (e, responses) in &p.put {
            self.put(e, *responses)?;
        }
        Ok(p.stats)
    }

    fn put(&mut self, e: &L2Entry, responses: u64) -> Result<()> {
        let value = L2ResponderEntry { mac: e.mac, pad: [0; 2], responses };
        match e.ip {
            IpAddr::V4(a) => self
                .v4
                .insert(v4_key(a, e.ifindex), value, 0)
                .map_err(Error::map(abi::MAP_L2_RESP4, format!("write {a} on ifindex {}", e.ifindex))),
            IpAddr::V6(a) => self
                .v6
                .insert(v6_key(a, e.ifindex), value, 0)
                .map_err(Error::map(abi::MAP_L2_RESP6, format!("write {a} on ifindex {}", e.ifindex))),
        }
    }

    /// Deleting a key that is already gone is success (Cilium #45068 turned that case into
    /// repeated errors and intermittent ARP failures).
    fn remove(&mut self, ip: IpAddr, ifindex: u32) -> Result<()> {
        let (r, map) = match ip {
            IpAddr::V4(a) => (self.v4.remove(&v4_key(a, ifindex)), abi::MAP_L2_RESP4),
            IpAddr::V6(a) => (self.v6.remove(&v6_key(a, ifindex)), abi::MAP_L2_RESP6),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(Error::Map { map, op: format!("delete {ip} on ifindex {ifindex}"), source: Box::new(e) }),
        }
    }

    /// Writes the heartbeat: now (CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns` reads) and how
    /// long the datapath may go on answering without another refresh.
    pub fn refresh_liveness(&mut self, max_age: Duration) -> Result<()> {
        let max_age_ns = u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX);
        self.write_liveness(L2Liveness { refreshed_ns: crate::maps::monotonic_ns(), max_age_ns })
    }

    /// Stops the answers now (graceful shutdown, lease released): no second responder while the
    /// new holder takes over.
    pub fn clear_liveness(&mut self) -> Result<()> {
        self.write_liveness(L2Liveness::default())
    }

    pub fn write_liveness(&mut self, l: L2Liveness) -> Result<()> {
        self.liveness.set(0, l, 0).map_err(Error::map(abi::MAP_L2_LIVENESS, "write"))
    }

    pub fn liveness(&self) -> Result<L2Liveness> {
        self.liveness.get(&0, 0).map_err(Error::map(abi::MAP_L2_LIVENESS, "read"))
    }
}

/// Whether the datapath answers at `now_ns` with this heartbeat (the check of
/// `l2_agent_alive` in bpf/lib/l2_responder.h).
pub fn liveness_fresh(l: &L2Liveness, now_ns: u64) -> bool {
    l.refreshed_ns != 0 && (now_ns <= l.refreshed_ns || now_ns - l.refreshed_ns <= l.max_age_ns)
}

/// The responder entries straight from the pins, without loading programs (for the CLI).
pub fn l2_entries_pinned(pin_dir: &Path) -> Result<Vec<L2Row>> {
    L2Maps::open(pin_dir)?.rows()
}

/// The heartbeat straight from the pins.
pub fn l2_liveness_pinned(pin_dir: &Path) -> Result<L2Liveness> {
    L2Maps::open(pin_dir)?.liveness()
}

/// `cilia dbg NODE bpf l2 list` straight from the pins: the entries and the heartbeat's age.
/// `ifname` turns an ifindex into a device name for the table, when the caller can (it must look
/// in the node's network namespace).
pub fn l2_list_pinned(pin_dir: &Path, ifname: Option<&dyn Fn(u32) -> Option<String>>) -> Result<String> {
    let maps = L2Maps::open(pin_dir)?;
    Ok(crate::dump::l2_list(&maps.rows()?, Some(&maps.liveness()?), crate::maps::monotonic_ns(), ifname))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
    const MAC2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];

    fn e(ip: &str, ifindex: u32, mac: [u8; 6]) -> L2Entry {
        L2Entry { ip: ip.parse().unwrap(), ifindex, mac }
    }

    fn sync(t: &mut L2Table, entries: &[L2Entry]) -> L2SyncStats {
        let p = plan(t, &desired(entries).unwrap());
        apply_in_memory(t, &p);
        p.stats
    }

    #[test]
    fn full_reconcile_adds_rewrites_and_removes_keeping_counters() {
        let mut t = L2Table::new();
        let first = sync(&mut t, &[e("192.168.10.211", 3, MAC1), e("fd00::211", 3, MAC1)]);
        assert_eq!((first.added.len(), first.updated.len(), first.removed), (2, 0, 0));
        // Same set again: nothing to do, nothing to announce.
        assert_eq!(sync(&mut t, &[e("192.168.10.211", 3, MAC1), e("fd00::211", 3, MAC1)]), L2SyncStats::default());

        // The datapath answered 5 times; a MAC change keeps that count.
        t.get_mut(&("192.168.10.211".parse().unwrap(), 3)).unwrap().1 = 5;
        // A rogue key someone else wrote is removed by the next sync.
        t.insert(("10.0.0.99".parse().unwrap(), 7), (MAC2, 1));
        let s = sync(&mut t, &[e("192.168.10.211", 3, MAC2), e("192.168.10.212", 3, MAC1)]);
        assert_eq!(s.added, vec![e("192.168.10.212", 3, MAC1)]);
        assert_eq!(s.updated, vec![e("192.168.10.211", 3, MAC2)]);
        assert_eq!(s.removed, 2, "{s:?}");
        let rows = rows_of(&t);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].mac, rows[0].responses), (MAC2, 5), "counter kept across the MAC rewrite");
        assert_eq!((rows[1].mac, rows[1].responses), (MAC1, 0));
    }

    #[test]
    fn the_ifindex_is_part_of_the_key() {
        let mut t = L2Table::new();
        let s = sync(&mut t, &[e("192.168.10.211", 3, MAC1), e("192.168.10.211", 4, MAC2)]);
        assert_eq!(s.added.len(), 2);
        let s = sync(&mut t, &[e("192.168.10.211", 4, MAC2)]);
        assert_eq!((s.added.len(), s.removed), (0, 1));
    }

    #[test]
    fn invalid_sets_are_refused_whole() {
        for bad in [
            vec![e("192.168.10.211", 3, MAC1), e("192.168.10.211", 3, MAC2)],
            vec![e("192.168.10.211", 0, MAC1)],
            vec![e("192.168.10.211", 3, [0; 6])],
            vec![e("192.168.10.211", 3, [0x33, 0x33, 0, 0, 0, 1])],
            vec![e("0.0.0.0", 3, MAC1)],
            vec![e("224.0.0.1", 3, MAC1)],
            vec![e("ff02::1", 3, MAC1)],
        ] {
            assert!(desired(&bad).is_err(), "{bad:?}");
        }
        // The same entry listed twice (two services sharing an IP) is one key.
        assert_eq!(desired(&[e("192.168.10.211", 3, MAC1), e("192.168.10.211", 3, MAC1)]).unwrap().len(), 1);
    }

    #[test]
    fn liveness_gate_matches_the_datapath() {
        let l = L2Liveness { refreshed_ns: 1_000, max_age_ns: 500 };
        assert!(liveness_fresh(&l, 1_000));
        assert!(liveness_fresh(&l, 1_500));
        assert!(!liveness_fresh(&l, 1_501));
        assert!(liveness_fresh(&l, 900), "a heartbeat slightly ahead of the reader is fresh");
        assert!(!liveness_fresh(&L2Liveness::default(), 1), "never refreshed");
    }
}
