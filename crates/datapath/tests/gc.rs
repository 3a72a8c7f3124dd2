//! Nothing of a flow or a pod outlives it (root): SNAT entries go with their flow's conntrack
//! entry, link pins go with their device.

mod common;

use std::process::Command;

use common::{Bpffs, enter_empty_netns};
use datapath::abi::{self, Ct4Key, CtEntry, NatEntry, NatFlags};
use datapath::{Datapath, LbDatapath};

const CLIENT: [u8; 4] = [192, 168, 10, 1];
const BACKEND: [u8; 4] = [172, 20, 1, 10];
const NODE: [u8; 4] = [192, 168, 10, 100];
const SEC: u64 = 1_000_000_000;
const TCP: u8 = 6;

/// The SNAT pair of client:cport → backend:80 leaving as node:natport, and (when `ct_expires` is
/// given) its conntrack entry.
fn add_flow(dp: &mut Datapath, cport: u16, natport: u16, last_seen: u64, ct_expires: Option<u64>) {
    let maps = dp.maps_mut();
    let out = NatEntry { last_seen_ns: last_seen, to_addr: NODE, to_port: natport.to_be(), flags: NatFlags::empty() };
    maps.snat.insert(Ct4Key::new(CLIENT.into(), cport, BACKEND.into(), 80, TCP, abi::NAT_EGRESS), out, 0).unwrap();
    let back = NatEntry { last_seen_ns: last_seen, to_addr: CLIENT, to_port: cport.to_be(), flags: NatFlags::empty() };
    maps.snat.insert(Ct4Key::new(BACKEND.into(), 80, NODE.into(), natport, TCP, abi::NAT_INGRESS), back, 0).unwrap();
    if let Some(expires_ns) = ct_expires {
        let e = CtEntry { expires_ns, ..Default::default() };
        maps.ct.insert(Ct4Key::new(CLIENT.into(), cport, BACKEND.into(), 80, TCP, abi::CT_EGRESS), e, 0).unwrap();
    }
}

fn nat_ports(dp: &Datapath) -> Vec<u16> {
    let mut ports: Vec<u16> = dp
        .maps()
        .snat_entries()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.dir == abi::NAT_EGRESS)
        .map(|(k, _)| u16::from_be(k.sport))
        .collect();
    ports.sort_unstable();
    ports
}

#[test]
fn snat_entries_go_with_their_flows_conntrack() {
    require_root!();
    enter_empty_netns();
    let fs = Bpffs::new("natgc");
    let mut dp = Datapath::open(fs.node_dir("node1")).unwrap();
    let now = datapath::maps::monotonic_ns();
    let old = now.saturating_sub(30 * SEC);
    add_flow(&mut dp, 40000, 61000, old, Some(now + 3600 * SEC)); // live flow
    add_flow(&mut dp, 40001, 61001, old, Some(now.saturating_sub(SEC))); // conntrack expired
    add_flow(&mut dp, 40002, 61002, old, None); // conntrack gone (evicted, collected)
    add_flow(&mut dp, 40003, 61003, now, None); // just created: within the grace period
    assert_eq!(dp.maps().snat_entries().unwrap().len(), 8);

    let stats = dp.gc().unwrap();
    assert_eq!(stats.conntrack_removed, 1, "{stats:?}");
    assert_eq!(stats.nat_removed, 4, "both entries of the two ended flows: {stats:?}");
    assert_eq!(stats.nat_entries, 4, "{stats:?}");
    assert_eq!(nat_ports(&dp), [40000, 40003]);
    let ingress: Vec<u16> = dp
        .maps()
        .snat_entries()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.dir == abi::NAT_INGRESS)
        .map(|(k, _)| u16::from_be(k.dport))
        .collect();
    assert_eq!(ingress.len(), 2);
    assert!(ingress.contains(&61000) && ingress.contains(&61003), "{ingress:?}");
    // Nothing more to do on a second pass.
    assert_eq!(dp.gc().unwrap().nat_removed, 0);
    drop(dp);
    datapath::remove_pins(&fs.node_dir("node1")).unwrap();
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn pins(fs: &Bpffs) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fs.node_dir("node1").join("links"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tcx_"))
        .collect();
    names.sort();
    names
}

#[test]
fn link_pins_of_deleted_devices_are_removed() {
    require_root!();
    enter_empty_netns();
    let fs = Bpffs::new("pins");
    let mut dp = Datapath::open(fs.node_dir("node1")).unwrap();
    for dev in ["lxcgone", "lxckeep"] {
        ip(&["link", "add", dev, "type", "veth", "peer", "name", &format!("{dev}p")]);
        ip(&["link", "set", dev, "up"]);
        dp.attach_pod_device(dev, std::net::Ipv4Addr::new(172, 20, 0, 9)).unwrap();
    }
    assert_eq!(pins(&fs).len(), 4);
    // The pod goes: its veth with it.
    ip(&["link", "del", "lxcgone"]);
    assert_eq!(dp.remove_stale_links().unwrap(), ["lxcgone"]);
    assert_eq!(pins(&fs), ["tcx_egress_lxckeep", "tcx_ingress_lxckeep"]);
    assert!(dp.remove_stale_links().unwrap().is_empty());
    // The device map forgets it too.
    assert_eq!(dp.forget_missing_devices().unwrap(), 1);
    drop(dp);
    datapath::remove_pins(&fs.node_dir("node1")).unwrap();
}

/// A conntrack map filled to its size, every other entry expired: a sweep in slices of a tight
/// budget removes every expired entry, keeps every live one, and no slice runs far past its
/// budget (each ends after the batch in which the budget ran out).
#[test]
fn a_full_conntrack_map_is_swept_in_slices_that_keep_to_their_budget() {
    require_root!();
    enter_empty_netns();
    let fs = Bpffs::new("ctsweep");
    let mut dp = Datapath::open(fs.node_dir("node1")).unwrap();
    let now = datapath::maps::monotonic_ns();
    let size = abi::CT_MAP_SIZE;
    for i in 0..size {
        let client = std::net::Ipv4Addr::from(0x0a00_0000 + (i >> 8));
        let key = Ct4Key::new(client, (i & 0xff) as u16 + 1024, BACKEND.into(), 80, TCP, abi::CT_EGRESS);
        let expires_ns = if i % 2 == 0 { now.saturating_sub(SEC) } else { now + 3600 * SEC };
        dp.maps_mut().ct.insert(key, CtEntry { expires_ns, ..Default::default() }, 0).unwrap();
    }
    // The LRU may have evicted a few of the first while the last went in: count what is there.
    let count = |dp: &Datapath| {
        let entries = dp.maps().ct_entries().unwrap();
        let expired = entries.iter().filter(|(_, e)| e.expires_ns < now).count();
        (expired, entries.len() - expired)
    };
    let (expired, live) = count(&dp);
    assert!(expired + live > size as usize * 9 / 10, "the map is not full: {expired} + {live}");

    let budget = std::time::Duration::from_millis(2);
    let mut sweep = datapath::GcSweep::conntrack_only(now);
    let mut longest = std::time::Duration::ZERO;
    while !sweep.is_done() {
        let started = std::time::Instant::now();
        dp.gc_slice(&mut sweep, budget).unwrap();
        longest = longest.max(started.elapsed());
        assert!(sweep.slices() < 100_000, "the sweep does not end");
    }
    assert_eq!(sweep.stats().conntrack_removed, expired, "{:?}", sweep.stats());
    assert_eq!(count(&dp), (0, live), "expired entries left, or live ones removed");
    assert!(sweep.slices() >= 10, "a full map in {} slices of {budget:?}", sweep.slices());
    // One batch of 1024 entries takes well under a millisecond; the bound leaves room for a
    // busy machine, and is still far below what the whole sweep takes.
    assert!(longest < std::time::Duration::from_millis(100), "a slice took {longest:?} on a {budget:?} budget");
    drop(dp);
    datapath::remove_pins(&fs.node_dir("node1")).unwrap();
}
