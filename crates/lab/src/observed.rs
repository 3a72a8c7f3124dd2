//! What the kernel has, as read from `ip -j -d addr show` and `ip -j route show` in each namespace.
//! Parsing is pure so it is tested from captured output.

use std::collections::BTreeMap;

use serde::Deserialize;

use ipnet::Ipv4Net;

use crate::cidr;

/// A link as `ip -j -d addr show` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedLink {
    pub ifindex: u32,
    pub name: String,
    /// `veth`, `bridge`, ... (None for loopback).
    pub kind: Option<String>,
    /// Administratively up (the `UP` flag), regardless of carrier.
    pub up: bool,
    pub operstate: String,
    /// The root qdisc; `noop` until the kernel's link watcher has activated a link whose carrier
    /// came up, and a link drops every packet it is asked to send until then.
    pub qdisc: Option<String>,
    pub master: Option<String>,
    /// For a bridge port: `forwarding`, `disabled`, `learning`, ...
    pub bridge_port_state: Option<String>,
    /// For a veth: the ifindex of its peer (in the peer's namespace).
    pub peer_ifindex: Option<u32>,
    pub mac: Option<String>,
    pub ipv4: Vec<Ipv4Net>,
    /// Every address as `ip -br addr` would print it (IPv4 and IPv6).
    pub all_addresses: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedRoute {
    /// `blackhole`, `unreachable`, ... None for an ordinary unicast route.
    pub kind: Option<String>,
    /// `default` or `a.b.c.d/n` as `ip route` prints it.
    pub dst: String,
    pub gateway: Option<String>,
    pub dev: Option<String>,
}

/// One namespace's links and main-table routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedNamespace {
    pub links: Vec<ObservedLink>,
    pub routes: Vec<ObservedRoute>,
}

impl ObservedNamespace {
    pub fn link(&self, name: &str) -> Option<&ObservedLink> {
        self.links.iter().find(|l| l.name == name)
    }

    /// Veths that are administratively up but cannot pass packets yet: no carrier, a carrier the
    /// kernel has not acted on (root qdisc still `noop`), or a bridge port not yet forwarding.
    /// Bridges themselves are left out: their state follows their ports'.
    pub fn links_not_forwarding(&self) -> Vec<&str> {
        self.links
            .iter()
            .filter(|l| l.up && l.kind.as_deref() == Some("veth"))
            .filter(|l| {
                l.operstate != "UP"
                    || l.qdisc.as_deref() == Some("noop")
                    || l.bridge_port_state.as_deref().is_some_and(|s| s != "forwarding")
            })
            .map(|l| l.name.as_str())
            .collect()
    }
}

/// Whether the namespace file `/run/netns/<name>` is there and is a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    Missing,
    /// The file exists but is not an nsfs mount: left over after a crash or a reboot.
    Stale,
    Present(ObservedNamespace),
}

/// The observed state of every namespace of a topology, by namespace name.
pub type Observed = BTreeMap<String, Presence>;

#[derive(Deserialize)]
struct RawLink {
    ifindex: u32,
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    operstate: String,
    qdisc: Option<String>,
    master: Option<String>,
    link_index: Option<u32>,
    address: Option<String>,
    linkinfo: Option<RawLinkInfo>,
    #[serde(default)]
    addr_info: Vec<RawAddr>,
}

#[derive(Deserialize)]
struct RawLinkInfo {
    info_kind: Option<String>,
    info_slave_data: Option<RawSlaveData>,
}

#[derive(Deserialize)]
struct RawSlaveData {
    state: Option<String>,
}

#[derive(Deserialize)]
struct RawAddr {
    family: String,
    local: String,
    prefixlen: u8,
}

#[derive(Deserialize)]
struct RawRoute {
    #[serde(rename = "type")]
    kind: Option<String>,
    dst: String,
    gateway: Option<String>,
    dev: Option<String>,
}

/// Parses `ip -j -d addr show`.
pub fn parse_links(json: &str) -> Result<Vec<ObservedLink>, String> {
    let raw: Vec<RawLink> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(raw
        .into_iter()
        .map(|l| {
            let ipv4 = l
                .addr_info
                .iter()
                .filter(|a| a.family == "inet")
                .filter_map(|a| cidr::parse(&format!("{}/{}", a.local, a.prefixlen)).ok())
                .collect();
            let all_addresses = l.addr_info.iter().map(|a| format!("{}/{}", a.local, a.prefixlen)).collect();
            ObservedLink {
                ifindex: l.ifindex,
                up: l.flags.iter().any(|f| f == "UP"),
                name: l.ifname,
                bridge_port_state: l.linkinfo.as_ref().and_then(|i| i.info_slave_data.as_ref()?.state.clone()),
                kind: l.linkinfo.and_then(|i| i.info_kind),
                operstate: l.operstate,
                qdisc: l.qdisc,
                master: l.master,
                peer_ifindex: l.link_index,
                mac: l.address,
                ipv4,
                all_addresses,
            }
        })
        .collect())
}

/// Parses `ip -j route show`.
pub fn parse_routes(json: &str) -> Result<Vec<ObservedRoute>, String> {
    let raw: Vec<RawRoute> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(raw
        .into_iter()
        .map(|r| ObservedRoute { kind: r.kind.filter(|k| k != "unicast"), dst: r.dst, gateway: r.gateway, dev: r.dev })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `ip -j -d addr show` in a node namespace (trimmed to the fields that matter,
    /// plus a few that do not, to check they are ignored).
    const LINKS: &str = r#"[
      {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"operstate":"UNKNOWN",
       "link_type":"loopback","address":"00:00:00:00:00:00",
       "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo"}]},
      {"ifindex":2,"link_index":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
       "mtu":1500,"operstate":"UP","address":"02:c1:1a:00:00:01","link_netnsid":0,
       "linkinfo":{"info_kind":"veth"},
       "addr_info":[{"family":"inet","local":"10.0.2.15","prefixlen":24,"scope":"global","label":"eth0"},
                    {"family":"inet6","local":"fe80::c1:1aff:fe00:1","prefixlen":64,"scope":"link"}]},
      {"ifindex":5,"ifname":"seg10","flags":["NO-CARRIER","BROADCAST","MULTICAST"],"operstate":"DOWN",
       "linkinfo":{"info_kind":"bridge","info_data":{"forward_delay":0}},"addr_info":[]},
      {"ifindex":6,"link_index":9,"ifname":"k8s-ctr-eth1","flags":["BROADCAST","UP"],"operstate":"UP",
       "master":"seg10","linkinfo":{"info_kind":"veth","info_slave_kind":"bridge"},"addr_info":[]}
    ]"#;

    const ROUTES: &str = r#"[
      {"dst":"default","gateway":"10.0.2.2","dev":"eth0","flags":[]},
      {"dst":"10.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.0.2.15","flags":[]},
      {"type":"blackhole","dst":"default","flags":[]}
    ]"#;

    #[test]
    fn parses_links() {
        let links = parse_links(LINKS).unwrap();
        assert_eq!(links.len(), 4);
        let eth0 = &links[1];
        assert_eq!(eth0.name, "eth0");
        assert_eq!(eth0.kind.as_deref(), Some("veth"));
        assert!(eth0.up);
        assert_eq!(eth0.peer_ifindex, Some(2));
        assert_eq!(eth0.ipv4, ["10.0.2.15/24".parse().unwrap()]);
        assert_eq!(eth0.all_addresses.len(), 2);
        assert_eq!(links[0].kind, None);
        assert!(!links[2].up);
        assert_eq!(links[3].master.as_deref(), Some("seg10"));
    }

    #[test]
    fn a_link_forwards_once_its_carrier_is_up_and_acted_on() {
        let link = |name: &str, state: &str, qdisc: &str| {
            format!(
                r#"{{"ifindex":1,"ifname":"{name}","flags":["UP"],"operstate":"{state}","qdisc":"{qdisc}",
                    "linkinfo":{{"info_kind":"veth"}},"addr_info":[]}}"#
            )
        };
        let port = |name: &str, state: &str| {
            format!(
                r#"{{"ifindex":1,"ifname":"{name}","flags":["UP"],"operstate":"UP","qdisc":"noqueue","master":"br",
                    "linkinfo":{{"info_kind":"veth","info_slave_kind":"bridge",
                                 "info_slave_data":{{"state":"{state}"}}}},"addr_info":[]}}"#
            )
        };
        let json = format!(
            "[{},{},{},{},{},{}]",
            link("ready", "UP", "noqueue"),
            link("no-carrier", "LOWERLAYERDOWN", "noqueue"),
            link("not-activated", "UP", "noop"),
            port("forwarding-port", "forwarding"),
            port("disabled-port", "disabled"),
            r#"{"ifindex":9,"ifname":"lo","flags":["UP"],"operstate":"UNKNOWN","qdisc":"noqueue","addr_info":[]}"#
        );
        let ns = ObservedNamespace { links: parse_links(&json).unwrap(), routes: vec![] };
        assert_eq!(ns.links_not_forwarding(), ["no-carrier", "not-activated", "disabled-port"]);
        // Administratively down links are not waited for; the captured lab output has one.
        let captured = ObservedNamespace { links: parse_links(LINKS).unwrap(), routes: vec![] };
        assert!(!captured.links_not_forwarding().contains(&"seg10"));
    }

    #[test]
    fn parses_routes() {
        let routes = parse_routes(ROUTES).unwrap();
        assert_eq!(
            routes[0],
            ObservedRoute {
                kind: None,
                dst: "default".into(),
                gateway: Some("10.0.2.2".into()),
                dev: Some("eth0".into()),
            }
        );
        assert_eq!(routes[2].kind.as_deref(), Some("blackhole"));
        assert_eq!(routes[2].dev, None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_links("Object \"foo\" is unknown").is_err());
        assert!(parse_routes("{}").is_err());
    }
}
