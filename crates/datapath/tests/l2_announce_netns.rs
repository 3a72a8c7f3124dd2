//! L2 announcements against real kernels: two network namespaces the test creates (a node and a
//! peer on one veth pair, removed on drop, also after a failure). The node runs `from_netdev` on
//! its end; the peer resolves the announced addresses with its own ARP/NDP and with arping, and
//! receives the node's gratuitous ARP and unsolicited NA. Nothing is added to the root namespace
//! and nothing is sent from it. Needs root.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Bpffs;
use datapath::neigh_announce::{self, InterfaceInfo};
use datapath::{Datapath, L2Entry, LbDatapath};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 99, 50);
const PEER: &str = "192.168.99.2/24";
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x50);
const PEER6: &str = "fd00:99::2/64";
const OLD_MAC: &str = "02:00:00:00:00:0a";
const NEW_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b];

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("run {cmd}: {e}"))
}

fn must(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(out.status.success(), "{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mac_str(m: [u8; 6]) -> String {
    datapath::dump::mac(&m)
}

/// The node and peer namespaces and the veth between them (`l2n` in the node, `l2p` in the peer).
struct Pair {
    node: String,
    peer: String,
}

impl Pair {
    fn new() -> Pair {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("cl2{}x{n}", std::process::id());
        let pair = Pair { node: format!("{prefix}-node"), peer: format!("{prefix}-peer") };
        for ns in [&pair.node, &pair.peer] {
            must("ip", &["netns", "add", ns]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        must(
            "ip",
            &["-n", &pair.node, "link", "add", "l2n", "type", "veth", "peer", "name", "l2p", "netns", &pair.peer],
        );
        must("ip", &["-n", &pair.peer, "addr", "add", PEER, "dev", "l2p"]);
        must("ip", &["-n", &pair.peer, "addr", "add", PEER6, "dev", "l2p", "nodad"]);
        must("ip", &["-n", &pair.node, "link", "set", "l2n", "up"]);
        must("ip", &["-n", &pair.peer, "link", "set", "l2p", "up"]);
        // The kernel brings IPv6 up on a device when it sees the carrier, from a work queue a
        // moment after "link set up"; until then the peer has no multicast route and drops
        // packets to ff02::1 (counted as Ip6InNoRoutes).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !must("ip", &["-n", &pair.peer, "-6", "route", "show", "table", "local"]).contains("ff00::/8 dev l2p") {
            assert!(Instant::now() < deadline, "IPv6 never came up on l2p");
            std::thread::sleep(Duration::from_millis(20));
        }
        pair
    }

    /// Runs `f` on a thread inside the node's namespace.
    fn in_node<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        common::topo::in_netns(&self.node, f)
    }

    fn peer_exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.peer];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// The peer's neighbour entry for `ip` on l2p: (lladdr, states).
    fn peer_neigh(&self, ip: IpAddr) -> Option<(String, String)> {
        let family = if ip.is_ipv4() { "-4" } else { "-6" };
        let out = must("ip", &["-n", &self.peer, family, "-j", "neigh", "show", &ip.to_string(), "dev", "l2p"]);
        // `[{"dst":"...","lladdr":"02:..","state":["REACHABLE"]}]`: read without a JSON parser.
        let lladdr = out.split("\"lladdr\":\"").nth(1)?.split('"').next()?.to_string();
        let state = out.split("\"state\":[").nth(1).and_then(|s| s.split(']').next()).unwrap_or("").to_string();
        Some((lladdr, state))
    }

    fn wait_peer_lladdr(&self, ip: IpAddr, want: &str) -> Option<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let seen = self.peer_neigh(ip);
            if seen.as_ref().is_some_and(|(l, _)| l == want) || Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.peer, &self.node] {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

/// The node's datapath on l2n announcing VIP and VIP6 with l2n's MAC, heartbeat fresh.
fn announce(pair: &Pair, fs: &Bpffs) -> (Datapath, InterfaceInfo) {
    let dir = fs.node_dir("node");
    pair.in_node(|| {
        let mut dp = Datapath::open(&dir).expect("load datapath");
        dp.attach_netdev("l2n", None).expect("attach from_netdev to l2n");
        let dev = neigh_announce::interface_info("l2n").expect("l2n");
        let stats = dp
            .sync_l2(&[
                L2Entry { ip: VIP.into(), ifindex: dev.ifindex, mac: dev.mac },
                L2Entry { ip: VIP6.into(), ifindex: dev.ifindex, mac: dev.mac },
            ])
            .unwrap();
        assert_eq!(stats.added.len(), 2);
        dp.refresh_l2_liveness(Duration::from_secs(30)).unwrap();
        (dp, dev)
    })
}

fn arping(pair: &Pair, extra: &[&str]) -> String {
    let vip = VIP.to_string();
    let mut args = vec!["arping", "-i", "l2p", "-c", "1", "-w", "2", "-r"];
    args.extend_from_slice(extra);
    args.push(&vip);
    String::from_utf8_lossy(&pair.peer_exec(&args).stdout).trim().to_string()
}

fn responses(dp: &Datapath, ip: IpAddr) -> u64 {
    dp.l2_entries().unwrap().into_iter().find(|r| r.ip == ip).map(|r| r.responses).unwrap_or(0)
}

#[test]
fn the_bpf_responder_answers_arping_and_the_peers_own_arp_and_ndp() {
    require_root!();
    let pair = Pair::new();
    let fs = Bpffs::new("l2netns");
    let (mut dp, dev) = announce(&pair, &fs);
    let mac = mac_str(dev.mac);

    // arping's broadcast request, and its unicast one to the MAC (a reachability probe).
    assert_eq!(arping(&pair, &[]), mac, "broadcast ARP answered with l2n's MAC");
    assert_eq!(arping(&pair, &["-t", &mac]), mac, "unicast ARP to our MAC answered");
    assert_eq!(responses(&dp, VIP.into()), 2);

    // The peer kernel's own resolution: a ping to the VIP (the node does not answer the ping, it
    // holds no such address) leaves a neighbour entry built from our reply.
    let _ = pair.peer_exec(&["ping", "-c", "1", "-W", "1", &VIP.to_string()]);
    let (lladdr, state) = pair.peer_neigh(VIP.into()).expect("peer resolved the VIP");
    assert_eq!(lladdr, mac);
    assert!(state.contains("REACHABLE") || state.contains("STALE") || state.contains("DELAY"), "{state}");
    let _ = pair.peer_exec(&["ping", "-6", "-c", "1", "-W", "1", &VIP6.to_string()]);
    let (lladdr, state) = pair.peer_neigh(VIP6.into()).expect("peer resolved VIP6");
    assert_eq!(lladdr, mac, "NA's target link-layer option");
    assert!(state.contains("REACHABLE") || state.contains("DELAY"), "solicited NA: reachable, got {state}");
    assert!(responses(&dp, VIP6.into()) >= 1);

    let list = dp.l2_list(Some(&|i| (i == dev.ifindex).then(|| "l2n".to_string()))).unwrap();
    assert!(list.contains(&format!("{VIP}   {} (l2n)   {mac}", dev.ifindex)), "{list}");

    // Heartbeat gone (the agent stopped): the same request goes unanswered.
    dp.clear_l2_liveness().unwrap();
    assert_eq!(arping(&pair, &[]), "", "no answer without the heartbeat");
    dp.refresh_l2_liveness(Duration::from_secs(30)).unwrap();
    assert_eq!(arping(&pair, &[]), mac);

    // Withdrawn: no answer either.
    dp.sync_l2(&[]).unwrap();
    assert_eq!(arping(&pair, &[]), "");
    drop(dp);
    datapath::remove_pins(&fs.node_dir("node")).unwrap();
}

#[test]
fn gratuitous_arp_and_unsolicited_na_move_a_peers_neighbour_entry() {
    require_root!();
    let pair = Pair::new();
    must(
        "ip",
        &["-n", &pair.peer, "neigh", "replace", &VIP.to_string(), "lladdr", OLD_MAC, "dev", "l2p", "nud", "reachable"],
    );
    must(
        "ip",
        &[
            "-n",
            &pair.peer,
            "-6",
            "neigh",
            "replace",
            &VIP6.to_string(),
            "lladdr",
            OLD_MAC,
            "dev",
            "l2p",
            "nud",
            "stale",
        ],
    );
    assert_eq!(pair.peer_neigh(VIP.into()).unwrap().0, OLD_MAC);
    assert_eq!(pair.peer_neigh(VIP6.into()).unwrap().0, OLD_MAC);

    // The node takes over with another MAC; the device has no address at all.
    pair.in_node(|| {
        let dev = neigh_announce::interface_info("l2n").expect("l2n");
        neigh_announce::send_gratuitous_arp(dev.ifindex, NEW_MAC, VIP).expect("gratuitous ARP");
        neigh_announce::send_unsolicited_na(dev.ifindex, NEW_MAC, VIP6).expect("unsolicited NA");
    });
    let new = mac_str(NEW_MAC);
    let (lladdr, _) = pair.wait_peer_lladdr(VIP.into(), &new).expect("entry for the VIP");
    assert_eq!(lladdr, new, "the gratuitous ARP replaced a reachable entry's MAC");
    let (lladdr, _) = pair.wait_peer_lladdr(VIP6.into(), &new).expect("entry for VIP6");
    assert_eq!(lladdr, new, "the NA's override flag and target option replaced the MAC");

    // Errors name the device and the call.
    let err = pair.in_node(|| neigh_announce::send_gratuitous_arp(99_999, NEW_MAC, VIP)).unwrap_err().to_string();
    assert!(err.contains("ifindex 99999") && err.contains("sendto"), "{err}");
    must("ip", &["-n", &pair.node, "link", "set", "l2n", "down"]);
    let err = pair
        .in_node(|| {
            let dev = neigh_announce::interface_info("l2n").unwrap();
            neigh_announce::send_unsolicited_na(dev.ifindex, NEW_MAC, VIP6)
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("l2n") && err.contains("unsolicited NA"), "{err}");
}
