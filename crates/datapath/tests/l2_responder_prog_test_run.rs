//! The L2 announcement responder in `from_netdev`, run with BPF_PROG_TEST_RUN: crafted ARP
//! requests and neighbour solicitations in, the verdict and every byte of the frame out. Needs
//! root; each test gets its own bpffs and an empty network namespace, in which it creates a veth
//! pair so the run's `__sk_buff.ifindex` (passed as `ctx_in`) names a real device: the kernel
//! runs the program as if the frame had arrived on it. Everything dies with the namespace, also
//! when a test fails.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions};
use common::{Bpffs, enter_empty_netns};
use datapath::abi::{self, L2Liveness};
use datapath::objects::PROG_FROM_NETDEV;
use datapath::{Datapath, DatapathConfig, L2Entry, L2Row, LbDatapath};

const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;

const OUR_MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0x00, 0x00, 0x00, 0x01];
const OTHER_MAC: [u8; 6] = [0x02, 0x99, 0x00, 0x00, 0x00, 0x09];
const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 211);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0xab, 0xcd11);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 1);
const BROADCAST: [u8; 6] = [0xff; 6];

struct Env {
    dp: Datapath,
    /// The device the entries are for, and another one.
    dev: u32,
    other_dev: u32,
    _fs: Bpffs,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// An empty namespace with a veth pair (l2a, l2b), the datapath loaded, entries for VIP and VIP6
/// on l2a and a fresh heartbeat.
fn setup(tag: &str) -> Env {
    setup_with(tag, &DatapathConfig::default())
}

fn setup_with(tag: &str, config: &DatapathConfig) -> Env {
    enter_empty_netns();
    // `ip` runs as a child of this thread, so in its namespace.
    ip(&["link", "add", "l2a", "type", "veth", "peer", "name", "l2b"]);
    let dev = datapath::neigh_announce::interface_info("l2a").expect("l2a").ifindex;
    let other_dev = datapath::neigh_announce::interface_info("l2b").expect("l2b").ifindex;
    let fs = Bpffs::new(tag);
    let mut dp = Datapath::open_with(fs.node_dir("n1"), config).expect("load datapath");
    dp.sync_l2(&[
        L2Entry { ip: VIP.into(), ifindex: dev, mac: OUR_MAC },
        L2Entry { ip: VIP6.into(), ifindex: dev, mac: OUR_MAC },
    ])
    .unwrap();
    dp.refresh_l2_liveness(Duration::from_secs(60)).unwrap();
    Env { dp, dev, other_dev, _fs: fs }
}

/// `struct __sk_buff` up to and including `ifindex` (offset 40); the kernel accepts a shorter
/// context and zero-fills the rest.
fn skb_ctx(ifindex: u32) -> [u8; 44] {
    let mut ctx = [0u8; 44];
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// Runs from_netdev on `frame` as if it arrived on device `ifindex`.
fn run_on(dp: &Datapath, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 512];
    let ctx = skb_ctx(ifindex);
    let res = dp
        .classifier(PROG_FROM_NETDEV)
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(res.data_size_out as usize);
    (res.return_value, out)
}

fn run(env: &Env, frame: &[u8]) -> (u32, Vec<u8>) {
    run_on(&env.dp, env.dev, frame)
}

fn assert_untouched(env: &Env, name: &str, frame: &[u8]) {
    let (verdict, out) = run(env, frame);
    assert_eq!(verdict, TC_ACT_OK, "{name}: handed to the stack");
    assert_eq!(out, frame, "{name}: not rewritten");
}

#[allow(clippy::too_many_arguments)]
fn arp(
    op: u16,
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f
}

/// A broadcast "who has VIP? tell CLIENT", padded to the Ethernet minimum as on the wire.
fn who_has(target: Ipv4Addr) -> Vec<u8> {
    let mut f = arp(1, BROADCAST, CLIENT_MAC, CLIENT_MAC, CLIENT, [0; 6], target);
    f.resize(60, 0);
    f
}

fn responses(env: &Env, ip: IpAddr) -> u64 {
    env.dp.l2_entries().unwrap().iter().find(|r| r.ip == ip && r.ifindex == env.dev).expect("entry").responses
}

#[test]
fn arp_request_for_an_announced_ip_gets_the_exact_reply_and_is_counted() {
    require_root!();
    let env = setup("l2arp");
    let req = who_has(VIP);
    let (verdict, out) = run(&env, &req);
    assert_eq!(verdict, TC_ACT_REDIRECT, "sent back out of the device it came in on");
    #[rustfmt::skip]
    let want: Vec<u8> = [
        &CLIENT_MAC[..], &OUR_MAC, &[0x08, 0x06],   // Ethernet: to the requester, from the entry's MAC
        &[0x00, 0x01, 0x08, 0x00, 6, 4],            // Ethernet / IPv4
        &[0x00, 0x02],                              // reply
        &OUR_MAC, &VIP.octets(),                    // sha = our MAC, spa = VIP
        &CLIENT_MAC, &CLIENT.octets(),              // tha = requester's sha, tpa = requester's spa
        &[0; 18],                                   // the request's padding, kept
    ]
    .concat();
    assert_eq!(out, want);
    assert_eq!(responses(&env, VIP.into()), 1);

    // tha is the requester's ARP sender address; the Ethernet reply goes where the frame came from.
    let mut proxied = arp(1, BROADCAST, OTHER_MAC, CLIENT_MAC, CLIENT, [0; 6], VIP);
    proxied.resize(60, 0);
    let (verdict, out) = run(&env, &proxied);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!((&out[0..6], &out[6..12]), (&OTHER_MAC[..], &OUR_MAC[..]));
    assert_eq!(&out[32..38], &CLIENT_MAC, "tha = requester's sha");
    // An unpadded request (42 bytes, as from a veth) keeps its length too.
    let short = arp(1, BROADCAST, CLIENT_MAC, CLIENT_MAC, CLIENT, [0; 6], VIP);
    let (verdict, out) = run(&env, &short);
    assert_eq!((verdict, out.len()), (TC_ACT_REDIRECT, 42));
    assert_eq!(out, want[..42]);
    assert_eq!(responses(&env, VIP.into()), 3, "every answer counted");
    assert_eq!(responses(&env, VIP6.into()), 0);

    // An ARP probe (RFC 5227: sender 0.0.0.0) is answered, which defends the address.
    let probe = arp(1, BROADCAST, CLIENT_MAC, CLIENT_MAC, Ipv4Addr::UNSPECIFIED, [0; 6], VIP);
    let (verdict, out) = run(&env, &probe);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(&out[38..42], &[0, 0, 0, 0], "tpa = the prober's 0.0.0.0");
}

#[test]
fn arp_for_an_unknown_ip_passes_untouched() {
    require_root!();
    let env = setup("l2unknown");
    assert_untouched(&env, "unknown ip", &who_has(Ipv4Addr::new(192, 168, 10, 212)));
    assert_eq!(responses(&env, VIP.into()), 0);
}

#[test]
fn arp_arriving_on_another_device_is_not_answered() {
    require_root!();
    let env = setup("l2ifindex");
    let req = who_has(VIP);
    // The entry is for l2a; the same request arriving on l2b, or on lo (test runs without a
    // context run on lo, ifindex 1), is not ours to answer there.
    assert_eq!(run_on(&env.dp, env.other_dev, &req), (TC_ACT_OK, req.clone()));
    assert_eq!(run_on(&env.dp, 1, &req), (TC_ACT_OK, req.clone()));
    assert_eq!(run_on(&env.dp, env.dev, &req).0, TC_ACT_REDIRECT);
    assert_eq!(responses(&env, VIP.into()), 1);
}

#[test]
fn unicast_arp_to_our_mac_is_answered_to_another_mac_is_not() {
    require_root!();
    let env = setup("l2unicast");
    // A neighbour's reachability probe is unicast to the MAC it has cached.
    let probe = arp(1, OUR_MAC, CLIENT_MAC, CLIENT_MAC, CLIENT, OUR_MAC, VIP);
    let (verdict, out) = run(&env, &probe);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(out, arp(2, CLIENT_MAC, OUR_MAC, OUR_MAC, VIP, CLIENT_MAC, CLIENT));
    // Unicast to another host (the previous holder, a switch flooding it): not ours.
    let elsewhere = arp(1, OTHER_MAC, CLIENT_MAC, CLIENT_MAC, CLIENT, OTHER_MAC, VIP);
    assert_untouched(&env, "unicast to another MAC", &elsewhere);
    let multicast = arp(1, [0x01, 0, 0x5e, 0, 0, 1], CLIENT_MAC, CLIENT_MAC, CLIENT, [0; 6], VIP);
    assert_untouched(&env, "multicast destination", &multicast);
    assert_eq!(responses(&env, VIP.into()), 1);
}

#[test]
fn malformed_truncated_and_foreign_arp_pass_untouched() {
    require_root!();
    let env = setup("l2malformed");
    let good = arp(1, BROADCAST, CLIENT_MAC, CLIENT_MAC, CLIENT, [0; 6], VIP);
    let with = |off: usize, bytes: &[u8]| {
        let mut f = good.clone();
        f[off..off + bytes.len()].copy_from_slice(bytes);
        f
    };
    let mut vlan = good[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    vlan.extend_from_slice(&good[12..]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reply, not request", with(20, &[0, 2])),
        ("RARP op 3", with(20, &[0, 3])),
        ("htype 6 (IEEE 802)", with(14, &[0, 6])),
        ("ptype IPv6", with(16, &[0x86, 0xdd])),
        ("hlen 8", with(18, &[8])),
        ("plen 16", with(19, &[16])),
        ("truncated inside tpa", good[..41].to_vec()),
        ("truncated after the opcode", good[..22].to_vec()),
        ("Ethernet header only", good[..14].to_vec()),
        ("gratuitous ARP of another host (spa = tpa)", with(28, &VIP.octets())),
        ("our own sender MAC", with(22, &OUR_MAC)),
        ("our own Ethernet source", with(6, &OUR_MAC)),
        ("multicast Ethernet source", with(6, &[0x03, 0, 0, 0, 0, 1])),
        ("VLAN-tagged", vlan),
    ];
    for (name, frame) in cases {
        assert_untouched(&env, name, &frame);
    }
    assert_eq!(responses(&env, VIP.into()), 0);
    assert_eq!(run(&env, &good).0, TC_ACT_REDIRECT, "the well-formed request still is answered");
}

#[test]
fn no_answer_without_a_fresh_heartbeat() {
    require_root!();
    let mut env = setup("l2live");
    let req = who_has(VIP);
    let ns = ns_multicast(VIP6, true);
    let now = datapath::maps::monotonic_ns();

    // Never refreshed (or cleared at shutdown): silent.
    env.dp.clear_l2_liveness().unwrap();
    assert_untouched(&env, "cleared heartbeat, ARP", &req);
    assert_untouched(&env, "cleared heartbeat, NS", &ns);
    // Refreshed 2 s ago with a max age of 1 s: the agent is gone, silent.
    env.dp
        .l2_maps_mut()
        .write_liveness(L2Liveness { refreshed_ns: now - 2_000_000_000, max_age_ns: 1_000_000_000 })
        .unwrap();
    assert_untouched(&env, "stale heartbeat, ARP", &req);
    assert_untouched(&env, "stale heartbeat, NS", &ns);
    // Within its max age: answering.
    env.dp
        .l2_maps_mut()
        .write_liveness(L2Liveness { refreshed_ns: now - 2_000_000_000, max_age_ns: 3_000_000_000 })
        .unwrap();
    assert_eq!(run(&env, &req).0, TC_ACT_REDIRECT);
    // A short max age runs out while we wait.
    env.dp.refresh_l2_liveness(Duration::from_millis(50)).unwrap();
    assert_eq!(run(&env, &req).0, TC_ACT_REDIRECT);
    std::thread::sleep(Duration::from_millis(120));
    assert_untouched(&env, "heartbeat expired while waiting", &req);
    env.dp.refresh_l2_liveness(Duration::from_secs(15)).unwrap();
    assert_eq!(run(&env, &ns).0, TC_ACT_REDIRECT);
    assert_eq!(responses(&env, VIP.into()), 2);
    assert_eq!(responses(&env, VIP6.into()), 1);
    let list = env.dp.l2_list(None).unwrap();
    assert!(list.contains("max age 15.0s: answering"), "{list}");
}

// ---- IPv6 ----

/// RFC 1071 sum, independent of the datapath crate's.
fn ones_sum(data: &[u8], mut sum: u32) -> u32 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

fn icmp6_csum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    !(ones_sum(msg, ones_sum(&pseudo, 0)) as u16)
}

fn solicited_node(target: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let t = target.octets();
    let ip = Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15]]);
    (ip, [0x33, 0x33, 0xff, t[13], t[14], t[15]])
}

/// An ICMPv6 packet in Ethernet with a correct checksum.
fn icmp6(eth_dst: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, mut msg: Vec<u8>) -> Vec<u8> {
    let csum = icmp6_csum(src, dst, &msg);
    msg[2..4].copy_from_slice(&csum.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, hop_limit]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&msg);
    f
}

/// A neighbour solicitation for `target`, with or without the Source Link-Layer option.
fn ns_msg(target: Ipv6Addr, slla: bool) -> Vec<u8> {
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    if slla {
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&CLIENT_MAC);
    }
    m
}

/// The multicast form: to the target's solicited-node group, as Linux resolves an address.
fn ns_multicast(target: Ipv6Addr, slla: bool) -> Vec<u8> {
    let (group, group_mac) = solicited_node(target);
    icmp6(group_mac, CLIENT6, group, 255, ns_msg(target, slla))
}

/// The unicast ("targeted") form: a reachability probe to the cached MAC and the address itself.
fn ns_unicast(target: Ipv6Addr) -> Vec<u8> {
    icmp6(OUR_MAC, CLIENT6, target, 255, ns_msg(target, true))
}

/// The advertisement the responder must send to CLIENT for VIP6, byte for byte.
fn expected_na() -> Vec<u8> {
    let mut msg = vec![136, 0, 0, 0, 0x60, 0, 0, 0]; // R=0 S=1 O=1
    msg.extend_from_slice(&VIP6.octets());
    msg.extend_from_slice(&[2, 1]); // Target Link-Layer Address, 8 bytes
    msg.extend_from_slice(&OUR_MAC);
    let mut f = icmp6(CLIENT_MAC, VIP6, CLIENT6, 255, msg);
    f[6..12].copy_from_slice(&OUR_MAC);
    f
}

/// Checks an NA the way a receiver would: etherparse's parse and checksum, and the RFC 1071 sum.
fn check_na(out: &[u8]) {
    let h = etherparse::PacketHeaders::from_ethernet_slice(out).expect("parsable NA");
    let Some(etherparse::NetHeaders::Ipv6(ip6, _)) = &h.net else { panic!("no IPv6 header") };
    let Some(etherparse::TransportHeader::Icmpv6(icmp)) = &h.transport else { panic!("no ICMPv6") };
    assert!(matches!(icmp.icmp_type, etherparse::Icmpv6Type::NeighborAdvertisement(_)), "type {:?}", icmp.icmp_type);
    let want = icmp.icmp_type.calc_checksum(ip6.source, ip6.destination, h.payload.slice()).unwrap();
    assert_eq!(icmp.checksum, want, "ICMPv6 checksum (etherparse)");
    let mut pseudo = out[22..54].to_vec();
    pseudo.extend_from_slice(&[0, 0, 0, (out.len() - 54) as u8, 0, 0, 0, 58]);
    assert_eq!(ones_sum(&out[54..], ones_sum(&pseudo, 0)), 0xffff, "ICMPv6 checksum (RFC 1071)");
}

#[test]
fn ns_multicast_and_unicast_get_a_solicited_override_na_with_the_target_mac() {
    require_root!();
    let env = setup("l2ns");
    let want = expected_na();
    for (name, ns) in [
        ("multicast NS with source link-layer option", ns_multicast(VIP6, true)),
        ("multicast NS without options (the frame grows)", ns_multicast(VIP6, false)),
        ("unicast NS", ns_unicast(VIP6)),
    ] {
        let (verdict, out) = run(&env, &ns);
        assert_eq!(verdict, TC_ACT_REDIRECT, "{name}");
        assert_eq!(out, want, "{name}: NA bytes");
        check_na(&out);
    }
    // An NS with a second option (a nonce) is longer than the answer: the frame shrinks.
    let mut msg = ns_msg(VIP6, true);
    msg.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
    let (group, group_mac) = solicited_node(VIP6);
    let (verdict, out) = run(&env, &icmp6(group_mac, CLIENT6, group, 255, msg));
    assert_eq!((verdict, &out), (TC_ACT_REDIRECT, &want));
    assert_eq!(responses(&env, VIP6.into()), 4);
    assert_eq!(responses(&env, VIP.into()), 0);
}

#[test]
fn dad_and_invalid_ns_are_not_answered() {
    require_root!();
    let env = setup("l2nsbad");
    let (group, group_mac) = solicited_node(VIP6);
    let good = ns_multicast(VIP6, true);
    let with = |off: usize, bytes: &[u8]| {
        let mut f = good.clone();
        f[off..off + bytes.len()].copy_from_slice(bytes);
        f
    };
    let other_target = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0xab, 0xcd12);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("DAD (source ::)", icmp6(group_mac, Ipv6Addr::UNSPECIFIED, group, 255, ns_msg(VIP6, false))),
        ("hop limit 64 (not from the link)", icmp6(group_mac, CLIENT6, group, 64, ns_msg(VIP6, true))),
        ("unknown target", ns_multicast(other_target, true)),
        ("code 1", with(55, &[1])),
        ("to another host's MAC", with(0, &OTHER_MAC)),
        ("to another solicited-node MAC", with(3, &[0x99])),
        ("to another solicited-node group", with(53, &[0x99])),
        ("to all nodes", icmp6([0x33, 0x33, 0, 0, 0, 1], CLIENT6, "ff02::1".parse().unwrap(), 255, ns_msg(VIP6, true))),
        ("from our own MAC", with(6, &OUR_MAC)),
        ("payload length beyond the frame", with(18, &[0, 200])),
        ("payload length below an NS", with(18, &[0, 16])),
        ("truncated inside the target", good[..70].to_vec()),
        ("an NA, not an NS", with(54, &[136])),
        ("next header: hop-by-hop options", with(20, &[0])),
    ];
    for (name, frame) in cases {
        assert_untouched(&env, name, &frame);
    }
    // The right NS on another device.
    assert_eq!(run_on(&env.dp, env.other_dev, &good), (TC_ACT_OK, good.clone()));
    assert_eq!(responses(&env, VIP6.into()), 0);
    assert_eq!(run(&env, &good).0, TC_ACT_REDIRECT);
}

#[test]
fn ipv4_and_other_ipv6_traffic_go_through_from_netdev_unchanged() {
    require_root!();
    let env = setup("l2pass");
    // TCP to the announced address itself: not the responder's business (no service: untouched).
    let tcp = common::packet::tcp((CLIENT, 40000), (VIP, 80), "S", 1, b"");
    assert_untouched(&env, "IPv4 TCP", &tcp);
    let mut msg = vec![128, 0, 0, 0, 0, 1, 0, 1]; // echo request to the VIP6
    msg.extend_from_slice(b"ping");
    assert_untouched(&env, "ICMPv6 echo", &icmp6(OUR_MAC, CLIENT6, VIP6, 64, msg));
    let mut udp6 = icmp6(OUR_MAC, CLIENT6, VIP6, 255, vec![0; 16]);
    udp6[20] = 17;
    assert_untouched(&env, "IPv6 UDP", &udp6);
}

// ---- reconcile on the real maps ----

fn entry(ip: &str, ifindex: u32, mac: [u8; 6]) -> L2Entry {
    L2Entry { ip: ip.parse().unwrap(), ifindex, mac }
}

#[test]
fn sync_l2_reconciles_the_maps_keeps_counters_and_removes_rogue_keys() {
    require_root!();
    let mut env = setup("l2sync");
    let dev = env.dev;
    let base = [entry("192.168.10.211", dev, OUR_MAC), entry("fd00:10::ab:cd11", dev, OUR_MAC)];
    // The setup's set again: nothing written, nothing to announce.
    assert_eq!(env.dp.sync_l2(&base).unwrap(), Default::default());

    // One more address (what Cilium's partial sync does): only that key is written and reported.
    let mut more = base.to_vec();
    more.push(entry("192.168.10.212", dev, OUR_MAC));
    let s = env.dp.sync_l2(&more).unwrap();
    assert_eq!(s.added, vec![entry("192.168.10.212", dev, OUR_MAC)]);
    assert_eq!((s.updated.len(), s.removed), (0, 0));

    // Answers counted by the datapath survive a MAC rewrite (a new NIC, a bond failover).
    assert_eq!(run(&env, &who_has(VIP)).0, TC_ACT_REDIRECT);
    assert_eq!(run(&env, &who_has(VIP)).0, TC_ACT_REDIRECT);
    let mut rewritten = more.clone();
    rewritten[0].mac = OTHER_MAC;
    let s = env.dp.sync_l2(&rewritten).unwrap();
    assert_eq!(s.updated, vec![rewritten[0]]);
    assert_eq!((s.added.len(), s.removed), (0, 0));
    let row = env.dp.l2_entries().unwrap().into_iter().find(|r| r.ip == IpAddr::from(VIP)).unwrap();
    assert_eq!(row, L2Row { ip: VIP.into(), ifindex: dev, mac: OTHER_MAC, responses: 2 });
    // ... and the answers now carry the new MAC.
    let (_, out) = run(&env, &who_has(VIP));
    assert_eq!(&out[22..28], &OTHER_MAC);

    // A key nobody asked for (left by a crashed agent of another build, written by hand) goes.
    let rogue = abi::L2ResponderV4Key { ip4: [10, 0, 0, 99], ifindex: dev };
    let value = abi::L2ResponderEntry { mac: OTHER_MAC, pad: [0; 2], responses: 7 };
    env.dp.l2_maps_mut().v4.insert(rogue, value, 0).unwrap();
    let s = env.dp.sync_l2(&rewritten).unwrap();
    assert_eq!((s.added.len(), s.updated.len(), s.removed), (0, 0, 1));
    assert!(env.dp.l2_maps().v4.get(&rogue, 0).is_err());

    // A key deleted behind the reconciler's back: re-added (and reported, so it is announced
    // again) when desired, no error when not.
    let gone = abi::L2ResponderV4Key { ip4: [192, 168, 10, 212], ifindex: dev };
    env.dp.l2_maps_mut().v4.remove(&gone).unwrap();
    let s = env.dp.sync_l2(&rewritten).unwrap();
    assert_eq!(s.added, vec![entry("192.168.10.212", dev, OUR_MAC)]);
    env.dp.l2_maps_mut().v4.remove(&gone).unwrap();
    let s = env.dp.sync_l2(&rewritten[..2]).unwrap();
    assert_eq!((s.added.len(), s.removed), (0, 0), "nothing left to delete: no error, nothing counted");

    // Everything withdrawn: no answers.
    let s = env.dp.sync_l2(&[]).unwrap();
    assert_eq!(s.removed, 2);
    assert!(env.dp.l2_entries().unwrap().is_empty());
    assert_untouched(&env, "withdrawn", &who_has(VIP));
    // The pins are readable without the loader (the CLI's path).
    assert!(datapath::l2_entries_pinned(env.dp.pin_dir()).unwrap().is_empty());
}

#[test]
fn sync_l2_refuses_a_set_larger_than_the_map_before_writing() {
    require_root!();
    let config = DatapathConfig { l2_responder_max: 4, ..DatapathConfig::default() };
    let mut env = setup_with("l2cap", &config);
    let dev = env.dev;
    let before = env.dp.l2_entries().unwrap();
    let five: Vec<L2Entry> = (1..=5).map(|i| entry(&format!("192.168.20.{i}"), dev, OUR_MAC)).collect();
    let err = env.dp.sync_l2(&five).unwrap_err().to_string();
    assert!(err.contains("5 IPv4") && err.contains("holds 4"), "{err}");
    assert_eq!(env.dp.l2_entries().unwrap(), before, "nothing written");
    // Four fit even though the map held two others: removals run first.
    let s = env.dp.sync_l2(&five[..4]).unwrap();
    assert_eq!((s.added.len(), s.removed), (4, 2));
    // A set with one key listed with two MACs is refused whole too.
    let dup = [entry("192.168.20.1", dev, OUR_MAC), entry("192.168.20.1", dev, OTHER_MAC)];
    assert!(env.dp.sync_l2(&dup).is_err());
    assert_eq!(env.dp.l2_entries().unwrap().len(), 4);
}
