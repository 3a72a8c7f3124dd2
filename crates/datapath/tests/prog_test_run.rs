//! The tc programs run with BPF_PROG_TEST_RUN: a crafted frame in, the verdict and the rewritten
//! frame out, checked field by field and checksum by checksum. Needs root; each test gets its own
//! bpffs and an empty network namespace (so no FIB route exists and forwarding falls back to the
//! stack with TC_ACT_OK).

mod common;

use std::net::Ipv4Addr;

use aya::programs::{TestRun, TestRunOptions};
use common::packet::{self, CLIENT_MAC, NODE_MAC, Seen};
use common::{Bpffs, enter_empty_netns};
use datapath::abi::{self, CtFlags, NatFlags, NetdevFlags, NetdevInfo};
use datapath::maglev::{LB_MAGLEV_LUT_SIZE, flow_hash};
use datapath::objects::{PROG_FROM_CONTAINER, PROG_FROM_NETDEV, PROG_TO_CONTAINER};
use datapath::{
    Backend, BackendState, Datapath, DropReason, EventKind, EventsLevel, LbAlgorithm, LbDatapath, Protocol,
    ServiceEntry, ServiceKind,
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const POD: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 2);
const BE1: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 5);
const BE2: Ipv4Addr = Ipv4Addr::new(172, 20, 1, 6);
const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);
const LB_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 211);

struct Env {
    dp: Datapath,
    _fs: Bpffs,
}

fn setup(tag: &str) -> Env {
    enter_empty_netns();
    let fs = Bpffs::new(tag);
    let dp = Datapath::open(fs.node_dir("n1")).expect("load datapath");
    Env { dp, _fs: fs }
}

/// Runs `prog` on `frame` on lo (ifindex 1), the test namespace's only device. from_container
/// passes only packets from the address of the pod behind its veth: for it, lo plays the veth of
/// the pod that owns the frame's source address, and gets its node device entry back after.
fn run(dp: &mut Datapath, prog: &'static str, frame: &[u8]) -> (u32, Vec<u8>) {
    if prog != PROG_FROM_CONTAINER {
        return run_as_is(dp, prog, frame);
    }
    let node_entry = dp.maps().netdevs.get(&1, 0).ok();
    let source = frame.get(26..30).map_or([0; 4], |s| [s[0], s[1], s[2], s[3]]);
    dp.maps_mut().netdevs.insert(1, NetdevInfo { addr: source, flags: NetdevFlags::POD }, 0).unwrap();
    let result = run_as_is(dp, prog, frame);
    match node_entry {
        Some(info) => dp.maps_mut().netdevs.insert(1, info, 0).unwrap(),
        None => dp.maps_mut().netdevs.remove(&1).unwrap(),
    }
    result
}

fn run_as_is(dp: &Datapath, prog: &'static str, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 512];
    let res = dp
        .classifier(prog)
        .unwrap()
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..TestRunOptions::default() })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(res.data_size_out as usize);
    (res.return_value, out)
}

fn cluster_ip(backends: Vec<Backend>) -> ServiceEntry {
    ServiceEntry::new(ServiceKind::ClusterIp, VIP, 80, Protocol::Tcp, backends)
}

/// A node port on NODE whose only backend (BE2:`backend_port`) runs on another node, so
/// from_netdev SNATs to NODE: the address of the test netns' only device, lo (ifindex 1), where
/// BPF_PROG_TEST_RUN runs.
fn remote_node_port(env: &mut Env, node_port: u16, protocol: Protocol, backend_port: u16) {
    env.dp.maps_mut().netdevs.insert(1, NetdevInfo { addr: NODE.octets(), flags: NetdevFlags::empty() }, 0).unwrap();
    let backends = vec![Backend::active(BE2, backend_port, false)];
    env.dp.sync_services(&[ServiceEntry::new(ServiceKind::NodePort, NODE, node_port, protocol, backends)]).unwrap();
}

#[test]
fn pod_to_cluster_ip_is_dnated_and_reply_reverse_nated() {
    require_root!();
    let mut env = setup("dnat");
    env.dp.sync_services(&[cluster_ip(vec![Backend::active(BE1, 8080, true)])]).unwrap();

    let syn = packet::tcp((POD, 40000), (VIP, 80), "S", 1000, b"");
    let (verdict, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &syn);
    assert_eq!(verdict, TC_ACT_OK, "no route in the empty netns: handed to the stack");
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src, seen.dst), ((POD, 40000), (BE1, 8080)));
    assert_eq!(seen.ttl, 64, "TTL untouched when the stack forwards");

    // A data packet with payload exercises the incremental checksum on a longer segment.
    let data = packet::tcp((POD, 40000), (VIP, 80), "A", 1001, b"GET / HTTP/1.1\r\n\r\n");
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &data);
    let seen = packet::parse_checked(&out);
    assert_eq!(seen.dst, (BE1, 8080));
    assert_eq!(seen.payload, b"GET / HTTP/1.1\r\n\r\n");

    // The backend (a pod on this node) answers: its own veth's from_container restores the VIP.
    let synack = packet::tcp((BE1, 8080), (POD, 40000), "SA", 5000, b"");
    let (verdict, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &synack);
    assert_eq!(verdict, TC_ACT_OK);
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src, seen.dst), ((VIP, 80), (POD, 40000)));

    // The same reply seen on the client's veth (to_container) is translated there too.
    let (verdict, out) = run(&mut env.dp, PROG_TO_CONTAINER, &synack);
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(packet::parse_checked(&out).src, (VIP, 80));

    let ct = datapath::dump::ct_list(&env.dp.conntrack_entries().unwrap(), datapath::maps::monotonic_ns());
    assert!(ct.contains("TCP SERVICE 172.20.0.2:40000 -> 10.96.0.10:80"), "{ct}");
    assert!(ct.contains("TCP OUT 172.20.0.2:40000 -> 172.20.0.5:8080"), "{ct}");
    assert!(ct.contains("seen-reply"), "{ct}");
}

#[test]
fn udp_with_and_without_checksum_is_rewritten_correctly() {
    require_root!();
    let mut env = setup("udp");
    let dns = ServiceEntry::new(ServiceKind::ClusterIp, VIP, 53, Protocol::Udp, vec![Backend::active(BE1, 5353, true)]);
    env.dp.sync_services(&[dns]).unwrap();

    let q = packet::udp((POD, 33333), (VIP, 53), b"query");
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &q);
    let seen = packet::parse_checked(&out);
    assert_eq!(seen.dst, (BE1, 5353));

    // UDP without a checksum (0) must stay without one, not get a wrong one.
    let mut q0 = packet::udp((POD, 33334), (VIP, 53), b"query");
    q0[14 + 20 + 6] = 0;
    q0[14 + 20 + 7] = 0;
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &q0);
    assert_eq!(&out[40..42], &[0, 0], "zero UDP checksum preserved");
    assert_eq!(packet::parse_checked(&out).dst, (BE1, 5353));
}

#[test]
fn service_without_backends_rejects_tcp_with_rst() {
    require_root!();
    let mut env = setup("rst");
    env.dp.sync_services(&[cluster_ip(vec![])]).unwrap();

    let syn = packet::tcp((POD, 40001), (VIP, 80), "S", 777, b"");
    let (verdict, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &syn);
    assert_eq!(verdict, TC_ACT_REDIRECT, "the RST goes back out of the ingress device");
    assert_eq!(out.len(), 14 + 20 + 20);
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src, seen.dst), ((VIP, 80), (POD, 40001)));
    assert_eq!(seen.tcp_flags, Some((true, true)), "RST+ACK");
    assert_eq!(seen.seq_ack, Some((0, 778)), "acknowledges the SYN");
    assert_eq!((seen.eth_src, seen.eth_dst), (NODE_MAC, CLIENT_MAC));

    // A segment with ACK gets a bare RST with seq = its ack.
    let ack = packet::tcp((POD, 40001), (VIP, 80), "A", 778, b"x");
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &ack);
    let seen = packet::parse_checked(&out);
    assert_eq!(seen.tcp_flags, Some((true, false)));
    assert_eq!(seen.seq_ack.unwrap().0, 1000);

    // An RST is never answered.
    let rst = packet::tcp((POD, 40001), (VIP, 80), "R", 778, b"");
    assert_eq!(run(&mut env.dp, PROG_FROM_CONTAINER, &rst).0, TC_ACT_SHOT);
}

#[test]
fn service_without_backends_rejects_udp_with_port_unreachable() {
    require_root!();
    let mut env = setup("icmpun");
    env.dp.sync_services(&[ServiceEntry::new(ServiceKind::ClusterIp, VIP, 53, Protocol::Udp, vec![])]).unwrap();
    let q = packet::udp((POD, 33333), (VIP, 53), b"q");
    let (verdict, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &q);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src.0, seen.dst.0), (VIP, POD));
    assert_eq!(seen.icmp, Some((3, 3)), "destination unreachable, port unreachable");
    // The quote is the original IP header and the first 8 bytes after it.
    assert_eq!(&out[14 + 20 + 8..], &q[14..14 + 28]);
}

#[test]
fn ping_to_vip_is_answered_and_unreachable_without_backends() {
    require_root!();
    let mut env = setup("ping");
    let other = Ipv4Addr::new(10, 96, 0, 11);
    env.dp
        .sync_services(&[
            cluster_ip(vec![Backend::active(BE1, 8080, true)]),
            ServiceEntry::new(ServiceKind::ClusterIp, other, 80, Protocol::Tcp, vec![]),
        ])
        .unwrap();

    let echo = packet::icmp_echo(POD, VIP, 7, 1);
    let (verdict, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &echo);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src.0, seen.dst.0, seen.icmp), (VIP, POD, Some((0, 0))));
    assert_eq!(&out[42..], &echo[42..], "echo payload returned unchanged");

    let (verdict, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &packet::icmp_echo(POD, other, 7, 1));
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(packet::parse_checked(&out).icmp, Some((3, 1)), "host unreachable");

    // Not a VIP: untouched. A ClusterIP is not answered from outside (from_netdev).
    let stranger = packet::icmp_echo(POD, Ipv4Addr::new(8, 8, 8, 8), 7, 1);
    assert_eq!(run(&mut env.dp, PROG_FROM_CONTAINER, &stranger), (TC_ACT_OK, stranger.clone()));
    assert_eq!(run(&mut env.dp, PROG_FROM_NETDEV, &echo), (TC_ACT_OK, echo.clone()));
}

#[test]
fn malformed_truncated_and_foreign_packets_are_never_rewritten() {
    require_root!();
    let mut env = setup("malformed");
    env.dp.sync_services(&[cluster_ip(vec![Backend::active(BE1, 8080, true)])]).unwrap();
    let good = packet::tcp((POD, 40002), (VIP, 80), "S", 1, b"");

    let mut cases: Vec<(&str, Vec<u8>, u32)> = Vec::new();
    // IP options announced but cut off (BPF_PROG_TEST_RUN refuses frames shorter than an IPv4
    // header, so this is the shortest truncation it can feed)
    let mut opts = good[..14 + 20].to_vec();
    opts[14] = 0x46;
    opts[16..18].copy_from_slice(&20u16.to_be_bytes());
    cases.push(("truncated ip options", opts, TC_ACT_SHOT));
    // truncated inside the TCP header
    let mut t = good[..14 + 20 + 10].to_vec();
    t[16..18].copy_from_slice(&30u16.to_be_bytes());
    cases.push(("truncated tcp", t, TC_ACT_SHOT));
    // total length beyond the frame
    let mut long = good.clone();
    long[16..18].copy_from_slice(&200u16.to_be_bytes());
    cases.push(("tot_len too large", long, TC_ACT_SHOT));
    // IHL below 5
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    cases.push(("ihl 4", ihl, TC_ACT_SHOT));
    // TCP data offset below 5
    let mut doff = good.clone();
    doff[14 + 20 + 12] = 0x40;
    cases.push(("tcp doff 4", doff, TC_ACT_SHOT));
    // a non-first fragment has no ports to translate: passed untouched
    let mut frag = good.clone();
    frag[20..22].copy_from_slice(&0x0010u16.to_be_bytes());
    cases.push(("fragment", frag, TC_ACT_OK));
    // ARP and other non-IPv4 frames pass
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    cases.push(("arp", arp, TC_ACT_OK));

    for (name, frame, want) in cases {
        let (verdict, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &frame);
        assert_eq!(verdict, want, "from_container verdict for {name}");
        assert_eq!(out, frame, "from_container must not rewrite {name}");
        let (verdict, out) = run(&mut env.dp, PROG_FROM_NETDEV, &frame);
        assert_eq!(verdict, TC_ACT_OK, "from_netdev leaves {name} to the stack");
        assert_eq!(out, frame, "from_netdev must not rewrite {name}");
    }
}

#[test]
fn nodeport_to_remote_backend_is_snated_and_reply_reversed() {
    require_root!();
    let mut env = setup("snat");
    remote_node_port(&mut env, 30080, Protocol::Tcp, 8080);

    let syn = packet::tcp((CLIENT, 5000), (NODE, 30080), "S", 1, b"");
    let (verdict, out) = run(&mut env.dp, PROG_FROM_NETDEV, &syn);
    assert_eq!(verdict, TC_ACT_OK);
    let fwd = packet::parse_checked(&out);
    assert_eq!(fwd.dst, (BE2, 8080));
    assert_eq!(fwd.src.0, NODE, "SNATed to the node so the reply comes back here");
    let nat_port = fwd.src.1;
    assert!((datapath::abi::NAT_PORT_MIN..=datapath::abi::NAT_PORT_MAX).contains(&nat_port), "nat port {nat_port}");

    // The same flow keeps its NAT port.
    let ack = packet::tcp((CLIENT, 5000), (NODE, 30080), "A", 2, b"hello");
    let again = packet::parse_checked(&run(&mut env.dp, PROG_FROM_NETDEV, &ack).1);
    assert_eq!(again.src, (NODE, nat_port));

    // The backend's reply to node:natport goes back to the client from the frontend.
    let reply = packet::tcp((BE2, 8080), (NODE, nat_port), "SA", 9, b"");
    let (verdict, out) = run(&mut env.dp, PROG_FROM_NETDEV, &reply);
    assert_eq!(verdict, TC_ACT_OK);
    let back = packet::parse_checked(&out);
    assert_eq!((back.src, back.dst), ((NODE, 30080), (CLIENT, 5000)));

    let nat = env.dp.nat_list().unwrap();
    assert!(nat.contains("SNAT-OUT 192.168.10.1:5000 -> 172.20.1.6:8080 XLATE 192.168.10.100"), "{nat}");
    assert!(nat.contains("SNAT-IN 172.20.1.6:8080 -> 192.168.10.100"), "{nat}");
}

/// A frame flooded to this node for another host's MAC (a switch that lost the owner's port) is
/// left to the stack, which drops it: the owner may still be alive and answer too.
#[test]
fn frames_for_another_hosts_mac_are_not_translated() {
    require_root!();
    let mut env = setup("otherhost");
    remote_node_port(&mut env, 30080, Protocol::Tcp, 8080);
    let mut syn = packet::tcp((CLIENT, 5000), (NODE, 30080), "S", 1, b"");
    syn[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    let (verdict, out) = run(&mut env.dp, PROG_FROM_NETDEV, &syn);
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(out, syn, "rewritten although it was for another host");
    assert!(env.dp.nat_list().unwrap().lines().all(|l| !l.contains("SNAT")), "a flow was set up for it");
    // The same frame to this node's MAC is translated.
    syn[0..6].copy_from_slice(&NODE_MAC);
    let fwd = packet::parse_checked(&run(&mut env.dp, PROG_FROM_NETDEV, &syn).1);
    assert_eq!(fwd.dst, (BE2, 8080));
}

#[test]
fn snat_ports_of_closed_flows_are_reused_and_open_ones_never_taken() {
    require_root!();
    let mut env = setup("snatreuse");
    remote_node_port(&mut env, 30080, Protocol::Tcp, 8080);
    let owner_of = |port: u16| abi::Ct4Key::new(BE2, 8080, NODE, port, abi::IPPROTO_TCP, abi::NAT_INGRESS);
    let other = Ipv4Addr::new(10, 9, 9, 9);
    let fill = |env: &mut Env, flags: NatFlags, last_seen_ns: u64| {
        for port in abi::NAT_PORT_MIN..=abi::NAT_PORT_MAX {
            let e = abi::NatEntry { last_seen_ns, to_addr: other.octets(), to_port: abi::port_be(port), flags };
            env.dp.maps_mut().snat.insert(owner_of(port), e, 0).unwrap();
        }
    };

    // Every port of the range belongs to an open connection: a new flow gets none and is dropped
    // rather than sent out with a port that would take another connection's replies.
    let now = datapath::maps::monotonic_ns();
    fill(&mut env, NatFlags::SEEN_REPLY, now);
    let syn = packet::tcp((CLIENT, 5000), (NODE, 30080), "S", 1, b"");
    assert_eq!(run(&mut env.dp, PROG_FROM_NETDEV, &syn).0, TC_ACT_SHOT);

    // The same connections closed (FIN both ways) two seconds ago: their ports are free again.
    let closed = NatFlags::SEEN_REPLY | NatFlags::FIN_FWD | NatFlags::FIN_REV;
    fill(&mut env, closed, now - 2_000_000_000);
    let (verdict, out) = run(&mut env.dp, PROG_FROM_NETDEV, &syn);
    assert_eq!(verdict, TC_ACT_OK);
    let fwd = packet::parse_checked(&out);
    let port = fwd.src.1;
    assert_eq!(fwd.src.0, NODE);
    let owner = env.dp.maps().snat.get(&owner_of(port), 0).unwrap();
    assert_eq!((abi::addr(owner.to_addr), abi::port_host(owner.to_port)), (CLIENT, 5000), "the port changed hands");
    assert_eq!(owner.flags, NatFlags::empty(), "a new connection starts open");

    // The new connection's close is tracked in both directions, which frees its port in turn.
    run(&mut env.dp, PROG_FROM_NETDEV, &packet::tcp((CLIENT, 5000), (NODE, 30080), "FA", 2, b""));
    run(&mut env.dp, PROG_FROM_NETDEV, &packet::tcp((BE2, 8080), (NODE, port), "FA", 9, b""));
    let owner = env.dp.maps().snat.get(&owner_of(port), 0).unwrap();
    assert_eq!(owner.flags, closed);
}

/// SNAT port exhaustion is a drop like any other: counted under its reason
/// (`DROP_NAT_NO_MAPPING`, "No mapping for NAT masquerade") and reported in a drop event, and it
/// leaves no half-made mapping behind.
#[test]
fn snat_port_exhaustion_is_a_counted_drop_with_its_reason_and_an_event() {
    require_root!();
    let mut env = setup("snatfull");
    remote_node_port(&mut env, 30080, Protocol::Tcp, 8080);
    env.dp.set_events_level(EventsLevel::Medium).unwrap();
    let mut reader = env.dp.event_reader().unwrap().expect("the real datapath has a reader");
    // Every port of the range belongs to another client's open connection to the same backend.
    let now = datapath::maps::monotonic_ns();
    let other = Ipv4Addr::new(10, 9, 9, 9);
    for port in abi::NAT_PORT_MIN..=abi::NAT_PORT_MAX {
        let owner = abi::Ct4Key::new(BE2, 8080, NODE, port, abi::IPPROTO_TCP, abi::NAT_INGRESS);
        let e = abi::NatEntry {
            last_seen_ns: now,
            to_addr: other.octets(),
            to_port: abi::port_be(port),
            flags: NatFlags::SEEN_REPLY,
        };
        env.dp.maps_mut().snat.insert(owner, e, 0).unwrap();
    }
    let before = env.dp.counters().unwrap();

    let syns: Vec<Vec<u8>> = (0..3).map(|i| packet::tcp((CLIENT, 5000 + i), (NODE, 30080), "S", 1, b"")).collect();
    for syn in &syns {
        assert_eq!(run(&mut env.dp, PROG_FROM_NETDEV, syn).0, TC_ACT_SHOT, "sent out without a port of its own");
    }

    let after = env.dp.counters().unwrap();
    let (was, now_count) = (before.drops_of(DropReason::NAT_NO_MAPPING), after.drops_of(DropReason::NAT_NO_MAPPING));
    assert_eq!(now_count.packets, was.packets + 3, "{after:?}");
    let bytes: u64 = syns.iter().map(|f| f.len() as u64).sum();
    assert_eq!(now_count.bytes, was.bytes + bytes, "{after:?}");
    assert_eq!(after.total_drops(), before.total_drops() + 3, "counted under another reason too: {after:?}");
    assert_eq!(DropReason::NAT_NO_MAPPING.description(), "No mapping for NAT masquerade");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut drops = Vec::new();
    while drops.len() < 3 && std::time::Instant::now() < deadline {
        let batch = reader.read(std::time::Duration::from_millis(100), 64).unwrap();
        drops.extend(batch.events.into_iter().filter(|e| e.kind == EventKind::Drop));
    }
    assert_eq!(drops.len(), 3, "{drops:#?}");
    for (i, drop) in drops.iter().enumerate() {
        assert_eq!(drop.drop_reason(), Some(DropReason::NAT_NO_MAPPING), "{drop:?}");
        assert_eq!((drop.saddr, drop.proto), (CLIENT, abi::IPPROTO_TCP), "{drop:?}");
        assert!(drops.iter().filter(|d| d.sport == 5000 + i as u16).count() == 1, "{drops:#?}");
    }
    // No forward mapping was written for the refused flows.
    let nat = env.dp.nat_list().unwrap();
    assert!(!nat.contains("SNAT-OUT 192.168.10.1:500"), "{nat}");
}

#[test]
fn nodeport_to_local_backend_keeps_client_address() {
    require_root!();
    let mut env = setup("local");
    env.dp.maps_mut().netdevs.insert(1, NetdevInfo { addr: NODE.octets(), flags: NetdevFlags::empty() }, 0).unwrap();
    let np =
        ServiceEntry::new(ServiceKind::NodePort, NODE, 30080, Protocol::Tcp, vec![Backend::active(BE1, 8080, true)]);
    env.dp.sync_services(&[np]).unwrap();
    let seen = packet::parse_checked(
        &run(&mut env.dp, PROG_FROM_NETDEV, &packet::tcp((CLIENT, 5001), (NODE, 30080), "S", 1, b"")).1,
    );
    assert_eq!((seen.src, seen.dst), ((CLIENT, 5001), (BE1, 8080)));
    // The backend pod's reply is reverse-NATed on its veth.
    let reply = packet::tcp((BE1, 8080), (CLIENT, 5001), "SA", 1, b"");
    let seen = packet::parse_checked(&run(&mut env.dp, PROG_FROM_CONTAINER, &reply).1);
    assert_eq!(seen.src, (NODE, 30080));
}

#[test]
fn cluster_ip_is_not_reachable_from_outside_and_etp_local_needs_a_local_backend() {
    require_root!();
    let mut env = setup("scope");
    let mut lb =
        ServiceEntry::new(ServiceKind::LoadBalancer, LB_IP, 80, Protocol::Tcp, vec![Backend::active(BE2, 8080, false)]);
    lb.external_traffic_local = true;
    env.dp.sync_services(&[cluster_ip(vec![Backend::active(BE1, 8080, true)]), lb]).unwrap();

    let to_cip = packet::tcp((CLIENT, 5002), (VIP, 80), "S", 1, b"");
    assert_eq!(run(&mut env.dp, PROG_FROM_NETDEV, &to_cip), (TC_ACT_OK, to_cip.clone()));

    // eTP=Local with no local backend: refused from outside...
    let (verdict, out) = run(&mut env.dp, PROG_FROM_NETDEV, &packet::tcp((CLIENT, 5003), (LB_IP, 80), "S", 1, b""));
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(packet::parse_checked(&out).tcp_flags, Some((true, true)));
    // ...but pods still reach every backend.
    let seen = packet::parse_checked(
        &run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, 5004), (LB_IP, 80), "S", 1, b"")).1,
    );
    assert_eq!(seen.dst, (BE2, 8080));
}

#[test]
fn terminating_backend_keeps_its_flows_and_gets_no_new_ones() {
    require_root!();
    let mut env = setup("term");
    env.dp.sync_services(&[cluster_ip(vec![Backend::active(BE1, 8080, true)])]).unwrap();
    let first = packet::tcp((POD, 41000), (VIP, 80), "S", 1, b"");
    assert_eq!(packet::parse_checked(&run(&mut env.dp, PROG_FROM_CONTAINER, &first).1).dst, (BE1, 8080));

    let mut old = Backend::active(BE1, 8080, true);
    old.state = BackendState::Terminating;
    env.dp.sync_services(&[cluster_ip(vec![old, Backend::active(BE2, 8080, false)])]).unwrap();

    let cont = packet::tcp((POD, 41000), (VIP, 80), "A", 2, b"more");
    assert_eq!(
        packet::parse_checked(&run(&mut env.dp, PROG_FROM_CONTAINER, &cont).1).dst,
        (BE1, 8080),
        "existing flow stays"
    );
    for port in 41001..41021 {
        let syn = packet::tcp((POD, port), (VIP, 80), "S", 1, b"");
        assert_eq!(
            packet::parse_checked(&run(&mut env.dp, PROG_FROM_CONTAINER, &syn).1).dst,
            (BE2, 8080),
            "new flow avoids it"
        );
    }

    // Once the backend is deleted, its flow is moved rather than blackholed.
    env.dp.sync_services(&[cluster_ip(vec![Backend::active(BE2, 8080, false)])]).unwrap();
    assert_eq!(packet::parse_checked(&run(&mut env.dp, PROG_FROM_CONTAINER, &cont).1).dst, (BE2, 8080));
}

/// A flow whose conntrack entries are gone (evicted from the LRU map under pressure) keeps its
/// backend: the next packet, not a SYN, picks by the flow's hash as the first one did, instead of
/// landing on another backend that would reset it.
#[test]
fn a_flow_that_lost_its_conntrack_entries_keeps_its_backend() {
    require_root!();
    let mut env = setup("evict");
    let backends: Vec<Backend> =
        (0..4).map(|i| Backend::active(Ipv4Addr::new(172, 20, 0, 20 + i), 8080, true)).collect();
    env.dp.sync_services(&[cluster_ip(backends)]).unwrap();
    let mut first = std::collections::BTreeMap::new();
    for port in 41000..41032 {
        let syn = packet::tcp((POD, port), (VIP, 80), "S", 1, b"");
        first.insert(port, packet::parse_checked(&run(&mut env.dp, PROG_FROM_CONTAINER, &syn).1).dst);
    }
    let used: std::collections::BTreeSet<_> = first.values().collect();
    assert!(used.len() >= 3, "32 flows over 4 backends used only {used:?}");
    let keys: Vec<_> = env.dp.maps().ct.keys().map(Result::unwrap).collect();
    for k in keys {
        env.dp.maps_mut().ct.remove(&k).unwrap();
    }
    for (port, backend) in first {
        let ack = packet::tcp((POD, port), (VIP, 80), "A", 2, b"more");
        let now = packet::parse_checked(&run(&mut env.dp, PROG_FROM_CONTAINER, &ack).1).dst;
        assert_eq!(now, backend, "flow from port {port} moved after losing its conntrack entries");
    }
}

#[test]
fn session_affinity_pins_a_client_to_one_backend() {
    require_root!();
    let mut env = setup("affinity");
    let backends: Vec<Backend> =
        (1..=5).map(|i| Backend::active(Ipv4Addr::new(172, 20, 0, 10 + i), 8080, true)).collect();
    let mut svc = cluster_ip(backends.clone());
    svc.affinity_timeout = Some(10800);
    env.dp.sync_services(&[svc]).unwrap();

    let mut chosen = std::collections::BTreeSet::new();
    for port in 42000..42020 {
        let syn = packet::tcp((POD, port), (VIP, 80), "S", 1, b"");
        chosen.insert(packet::parse_checked(&run(&mut env.dp, PROG_FROM_CONTAINER, &syn).1).dst);
    }
    assert_eq!(chosen.len(), 1, "one backend for every connection of the client: {chosen:?}");

    // Without affinity, 20 connections spread over several of the 5 backends.
    env.dp.sync_services(&[cluster_ip(backends)]).unwrap();
    let mut spread = std::collections::BTreeSet::new();
    for port in 43000..43020 {
        let syn = packet::tcp((POD, port), (VIP, 80), "S", 1, b"");
        spread.insert(packet::parse_checked(&run(&mut env.dp, PROG_FROM_CONTAINER, &syn).1).dst);
    }
    assert!(spread.len() > 1, "random selection used one backend for 20 flows");
}

#[test]
fn maglev_choice_matches_the_userspace_table() {
    require_root!();
    let mut env = setup("maglev");
    let backends: Vec<Backend> = (1..=7).map(|i| Backend::active(Ipv4Addr::new(172, 20, 2, i), 8080, true)).collect();
    let mut lb = ServiceEntry::new(ServiceKind::LoadBalancer, LB_IP, 80, Protocol::Tcp, backends);
    lb.algorithm = LbAlgorithm::Maglev;
    env.dp.sync_services(&[lb]).unwrap();

    let state = env.dp.lb_state().clone();
    let frontend = state.services[&abi::Lb4Key::new(LB_IP, 80, abi::IPPROTO_TCP, 0, abi::LB_SCOPE_ALL)];
    let table = &state.maglev[&datapath::lbstate::maglev_key(frontend.rev_nat_index, abi::LB_SCOPE_ALL)];
    for port in 10000..10100u16 {
        let syn = packet::tcp((CLIENT, port), (LB_IP, 80), "S", 1, b"");
        let seen: Seen = packet::parse_checked(&run(&mut env.dp, PROG_FROM_NETDEV, &syn).1);
        let bucket = flow_hash(CLIENT, LB_IP, port, 80, abi::IPPROTO_TCP) as usize % LB_MAGLEV_LUT_SIZE;
        let want = state.backends[&table[bucket]];
        assert_eq!(seen.dst, (abi::addr(want.address), 8080), "flow from port {port}");
    }
}

#[test]
fn affinity_entries_are_used_within_the_timeout_and_replaced_after_it() {
    require_root!();
    let mut env = setup("afftimeout");
    let backends: Vec<Backend> =
        (1..=5).map(|i| Backend::active(Ipv4Addr::new(172, 20, 0, 10 + i), 8080, true)).collect();
    let mut svc = cluster_ip(backends);
    svc.affinity_timeout = Some(1);
    env.dp.sync_services(&[svc]).unwrap();
    let rev =
        env.dp.lb_state().services[&abi::Lb4Key::new(VIP, 80, abi::IPPROTO_TCP, 0, abi::LB_SCOPE_ALL)].rev_nat_index;
    let key = abi::Lb4AffinityKey {
        client_id: u64::from(u32::from_ne_bytes(POD.octets())),
        rev_nat_index: rev,
        netns_cookie: 0,
        pad: [0; 5],
    };
    let first = packet::parse_checked(
        &run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, 44000), (VIP, 80), "S", 1, b"")).1,
    );
    let entry = env.dp.maps().affinity.get(&key, 0).expect("affinity entry written");
    assert_eq!(abi::addr(env.dp.lb_state().backends[&entry.backend_id].address), first.dst.0);

    // Point the client at another backend: the next connection follows the entry.
    let other_id = *env.dp.lb_state().backends.iter().find(|(_, b)| abi::addr(b.address) != first.dst.0).unwrap().0;
    let other = abi::addr(env.dp.lb_state().backends[&other_id].address);
    let now = datapath::maps::monotonic_ns();
    env.dp
        .maps_mut()
        .affinity
        .insert(key, abi::LbAffinityVal { last_used_ns: now, backend_id: other_id, pad: 0 }, 0)
        .unwrap();
    let seen = packet::parse_checked(
        &run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, 44001), (VIP, 80), "S", 1, b"")).1,
    );
    assert_eq!(seen.dst.0, other);

    // Two seconds idle with a one-second timeout: the entry is stale and chosen afresh.
    let stale = now - 2_000_000_000;
    env.dp
        .maps_mut()
        .affinity
        .insert(key, abi::LbAffinityVal { last_used_ns: stale, backend_id: other_id, pad: 0 }, 0)
        .unwrap();
    run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, 44002), (VIP, 80), "S", 1, b""));
    let fresh = env.dp.maps().affinity.get(&key, 0).expect("new affinity entry");
    // The datapath's clock has tick resolution, so "now" there may be a few ms before `now`.
    assert!(fresh.last_used_ns > stale + 1_000_000_000, "entry renewed by a new selection");
}

#[test]
fn a_pod_reaching_itself_through_a_service_is_hairpin_snated() {
    require_root!();
    let mut env = setup("hairpin");
    env.dp.sync_services(&[cluster_ip(vec![Backend::active(POD, 8080, true)])]).unwrap();

    let syn = packet::tcp((POD, 45000), (VIP, 80), "S", 1, b"");
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &syn);
    let fwd = packet::parse_checked(&out);
    assert_eq!(fwd.dst, (POD, 8080));
    assert_eq!(fwd.src.0, abi::LB_HAIRPIN_ADDR, "the pod must not see a packet from itself");

    // The pod answers the loopback address; its veth restores both ends.
    let reply = packet::tcp((POD, 8080), fwd.src, "SA", 1, b"");
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &reply);
    let back = packet::parse_checked(&out);
    assert_eq!((back.src, back.dst), ((VIP, 80), (POD, 45000)));
}

#[test]
fn conntrack_gc_removes_expired_entries_only() {
    require_root!();
    let mut env = setup("gc");
    env.dp.sync_services(&[cluster_ip(vec![Backend::active(BE1, 8080, true)])]).unwrap();
    for port in [46000u16, 46001] {
        run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, port), (VIP, 80), "S", 1, b""));
    }
    let entries = env.dp.maps().ct_entries().unwrap();
    assert_eq!(entries.len(), 4, "SERVICE and OUT per flow");
    let (k, mut e) =
        entries.into_iter().find(|(k, _)| k.sport == abi::port_be(46000) && k.dir == abi::CT_SERVICE).unwrap();
    e.expires_ns = 1;
    env.dp.maps_mut().ct.insert(k, e, 0).unwrap();
    assert_eq!(env.dp.gc_conntrack().unwrap(), 1);
    assert_eq!(env.dp.maps().ct_entries().unwrap().len(), 3);

    // An entry a pass listed as expired, in which a new flow has started since, is kept.
    let (k, _) = env.dp.maps().ct_entries().unwrap().into_iter().find(|(k, _)| k.sport == abi::port_be(46001)).unwrap();
    let now = datapath::maps::monotonic_ns();
    assert!(!env.dp.maps_mut().remove_ct_if_expired(&k, now).unwrap());
    let (_, mut e) = env.dp.maps().ct_entries().unwrap().into_iter().find(|(key, _)| *key == k).unwrap();
    e.expires_ns = 1;
    env.dp.maps_mut().ct.insert(k, e, 0).unwrap();
    assert!(env.dp.maps_mut().remove_ct_if_expired(&k, now).unwrap());
    assert!(!env.dp.maps_mut().remove_ct_if_expired(&k, now).unwrap(), "already gone");
    assert_eq!(env.dp.maps().ct_entries().unwrap().len(), 2);
}

/// The conntrack entry of one flow (by client port and direction) and its seconds to live.
fn ct_entry(dp: &Datapath, client_port: u16, dir: u8) -> (abi::CtEntry, i64) {
    let (_, e) = dp
        .maps()
        .ct_entries()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.sport == abi::port_be(client_port) && k.dir == dir)
        .unwrap_or_else(|| panic!("no entry for port {client_port} dir {dir}"));
    let left = (e.expires_ns as i64 - datapath::maps::monotonic_ns() as i64) / 1_000_000_000;
    (e, left)
}

#[test]
fn an_established_flow_outlives_the_syn_timeout_on_the_client_side_alone() {
    require_root!();
    let mut env = setup("ctlife");
    env.dp.sync_services(&[cluster_ip(vec![Backend::active(BE1, 8080, true)])]).unwrap();
    run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, 47000), (VIP, 80), "S", 1, b""));
    let (_, left) = ct_entry(&env.dp, 47000, abi::CT_SERVICE);
    assert!(left <= 60, "a lone SYN is kept for the SYN timeout, not {left}s");

    // The service entry only sees the client's side: its ACK establishes the flow, so an idle
    // keep-alive connection keeps its backend past the SYN timeout.
    run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, 47000), (VIP, 80), "A", 2, b""));
    let (_, left) = ct_entry(&env.dp, 47000, abi::CT_SERVICE);
    assert!(left > 3600, "established service entry lives {left}s");
}

#[test]
fn the_reply_entry_is_refreshed_now_and_then_and_rebuilt_when_lost() {
    require_root!();
    let mut env = setup("ctsync");
    env.dp.sync_services(&[cluster_ip(vec![Backend::active(BE1, 8080, true)])]).unwrap();
    let fwd = |flags: &str| packet::tcp((POD, 47100), (VIP, 80), flags, 2, b"x");
    run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, 47100), (VIP, 80), "S", 1, b""));
    // The first ACK establishes the flow (a longer lifetime), which reaches the reply entry too;
    // the packets after it leave the reply entry alone.
    run(&mut env.dp, PROG_FROM_CONTAINER, &fwd("A"));
    let (out, left) = ct_entry(&env.dp, 47100, abi::CT_EGRESS);
    assert!(out.packets == 2 && left > 3600, "{out:?} {left}s");
    run(&mut env.dp, PROG_FROM_CONTAINER, &fwd("A"));
    run(&mut env.dp, PROG_FROM_CONTAINER, &fwd("A"));
    assert_eq!(ct_entry(&env.dp, 47100, abi::CT_EGRESS).0.packets, 2);

    // The reply entry disappears (as under LRU pressure): a forward packet stream restores it
    // within CT_REPLY_SYNC_PACKETS packets, and the replies are translated again.
    let (k, _) = env.dp.maps().ct_entries().unwrap().into_iter().find(|(k, _)| k.dir == abi::CT_EGRESS).unwrap();
    env.dp.maps_mut().ct.remove(&k).unwrap();
    let reply = packet::tcp((BE1, 8080), (POD, 47100), "A", 9, b"");
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &reply);
    assert_eq!(packet::parse_checked(&out).src, (BE1, 8080), "no reply entry: left untranslated");
    for _ in 0..abi::CT_REPLY_SYNC_PACKETS {
        run(&mut env.dp, PROG_FROM_CONTAINER, &fwd("A"));
    }
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &reply);
    assert_eq!(packet::parse_checked(&out).src, (VIP, 80));

    // A FIN always reaches the reply entry, so it closes with the flow.
    run(&mut env.dp, PROG_FROM_CONTAINER, &fwd("FA"));
    let (out, left) = ct_entry(&env.dp, 47100, abi::CT_EGRESS);
    assert!(out.flags.contains(CtFlags::CLOSING) && left <= 10, "{out:?} {left}s");
}

#[test]
fn a_new_connection_on_a_closed_flows_tuple_starts_over_in_its_entries() {
    require_root!();
    let mut env = setup("ctreuse");
    env.dp.sync_services(&[cluster_ip(vec![Backend::active(BE1, 8080, true)])]).unwrap();
    for flags in ["S", "A", "FA", "A"] {
        run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, 47200), (VIP, 80), flags, 1, b""));
    }
    run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((BE1, 8080), (POD, 47200), "FA", 9, b""));
    let (old, _) = ct_entry(&env.dp, 47200, abi::CT_SERVICE);
    assert!(old.flags.contains(CtFlags::CLOSING) && old.packets == 4, "{old:?}");

    // The client reuses its port: both entries start over, counted from this SYN.
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, 47200), (VIP, 80), "S", 7, b""));
    assert_eq!(packet::parse_checked(&out).dst, (BE1, 8080));
    for dir in [abi::CT_SERVICE, abi::CT_EGRESS] {
        let (e, left) = ct_entry(&env.dp, 47200, dir);
        assert_eq!(
            (e.packets, e.flags & (CtFlags::CLOSING | CtFlags::SEEN_REPLY)),
            (1, CtFlags::empty()),
            "dir {dir}: {e:?}"
        );
        assert!(left > 10, "dir {dir}: a new flow gets the SYN timeout, not the closing one ({left}s)");
    }
    assert_eq!(env.dp.maps().ct_entries().unwrap().len(), 2, "still two entries for the tuple");
}

#[test]
fn a_direct_connection_on_a_service_flows_tuple_gets_its_replies_untranslated() {
    require_root!();
    let mut env = setup("ctdirect");
    env.dp.sync_services(&[cluster_ip(vec![Backend::active(BE1, 8080, true)])]).unwrap();
    // A service flow, then the client dials the backend itself from the same port: its kernel
    // allows that (another destination), and after the DNAT it is the service flow's tuple.
    for (flags, reply) in [("S", false), ("A", false), ("FA", false), ("FA", true), ("A", false)] {
        let frame = if reply {
            packet::tcp((BE1, 8080), (POD, 47300), flags, 9, b"")
        } else {
            packet::tcp((POD, 47300), (VIP, 80), flags, 1, b"")
        };
        run(&mut env.dp, PROG_FROM_CONTAINER, &frame);
    }
    let direct_syn = packet::tcp((POD, 47300), (BE1, 8080), "S", 50, b"");
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &direct_syn);
    assert_eq!(packet::parse_checked(&out).dst, (BE1, 8080));
    let synack = packet::tcp((BE1, 8080), (POD, 47300), "SA", 90, b"");
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &synack);
    assert_eq!(packet::parse_checked(&out).src, (BE1, 8080), "the direct connection's reply keeps its source");
    let (_, out) = run(&mut env.dp, PROG_TO_CONTAINER, &synack);
    assert_eq!(packet::parse_checked(&out).src, (BE1, 8080), "also on the client's veth");

    // A live service flow keeps its entry: the two would clash at the backend anyway.
    for flags in ["S", "A"] {
        run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, 47301), (VIP, 80), flags, 1, b""));
    }
    run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((POD, 47301), (BE1, 8080), "S", 50, b""));
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((BE1, 8080), (POD, 47301), "A", 90, b""));
    assert_eq!(packet::parse_checked(&out).src, (VIP, 80));

    // The same from outside the node, through the device program, to a NodePort's backend.
    let np =
        ServiceEntry::new(ServiceKind::NodePort, NODE, 30080, Protocol::Tcp, vec![Backend::active(BE1, 8080, true)]);
    env.dp.sync_services(&[np]).unwrap();
    for (flags, reply) in [("S", false), ("A", false), ("FA", false), ("FA", true), ("A", false)] {
        if reply {
            run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((BE1, 8080), (CLIENT, 47400), flags, 9, b""));
        } else {
            run(&mut env.dp, PROG_FROM_NETDEV, &packet::tcp((CLIENT, 47400), (NODE, 30080), flags, 1, b""));
        }
    }
    run(&mut env.dp, PROG_FROM_NETDEV, &packet::tcp((CLIENT, 47400), (BE1, 8080), "S", 50, b""));
    let (_, out) = run(&mut env.dp, PROG_FROM_CONTAINER, &packet::tcp((BE1, 8080), (CLIENT, 47400), "SA", 90, b""));
    assert_eq!(packet::parse_checked(&out).src, (BE1, 8080), "a NodePort flow's leftover does not capture it");
}

/// The flow an ICMP error in an output frame quotes, (source, destination), its header checked
/// for a right checksum.
fn quoted_flow(seen: &packet::Seen) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let (ip, rest) = etherparse::Ipv4Header::from_slice(&seen.payload).expect("quoted IPv4 header");
    assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "quoted header checksum");
    let port = |at: usize| u16::from_be_bytes([rest[at], rest[at + 1]]);
    ((Ipv4Addr::from(ip.source), port(0)), (Ipv4Addr::from(ip.destination), port(2)))
}

#[test]
fn icmp_errors_about_service_flows_name_the_frontend() {
    use etherparse::Icmpv4Type::{DestinationUnreachable, TimeExceeded};
    use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
    require_root!();
    let mut env = setup("icmperr");
    let dns = ServiceEntry::new(ServiceKind::ClusterIp, VIP, 53, Protocol::Udp, vec![Backend::active(BE1, 5353, true)]);
    env.dp.sync_services(&[dns]).unwrap();
    let (_, sent) = run(&mut env.dp, PROG_FROM_CONTAINER, &packet::udp((POD, 40000), (VIP, 53), b"query"));
    assert_eq!(packet::parse_checked(&sent).dst, (BE1, 5353));

    // The backend has no socket on the port: its "port unreachable" reaches the client from the
    // frontend, quoting the packet as the client sent it.
    let unreachable = DestinationUnreachable(DestUnreachableHeader::Port);
    let error = packet::icmp_error(BE1, POD, unreachable.clone(), packet::ip_part(&sent));
    for prog in [PROG_FROM_CONTAINER, PROG_TO_CONTAINER] {
        let (verdict, out) = run(&mut env.dp, prog, &error);
        assert_eq!(verdict, TC_ACT_OK, "{prog}");
        let seen = packet::parse_checked(&out);
        assert_eq!((seen.src.0, seen.dst.0, seen.icmp), (VIP, POD, Some((3, 3))), "{prog}");
        assert_eq!(quoted_flow(&seen).1, (VIP, 53), "{prog}");
    }

    // An error from a router on the way (here: time exceeded) keeps its source; only the quote
    // changes.
    let router = Ipv4Addr::new(192, 168, 10, 200);
    let expired = TimeExceeded(TimeExceededCode::TtlExceededInTransit);
    let (_, out) =
        run(&mut env.dp, PROG_TO_CONTAINER, &packet::icmp_error(router, POD, expired, packet::ip_part(&sent)));
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src.0, quoted_flow(&seen).1), (router, (VIP, 53)));

    // Errors that are not about a service flow, or quote too little to tell, pass unchanged.
    let direct = packet::udp((POD, 40001), (BE1, 5353), b"query");
    let truncated = &packet::ip_part(&sent)[..22]; // the ports cut in half
    for error in [
        packet::icmp_error(BE1, POD, unreachable.clone(), packet::ip_part(&direct)),
        packet::icmp_error(BE1, POD, unreachable.clone(), truncated),
        packet::icmp_error(BE1, NODE, unreachable, packet::ip_part(&sent)),
    ] {
        let (verdict, out) = run(&mut env.dp, PROG_TO_CONTAINER, &error);
        assert_eq!((verdict, &out), (TC_ACT_OK, &error));
    }
}

#[test]
fn icmp_errors_about_snated_north_south_flows_go_back_to_the_client() {
    use etherparse::Icmpv4Type::DestinationUnreachable;
    use etherparse::icmpv4::DestUnreachableHeader;
    require_root!();
    let mut env = setup("icmpsnat");
    remote_node_port(&mut env, 30053, Protocol::Udp, 5353);
    let (_, sent) = run(&mut env.dp, PROG_FROM_NETDEV, &packet::udp((CLIENT, 5000), (NODE, 30053), b"query"));
    let fwd = packet::parse_checked(&sent);
    assert_eq!((fwd.src.0, fwd.dst), (NODE, (BE2, 5353)), "DNATed and SNATed to the node");

    // The remote backend's "port unreachable" comes to the node about node:natport -> backend.
    let unreachable = DestinationUnreachable(DestUnreachableHeader::Port);
    let error = packet::icmp_error(BE2, NODE, unreachable.clone(), packet::ip_part(&sent));
    let (verdict, out) = run(&mut env.dp, PROG_FROM_NETDEV, &error);
    assert_eq!(verdict, TC_ACT_OK, "no route in the empty netns: handed to the stack");
    let seen = packet::parse_checked(&out);
    assert_eq!((seen.src.0, seen.dst.0, seen.icmp), (NODE, CLIENT, Some((3, 3))));
    assert_eq!(quoted_flow(&seen), ((CLIENT, 5000), (NODE, 30053)), "the quote is the client's own packet");

    // An error about a port no flow holds is the node's own business.
    let mut stray = packet::ip_part(&sent).to_vec();
    let other_port = if fwd.src.1 == 61999 { 62000u16 } else { 61999 };
    stray[20..22].copy_from_slice(&other_port.to_be_bytes());
    let error = packet::icmp_error(BE2, NODE, unreachable, &stray);
    let (verdict, out) = run(&mut env.dp, PROG_FROM_NETDEV, &error);
    assert_eq!((verdict, &out), (TC_ACT_OK, &error));
}

#[test]
fn services_that_do_not_fit_the_map_are_refused_before_any_write() {
    require_root!();
    enter_empty_netns();
    let fs = Bpffs::new("svcfull");
    let config = datapath::DatapathConfig { services_max: 8, ..datapath::DatapathConfig::default() };
    let mut dp = Datapath::open_with(fs.node_dir("n1"), &config).expect("load datapath");
    // A ClusterIP with 3 backends takes 5 rows (frontend, 3 slots, ICMP echo): one fits, two do not.
    let backends = || (5..8).map(|i| Backend::active(Ipv4Addr::new(172, 20, 0, i), 80, true)).collect::<Vec<_>>();
    let first = ServiceEntry::new(ServiceKind::ClusterIp, VIP, 80, Protocol::Tcp, backends());
    let second = ServiceEntry::new(ServiceKind::ClusterIp, Ipv4Addr::new(10, 96, 0, 11), 80, Protocol::Tcp, backends());
    dp.sync_services(std::slice::from_ref(&first)).expect("5 rows fit in 8");
    let err = dp.sync_services(&[first, second]).expect_err("10 rows do not fit in 8").to_string();
    assert!(
        err.contains(abi::MAP_SERVICES)
            && err.contains("2 frontends need 10 entries")
            && err.contains("the map holds 8"),
        "{err}"
    );
    assert_eq!(dp.maps().services.keys().count(), 5, "nothing of the second service was written");
}

/// A new configured size (bpf-lb-map-max) recreates the service maps at the next load; the same
/// size keeps them and their rows.
#[test]
fn the_service_maps_are_recreated_when_their_configured_size_changes() {
    require_root!();
    enter_empty_netns();
    let fs = Bpffs::new("resize");
    let dir = fs.node_dir("n1");
    let sized = |n: u32| datapath::DatapathConfig {
        services_max: n,
        backends_max: n,
        revnat_max: n,
        ..datapath::DatapathConfig::default()
    };
    let svc = ServiceEntry::new(ServiceKind::ClusterIp, VIP, 80, Protocol::Tcp, vec![Backend::active(BE1, 80, true)]);
    let mut dp = Datapath::open_with(&dir, &sized(8)).expect("load with 8");
    dp.sync_services(std::slice::from_ref(&svc)).unwrap();
    drop(dp);

    let dp = Datapath::open_with(&dir, &sized(8)).expect("load again with 8");
    assert_eq!(dp.capacity().map(|c| c.services), Some(8));
    assert!(dp.maps().services.keys().count() > 0, "the same size keeps the rows");
    drop(dp);

    let mut dp = Datapath::open_with(&dir, &sized(32)).expect("load with 32");
    let capacity = dp.capacity().expect("sizes");
    assert_eq!((capacity.services, capacity.backends, capacity.revnat, capacity.affinity_match), (32, 32, 32, 32));
    assert_eq!(dp.maps().services.keys().count(), 0, "recreated empty");
    dp.sync_services(&[svc]).expect("every row written again");
    assert!(dp.maps().services.keys().count() > 0);
}

/// The device map holds a device per pod of the node's CIDR: more than a /24 of pods when the
/// CIDR is bigger, and a pinned map too small for the configured size is recreated at load.
#[test]
fn the_device_map_is_sized_from_the_pod_cidr() {
    require_root!();
    enter_empty_netns();
    let fs = Bpffs::new("netdevs");
    let dir = fs.node_dir("n1");
    let small = Datapath::open(&dir).expect("load with the default size");
    assert_eq!(datapath::DatapathConfig::netdevs_for_pod_cidr(22), 1024 + 64);
    drop(small);
    let config = datapath::DatapathConfig {
        netdevs_max: datapath::DatapathConfig::netdevs_for_pod_cidr(22),
        ..datapath::DatapathConfig::default()
    };
    let mut dp = Datapath::open_with(&dir, &config).expect("load with a /22's size");
    for ifindex in 1..=1024u32 {
        let info = NetdevInfo { addr: [0; 4], flags: NetdevFlags::POD };
        dp.maps_mut().netdevs.insert(ifindex, info, 0).unwrap_or_else(|e| panic!("pod device {ifindex}: {e}"));
    }
}
