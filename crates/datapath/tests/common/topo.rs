//! A two-node test topology in network namespaces the test creates and removes (on drop, also
//! after a panic). Every address lives inside these namespaces; nothing is added to the root
//! namespace and no traffic starts there.
//!
//! ```text
//!   client 192.168.77.1 ──┐
//!                         ├── br0 (lan ns)
//!   node1  192.168.77.100 ┤   eth1                node1 pods 172.30.1.0/24: podA .10 (server), podC .20 (client)
//!   node2  192.168.77.101 ┘   eth1                node2 pods 172.30.2.0/24: podB .10 (server)
//! ```
//! Pods have a /32 and a default route via 172.30.N.1, a local address of their node, as
//! netconf wires pods.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
pub const NODE1: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 100);
pub const NODE2: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 101);
pub const POD_A: Ipv4Addr = Ipv4Addr::new(172, 30, 1, 10);
pub const POD_C: Ipv4Addr = Ipv4Addr::new(172, 30, 1, 20);
pub const POD_B: Ipv4Addr = Ipv4Addr::new(172, 30, 2, 10);
pub const LB_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 211);
pub const SERVER_PORT: u16 = 8080;
/// Size of the bulk part of a `GET /big` answer.
pub const BIG_BODY: usize = 4 << 20;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Runs `ip -n NS ...` inside a namespace.
pub fn ipn(ns: &str, args: &[&str]) {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(&full);
}

/// Writes a sysctl (key with slashes, `net/ipv4/ip_forward`) in namespace `ns`.
fn sysctl(ns: &str, key: &str, value: &str) {
    in_netns(ns, || netconf::sysctl::write_here(key, value)).unwrap_or_else(|e| panic!("sysctl {key} in {ns}: {e}"));
}

/// Runs `f` on a thread that has entered namespace `ns`, and returns its result. Namespaces are
/// per thread, so the caller's thread never changes namespace.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    netconf::netns::on_thread_inside(file.as_fd(), f).expect("thread in netns panicked").expect("setns")
}

/// A tiny HTTP server on a thread inside a pod namespace: answers every request with its name
/// and the client address it saw (so tests can tell whether the flow was SNATed). Also echoes
/// UDP datagrams on the same port with the same text.
pub struct Server {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Server {
    pub fn start(ns: &str, addr: Ipv4Addr, name: &'static str) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let path = format!("/run/netns/{ns}");
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            netconf::netns::enter(file.as_fd()).expect("setns");
            let listener = TcpListener::bind((addr, SERVER_PORT)).expect("bind tcp");
            listener.set_nonblocking(true).unwrap();
            let udp = UdpSocket::bind((addr, SERVER_PORT)).expect("bind udp");
            udp.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            tx.send(()).unwrap();
            let mut buf = [0u8; 1500];
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        // one thread per connection: a client holding its connection open must
                        // not stall the others (bounded by the read timeout)
                        std::thread::spawn(move || {
                            conn.set_nonblocking(false).unwrap();
                            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let mut req = [0u8; 1024];
                            let n = conn.read(&mut req).unwrap_or(0);
                            let mut body = format!("{name} {}\n", peer.ip());
                            // "GET /big": a bulk answer that goes through segmentation offload
                            if req[..n].starts_with(b"GET /big") {
                                body.push_str(&"0123456789abcdef".repeat(BIG_BODY / 16));
                            }
                            let resp = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                            let _ = conn.write_all(resp.as_bytes());
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("accept: {e}"),
                }
                if let Ok((n, peer)) = udp.recv_from(&mut buf) {
                    let _ = n;
                    let _ = udp.send_to(format!("{name} {}\n", peer.ip()).as_bytes(), peer);
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("server did not start");
        Server { stop, handles: vec![handle] }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// One HTTP GET with short timeouts from the calling thread's namespace: the body, or an error.
pub fn http_get(to: SocketAddr) -> std::io::Result<(String, SocketAddr)> {
    http_get_path(to, "/")
}

pub fn http_get_path(to: SocketAddr, path: &str) -> std::io::Result<(String, SocketAddr)> {
    let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let peer = conn.peer_addr()?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: {to}\r\n\r\n").as_bytes())?;
    let mut resp = String::new();
    conn.read_to_string(&mut resp)?;
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_string();
    Ok((body, peer))
}

/// GET from inside namespace `ns`.
pub fn http_get_from(ns: &str, to: SocketAddr) -> std::io::Result<(String, SocketAddr)> {
    in_netns(ns, || http_get(to))
}

/// The namespaces and links of one test; everything is deleted on drop.
pub struct Topology {
    prefix: String,
    namespaces: Vec<String>,
}

impl Topology {
    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    pub fn build() -> Topology {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("cdp{}x{n}-", std::process::id());
        let mut t = Topology { prefix, namespaces: Vec::new() };
        for role in ["lan", "client", "node1", "node2", "podA", "podB", "podC"] {
            let ns = t.ns(role);
            ip(&["netns", "add", &ns]);
            t.namespaces.push(ns.clone());
            ipn(&ns, &["link", "set", "lo", "up"]);
        }
        let lan = t.ns("lan");
        ipn(&lan, &["link", "add", "br0", "type", "bridge"]);
        ipn(&lan, &["link", "set", "br0", "up"]);
        for (role, addr) in [("client", CLIENT), ("node1", NODE1), ("node2", NODE2)] {
            let ns = t.ns(role);
            let port = format!("p-{role}");
            let ifname = if role == "client" { "eth0" } else { "eth1" };
            ipn(&lan, &["link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", &ns]);
            ipn(&lan, &["link", "set", &port, "master", "br0", "up"]);
            ipn(&ns, &["addr", "add", &format!("{addr}/24"), "dev", ifname]);
            ipn(&ns, &["link", "set", ifname, "up"]);
            sysctl(&ns, "net/ipv4/conf/all/rp_filter", "0");
            sysctl(&ns, "net/ipv4/conf/default/rp_filter", "0");
        }
        for node in ["node1", "node2"] {
            sysctl(&t.ns(node), "net/ipv4/ip_forward", "1");
        }
        // The LB IP is announced by node1 (what L2 announcements do), modelled by a route.
        ipn(&t.ns("client"), &["route", "add", &format!("{LB_IP}/32"), "via", &NODE1.to_string()]);
        ipn(&t.ns("node1"), &["route", "add", "172.30.2.0/24", "via", &NODE2.to_string()]);
        ipn(&t.ns("node2"), &["route", "add", "172.30.1.0/24", "via", &NODE1.to_string()]);
        // The pods' gateway is a local address of the node (netconf puts it on cilium_host), so
        // the node answers the pods' ARP requests for it on every lxc device.
        ipn(&t.ns("node1"), &["addr", "add", "172.30.1.1/32", "dev", "lo"]);
        ipn(&t.ns("node2"), &["addr", "add", "172.30.2.1/32", "dev", "lo"]);
        t.add_pod("node1", "podA", "lxca", POD_A, "172.30.1.1");
        t.add_pod("node1", "podC", "lxcc", POD_C, "172.30.1.1");
        t.add_pod("node2", "podB", "lxcb", POD_B, "172.30.2.1");
        t
    }

    /// Deletes a pod's veth pair and wires the pod again with a new one of the same name.
    pub fn recreate_pod_veth(&self, node: &str, pod: &str, lxc: &str, addr: Ipv4Addr, gw: &str) {
        ipn(&self.ns(node), &["link", "del", lxc]);
        self.add_pod(node, pod, lxc, addr, gw);
    }

    fn add_pod(&self, node: &str, pod: &str, lxc: &str, addr: Ipv4Addr, gw: &str) {
        let node_ns = self.ns(node);
        let pod_ns = self.ns(pod);
        ipn(&node_ns, &["link", "add", lxc, "type", "veth", "peer", "name", "eth0", "netns", &pod_ns]);
        ipn(&node_ns, &["link", "set", lxc, "up"]);
        ipn(&node_ns, &["route", "add", &format!("{addr}/32"), "dev", lxc]);
        sysctl(&node_ns, &format!("net/ipv4/conf/{lxc}/rp_filter"), "0");
        ipn(&pod_ns, &["addr", "add", &format!("{addr}/32"), "dev", "eth0"]);
        ipn(&pod_ns, &["link", "set", "eth0", "up"]);
        ipn(&pod_ns, &["route", "add", gw, "dev", "eth0", "scope", "link"]);
        ipn(&pod_ns, &["route", "add", "default", "via", gw, "dev", "eth0"]);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A cgroup v2 directory for socket-LB, removed on drop (after moving this process back).
pub struct TestCgroup {
    pub path: std::path::PathBuf,
    parent: std::path::PathBuf,
}

impl TestCgroup {
    /// A new cgroup beside this process's own, or None without a cgroup v2 mount.
    pub fn new() -> Option<TestCgroup> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let root = mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })?;
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let rel = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim_start_matches('/').to_string();
        let parent = root.join(rel);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = parent.join(format!("cilia-dp-test-{}-{n}", std::process::id()));
        std::fs::create_dir(&path).expect("create test cgroup");
        Some(TestCgroup { path, parent })
    }

    /// Moves this whole process into the cgroup (cgroup v2 membership is per process).
    pub fn enter(&self) {
        std::fs::write(self.path.join("cgroup.procs"), std::process::id().to_string()).expect("join cgroup");
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.parent.join("cgroup.procs"), std::process::id().to_string());
        let _ = std::fs::remove_dir(&self.path);
    }
}
