//! The encapsulation programs run with BPF_PROG_TEST_RUN: `from_container` (pod veths, with the
//! tunnel map shared from the overlay object) and `to_overlay` (host device). A packet to a
//! remote pod CIDR that fits the tunnel gets its tunnel key and is redirected (TC_ACT_REDIRECT,
//! TTL decremented by `from_container` as the node's forwarding would); everything else passes
//! unchanged (TC_ACT_OK). Test-run cannot read the tunnel key back, so the verdict and the frame
//! are what is checked. Super-packets are not covered here (test-run gives an skb a GSO size but
//! no GSO type, which bpf_skb_adjust_room refuses): bulk TCP across the tunnel is an end-to-end
//! test (crates/cli/tests/tunnel.rs). Needs root; each test gets its own bpffs and an empty
//! network namespace in which a veth (MTU 1500) stands in for the VXLAN device.

mod common;

use std::net::Ipv4Addr;
use std::process::Command;

use aya::programs::{TestRun, TestRunOptions};
use common::packet;
use common::{Bpffs, enter_empty_netns};
use datapath::objects::PROG_FROM_CONTAINER;
use datapath::tunnel::{PROG_FROM_OVERLAY, PROG_TO_OVERLAY};
use datapath::{Backend, Datapath, LbDatapath, Overlay, Protocol, ServiceEntry, ServiceKind, TunnelEntry};

const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;

const POD: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 2);
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 9);
const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 1);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(172, 20, 1, 6);
const REMOTE_NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 101);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 50);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// The overlay route MTU for a 1500 VXLAN device.
const TUNNEL_MTU: usize = 1450;

struct Env {
    dp: Datapath,
    overlay: Overlay,
    fs: Bpffs,
    /// The veth standing in for cilium_vxlan.
    encap_ifindex: u32,
}

fn ip(args: &[&str]) -> String {
    // A child forked from this thread lives in the thread's (test) network namespace.
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ifindex_of(dev: &str) -> u32 {
    let show = ip(&["-o", "link", "show", dev]);
    show.split(':').next().unwrap().trim().parse().expect("ifindex")
}

fn setup(tag: &str) -> Env {
    enter_empty_netns();
    ip(&["link", "add", "tvxlan0", "mtu", "1500", "type", "veth", "peer", "name", "tvxlan1"]);
    let encap_ifindex = ifindex_of("tvxlan0");

    let fs = Bpffs::new(tag);
    let dir = fs.node_dir("n1");
    let dp = Datapath::open(&dir).expect("load datapath");
    let mut overlay = Overlay::open(&dir).expect("load overlay");
    overlay
        .sync(&[
            TunnelEntry::local("172.20.0.0/24".parse().unwrap(), 256),
            TunnelEntry::local("172.20.0.1/32".parse().unwrap(), 1),
            TunnelEntry::remote("172.20.1.0/24".parse().unwrap(), REMOTE_NODE, 257),
        ])
        .unwrap();
    overlay.set_encap_device(encap_ifindex).unwrap();
    Env { dp, overlay, fs, encap_ifindex }
}

fn test_run(prog: &aya::programs::SchedClassifier, frame: &[u8], gso_size: u32) -> (u32, Vec<u8>) {
    test_run_on(prog, frame, gso_size, 0)
}

/// test_run as if the frame arrived on device `ifindex` (0: the namespace's loopback).
fn test_run_on(prog: &aya::programs::SchedClassifier, frame: &[u8], gso_size: u32, ifindex: u32) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 512];
    // struct __sk_buff (192 bytes); test-run takes ifindex (offset 40), gso_segs (164) and
    // gso_size (176).
    let mut ctx = [0u8; 192];
    let segs = if gso_size > 0 { frame.len().div_ceil(gso_size as usize) as u32 } else { 0 };
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    ctx[164..168].copy_from_slice(&segs.to_ne_bytes());
    ctx[176..180].copy_from_slice(&gso_size.to_ne_bytes());
    let res = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: (gso_size > 0 || ifindex > 0).then_some(&ctx[..]),
            ..TestRunOptions::default()
        })
        .unwrap_or_else(|e| {
            panic!("BPF_PROG_TEST_RUN ({} bytes, gso {gso_size}, ifindex {ifindex}): {e:?}", frame.len())
        });
    out.truncate(res.data_size_out as usize);
    (res.return_value, out)
}

/// from_container on lo (ifindex 1, where test-run puts the frame), which plays the veth of the
/// pod that owns the frame's source address: from_container passes only packets from it.
fn from_container(env: &mut Env, frame: &[u8]) -> (u32, Vec<u8>) {
    let source = [frame[26], frame[27], frame[28], frame[29]];
    let info = datapath::abi::NetdevInfo { addr: source, flags: datapath::abi::NetdevFlags::POD };
    env.dp.maps_mut().netdevs.insert(1, info, 0).unwrap();
    test_run(env.dp.classifier(PROG_FROM_CONTAINER).unwrap(), frame, 0)
}

/// A TCP frame whose IP packet is `ip_len` bytes long.
fn tcp_of_len(dst: Ipv4Addr, ip_len: usize) -> Vec<u8> {
    packet::tcp((POD, 40000), (dst, 5201), "A", 1, &vec![0x5a; ip_len - 40])
}

/// The frame with the TTL one lower, its IP checksum recomputed (what a forwarding hop makes).
fn ttl_decremented(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[14 + 8] -= 1;
    fix_ip_checksum(&mut f);
    f
}

/// The one's-complement sum of 16-bit words, folded: 0xffff over a header with a valid checksum.
fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Recomputes the IPv4 header checksum of an Ethernet frame after a test changed the header.
fn fix_ip_checksum(frame: &mut [u8]) {
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = ones_complement_sum(&frame[14..34]);
    frame[24..26].copy_from_slice(&(!sum).to_be_bytes());
}

#[test]
fn pod_packet_to_a_remote_pod_cidr_is_encapsulated_on_the_veth() {
    require_root!();
    let mut env = setup("encap");

    let syn = packet::tcp((POD, 40000), (REMOTE_POD, 80), "S", 1000, b"");
    let (verdict, out) = from_container(&mut env, &syn);
    assert_eq!(verdict, TC_ACT_REDIRECT, "to the VXLAN device");
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src, seen.dst), ((POD, 40000), (REMOTE_POD, 80)), "the inner packet keeps its addresses");
    assert_eq!(seen.ttl, 63, "forwarded by the node: TTL - 1");
    assert_eq!(out, ttl_decremented(&syn), "nothing but the TTL and the IP checksum changes");

    let udp = packet::udp((POD, 33333), (REMOTE_POD, 53), b"query");
    assert_eq!(from_container(&mut env, &udp).0, TC_ACT_REDIRECT);
    let ping = packet::icmp_echo(POD, REMOTE_POD, 7, 1);
    let (verdict, out) = from_container(&mut env, &ping);
    assert_eq!(verdict, TC_ACT_REDIRECT, "ping to a remote pod");
    assert_eq!(packet::parse_checked(&out).ttl, 63);
}

#[test]
fn packets_that_are_not_for_the_tunnel_pass_unchanged() {
    require_root!();
    let mut env = setup("pass");
    for dst in [LOCAL_POD, ROUTER_IP, OUTSIDE] {
        let syn = packet::tcp((POD, 40000), (dst, 80), "S", 1000, b"");
        let (verdict, out) = from_container(&mut env, &syn);
        assert_eq!(verdict, TC_ACT_OK, "{dst} is no tunnel destination");
        assert_eq!(out, syn, "{dst}: unchanged");
    }
    // TTL 1: the stack answers with time exceeded.
    let mut last_hop = packet::tcp((POD, 40000), (REMOTE_POD, 80), "S", 1000, b"");
    last_hop[14 + 8] = 2;
    let last_hop = ttl_decremented(&last_hop);
    let (verdict, out) = from_container(&mut env, &last_hop);
    assert_eq!((verdict, out), (TC_ACT_OK, last_hop));
}

#[test]
fn packets_larger_than_the_tunnel_mtu_are_left_to_the_stack() {
    require_root!();
    let mut env = setup("mtu");
    let fits = tcp_of_len(REMOTE_POD, TUNNEL_MTU);
    assert_eq!(from_container(&mut env, &fits).0, TC_ACT_REDIRECT, "1450 bytes fit");
    let big = tcp_of_len(REMOTE_POD, TUNNEL_MTU + 1);
    let (verdict, out) = from_container(&mut env, &big);
    assert_eq!(verdict, TC_ACT_OK, "1451 bytes: the route MTU answers (ICMP fragmentation needed)");
    assert_eq!(out, big, "unchanged");

    // GSO: what counts is each segment's length after resegmentation.
    let prog = env.dp.classifier(PROG_FROM_CONTAINER).unwrap();
    let aggregate = tcp_of_len(REMOTE_POD, 2840);
    let (verdict, out) = test_run(prog, &aggregate, (TUNNEL_MTU - 40) as u32);
    assert_eq!(verdict, TC_ACT_REDIRECT, "segments of MSS 1410 fit");
    assert_eq!(out, ttl_decremented(&aggregate));
    let (verdict, out) = test_run(prog, &aggregate, 1448);
    assert_eq!(verdict, TC_ACT_OK, "segments of MSS 1448 (1488 bytes) do not fit");
    assert_eq!(out, aggregate);
}

/// A ClusterIP (VIP:80) whose one backend is a pod behind the tunnel.
fn remote_backend_service() -> ServiceEntry {
    ServiceEntry::new(ServiceKind::ClusterIp, VIP, 80, Protocol::Tcp, vec![Backend::active(REMOTE_POD, 8080, false)])
}

#[test]
fn service_traffic_to_a_backend_behind_the_tunnel_is_encapsulated_after_dnat() {
    require_root!();
    let mut env = setup("svc");
    env.dp.sync_services(&[remote_backend_service()]).unwrap();
    let syn = packet::tcp((POD, 40000), (VIP, 80), "S", 1000, b"");
    let (verdict, out) = from_container(&mut env, &syn);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src, seen.dst, seen.ttl), ((POD, 40000), (REMOTE_POD, 8080), 63));
}

#[test]
fn nothing_is_encapsulated_when_the_overlay_is_off() {
    require_root!();
    let mut env = setup("off");
    let syn = packet::tcp((POD, 40000), (REMOTE_POD, 80), "S", 1000, b"");
    env.overlay.set_encap_device(0).unwrap();
    let (verdict, out) = from_container(&mut env, &syn);
    assert_eq!((verdict, out), (TC_ACT_OK, syn.clone()), "native routing: the stack routes it");

    // Leaving tunnel mode switches the veths' encapsulation off before the pins go.
    env.overlay.set_encap_device(env.encap_ifindex).unwrap();
    assert_eq!(from_container(&mut env, &syn).0, TC_ACT_REDIRECT);
    datapath::remove_overlay(&env.fs.node_dir("n1"), "cilium_host", "cilium_vxlan").unwrap();
    let (verdict, out) = from_container(&mut env, &syn);
    assert_eq!((verdict, out), (TC_ACT_OK, syn));
    assert!(datapath::tunnel_list_pinned(&env.fs.node_dir("n1")).unwrap().is_empty());
}

#[test]
fn to_overlay_encapsulates_the_nodes_own_traffic_and_passes_the_rest() {
    require_root!();
    let env = setup("host");
    let to_overlay = env.overlay.classifier(PROG_TO_OVERLAY).unwrap();
    let from_node = packet::tcp((ROUTER_IP, 40000), (REMOTE_POD, 80), "S", 1000, b"");
    let (verdict, out) = test_run(to_overlay, &from_node, 0);
    assert_eq!((verdict, &out), (TC_ACT_REDIRECT, &from_node), "redirected, the frame itself untouched");
    // to_overlay runs after the stack's routing: the route MTU already applied, no check here.
    let big = tcp_of_len(REMOTE_POD, 1500);
    assert_eq!(test_run(to_overlay, &big, 0).0, TC_ACT_REDIRECT);
    let local = packet::tcp((ROUTER_IP, 40000), (LOCAL_POD, 80), "S", 1000, b"");
    let (verdict, out) = test_run(to_overlay, &local, 0);
    assert_eq!((verdict, out), (TC_ACT_OK, local));

    // from_overlay in an empty namespace: no FIB answer, so the decapsulated packet goes to the
    // stack unchanged.
    let from_overlay = env.overlay.classifier(PROG_FROM_OVERLAY).unwrap();
    let inner = packet::tcp((REMOTE_POD, 80), (POD, 40000), "SA", 1, b"");
    let (verdict, out) = test_run(from_overlay, &inner, 0);
    assert_eq!((verdict, out), (TC_ACT_OK, inner));
}

/// A veth pair, up (with loopback), in the test namespace, which forwards.
fn forwarding_veth(dev: &str, peer: &str) {
    ip(&["link", "add", dev, "type", "veth", "peer", "name", peer]);
    for d in ["lo", dev, peer] {
        ip(&["link", "set", d, "up"]);
    }
    netconf::sysctl::write_here("net/ipv4/ip_forward", "1").expect("forwarding in the test namespace");
}

/// A pod of this node behind its veth tlxc0, as the CNI sets it up (a /32 route and a neighbour)
/// and the agent marks it (packets for it go to the peer). Returns the veth's and the pod's MAC.
fn add_local_pod(env: &mut Env) -> ([u8; 6], [u8; 6]) {
    forwarding_veth("tlxc0", "tlxc1");
    ip(&["route", "add", "172.20.0.9/32", "dev", "tlxc0"]);
    ip(&["neigh", "add", "172.20.0.9", "lladdr", "02:00:00:00:00:09", "dev", "tlxc0", "nud", "permanent"]);
    env.dp.attach_pod_device("tlxc0", Ipv4Addr::new(172, 20, 0, 9)).expect("attach the pod programs");
    (mac_of("tlxc0"), [0x02, 0, 0, 0, 0, 0x09])
}

/// The local pod's connection to a ClusterIP whose backend is behind the tunnel, opened (its SYN
/// DNATed and encapsulated). Returns the backend's SYN-ACK, before reverse NAT.
fn clusterip_flow_to_remote_backend(env: &mut Env) -> Vec<u8> {
    env.dp.sync_services(&[remote_backend_service()]).unwrap();
    let syn = packet::tcp((LOCAL_POD, 40001), (VIP, 80), "S", 1000, b"");
    assert_eq!(from_container(env, &syn).0, TC_ACT_REDIRECT, "DNATed and encapsulated");
    packet::tcp((REMOTE_POD, 8080), (LOCAL_POD, 40001), "SA", 5000, b"")
}

fn mac_of(dev: &str) -> [u8; 6] {
    let show = ip(&["-o", "link", "show", dev]);
    let hex = show.split("link/ether ").nth(1).and_then(|s| s.split_whitespace().next()).expect("link/ether");
    let mut mac = [0u8; 6];
    for (b, h) in mac.iter_mut().zip(hex.split(':')) {
        *b = u8::from_str_radix(h, 16).unwrap();
    }
    mac
}

#[test]
fn decapsulated_packets_for_local_pods_are_reverse_nated_and_handed_to_the_pod() {
    require_root!();
    let mut env = setup("deliver");
    assert!(env.overlay.delivers_to_pods(), "the service datapath's pins are there");
    let (lxc_mac, pod_mac) = add_local_pod(&mut env);
    let deliver = env.overlay.classifier(datapath::tunnel::PROG_OVERLAY_DELIVER).unwrap();

    let inner = packet::tcp((REMOTE_POD, 80), (LOCAL_POD, 40000), "SA", 1, b"");
    let (verdict, out) = test_run(deliver, &inner, 0);
    assert_eq!(verdict, TC_ACT_REDIRECT, "into the pod (bpf_redirect_peer)");
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src, seen.dst, seen.ttl), ((REMOTE_POD, 80), (LOCAL_POD, 40000), 63));
    assert_eq!((seen.eth_src, seen.eth_dst), (lxc_mac, pod_mac), "from the pod's veth to its eth0");

    // The pod's connection to a ClusterIP with a backend behind the tunnel: the backend's reply
    // gets the frontend back as source here, as to_container would have done.
    let synack = clusterip_flow_to_remote_backend(&mut env);
    let deliver = env.overlay.classifier(datapath::tunnel::PROG_OVERLAY_DELIVER).unwrap();
    let (verdict, out) = test_run(deliver, &synack, 0);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src, seen.dst), ((VIP, 80), (LOCAL_POD, 40001)), "reverse NAT before delivery");

    // Not a pod of this node (a node address, the router IP, another network): FIB forwarding as
    // from_overlay does, here without a route, so to the stack unchanged.
    for dst in [OUTSIDE, ROUTER_IP] {
        let frame = packet::tcp((REMOTE_POD, 80), (dst, 40000), "SA", 1, b"");
        let (verdict, out) = test_run(deliver, &frame, 0);
        assert_eq!((verdict, out), (TC_ACT_OK, frame), "{dst}");
    }
}

/// This node's address on the underlay, and the remote node's MAC there.
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 100);
const REMOTE_NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x65];
const VXLAN_HEADERS: usize = 50;

/// The node's underlay device (tund0, with the node address, known to the datapath as a node
/// device) and the remote node as its neighbour: the FIB knows the way to the tunnel endpoint.
/// Returns tund0's ifindex.
fn underlay(env: &mut Env) -> u32 {
    forwarding_veth("tund0", "tund1");
    ip(&["addr", "add", "192.168.10.100/24", "dev", "tund0"]);
    ip(&["neigh", "add", "192.168.10.101", "lladdr", "02:00:00:00:00:65", "dev", "tund0", "nud", "permanent"]);
    env.dp.attach_netdev("tund0", Some(NODE_IP)).expect("attach from_netdev");
    ifindex_of("tund0")
}

/// Checks the outer headers of a frame encapsulated by this node towards REMOTE_NODE and returns
/// (UDP source port, VNI).
fn check_outer(out: &[u8], tund_mac: [u8; 6]) -> (u16, u32) {
    let be16 = |o: usize| u16::from_be_bytes([out[o], out[o + 1]]);
    assert_eq!(&out[0..6], &REMOTE_NODE_MAC, "to the next hop's MAC");
    assert_eq!(&out[6..12], &tund_mac, "from the underlay device's MAC");
    assert_eq!(be16(12), 0x0800);
    let ip = &out[14..34];
    assert_eq!(ip[0], 0x45);
    assert_eq!(usize::from(be16(16)), out.len() - 14, "outer total length");
    assert_eq!((ip[8], ip[9]), (64, 17), "TTL 64, UDP");
    assert_eq!(&ip[12..16], &NODE_IP.octets(), "from this node's address");
    assert_eq!(&ip[16..20], &REMOTE_NODE.octets(), "to the tunnel endpoint");
    assert_eq!(ones_complement_sum(ip), 0xffff, "valid outer IP checksum");
    let sport = be16(34);
    assert!((32768..61000).contains(&sport), "source port {sport} from the flow hash");
    assert_eq!(be16(36), 8472);
    assert_eq!(usize::from(be16(38)), out.len() - 34, "UDP length");
    assert_eq!(be16(40), 0, "no outer UDP checksum");
    assert_eq!(&out[42..46], &[0x08, 0, 0, 0], "VXLAN flags: VNI valid");
    (sport, u32::from_be_bytes([out[46], out[47], out[48], out[49]]) >> 8)
}

#[test]
fn pod_packets_are_encapsulated_in_bpf_when_the_fib_knows_the_underlay() {
    require_root!();
    let mut env = setup("bpfencap");
    underlay(&mut env);
    let tund_mac = mac_of("tund0");

    let syn = packet::tcp((POD, 40000), (REMOTE_POD, 80), "S", 1000, b"");
    let (verdict, out) = from_container(&mut env, &syn);
    assert_eq!(verdict, TC_ACT_REDIRECT, "out of the underlay device");
    assert_eq!(out.len(), syn.len() + VXLAN_HEADERS);
    let (sport, vni) = check_outer(&out, tund_mac);
    assert_eq!(vni, 256, "the VNI carries the source pod CIDR's identity");
    assert_eq!(&out[VXLAN_HEADERS..], &ttl_decremented(&syn)[..], "the inner frame, forwarded (TTL - 1)");
    assert_eq!(from_container(&mut env, &syn).1[34..36], sport.to_be_bytes(), "one flow, one source port");

    // No path to the endpoint in the FIB: the VXLAN device's way (frame unchanged but the TTL).
    ip(&["neigh", "del", "192.168.10.101", "dev", "tund0"]);
    ip(&["link", "set", "tund0", "down"]);
    let (verdict, out) = from_container(&mut env, &syn);
    assert_eq!((verdict, out), (TC_ACT_REDIRECT, ttl_decremented(&syn)), "to the VXLAN device");
}

/// A VXLAN frame from REMOTE_NODE to `outer_dst`, arriving on a device with MAC `dev_mac`.
fn vxlan_frame(dev_mac: [u8; 6], outer_dst: Ipv4Addr, vxlan_flags: u8, inner: &[u8]) -> Vec<u8> {
    vxlan_frame_from(REMOTE_NODE, dev_mac, outer_dst, vxlan_flags, inner)
}

fn vxlan_frame_from(sender: Ipv4Addr, dev_mac: [u8; 6], outer_dst: Ipv4Addr, vxlan_flags: u8, inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![vxlan_flags, 0, 0, 0, 0, 1, 1, 0];
    payload.extend_from_slice(inner);
    let b = etherparse::PacketBuilder::ethernet2(REMOTE_NODE_MAC, dev_mac)
        .ipv4(sender.octets(), outer_dst.octets(), 64)
        .udp(45000, 8472);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

#[test]
fn vxlan_packets_for_local_pods_are_decapsulated_on_the_node_device() {
    require_root!();
    let mut env = setup("bpfdecap");
    let tund = underlay(&mut env);
    let tund_mac = mac_of("tund0");
    let (lxc_mac, pod_mac) = add_local_pod(&mut env);
    let from_netdev = |env: &Env, frame: &[u8]| {
        test_run_on(env.dp.classifier(datapath::objects::PROG_FROM_NETDEV).unwrap(), frame, 0, tund)
    };

    let inner = packet::tcp((REMOTE_POD, 80), (LOCAL_POD, 40000), "SA", 1, b"hello");
    let (verdict, out) = from_netdev(&env, &vxlan_frame(tund_mac, NODE_IP, 0x08, &inner));
    assert_eq!(verdict, TC_ACT_REDIRECT, "into the pod (bpf_redirect_peer)");
    assert_eq!(out.len(), inner.len(), "outer headers gone");
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src, seen.dst, seen.ttl), ((REMOTE_POD, 80), (LOCAL_POD, 40000), 63));
    assert_eq!((seen.eth_src, seen.eth_dst), (lxc_mac, pod_mac), "from the pod's veth to its eth0");
    assert_eq!(seen.payload, b"hello");

    // The reply of a remote backend to this pod's ClusterIP connection: reverse NAT first.
    let synack = clusterip_flow_to_remote_backend(&mut env);
    let (verdict, out) = from_netdev(&env, &vxlan_frame(tund_mac, NODE_IP, 0x08, &synack));
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src, seen.dst), ((VIP, 80), (LOCAL_POD, 40001)), "reverse NAT before delivery");

    // Everything else is left to the VXLAN driver, untouched.
    let to_outside = packet::tcp((REMOTE_POD, 80), (OUTSIDE, 40000), "SA", 1, b"");
    let to_router = packet::tcp((REMOTE_POD, 80), (ROUTER_IP, 40000), "SA", 1, b"");
    let full = vxlan_frame(tund_mac, NODE_IP, 0x08, &inner);
    let mut fragment = inner.clone();
    fragment[14 + 6] = 0x20; // more fragments
    fix_ip_checksum(&mut fragment);
    let cases: [(&str, Vec<u8>); 7] = [
        // the driver takes it, and from_overlay behind it drops it (no tunnel peer)
        ("a sender that is no node", vxlan_frame_from(OUTSIDE, tund_mac, NODE_IP, 0x08, &inner)),
        ("not a pod of this node", vxlan_frame(tund_mac, NODE_IP, 0x08, &to_outside)),
        ("the node's router IP", vxlan_frame(tund_mac, NODE_IP, 0x08, &to_router)),
        ("another outer destination", vxlan_frame(tund_mac, OUTSIDE, 0x08, &inner)),
        ("no valid VNI", vxlan_frame(tund_mac, NODE_IP, 0x00, &inner)),
        ("an inner fragment", vxlan_frame(tund_mac, NODE_IP, 0x08, &fragment)),
        ("truncated inner header", full[..14 + 20 + 8 + 8 + 14 + 10].to_vec()),
    ];
    for (what, frame) in cases {
        let (verdict, out) = from_netdev(&env, &frame);
        assert_eq!((verdict, out), (TC_ACT_OK, frame), "{what}");
    }
}
