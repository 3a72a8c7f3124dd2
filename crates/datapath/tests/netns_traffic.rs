//! Real traffic through the attached programs, in network namespaces built by the test (see
//! `common/topo.rs`): pod → ClusterIP, client → NodePort with SNAT to a remote backend, client →
//! LoadBalancer IP with a local backend, rejects, ping, socket-LB from the node namespace, and
//! forwarding that survives the loader. Needs root.

mod common;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Bpffs;
use common::topo::{
    BIG_BODY, CLIENT, LB_IP, NODE1, POD_A, POD_B, POD_C, SERVER_PORT, Server, TestCgroup, Topology, http_get,
    http_get_from, http_get_path, in_netns,
};
use datapath::{Backend, Datapath, LbDatapath, Protocol, ServiceEntry, ServiceKind, abi};
use testkit::wait_until;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const VIP_EMPTY: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const VIP_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 30);

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn services() -> Vec<ServiceEntry> {
    let a = Backend::active(POD_A, SERVER_PORT, true);
    let b = Backend::active(POD_B, SERVER_PORT, false);
    vec![
        ServiceEntry::new(ServiceKind::ClusterIp, VIP, 80, Protocol::Tcp, vec![a, b]),
        ServiceEntry::new(ServiceKind::NodePort, NODE1, 30080, Protocol::Tcp, vec![b]),
        ServiceEntry::new(ServiceKind::LoadBalancer, LB_IP, 80, Protocol::Tcp, vec![a]),
        ServiceEntry::new(ServiceKind::ClusterIp, VIP_EMPTY, 80, Protocol::Tcp, vec![]),
        ServiceEntry::new(ServiceKind::NodePort, NODE1, 30081, Protocol::Tcp, vec![]),
        ServiceEntry::new(ServiceKind::ClusterIp, VIP_DNS, 53, Protocol::Udp, vec![a]),
    ]
}

/// The ClusterIP VIP:80 with podA as its only backend.
fn vip_to_pod_a() -> ServiceEntry {
    ServiceEntry::new(ServiceKind::ClusterIp, VIP, 80, Protocol::Tcp, vec![Backend::active(POD_A, SERVER_PORT, true)])
}

/// Loads node1's datapath in its namespace and attaches it to eth1 and the two pod veths.
fn open_node1(topo: &Topology, pin: &std::path::Path) -> Datapath {
    in_netns(&topo.ns("node1"), || {
        let mut dp = Datapath::open(pin).expect("load datapath");
        dp.attach_netdev("eth1", Some(NODE1)).expect("attach eth1");
        dp.attach_pod_device("lxca", POD_A).expect("attach lxca");
        dp.attach_pod_device("lxcc", POD_C).expect("attach lxcc");
        dp
    })
}

fn udp_query_from(ns: &str, to: SocketAddr) -> std::io::Result<(String, SocketAddr)> {
    in_netns(ns, || {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        sock.connect(to)?;
        sock.send(b"q")?;
        let mut buf = [0u8; 256];
        let (n, from) = sock.recv_from(&mut buf)?;
        Ok((String::from_utf8_lossy(&buf[..n]).trim().to_string(), from))
    })
}

#[test]
fn pod_and_external_traffic_through_the_datapath() {
    require_root!();
    let topo = Topology::build();
    let fs = Bpffs::new("traffic");
    let _a = Server::start(&topo.ns("podA"), POD_A, "podA");
    let _b = Server::start(&topo.ns("podB"), POD_B, "podB");
    let mut dp = open_node1(&topo, &fs.node_dir("node1"));

    // Plain routing works before any service exists.
    let (body, _) = http_get_from(&topo.ns("podC"), sa(POD_B, SERVER_PORT)).expect("pod to pod");
    assert_eq!(body, format!("podB {POD_C}"));

    dp.sync_services(&services()).unwrap();

    // pod -> ClusterIP: both the local and the remote backend serve, replies come from the VIP
    // (the socket is connected to the VIP, so anything else would never reach it), and neither
    // backend sees anything but the pod's own address.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let (body, peer) = http_get_from(&topo.ns("podC"), sa(VIP, 80)).expect("pod to ClusterIP");
        assert_eq!(peer, sa(VIP, 80));
        assert!(body == format!("podA {POD_C}") || body == format!("podB {POD_C}"), "{body}");
        seen.insert(body);
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "random selection never picked one of the backends: {seen:?}");

    // client -> NodePort with a backend on node2: SNATed to node1, replies come back through it.
    let (body, peer) = http_get_from(&topo.ns("client"), sa(NODE1, 30080)).expect("client to NodePort");
    assert_eq!(body, format!("podB {NODE1}"));
    assert_eq!(peer, sa(NODE1, 30080));

    // Bulk transfers (segmentation offload, payload in page fragments) through DNAT + SNAT and
    // through the remote-backend ClusterIP path arrive whole.
    let (body, _) =
        in_netns(&topo.ns("client"), || http_get_path(sa(NODE1, 30080), "/big")).expect("bulk via NodePort");
    assert_eq!(body.len(), format!("podB {NODE1}\n").len() + BIG_BODY, "bulk answer via NodePort truncated");
    let (body, _) = in_netns(&topo.ns("podC"), || http_get_path(sa(VIP, 80), "/big")).expect("bulk via ClusterIP");
    assert!(body.len() > BIG_BODY, "bulk answer via ClusterIP truncated");

    // client -> LoadBalancer IP with a backend on node1: no SNAT, the client address is kept.
    let (body, _) = http_get_from(&topo.ns("client"), sa(LB_IP, 80)).expect("client to LB IP");
    assert_eq!(body, format!("podA {CLIENT}"));
    let (body, _) = in_netns(&topo.ns("client"), || http_get_path(sa(LB_IP, 80), "/big")).expect("bulk via LB IP");
    assert_eq!(body.len(), format!("podA {CLIENT}\n").len() + BIG_BODY, "bulk answer via LB IP truncated");

    // UDP to a ClusterIP: the answer comes from the VIP.
    let (body, from) = udp_query_from(&topo.ns("podC"), sa(VIP_DNS, 53)).expect("udp to ClusterIP");
    assert_eq!((body.as_str(), from), (format!("podA {POD_C}").as_str(), sa(VIP_DNS, 53)));

    // No backends: refused at once, from outside and from a pod.
    for (ns, to) in [("client", sa(NODE1, 30081)), ("podC", sa(VIP_EMPTY, 80))] {
        let start = Instant::now();
        let err = http_get_from(&topo.ns(ns), to).expect_err("service without backends");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{ns} -> {to}: {err}");
        assert!(start.elapsed() < Duration::from_secs(1), "reject took {:?}", start.elapsed());
    }

    // ping to the LB IP is answered by the datapath.
    let ping = Command::new("ip")
        .args(["netns", "exec", &topo.ns("client"), "ping", "-c", "1", "-W", "2", &LB_IP.to_string()])
        .output()
        .unwrap();
    assert!(ping.status.success(), "ping LB IP: {}", String::from_utf8_lossy(&ping.stdout));

    let ct = datapath::dump::ct_list(&dp.conntrack_entries().unwrap(), datapath::maps::monotonic_ns());
    assert!(ct.contains(&format!("TCP SERVICE {CLIENT}:")), "{ct}");
    assert!(dp.nat_list().unwrap().contains("SNAT-IN"), "no SNAT entry");
    let lb = datapath::dump::lb_list(dp.lb_state());
    assert!(
        lb.lines().any(|l| l.starts_with("192.168.77.211:80/TCP (1)") && l.contains("172.30.1.10:8080/TCP")),
        "{lb}"
    );
    drop(dp);
    datapath::remove_pins(&fs.node_dir("node1")).unwrap();
}

#[test]
fn socket_lb_translates_at_connect_time_in_the_node_namespace_only() {
    require_root!();
    let topo = Topology::build();
    let fs = Bpffs::new("socklb");
    let _a = Server::start(&topo.ns("podA"), POD_A, "podA");
    let cgroup = TestCgroup::new().expect("needs a cgroup v2 mount for socket-LB's hooks");
    let mut dp = open_node1(&topo, &fs.node_dir("node1"));
    let a = Backend::active(POD_A, SERVER_PORT, true);
    dp.sync_services(&[
        ServiceEntry::new(ServiceKind::ClusterIp, VIP, 80, Protocol::Tcp, vec![a]),
        ServiceEntry::new(ServiceKind::ClusterIp, VIP_EMPTY, 80, Protocol::Tcp, vec![]),
        ServiceEntry::new(ServiceKind::ClusterIp, VIP_DNS, 53, Protocol::Udp, vec![a]),
    ])
    .unwrap();
    in_netns(&topo.ns("node1"), || dp.attach_socket_lb(&cgroup.path)).expect("attach socket-LB");
    cgroup.enter();

    // node1 has no route to the service range at all: only connect-time translation gets there.
    let (body, peer) = in_netns(&topo.ns("node1"), || http_get(sa(VIP, 80))).expect("node to ClusterIP");
    assert!(body.starts_with("podA "), "{body}");
    assert_eq!(peer, sa(VIP, 80), "getpeername shows the frontend, not the backend");
    let (body, from) = udp_query_from(&topo.ns("node1"), sa(VIP_DNS, 53)).expect("node to UDP ClusterIP");
    assert!(body.starts_with("podA "), "{body}");
    assert_eq!(from, sa(VIP_DNS, 53), "recvmsg shows the frontend as source");

    let err = in_netns(&topo.ns("node1"), || http_get(sa(VIP_EMPTY, 80))).expect_err("no backends");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");

    // The same process in another namespace is not translated (that node's own datapath would
    // be): the client has no route to the VIP.
    let err = http_get_from(&topo.ns("client"), sa(VIP, 80)).expect_err("not translated in other namespaces");
    assert_ne!(err.kind(), ErrorKind::ConnectionRefused, "{err}");

    drop(cgroup);
    drop(dp);
    datapath::remove_pins(&fs.node_dir("node1")).unwrap();
}

#[test]
fn forwarding_survives_the_loader_and_a_new_loader_reuses_the_pins() {
    require_root!();
    let topo = Topology::build();
    let fs = Bpffs::new("pins");
    let pin = fs.node_dir("node1");
    let _a = Server::start(&topo.ns("podA"), POD_A, "podA");
    let _b = Server::start(&topo.ns("podB"), POD_B, "podB");
    let mut dp = open_node1(&topo, &pin);
    dp.sync_services(&services()).unwrap();
    assert!(http_get_from(&topo.ns("client"), sa(LB_IP, 80)).is_ok());
    let state = dp.lb_state().clone();

    // An established connection, to be used across the restart.
    let client_ns = topo.ns("client");
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let (res_tx, res_rx) = std::sync::mpsc::channel();
    let held = std::thread::spawn({
        let client_ns = client_ns.clone();
        move || {
            in_netns(&client_ns, move || {
                use std::io::{Read, Write};
                let mut conn = std::net::TcpStream::connect_timeout(&sa(LB_IP, 80), Duration::from_secs(2)).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                held_rx.recv().unwrap();
                conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let mut resp = String::new();
                res_tx.send(conn.read_to_string(&mut resp).map(|_| resp)).unwrap();
            })
        }
    });

    // The agent goes away: programs stay attached through their pinned links.
    drop(dp);
    for _ in 0..5 {
        let (body, _) = http_get_from(&topo.ns("client"), sa(LB_IP, 80)).expect("LB IP without a loader");
        assert_eq!(body, format!("podA {CLIENT}"));
        assert!(http_get_from(&topo.ns("podC"), sa(VIP, 80)).is_ok(), "ClusterIP without a loader");
    }

    // A new loader finds the same state and rewrites nothing; attaching again swaps programs
    // behind the existing links.
    let mut dp = open_node1(&topo, &pin);
    assert_eq!(dp.lb_state(), &state);
    let stats = dp.sync_services(&services()).unwrap();
    assert_eq!((stats.upserts, stats.deletes), (0, 0), "resync after restart must not touch the maps");
    assert_eq!(dp.attached_devices().len(), 5, "{:?}", dp.attached_devices());

    held_tx.send(()).unwrap();
    let resp = res_rx.recv_timeout(Duration::from_secs(5)).unwrap().expect("connection held across the restart");
    assert!(resp.ends_with(&format!("podA {CLIENT}\n")), "{resp}");
    held.join().unwrap();

    // Changes after the restart apply: only podB is left for the ClusterIP.
    let mut svcs = services();
    svcs[0].backends.remove(0);
    dp.sync_services(&svcs).unwrap();
    for _ in 0..10 {
        let (body, _) = http_get_from(&topo.ns("podC"), sa(VIP, 80)).unwrap();
        assert_eq!(body, format!("podB {POD_C}"));
    }

    // Removing the pins detaches everything: the ClusterIP is unreachable again.
    drop(dp);
    datapath::remove_pins(&pin).unwrap();
    assert!(wait_until(Duration::from_secs(2), || http_get_from(&topo.ns("podC"), sa(VIP, 80)).is_err()));
}

#[test]
fn attaching_again_after_a_device_was_recreated_replaces_the_stale_link() {
    require_root!();
    let topo = Topology::build();
    let fs = Bpffs::new("recreate");
    let _a = Server::start(&topo.ns("podA"), POD_A, "podA");
    let mut dp = open_node1(&topo, &fs.node_dir("node1"));
    dp.sync_services(&[vip_to_pod_a()]).unwrap();
    assert!(http_get_from(&topo.ns("podC"), sa(VIP, 80)).is_ok());

    // The pod's veth is deleted and created again (a pod restart with the same name): the pinned
    // links of the old device are defunct.
    topo.recreate_pod_veth("node1", "podC", "lxcc", POD_C, "172.30.1.1");
    assert!(http_get_from(&topo.ns("podC"), sa(VIP, 80)).is_err(), "no program on the new device yet");
    // The old veth's ifindex is forgotten, so nothing is ever handed to a device that took it over.
    let pod_devices = |dp: &Datapath| {
        dp.maps().netdevs.iter().filter_map(Result::ok).filter(|(_, i)| i.flags.contains(abi::NetdevFlags::POD)).count()
    };
    assert_eq!(pod_devices(&dp), 2);
    assert_eq!(in_netns(&topo.ns("node1"), || dp.forget_missing_devices()).unwrap(), 1);
    assert_eq!(in_netns(&topo.ns("node1"), || dp.forget_missing_devices()).unwrap(), 0);
    assert_eq!(pod_devices(&dp), 1);
    in_netns(&topo.ns("node1"), || dp.attach_pod_device("lxcc", POD_C)).expect("attach again");
    assert_eq!(pod_devices(&dp), 2);
    let (body, _) = http_get_from(&topo.ns("podC"), sa(VIP, 80)).expect("translated on the new device");
    assert_eq!(body, format!("podA {POD_C}"));

    in_netns(&topo.ns("node1"), || dp.detach_device("lxcc")).unwrap();
    let after = http_get_from(&topo.ns("podC"), sa(VIP, 80));
    assert!(after.is_err(), "detached, yet: {after:?}");
    drop(dp);
    datapath::remove_pins(&fs.node_dir("node1")).unwrap();
}

#[test]
fn a_pod_reaches_itself_through_its_service() {
    require_root!();
    let topo = Topology::build();
    let fs = Bpffs::new("hairpin");
    let _a = Server::start(&topo.ns("podA"), POD_A, "podA");
    let mut dp = open_node1(&topo, &fs.node_dir("node1"));
    dp.sync_services(&[vip_to_pod_a()]).unwrap();
    let (body, peer) = http_get_from(&topo.ns("podA"), sa(VIP, 80)).expect("hairpin through the ClusterIP");
    assert_eq!(body, format!("podA {}", datapath::abi::LB_HAIRPIN_ADDR));
    assert_eq!(peer, sa(VIP, 80));
    drop(dp);
    datapath::remove_pins(&fs.node_dir("node1")).unwrap();
}
