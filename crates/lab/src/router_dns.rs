//! Name resolution inside the lab: a DNS server on the router, and a `resolv.conf` per host
//! naming it, so that nothing in the lab asks the machine's resolver (which the lab cannot reach:
//! `arp -a` or `ping` by name would hang on it for seconds).
//!
//! - **The router's DNS server** is dnsmasq (Debian's `dnsmasq-base`: the binary without a system
//!   service), supervised like the lab's other processes, listening on the router's addresses
//!   (127.0.0.1, 192.168.10.200, 192.168.20.200), authoritative for `lab.` (with an SOA, so its
//!   negative answers can be cached). It holds only local data, all of it on its command line:
//!   the hosts of the lab under `lab.` (`router.lab`, `eth2.router.lab`, `k8s-ctr.lab`, ...),
//!   `example.lab` with `www.example.lab` (a CNAME), a TXT and an SRV record, and generated names
//!   `h-10-123-<c>-<d>.dyn.lab` for benchmarks. It reads no resolv.conf and has no upstream
//!   (`--no-resolv`): nothing it is asked goes out of the lab. Unknown names under `lab.` and the
//!   lab's reverse zones are NXDOMAIN; any other name is REFUSED, as from a resolver without
//!   internet access.
//! - **`/etc/netns/<namespace>/resolv.conf`** for every host: the router's address on the host's
//!   segment (nodes), 127.0.0.1 (the router itself, and the uplink and fabric, where nothing
//!   listens, so a lookup fails at once). `ip netns exec` already binds that file over
//!   `/etc/resolv.conf`; `cilia lab exec` does the same ([`bind_on_spawn`]): the command gets a
//!   private mount namespace (mounts made slaves first, so nothing propagates back) with the
//!   host's file bind-mounted over `/etc/resolv.conf`. Supervised processes keep the machine's
//!   mount namespace (the pod runtime's namespace mounts must be seen by everyone); the agent
//!   finds its node's file itself, the way `ip netns identify` names a namespace.
//!
//! `lab up` writes the files, `lab down` removes them.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use netconf::resolv_conf::IfBindFails;

use crate::Lab;
use crate::error::LabError;
use crate::process::ProcessSpec;
use crate::topology::{HostRole, ROUTER, Topology, nodes};

pub const ROUTER_DNS_PROCESS: &str = "router-dns";
const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// The lab's own domain.
pub const LAB_DOMAIN: &str = "lab";
/// Names `h-10-123-<c>-<d>.dyn.lab` resolve to 10.123.<c>.<d>: as many distinct names as a
/// benchmark of cache misses needs.
pub const SYNTH_DOMAIN: &str = "dyn.lab";
pub const SYNTH_RANGE: &str = "10.123.0.0/16";
pub const SYNTH_PREFIX: &str = "h-";
/// TTL of the router's local answers.
pub const LOCAL_TTL: u32 = 60;

/// Where `ip netns exec` looks for a namespace's resolv.conf.
pub fn resolv_conf_path(namespace: &str) -> PathBuf {
    Path::new("/etc/netns").join(namespace).join("resolv.conf")
}

/// The router's addresses on eth1 and eth2, and the address each node asks.
fn router_address_for(topology: &Topology, host: &str) -> Ipv4Addr {
    let Some(node) = nodes(topology).into_iter().find(|n| n.name == host) else { return Ipv4Addr::LOCALHOST };
    let [a, b, c, _] = node.internal_ip.octets();
    // The router is .200 on every segment of the guide's topology.
    Ipv4Addr::new(a, b, c, 200)
}

/// The router's addresses dnsmasq listens on.
fn router_addresses(topology: &Topology) -> Vec<Ipv4Addr> {
    let mut v = vec![Ipv4Addr::LOCALHOST];
    for n in nodes(topology) {
        let a = router_address_for(topology, &n.name);
        if !v.contains(&a) {
            v.push(a);
        }
    }
    v
}

/// The content of `host`'s resolv.conf.
pub fn resolv_conf(topology: &Topology, host: &str) -> String {
    let ns = match topology.host(host).map(|h| h.role) {
        Some(HostRole::Node) => router_address_for(topology, host),
        _ => Ipv4Addr::LOCALHOST,
    };
    format!(
        "# cilia lab {}: {host} resolves through the router's DNS server (dnsmasq)\n\
         nameserver {ns}\nsearch {LAB_DOMAIN}\noptions timeout:1 attempts:2\n",
        topology.lab().as_str()
    )
}

/// Writes every host's `/etc/netns/<namespace>/resolv.conf`; returns how many changed.
pub(crate) fn write_resolv_confs(lab: &Lab) -> Result<usize, LabError> {
    let mut changed = 0;
    for h in lab.topology().hosts() {
        let path = resolv_conf_path(&h.namespace);
        let content = resolv_conf(lab.topology(), &h.name);
        if std::fs::read_to_string(&path).is_ok_and(|c| c == content) {
            continue;
        }
        let dir = path.parent().expect("a parent");
        std::fs::create_dir_all(dir).map_err(|e| LabError::io("create directory", dir, e))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &content).map_err(|e| LabError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| LabError::io("rename", &path, e))?;
        changed += 1;
    }
    Ok(changed)
}

/// Removes the files [`write_resolv_confs`] wrote (and their directories when empty).
pub(crate) fn remove_resolv_confs(lab: &Lab) {
    for h in lab.topology().hosts() {
        let path = resolv_conf_path(&h.namespace);
        let _ = std::fs::remove_file(&path);
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// dnsmasq on the router, with the lab's names.
pub fn spec(lab: &Lab) -> ProcessSpec {
    let topology = lab.topology();
    let listen: Vec<String> = router_addresses(topology).iter().map(Ipv4Addr::to_string).collect();
    let mut argv: Vec<String> = [
        DNSMASQ,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--pid-file=",
        "--log-facility=-",
        "--log-queries",
        "--bind-interfaces",
        "--domain-needed",
        "--bogus-priv",
        "--cache-size=1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push(format!("--listen-address={}", listen.join(",")));
    argv.push(format!("--local-ttl={LOCAL_TTL}"));
    // Only local data for the lab's names and reverse zones: what it does not hold is NXDOMAIN.
    for zone in [LAB_DOMAIN, "168.192.in-addr.arpa", "10.in-addr.arpa"] {
        argv.push(format!("--local=/{zone}/"));
    }
    // Authoritative for them on every address it listens on: negative answers carry the zone's
    // SOA, so resolvers downstream cache them for its negative TTL (RFC 2308).
    argv.push(format!("--auth-zone={LAB_DOMAIN},192.168.0.0/16,10.0.0.0/8"));
    argv.push(format!("--auth-server={ROUTER}.{LAB_DOMAIN},{}", listen.join(",")));
    argv.push(format!("--auth-soa=1,hostmaster.{LAB_DOMAIN},1200,180,1209600"));
    argv.push(format!("--auth-ttl={LOCAL_TTL}"));
    let first = listen.get(1).cloned().unwrap_or_default();
    let mut records: Vec<(String, String)> =
        vec![(format!("{ROUTER}.{LAB_DOMAIN}"), first.clone()), (format!("example.{LAB_DOMAIN}"), first)];
    for (i, a) in listen.iter().enumerate().skip(2) {
        records.push((format!("eth{i}.{ROUTER}.{LAB_DOMAIN}"), a.clone()));
    }
    for n in nodes(topology) {
        records.push((format!("{}.{LAB_DOMAIN}", n.name), n.internal_ip.to_string()));
    }
    for (name, addr) in records {
        argv.push(format!("--host-record={name},{addr}"));
    }
    argv.push(format!("--cname=www.example.{LAB_DOMAIN},example.{LAB_DOMAIN}"));
    argv.push(format!("--txt-record=example.{LAB_DOMAIN},\"cilia lab\""));
    argv.push(format!("--srv-host=_http._tcp.example.{LAB_DOMAIN},example.{LAB_DOMAIN},80"));
    argv.push(format!("--synth-domain={SYNTH_DOMAIN},{SYNTH_RANGE},{SYNTH_PREFIX}"));
    ProcessSpec {
        name: ROUTER_DNS_PROCESS.into(),
        host: ROUTER.into(),
        argv,
        env: Default::default(),
        cwd: None,
        stale_files: Vec::new(),
    }
}

/// Makes `cmd` start with `namespace`'s resolv.conf over `/etc/resolv.conf`, if the lab wrote
/// one. As with `ip netns exec`, a bind that fails leaves the command with the machine's file
/// rather than not running it.
pub(crate) fn bind_on_spawn(cmd: &mut Command, namespace: &str) -> io::Result<()> {
    let file = resolv_conf_path(namespace);
    if !file.exists() {
        return Ok(());
    }
    netconf::resolv_conf::bind_on_spawn(cmd, &file, IfBindFails::RunAnyway)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_ask_the_router_on_their_segment() {
        let lab = Lab::new("t1").unwrap();
        let t = lab.topology();
        assert!(resolv_conf(t, "k8s-ctr").contains("nameserver 192.168.10.200\n"));
        assert!(resolv_conf(t, "k8s-w0").contains("nameserver 192.168.20.200\n"));
        assert!(resolv_conf(t, "router").contains("nameserver 127.0.0.1\n"));
        assert!(resolv_conf(t, "uplink").contains("nameserver 127.0.0.1\n"));
        assert_eq!(resolv_conf_path("t1-router"), Path::new("/etc/netns/t1-router/resolv.conf"));
    }

    #[test]
    fn dnsmasq_has_no_upstream_and_the_lab_names() {
        let lab = Lab::new("t1").unwrap();
        let s = spec(&lab);
        assert_eq!(s.host, "router");
        let argv = s.argv.join(" ");
        for needle in [
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--listen-address=127.0.0.1,192.168.10.200,192.168.20.200",
            "--host-record=k8s-w0.lab,192.168.20.100",
            "--host-record=router.lab,192.168.10.200 ",
            "--host-record=eth2.router.lab,192.168.20.200",
            "--auth-zone=lab,",
            "--local=/lab/",
        ] {
            assert!(argv.contains(needle), "{needle} missing from {argv}");
        }
        assert!(!argv.contains("--server"), "no upstream server: {argv}");
    }
}
