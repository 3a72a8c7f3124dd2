//! Flow events and drop counters from real traffic through the attached programs (root): a pod's
//! connection to a ClusterIP gives trace events with the frontend it was translated from, a
//! connection to a Service without backends gives a drop event with its reason, and with events
//! off nothing reaches the ring buffer while the drop counter still moves. A connect() socket-LB
//! refuses is a counted drop with its event too. A pod that sends from an address not its own is
//! dropped, counted and reported with Cilium's reason.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::Bpffs;
use common::topo::{POD_A, POD_C, SERVER_PORT, Server, TestCgroup, Topology, http_get, http_get_from, in_netns, ipn};
use datapath::{
    Backend, Datapath, DropReason, EventKind, EventReader, EventsLevel, FlowEvent, LbDatapath, ObservationPoint,
    Protocol, ServiceEntry, ServiceKind, Translation,
};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const VIP_EMPTY: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);

fn services() -> Vec<ServiceEntry> {
    vec![
        ServiceEntry::new(
            ServiceKind::ClusterIp,
            VIP,
            80,
            Protocol::Tcp,
            vec![Backend::active(POD_A, SERVER_PORT, true)],
        ),
        ServiceEntry::new(ServiceKind::ClusterIp, VIP_EMPTY, 80, Protocol::Tcp, vec![]),
    ]
}

/// Reads events until `enough` holds for what was read, or `timeout` passes.
fn read_until(reader: &mut EventReader, timeout: Duration, enough: impl Fn(&[FlowEvent]) -> bool) -> Vec<FlowEvent> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline && !enough(&seen) {
        let batch = reader.read(Duration::from_millis(100), 1024).expect("read events");
        assert_eq!(batch.undecodable, 0, "records of another layout");
        seen.extend(batch.events);
    }
    seen
}

fn connect_refused(ns: &str, to: SocketAddr) {
    let err = http_get_from(ns, to).expect_err("a service without backends must refuse");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn traffic_gives_trace_and_drop_events_and_counters_run_with_events_off() {
    require_root!();
    let started = Instant::now();
    let topo = Topology::build();
    let fs = Bpffs::new("events");
    let _a = Server::start(&topo.ns("podA"), POD_A, "podA");
    let pin = fs.node_dir("node1");
    let mut dp = in_netns(&topo.ns("node1"), || {
        let mut dp = Datapath::open(&pin).expect("load datapath");
        dp.attach_pod_device("lxca", POD_A).expect("attach lxca");
        dp.attach_pod_device("lxcc", POD_C).expect("attach lxcc");
        dp
    });
    dp.sync_services(&services()).unwrap();
    let mut reader = dp.event_reader().unwrap().expect("the real datapath has a reader");
    let podc = topo.ns("podC");
    let vip = SocketAddr::from((VIP, 80));

    // Events on: the connection's SYN is traced DNATed to podA, its SYN-ACK reverse-NATed.
    dp.set_events_level(EventsLevel::Medium).unwrap();
    let (body, _) = http_get_from(&podc, vip).expect("GET through the ClusterIP");
    assert!(body.starts_with("podA"), "{body}");
    let is_syn = |e: &FlowEvent| e.kind == EventKind::Trace && e.tcp_flags & 0x12 == 0x02 && e.saddr == POD_C;
    let is_syn_ack = |e: &FlowEvent| e.kind == EventKind::Trace && e.tcp_flags & 0x12 == 0x12 && e.daddr == POD_C;
    let events = read_until(&mut reader, Duration::from_secs(3), |seen| {
        seen.iter().any(is_syn) && seen.iter().any(is_syn_ack) && seen.iter().any(|e| e.tcp_flags & 0x01 != 0)
    });
    let syn = events.iter().find(|e| is_syn(e)).unwrap_or_else(|| panic!("no SYN trace in {events:#?}"));
    assert_eq!(syn.trace_point(), Some(ObservationPoint::ToEndpoint), "{syn:?}");
    assert_eq!((syn.daddr, syn.dport), (POD_A, SERVER_PORT), "{syn:?}");
    assert_eq!(syn.translation(), Some(Translation::Dnat("10.96.0.10:80".parse().unwrap())), "{syn:?}");
    assert_eq!(syn.is_reply(), Some(false));
    assert!(syn.pkt_len >= 54, "{syn:?}");
    let syn_ack = events.iter().find(|e| is_syn_ack(e)).unwrap_or_else(|| panic!("no SYN-ACK in {events:#?}"));
    assert_eq!((syn_ack.saddr, syn_ack.sport), (VIP, 80), "the reply comes from the frontend: {syn_ack:?}");
    assert_eq!(syn_ack.translation(), Some(Translation::RevNat("10.96.0.10:80".parse().unwrap())));
    assert_eq!(syn_ack.is_reply(), Some(true));
    assert!(events.iter().all(|e| e.kind == EventKind::Trace), "no drops in a working connection: {events:#?}");
    // Medium aggregation: only segments that open or close, never a pure ACK or data segment.
    assert!(events.iter().all(|e| e.tcp_flags & 0x07 != 0), "{events:#?}");

    // A connection to a Service without backends: refused, one drop event with the reason.
    let drops_before = dp.counters().unwrap().drops_of(DropReason::NO_SERVICE).packets;
    connect_refused(&podc, SocketAddr::from((VIP_EMPTY, 80)));
    let events = read_until(&mut reader, Duration::from_secs(3), |seen| seen.iter().any(|e| e.kind == EventKind::Drop));
    let dropped = events.iter().find(|e| e.kind == EventKind::Drop).expect("a drop event");
    assert_eq!(dropped.drop_reason(), Some(DropReason::NO_SERVICE), "{dropped:?}");
    assert_eq!((dropped.saddr, dropped.daddr, dropped.dport, dropped.proto), (POD_C, VIP_EMPTY, 80, 6), "{dropped:?}");
    assert_eq!(dropped.tcp_flags & 0x02, 0x02, "the SYN was dropped: {dropped:?}");
    let counters = dp.counters().unwrap();
    assert_eq!(counters.drops_of(DropReason::NO_SERVICE).packets, drops_before + 1, "{counters:?}");
    assert!(
        counters.forwards.iter().any(|(p, c)| *p == ObservationPoint::ToEndpoint && c.packets >= 2),
        "{counters:?}"
    );
    assert_eq!(counters.events_lost, 0);
    assert!(counters.events_written >= 3, "{counters:?}");
    assert_eq!(dp.lost_events().unwrap(), 0);

    // Events off: nothing reaches the ring buffer, the counters go on.
    dp.set_events_level(EventsLevel::Off).unwrap();
    read_until(&mut reader, Duration::from_millis(200), |_| false); // whatever was in flight
    let written_before = dp.counters().unwrap().events_written;
    let drops_before = dp.counters().unwrap().drops_of(DropReason::NO_SERVICE).packets;
    let fwd_before: u64 = dp.counters().unwrap().forwards.iter().map(|(_, c)| c.packets).sum();
    http_get_from(&podc, vip).expect("GET with events off");
    connect_refused(&podc, SocketAddr::from((VIP_EMPTY, 80)));
    let silent = read_until(&mut reader, Duration::from_millis(500), |seen| !seen.is_empty());
    assert!(silent.is_empty(), "events while off: {silent:#?}");
    let counters = dp.counters().unwrap();
    assert_eq!(counters.drops_of(DropReason::NO_SERVICE).packets, drops_before + 1, "{counters:?}");
    let fwd_after: u64 = counters.forwards.iter().map(|(_, c)| c.packets).sum();
    assert!(fwd_after > fwd_before, "forward counters stopped: {fwd_before} -> {fwd_after}");
    assert_eq!(counters.events_written, written_before, "events written while off");

    drop(reader);
    drop(dp);
    datapath::remove_pins(&fs.node_dir("node1")).unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn a_pod_that_spoofs_its_source_is_dropped_and_counted() {
    require_root!();
    let topo = Topology::build();
    let fs = Bpffs::new("spoof");
    let pin = fs.node_dir("node1");
    let mut dp = in_netns(&topo.ns("node1"), || {
        let mut dp = Datapath::open(&pin).expect("load datapath");
        dp.attach_pod_device("lxca", POD_A).expect("attach lxca");
        dp.attach_pod_device("lxcc", POD_C).expect("attach lxcc");
        dp
    });
    dp.set_events_level(EventsLevel::Medium).unwrap();
    let mut reader = dp.event_reader().unwrap().expect("the real datapath has a reader");
    // podC also holds an address outside the node's pod range, and one of another pod in it: the
    // node routes either (rp_filter is off on the veths), so only the datapath can refuse them.
    let podc = topo.ns("podC");
    let spoofed = [Ipv4Addr::new(10, 0, 0, 66), Ipv4Addr::new(172, 30, 1, 30)];
    for addr in spoofed {
        ipn(&podc, &["addr", "add", &format!("{addr}/32"), "dev", "eth0"]);
    }
    let receiver = in_netns(&topo.ns("podA"), || std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 5599))).unwrap();
    receiver.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let to = SocketAddr::from((POD_A, 5599));
    let send_from = |source: Ipv4Addr, payload: &[u8]| {
        let sock = in_netns(&podc, || std::net::UdpSocket::bind((source, 0))).expect("bind in podC");
        sock.send_to(payload, to).expect("send from podC");
    };
    let before = dp.counters().unwrap().drops_of(DropReason::INVALID_SOURCE_IP).packets;
    for source in spoofed {
        send_from(source, b"spoofed");
    }
    send_from(POD_C, b"genuine");

    let mut buf = [0u8; 64];
    let (n, from) = receiver.recv_from(&mut buf).expect("podC's genuine datagram");
    assert_eq!((&buf[..n], from.ip()), (&b"genuine"[..], std::net::IpAddr::V4(POD_C)));
    let more = receiver.recv_from(&mut buf);
    assert!(more.is_err(), "a spoofed datagram got through: {:?}", more.map(|(n, f)| (buf[..n].to_vec(), f)));
    let counters = dp.counters().unwrap();
    assert_eq!(counters.drops_of(DropReason::INVALID_SOURCE_IP).packets, before + 2, "{counters:?}");
    let events = read_until(&mut reader, Duration::from_secs(3), |seen| {
        seen.iter().filter(|e| e.kind == EventKind::Drop).count() >= 2
    });
    for source in spoofed {
        let drop = events.iter().find(|e| e.kind == EventKind::Drop && e.saddr == source);
        let drop = drop.unwrap_or_else(|| panic!("no drop event from {source}: {events:#?}"));
        assert_eq!(drop.drop_reason(), Some(DropReason::INVALID_SOURCE_IP), "{drop:?}");
        assert_eq!(drop.drop_reason().unwrap().description(), "Invalid source ip");
        assert_eq!((drop.daddr, drop.dport, drop.proto), (POD_A, 5599, 17), "{drop:?}");
    }
    drop(reader);
    drop(dp);
    datapath::remove_pins(&fs.node_dir("node1")).unwrap();
}

#[test]
fn socket_lb_refusals_are_counted_drops_with_an_event() {
    require_root!();
    let topo = Topology::build();
    let fs = Bpffs::new("evsock");
    let cgroup = TestCgroup::new().expect("needs a cgroup v2 mount for socket-LB's hooks");
    let pin = fs.node_dir("node1");
    let mut dp = in_netns(&topo.ns("node1"), || Datapath::open(&pin).expect("load datapath"));
    dp.sync_services(&services()).unwrap();
    in_netns(&topo.ns("node1"), || dp.attach_socket_lb(&cgroup.path)).expect("attach socket-LB");
    cgroup.enter();
    let mut reader = dp.event_reader().unwrap().expect("a reader");
    dp.set_events_level(EventsLevel::Medium).unwrap();

    let err = in_netns(&topo.ns("node1"), || http_get(SocketAddr::from((VIP_EMPTY, 80)))).expect_err("no backends");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    let events = read_until(&mut reader, Duration::from_secs(3), |seen| !seen.is_empty());
    let [refused] = events.as_slice() else { panic!("one drop expected: {events:#?}") };
    assert_eq!(refused.drop_reason(), Some(DropReason::NO_SERVICE), "{refused:?}");
    assert_eq!((refused.daddr, refused.dport, refused.proto), (VIP_EMPTY, 80, 6), "{refused:?}");
    assert_eq!(refused.saddr, Ipv4Addr::UNSPECIFIED, "an unbound socket has no source yet");
    assert_eq!(dp.counters().unwrap().drops_of(DropReason::NO_SERVICE).packets, 1);

    drop(cgroup);
    drop(reader);
    drop(dp);
    datapath::remove_pins(&fs.node_dir("node1")).unwrap();
}
