//! Cluster DNS end to end, as root, each test in a lab of its own, asked with `dig` from a pod
//! as a user would: every record of the Kubernetes DNS-Based Service Discovery spec (A/AAAA for
//! ClusterIP and headless Services, SRV for named ports, CNAME for ExternalName, PTR, pod names,
//! the schema version, SOA and NS with negative-caching TTLs), truncation (TC over UDP, whole
//! over TCP), forwarding through the node's resolv.conf to the router's dnsmasq with a cache, and
//! SERVFAIL (never NXDOMAIN) when no upstream answers. Also the lab's own resolution: `arp -a` on
//! the router returns at once.
//!
//! Every query starts in a pod or a lab host; the lab's upstream (dnsmasq on the router) forwards
//! nothing out of the lab.

mod common;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use common::{TestLab, text};

const WAIT: Duration = Duration::from_secs(60);

/// Services and pods for every row of the spec's table.
const MANIFESTS: &str = "apiVersion: v1
kind: Pod
metadata: {name: curl-pod, labels: {app: curl}}
spec:
  nodeName: k8s-ctr
  containers: [{name: curl, image: nicolaka/netshoot}]
  terminationGracePeriodSeconds: 0
---
apiVersion: v1
kind: Pod
metadata: {name: pet, labels: {app: web}}
spec:
  nodeName: k8s-w1
  hostname: pet-0
  subdomain: web-headless
  containers: [{name: web, image: traefik/whoami}]
  terminationGracePeriodSeconds: 0
---
apiVersion: v1
kind: Pod
metadata: {name: other, labels: {app: web}}
spec:
  nodeName: k8s-w0
  containers: [{name: web, image: traefik/whoami}]
  terminationGracePeriodSeconds: 0
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 80}
  - {name: metrics, port: 9100, targetPort: 80, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 8000, targetPort: 80}
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  clusterIP: None
  selector: {app: nothing-matches}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: www.example.lab
---
apiVersion: v1
kind: Service
metadata: {name: alias}
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
";

/// A headless Service without a selector and its EndpointSlice, written by hand as Kubernetes
/// allows: 40 ready endpoints, more A records than a 512-byte UDP answer holds.
fn big_headless() -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: big}\nspec:\n  clusterIP: None\n  ports: [{name: http, port: 80}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-manual\n  labels: {kubernetes.io/service-name: big}\n\
         addressType: IPv4\nports: [{name: http, port: 80, protocol: TCP}]\nendpoints:\n",
    );
    for i in 1..=40 {
        s.push_str(&format!("- {{addresses: [\"10.200.0.{i}\"], conditions: {{ready: true}}}}\n"));
    }
    s
}

struct Cluster {
    lab: TestLab,
    cluster_ip: String,
    pet_ip: String,
    other_ip: String,
    curl_ip: String,
}

impl Cluster {
    fn up(prefix: &str) -> Cluster {
        let lab = TestLab::up(prefix);
        let out = lab.cilia_stdin(&["apply", "-f", "-"], MANIFESTS);
        assert!(out.status.success(), "apply:\n{}", text(&out));
        let cluster_ip = lab.allocated("web", "clusterIP", WAIT);
        let ip_of = |pod: &str| {
            lab.eventually(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"], WAIT, |o| !o.trim().is_empty())
                .trim()
                .to_string()
        };
        let (pet_ip, other_ip, curl_ip) = (ip_of("pet"), ip_of("other"), ip_of("curl-pod"));
        let c = Cluster { lab, cluster_ip, pet_ip, other_ip, curl_ip };
        // Both web pods ready: the headless Service answers both.
        c.dig_until(&["+short", "web-headless.default.svc.cluster.local"], |o| {
            o.contains(&c.pet_ip) && o.contains(&c.other_ip)
        });
        c
    }

    /// `dig ARGS` from curl-pod; its full output.
    fn dig(&self, args: &[&str]) -> String {
        let mut argv = vec!["exec", "curl-pod", "--", "dig", "+time=3", "+tries=1"];
        argv.extend(args);
        let out = self.lab.cilia(&argv);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    fn dig_until(&self, args: &[&str], pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self.dig(args);
            if pred(&out) {
                return out;
            }
            assert!(Instant::now() < deadline, "dig {args:?} never satisfied the condition; last:\n{out}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The status of a full dig output (`NOERROR`, `NXDOMAIN`, ...).
fn status(out: &str) -> &str {
    out.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("(none)")
}

/// The records of one section (`ANSWER`, `AUTHORITY`, `ADDITIONAL`), as (name, ttl, type, data).
fn section(out: &str, which: &str) -> Vec<(String, u32, String, String)> {
    let header = format!(";; {which} SECTION:");
    let Some(start) = out.find(&header) else { return Vec::new() };
    out[start + header.len()..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5).then(|| (f[0].to_string(), f[1].parse().unwrap_or(0), f[3].to_string(), f[4..].join(" ")))
        })
        .collect()
}

fn data(out: &str, which: &str, rtype: &str) -> BTreeSet<String> {
    section(out, which).into_iter().filter(|r| r.2 == rtype).map(|r| r.3).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Reverse name of an IPv4 address.
fn arpa(ip: &str) -> String {
    let mut o: Vec<&str> = ip.split('.').collect();
    o.reverse();
    format!("{}.in-addr.arpa.", o.join("."))
}

#[test]
fn every_record_of_the_spec_from_a_pod() {
    let c = Cluster::up("dnsspec");
    let web = "web.default.svc.cluster.local.";

    // A for a ClusterIP Service, by FQDN and through the pod's search path; AA set.
    let out = c.dig(&["web.default.svc.cluster.local"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(out.contains("flags: qr aa rd ra"), "{out}");
    assert_eq!(data(&out, "ANSWER", "A"), set(&[&c.cluster_ip]), "{out}");
    let out = c.dig(&["+search", "web"]);
    assert_eq!(data(&out, "ANSWER", "A"), set(&[&c.cluster_ip]), "search path: {out}");
    let out = c.dig(&["+search", "web.default"]);
    assert_eq!(data(&out, "ANSWER", "A"), set(&[&c.cluster_ip]), "search path: {out}");
    // Case does not matter.
    let out = c.dig(&["WEB.Default.SVC.cluster.LOCAL"]);
    assert_eq!(data(&out, "ANSWER", "A"), set(&[&c.cluster_ip]), "{out}");

    // AAAA of an IPv4-only Service: NOERROR, no data, the zone's SOA with the negative TTL.
    let out = c.dig(&["AAAA", "web.default.svc.cluster.local"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(section(&out, "ANSWER").is_empty(), "{out}");
    let soa = section(&out, "AUTHORITY");
    assert_eq!(soa.len(), 1, "{out}");
    assert_eq!((soa[0].0.as_str(), soa[0].1, soa[0].2.as_str()), ("cluster.local.", 5, "SOA"), "{out}");
    assert!(
        soa[0].3.starts_with("ns.dns.cluster.local. hostmaster.cluster.local. ") && soa[0].3.ends_with(" 5"),
        "{out}"
    );

    // NXDOMAIN for a Service that does not exist, with the SOA.
    let out = c.dig(&["nothere.default.svc.cluster.local"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert_eq!(section(&out, "AUTHORITY")[0].2, "SOA", "{out}");
    // An empty non-terminal is no NXDOMAIN.
    assert_eq!(status(&c.dig(&["default.svc.cluster.local"])), "NOERROR");

    // Headless: one A per ready endpoint; by hostname (the pod's hostname + subdomain) and by
    // the dashed address for a pod without one; NXDOMAIN without ready endpoints.
    let out = c.dig(&["web-headless.default.svc.cluster.local"]);
    assert_eq!(data(&out, "ANSWER", "A"), set(&[&c.pet_ip, &c.other_ip]), "{out}");
    let out = c.dig(&["pet-0.web-headless.default.svc.cluster.local"]);
    assert_eq!(data(&out, "ANSWER", "A"), set(&[&c.pet_ip]), "{out}");
    let dashed = c.other_ip.replace('.', "-");
    let out = c.dig(&[&format!("{dashed}.web-headless.default.svc.cluster.local")]);
    assert_eq!(data(&out, "ANSWER", "A"), set(&[&c.other_ip]), "{out}");
    let out = c.dig(&["nobody.default.svc.cluster.local"]);
    assert_eq!(status(&out), "NXDOMAIN", "headless without endpoints: {out}");

    // SRV for named ports (TCP and UDP), with the A in the additional section; none for a
    // protocol the port does not have; headless: one per endpoint, at the pod's port, to its
    // hostname.
    let out = c.dig(&["SRV", "_http._tcp.web.default.svc.cluster.local"]);
    assert_eq!(data(&out, "ANSWER", "SRV"), set(&[&format!("0 100 80 {web}")]), "{out}");
    assert_eq!(data(&out, "ADDITIONAL", "A"), set(&[&c.cluster_ip]), "{out}");
    let out = c.dig(&["SRV", "_metrics._udp.web.default.svc.cluster.local"]);
    assert_eq!(data(&out, "ANSWER", "SRV"), set(&[&format!("0 100 9100 {web}")]), "{out}");
    assert_eq!(status(&c.dig(&["SRV", "_metrics._tcp.web.default.svc.cluster.local"])), "NXDOMAIN");
    let out = c.dig(&["SRV", "_http._tcp.web-headless.default.svc.cluster.local"]);
    assert_eq!(
        data(&out, "ANSWER", "SRV"),
        set(&[
            "0 50 80 pet-0.web-headless.default.svc.cluster.local.",
            &format!("0 50 80 {dashed}.web-headless.default.svc.cluster.local."),
        ]),
        "{out}"
    );
    assert_eq!(data(&out, "ADDITIONAL", "A"), set(&[&c.pet_ip, &c.other_ip]), "{out}");

    // ExternalName: the CNAME, then the target resolved (upstream for www.example.lab, itself a
    // CNAME there; in the zone for a cluster name).
    let out = c.dig(&["ext.default.svc.cluster.local"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(
        section(&out, "ANSWER").iter().map(|r| (r.2.as_str(), r.3.as_str())).collect::<Vec<_>>(),
        [("CNAME", "www.example.lab."), ("CNAME", "example.lab."), ("A", "192.168.10.200")],
        "{out}"
    );
    let out = c.dig(&["CNAME", "ext.default.svc.cluster.local"]);
    assert_eq!(data(&out, "ANSWER", "CNAME"), set(&["www.example.lab."]), "{out}");
    let out = c.dig(&["alias.default.svc.cluster.local"]);
    assert_eq!(data(&out, "ANSWER", "CNAME"), set(&[web]), "{out}");
    assert_eq!(data(&out, "ANSWER", "A"), set(&[&c.cluster_ip]), "{out}");

    // PTR: the cluster IP, a headless endpoint with a hostname, a pod's IP.
    let out = c.dig(&["-x", &c.cluster_ip]);
    assert_eq!(data(&out, "ANSWER", "PTR"), set(&[web]), "{out}");
    let out = c.dig(&["-x", &c.pet_ip]);
    assert_eq!(data(&out, "ANSWER", "PTR"), set(&["pet-0.web-headless.default.svc.cluster.local."]), "{out}");
    let out = c.dig(&["PTR", &arpa(&c.curl_ip)]);
    let curl_name = format!("{}.default.pod.cluster.local.", c.curl_ip.replace('.', "-"));
    assert_eq!(data(&out, "ANSWER", "PTR"), set(&[&curl_name]), "{out}");

    // Pod names (§2.6), the schema version (§2.2), SOA and NS of the zone.
    let out = c.dig(&[&curl_name]);
    assert_eq!(data(&out, "ANSWER", "A"), set(&[&c.curl_ip]), "{out}");
    let out = c.dig(&["TXT", "dns-version.cluster.local"]);
    assert_eq!(data(&out, "ANSWER", "TXT"), set(&["\"1.0.1\""]), "{out}");
    let out = c.dig(&["SOA", "cluster.local"]);
    assert_eq!(section(&out, "ANSWER")[0].2, "SOA", "{out}");
    assert_eq!(data(&out, "AUTHORITY", "NS"), set(&["ns.dns.cluster.local."]), "{out}");
    let gateway = c.lab.ok(&["exec", "curl-pod", "--", "sh", "-c", "ip route show default | cut -d' ' -f3"]);
    let out = c.dig(&["NS", "cluster.local"]);
    assert_eq!(data(&out, "ANSWER", "NS"), set(&["ns.dns.cluster.local."]), "{out}");
    assert_eq!(data(&out, "ADDITIONAL", "A"), set(&[gateway.trim()]), "{out}");
}

#[test]
fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let c = Cluster::up("dnstc");
    let out = c.lab.cilia_stdin(&["apply", "-f", "-"], &big_headless());
    assert!(out.status.success(), "apply:\n{}", text(&out));
    let name = "big.default.svc.cluster.local";
    c.dig_until(&["+tcp", name], |o| section(o, "ANSWER").len() == 40);
    // 40 A records: over UDP at 512 bytes (no EDNS, or EDNS 512), TC and part of them.
    for size in ["+noedns", "+bufsize=512"] {
        let udp = c.dig(&[size, "+ignore", name]);
        assert!(udp.contains(" tc "), "TC over UDP with {size}: {udp}");
        let part = section(&udp, "ANSWER").len();
        assert!(part > 0 && part < 40, "{size}: {part} answers\n{udp}");
    }
    // With dig's default EDNS size (1232) they fit: no TC.
    let fits = c.dig(&[name]);
    assert!(!fits.contains(" tc ") && section(&fits, "ANSWER").len() == 40, "{fits}");
    // Over TCP, whole; and dig's own retry over TCP after a TC gets all of them.
    let tcp = c.dig(&["+tcp", "+noedns", name]);
    assert!(!tcp.contains(" tc ") && section(&tcp, "ANSWER").len() == 40, "{tcp}");
    let retried = c.dig(&["+noedns", name]);
    assert!(retried.contains("Truncated, retrying in TCP mode"), "{retried}");
    assert_eq!(section(&retried, "ANSWER").len(), 40, "{retried}");
    // SRV per endpoint: 40 records with their targets and addresses do not fit in 1232 bytes
    // either; the additional section goes first, then TC.
    let srv = c.dig(&["+ignore", "SRV", "_http._tcp.big.default.svc.cluster.local"]);
    assert!(srv.contains(" tc "), "{srv}");
    let srv = c.dig(&["+tcp", "SRV", "_http._tcp.big.default.svc.cluster.local"]);
    assert_eq!(data(&srv, "ANSWER", "SRV").len(), 40, "{srv}");
    assert!(data(&srv, "ANSWER", "SRV").contains("0 2 80 10-200-0-7.big.default.svc.cluster.local."), "{srv}");
    assert_eq!(data(&srv, "ADDITIONAL", "A").len(), 40, "{srv}");
}

#[test]
fn names_outside_the_cluster_are_forwarded_cached_and_never_a_false_nxdomain() {
    let c = Cluster::up("dnsfwd");
    let router_log = format!("/run/cilia/lab/{}/logs/router-dns.log", c.lab.name);
    let asked = |name: &str| {
        std::fs::read_to_string(&router_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("[A] {name} from")))
            .count()
    };

    // A name of the lab's upstream (dnsmasq on the router) resolves through the chain, without
    // AA (not ours), with recursion available.
    let out = c.dig(&["example.lab"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(out.contains("flags: qr rd ra;"), "{out}");
    assert_eq!(data(&out, "ANSWER", "A"), set(&["192.168.10.200"]), "{out}");
    let out = c.dig(&["+search", "example.lab"]);
    assert_eq!(data(&out, "ANSWER", "A"), set(&["192.168.10.200"]), "through the search path: {out}");
    // The pod's search path ends with the node's search domains (lab.), as the kubelet makes it.
    let conf = c.lab.ok(&["exec", "curl-pod", "--", "cat", "/etc/resolv.conf"]);
    assert!(conf.contains("search default.svc.cluster.local svc.cluster.local cluster.local lab\n"), "{conf}");
    let out = c.dig(&["+search", "example"]);
    assert_eq!(
        data(&out, "ANSWER", "A"),
        set(&["192.168.10.200"]),
        "example.lab through the node's search domain: {out}"
    );
    let out = c.dig(&["-x", "192.168.10.100"]);
    assert_eq!(data(&out, "ANSWER", "PTR"), set(&["k8s-ctr.lab."]), "a reverse name the cluster does not hold: {out}");

    // Cached for its TTL: asked once upstream, the TTL counts down.
    let name = "h-10-123-4-5.dyn.lab";
    let first = c.dig(&[name]);
    assert_eq!(data(&first, "ANSWER", "A"), set(&["10.123.4.5"]), "{first}");
    std::thread::sleep(Duration::from_millis(2100));
    let second = c.dig(&[name]);
    assert_eq!(data(&second, "ANSWER", "A"), set(&["10.123.4.5"]), "{second}");
    let (t1, t2) = (section(&first, "ANSWER")[0].1, section(&second, "ANSWER")[0].1);
    assert!(t2 + 2 <= t1 && t2 > 0, "TTL {t1} then {t2}");
    assert_eq!(asked(name), 1, "the second answer came from the cache");

    // A true NXDOMAIN from upstream passes with its SOA, and is cached for the negative TTL.
    let nx = "nothere.example.lab";
    let out = c.dig(&[nx]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    let soa = section(&out, "AUTHORITY");
    assert_eq!((soa[0].0.as_str(), soa[0].2.as_str()), ("lab.", "SOA"), "{out}");
    std::thread::sleep(Duration::from_millis(1100));
    let again = c.dig(&[nx]);
    assert_eq!(status(&again), "NXDOMAIN", "{again}");
    assert!(section(&again, "AUTHORITY")[0].1 < soa[0].1, "the SOA's TTL counts down: {again}");
    assert_eq!(asked(nx), 1, "negative answer cached");

    // A name the upstream has no answer for (it has no internet: REFUSED): SERVFAIL, not NXDOMAIN.
    let out = c.dig(&["example.com"]);
    assert_eq!(status(&out), "SERVFAIL", "{out}");
    assert_eq!(
        asked("example.com"),
        1,
        "example.com went upstream: {}",
        std::fs::read_to_string(&router_log).unwrap_or_default()
    );
    let out = c.lab.cilia(&["exec", "curl-pod", "--", "curl", "-sS", "-m", "5", "http://example.com"]);
    assert!(text(&out).contains("Could not resolve host"), "{}", text(&out));

    // No upstream answering at all: the node's resolv.conf names an address in the lab where
    // nobody is. SERVFAIL within a few seconds, never NXDOMAIN; back once the file is restored.
    let file = format!("/etc/netns/{}/resolv.conf", c.lab.namespace("k8s-ctr"));
    let original = std::fs::read_to_string(&file).expect("the node's resolv.conf");
    std::fs::write(&file, "nameserver 192.168.10.254\n").unwrap();
    std::thread::sleep(Duration::from_millis(2500)); // the agent looks at the file every 2 s
    let started = Instant::now();
    let out = c.dig(&["+time=8", "fresh.example.lab"]);
    let took = started.elapsed();
    // Cluster names are still answered meanwhile.
    let cluster = c.dig(&["web.default.svc.cluster.local"]);
    std::fs::write(&file, &original).unwrap();
    assert_eq!(status(&out), "SERVFAIL", "{out}");
    assert!(took < Duration::from_secs(5), "SERVFAIL after {took:?}");
    assert_eq!(data(&cluster, "ANSWER", "A"), set(&[&c.cluster_ip]), "{cluster}");
    // Forwarding comes back with the file.
    c.dig_until(&["fresh.example.lab"], |o| status(o) == "NXDOMAIN");
}

#[test]
fn arp_on_the_router_returns_at_once_with_the_lab_names() {
    let lab = TestLab::up("dnsarp");
    // Every host has its resolv.conf, naming the router (127.0.0.1 on the router itself).
    let file = std::fs::read_to_string(format!("/etc/netns/{}/resolv.conf", lab.namespace("k8s-w0"))).unwrap();
    assert!(file.contains("nameserver 192.168.20.200\n"), "{file}");
    let out = lab.ok(&["lab", "exec", "router", "--", "cat", "/etc/resolv.conf"]);
    assert!(out.contains("nameserver 127.0.0.1\n"), "lab exec sees the host's own file: {out}");
    // Neighbours on both segments, then arp -a resolves each through the router's dnsmasq.
    for ip in ["192.168.10.100", "192.168.10.101", "192.168.20.100"] {
        lab.ok(&["lab", "exec", "router", "--", "ping", "-c1", "-W1", ip]);
    }
    let started = Instant::now();
    let out = lab.ok(&["lab", "exec", "router", "--", "arp", "-a"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "arp -a took {took:?}:\n{out}");
    for name in ["k8s-ctr.lab (192.168.10.100)", "k8s-w1.lab (192.168.10.101)", "k8s-w0.lab (192.168.20.100)"] {
        assert!(out.contains(name), "{name} missing:\n{out}");
    }
    // The same with ip netns exec, which binds the same file.
    let started = Instant::now();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.namespace("router"), "arp", "-a"])
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2) && out.status.success(), "{}", text(&out));
    // A node resolves the lab's names too.
    let out = lab.ok(&["lab", "exec", "k8s-w0", "--", "dig", "+short", "router.lab"]);
    assert_eq!(out.trim(), "192.168.10.200");
    // The machine's own resolv.conf is untouched by all this.
    let root = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(!root.contains("cilia lab"), "{root}");
}

/// Lookups from curl-pod, 100 ms apart, while k8s-ctr's agent is killed with SIGKILL and then all
/// agents are restarted by `cilia config set`: cluster DNS is its own process, so no lookup fails
/// and none gets NXDOMAIN.
#[test]
fn lookups_go_on_across_an_agent_kill_and_a_config_restart() {
    let c = Cluster::up("dnskill");
    let stop = format!("/tmp/cilia-{}.stop", c.lab.name);
    // Each line: the status of one lookup (1 s timeout, no retry), NOERROR expected. At most
    // 600 lookups; the test ends the loop once both faults are over.
    let script = format!(
        "for i in $(seq 1 600); do [ -e {stop} ] && break; \
         s=$(dig +time=1 +tries=1 web.default.svc.cluster.local | sed -n 's/.*status: \\([A-Z]*\\).*/\\1/p'); \
         echo \"${{s:-TIMEOUT}}\"; sleep 0.1; done"
    );
    let load = c
        .lab
        .command(&["exec", "curl-pod", "--", "sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the lookups");
    std::thread::sleep(Duration::from_secs(2));
    let status = c.lab.ok(&["lab", "status"]);
    let pid = status
        .lines()
        .find(|l| l.starts_with("agent-k8s-ctr "))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("the agent of k8s-ctr runs")
        .to_string();
    let killed = std::process::Command::new("kill").args(["-9", &pid]).status().expect("kill");
    assert!(killed.success(), "kill -9 {pid}");
    std::thread::sleep(Duration::from_secs(3));
    // A change that restarts the operator and every agent in turn.
    let out = c.lab.cilia(&["config", "set", "bpf-lb-algorithm=maglev"]);
    assert!(out.status.success() && text(&out).contains("restarted"), "config set:\n{}", text(&out));
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(&stop, "").expect("stop marker");
    let out = load.wait_with_output();
    let _ = std::fs::remove_file(&stop);
    let out = out.expect("the lookups end");
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert!(lines.len() >= 40, "too few lookups to tell: {lines:?}");
    let failed: Vec<(usize, &String)> = lines.iter().enumerate().filter(|(_, s)| *s != "NOERROR").collect();
    assert!(failed.is_empty(), "{} of {} lookups failed (index, status): {failed:?}", failed.len(), lines.len());
}
