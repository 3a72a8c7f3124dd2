//! Kernel tests, run as root. Each test works in network namespaces it creates under unique names
//! and removes on drop; nothing touches the root namespace's addresses or routes.

use std::net::Ipv4Addr;
use std::process::Command;

use ipnet::Ipv4Net;
use netconf::{
    HOST_DEVICE, HostDeviceConfig, MAIN_TABLE, NET_DEVICE, Netconf, Netns, PodVethSpec, Route, host_ifname_for,
};
use testkit::TestNetns;

/// A namespace of this test (`nct-...`), deleted when dropped, even on panic.
fn test_netns(role: &str) -> TestNetns {
    TestNetns::new("nct", role)
}

/// Whether one ping from `from` to `ip` is answered.
fn ping(from: &TestNetns, ip: Ipv4Addr) -> bool {
    from.exec(&["ping", "-c1", "-W2", &ip.to_string()]).status.success()
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs an async body on a dedicated thread inside `ns`, with a runtime whose threads are all in
/// that namespace (as the agent's are in its node namespace).
fn in_netns<T: Send>(ns: &TestNetns, body: impl AsyncFnOnce() -> T + Send) -> T {
    let netns = Netns::open(ns.path()).expect("open netns");
    std::thread::scope(|s| {
        s.spawn(move || {
            netns.enter().expect("enter netns");
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(body())
        })
        .join()
        .expect("netns thread panicked")
    })
}

#[test]
fn host_device_and_pod_veth() {
    let node = test_netns("node");
    let pod = test_netns("pod");
    let cidr: Ipv4Net = "172.20.5.0/24".parse().unwrap();
    let router = Ipv4Addr::new(172, 20, 5, 77);
    let pod_ip = Ipv4Addr::new(172, 20, 5, 10);
    let pod_path = pod.path();

    in_netns(&node, async move || {
        let nc = Netconf::current().unwrap();
        let config = HostDeviceConfig { router_ip: router, pod_cidr: cidr, mtu: 1500 };
        let dev = nc.ensure_host_device(&config).await.unwrap();
        // A second run repairs nothing and fails on nothing.
        let again = nc.ensure_host_device(&config).await.unwrap();
        assert_eq!(dev.host.index, again.host.index);
        assert!(again.host.up && again.net.up);
        assert!(nc.addresses(dev.host.index).await.unwrap().contains(&Ipv4Net::new(router, 32).unwrap()));
        let routes = nc.routes(MAIN_TABLE).await.unwrap();
        assert!(routes.iter().any(|r| r.destination == cidr && r.gateway == Some(router)), "{routes:?}");
        assert!(nc.link(NET_DEVICE).await.unwrap().is_some());

        let pod_ns = Netns::open(&pod_path).unwrap();
        let spec = PodVethSpec {
            host_ifname: host_ifname_for("c1"),
            pod_ifname: "eth0".into(),
            pod_netns: &pod_ns,
            pod_ip,
            router_ip: router,
            mtu: 1400,
            route_mtu: Some(1350),
            container_id: "c1".into(),
        };
        let veth = nc.add_pod_veth(&spec).await.unwrap();
        assert_eq!(veth.pod.mtu, Some(1400));
        assert_eq!(veth.host.alias.as_deref(), Some("c1"));
        nc.verify_pod_veth(&spec).await.unwrap();

        // Same names again: refused, the existing wiring untouched.
        let err = nc.add_pod_veth(&spec).await.unwrap_err();
        assert!(err.is_exists(), "{err}");
        assert!(err.to_string().contains(&spec.host_ifname), "{err}");
        nc.verify_pod_veth(&spec).await.unwrap();
        assert_eq!(nc.pod_veths().await.unwrap().len(), 1);
    });

    assert!(ping(&pod, router), "pod -> router");
    assert!(ping(&node, pod_ip), "node -> pod");
    let routes = String::from_utf8(pod.exec(&["ip", "route"]).stdout).unwrap();
    assert!(routes.contains(&format!("default via {router} dev eth0")), "{routes}");
    assert!(routes.contains("mtu 1350"), "{routes}");

    in_netns(&node, async move || {
        let nc = Netconf::current().unwrap();
        let name = host_ifname_for("c1");
        assert!(nc.delete_pod_veth(&name).await.unwrap());
        assert!(!nc.delete_pod_veth(&name).await.unwrap());
        assert!(nc.pod_veths().await.unwrap().is_empty());
        let host = nc.link(HOST_DEVICE).await.unwrap().unwrap();
        assert!(
            !nc.routes(MAIN_TABLE)
                .await
                .unwrap()
                .iter()
                .any(|r| r.destination.addr() == pod_ip && r.oif != Some(host.index))
        );
    });
    let links = String::from_utf8(pod.exec(&["ip", "-o", "link"]).stdout).unwrap();
    assert!(!links.contains("eth0"), "{links}");
}

#[test]
fn routes_with_mtu_and_route_lookup() {
    let node = test_netns("node");
    let peer = test_netns("peer");
    // The underlay between two namespaces is test scaffolding, so plain `ip` does it.
    sh(&["ip", "link", "add", "eth1", "netns", &node.name, "type", "veth", "peer", "eth1", "netns", &peer.name]);
    sh(&["ip", "-n", &node.name, "addr", "add", "192.168.77.1/24", "dev", "eth1"]);
    sh(&["ip", "-n", &node.name, "link", "set", "eth1", "up"]);
    sh(&["ip", "-n", &peer.name, "link", "set", "eth1", "up"]);
    let node_path = node.path();

    // From a thread outside the namespace: the connection is opened inside it by path.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let nc = Netconf::connect_path(&node_path).await.unwrap();
        let gw = Ipv4Addr::new(192, 168, 77, 2);
        let remote: Ipv4Net = "172.20.1.0/24".parse().unwrap();
        let route = Route::via(remote, gw).mtu(1450);
        nc.add_route(&route).await.unwrap();
        assert!(nc.add_route(&route).await.unwrap_err().is_exists());
        nc.replace_route(&route).await.unwrap();
        let found: Vec<_> =
            nc.routes(MAIN_TABLE).await.unwrap().into_iter().filter(|r| r.destination == remote).collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].gateway, Some(gw));
        assert_eq!(found[0].mtu, Some(1450));
        assert_eq!(found[0].protocol, netconf::CILIA_ROUTE_PROTOCOL);

        let direct = nc.route_get(gw).await.unwrap();
        assert!(direct.is_direct(), "{direct:?}");
        nc.add_route(&Route::via("10.0.0.0/8".parse().unwrap(), gw)).await.unwrap();
        let far = nc.route_get(Ipv4Addr::new(10, 1, 2, 3)).await.unwrap();
        assert_eq!(far.gateway, Some(gw));
        assert!(!far.is_direct());
        let local = nc.route_get(Ipv4Addr::new(192, 168, 77, 1)).await.unwrap();
        assert!(local.local && !local.is_direct());
        let unreachable = nc.route_get(Ipv4Addr::new(203, 0, 113, 9)).await;
        assert!(unreachable.is_err());

        assert!(nc.delete_route(&route).await.unwrap());
        assert!(!nc.delete_route(&route).await.unwrap());

        nc.set_sysctl("net/ipv4/conf/eth1/rp_filter", "0").await.unwrap();
        let err = nc.set_sysctl("net/ipv4/conf/nope0/rp_filter", "0").await.unwrap_err();
        assert!(err.to_string().contains(&node_path), "{err}");
    });
    let rp = node.exec(&["sysctl", "-n", "net.ipv4.conf.eth1.rp_filter"]);
    assert_eq!(String::from_utf8_lossy(&rp.stdout).trim(), "0");
}

#[test]
fn errors_name_the_namespace() {
    let err = Netns::open("/run/netns/definitely-missing-nct").unwrap_err();
    assert!(err.to_string().contains("definitely-missing-nct"), "{err}");
}
