//! Printable tables of the datapath's maps, in the shape of Cilium's `cilium-dbg bpf lb list`
//! and `cilium-dbg bpf ct list global`. Pure formatting over map contents, so the fake datapath
//! prints exactly what the real one would.

use std::fmt::Write as _;

use crate::abi::{self, Ct4Key, CtEntry, CtFlags, L2Liveness, Lb4Key, Lb4Service, NatEntry, SvcFlags};
use crate::l2::{L2Row, liveness_fresh};
use crate::lbstate::LbState;

fn frontend_label(k: &Lb4Key) -> String {
    let scope = if k.scope == abi::LB_SCOPE_LOCAL { "/i" } else { "" };
    format!("{}:{}/{}{}", abi::addr(k.address), k.port(), abi::proto_name(k.proto), scope)
}

fn kind_labels(k: &Lb4Key, v: &Lb4Service) -> String {
    let mut labels = Vec::new();
    if v.flags.contains(SvcFlags::ICMP_ECHO) {
        labels.push("ICMP echo");
    } else if v.flags.contains(SvcFlags::NODEPORT) {
        labels.push("NodePort");
    } else if v.flags.contains(SvcFlags::LOADBALANCER) {
        labels.push("LoadBalancer");
    } else if v.flags.contains(SvcFlags::EXTERNAL_IP) {
        labels.push("ExternalIPs");
    } else {
        labels.push("ClusterIP");
    }
    if k.address == [0; 4] {
        labels.push("surrogate");
    }
    if !v.flags.contains(SvcFlags::ROUTABLE) {
        labels.push("non-routable");
    }
    if v.flags.contains(SvcFlags::ETP_LOCAL) {
        labels.push("eTrafficPolicy=Local");
    }
    if v.flags.contains(SvcFlags::ITP_LOCAL) {
        labels.push("iTrafficPolicy=Local");
    }
    if v.flags.contains(SvcFlags::AFFINITY) {
        labels.push("sessionAffinity");
    }
    if v.algorithm == abi::LB_ALG_MAGLEV {
        labels.push("Maglev");
    }
    labels.join(", ")
}

/// `SERVICE ADDRESS  BACKEND ADDRESS (REVNAT_ID) (SLOT)`: one line per frontend row (slot 0),
/// then one per backend slot, as `cilium-dbg bpf lb list` prints.
pub fn lb_list(state: &LbState) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    for (k, v) in &state.services {
        let svc = format!("{} ({})", frontend_label(k), k.backend_slot);
        let backend = if k.backend_slot == 0 {
            let extra = if v.flags.contains(SvcFlags::AFFINITY) && !v.flags.contains(SvcFlags::ICMP_ECHO) {
                format!(" affinity={}s", v.backend_id)
            } else {
                String::new()
            };
            format!(
                "0.0.0.0:0 ({}) ({}) [{}]{extra} count={}",
                v.rev_nat_index,
                k.backend_slot,
                kind_labels(k, v),
                v.count
            )
        } else {
            match state.backends.get(&v.backend_id) {
                Some(b) => {
                    let state_label = match b.flags & abi::BE_STATE_MASK {
                        abi::BE_STATE_ACTIVE => "",
                        _ => " [terminating]",
                    };
                    format!(
                        "{}:{}/{} ({}) ({}) id={}{}",
                        abi::addr(b.address),
                        abi::port_host(b.port),
                        abi::proto_name(b.proto),
                        v.rev_nat_index,
                        k.backend_slot,
                        v.backend_id,
                        state_label
                    )
                }
                None => format!("backend {} missing ({}) ({})", v.backend_id, v.rev_nat_index, k.backend_slot),
            }
        };
        rows.push((svc, backend));
    }
    table(("SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)"), rows)
}

/// `cilium-dbg bpf lb list --backends`: the backend table.
pub fn backend_list(state: &LbState) -> String {
    let rows = state
        .backends
        .iter()
        .map(|(id, b)| {
            let st = if b.flags & abi::BE_STATE_MASK == abi::BE_STATE_ACTIVE { "active" } else { "terminating" };
            let local = if b.flags & abi::BE_F_NODE_LOCAL != 0 { ", node-local" } else { "" };
            (
                id.to_string(),
                format!("{}:{}/{} {st}{local}", abi::addr(b.address), abi::port_host(b.port), abi::proto_name(b.proto)),
            )
        })
        .collect();
    table(("BACKEND ID", "BACKEND ADDRESS"), rows)
}

fn ct_dir(dir: u8) -> &'static str {
    match dir {
        abi::CT_SERVICE => "SERVICE",
        abi::CT_EGRESS => "OUT",
        abi::NAT_EGRESS => "SNAT-OUT",
        abi::NAT_INGRESS => "SNAT-IN",
        _ => "?",
    }
}

fn tuple(k: &Ct4Key) -> String {
    format!(
        "{} {} {}:{} -> {}:{}",
        abi::proto_name(k.proto),
        ct_dir(k.dir),
        abi::addr(k.saddr),
        abi::port_host(k.sport),
        abi::addr(k.daddr),
        abi::port_host(k.dport)
    )
}

/// One line per conntrack entry, like `cilium-dbg bpf ct list global`; `now_ns` is
/// CLOCK_MONOTONIC, so expiry prints as seconds from now, and an entry whose time has passed but
/// that garbage collection has not removed yet as `expires=expired`.
pub fn ct_list(entries: &[(Ct4Key, CtEntry)], now_ns: u64) -> String {
    let mut entries = entries.to_vec();
    entries.sort_by_key(|(k, _)| *k);
    let mut out = String::new();
    for (k, e) in entries {
        let expires = if e.expires_ns <= now_ns {
            "expired".to_string()
        } else {
            format!("{}s", (e.expires_ns - now_ns) / 1_000_000_000)
        };
        let mut flags = Vec::new();
        if e.flags.contains(CtFlags::NODEPORT) {
            flags.push("nodeport");
        }
        if e.flags.contains(CtFlags::SEEN_REPLY) {
            flags.push("seen-reply");
        }
        if e.flags.contains(CtFlags::CLOSING) {
            flags.push("closing");
        }
        let _ = writeln!(
            out,
            "{} expires={} Packets={} Bytes={} RevNAT={} BackendID={} TxFlagsSeen={:#04x} Flags=[{}]",
            tuple(&k),
            expires,
            e.packets,
            e.bytes,
            e.rev_nat_index,
            e.backend_id,
            e.tcp_flags,
            flags.join(",")
        );
    }
    out
}

/// One line per SNAT mapping, like `cilium-dbg bpf nat list`.
pub fn nat_list(entries: &[(Ct4Key, NatEntry)]) -> String {
    let mut entries = entries.to_vec();
    entries.sort_by_key(|(k, _)| *k);
    let mut out = String::new();
    for (k, e) in entries {
        let _ = writeln!(out, "{} XLATE {}:{}", tuple(&k), abi::addr(e.to_addr), abi::port_host(e.to_port));
    }
    out
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// `cilia dbg NODE bpf l2 list`: one line per responder entry (columns IP, IFINDEX, MAC,
/// RESPONSES; `ifname` adds the device's name to the ifindex when it knows it), then the
/// heartbeat: its age against the max age, and whether the datapath answers at `now_ns`
/// (CLOCK_MONOTONIC).
pub fn l2_list(
    rows: &[L2Row],
    liveness: Option<&L2Liveness>,
    now_ns: u64,
    ifname: Option<&dyn Fn(u32) -> Option<String>>,
) -> String {
    let mut rows = rows.to_vec();
    rows.sort();
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            let dev = match ifname.and_then(|f| f(r.ifindex)) {
                Some(name) => format!("{} ({name})", r.ifindex),
                None => r.ifindex.to_string(),
            };
            [r.ip.to_string(), dev, mac(&r.mac), r.responses.to_string()]
        })
        .collect();
    let header = ["IP", "IFINDEX", "MAC", "RESPONSES"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&cells) {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let line = format!(
            "{:w0$}   {:w1$}   {:w2$}   {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if let Some(l) = liveness {
        let _ = writeln!(out, "{}", liveness_line(l, now_ns));
    }
    out
}

fn secs(ns: u64) -> String {
    format!("{:.1}s", ns as f64 / 1e9)
}

/// The heartbeat as the inspection prints it.
pub fn liveness_line(l: &L2Liveness, now_ns: u64) -> String {
    if l.refreshed_ns == 0 {
        return "liveness: never refreshed (or cleared): not answering".into();
    }
    let age = now_ns.saturating_sub(l.refreshed_ns);
    let verdict = if liveness_fresh(l, now_ns) { "answering" } else { "stale, not answering" };
    format!("liveness: refreshed {} ago, max age {}: {verdict}", secs(age), secs(l.max_age_ns))
}

fn table(header: (&str, &str), rows: Vec<(String, String)>) -> String {
    let width = rows.iter().map(|(a, _)| a.len()).chain([header.0.len()]).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "{:width$}   {}", header.0, header.1);
    for (a, b) in rows {
        let _ = writeln!(out, "{a:width$}   {b}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::lbstate::{desired, plan};
    use crate::service::{Backend, Protocol, ServiceEntry, ServiceKind};

    #[test]
    fn lb_list_reads_like_cilium() {
        let svc = ServiceEntry::new(
            ServiceKind::ClusterIp,
            Ipv4Addr::new(10, 96, 48, 145),
            80,
            Protocol::Tcp,
            vec![Backend::active(Ipv4Addr::new(172, 20, 1, 10), 80, false)],
        );
        let mut s = LbState::default();
        for op in plan(&s.clone(), &desired(&[svc], &s).unwrap()) {
            s.apply(&op);
        }
        let out = lb_list(&s);
        assert!(out.starts_with("SERVICE ADDRESS"), "{out}");
        assert!(out.contains("10.96.48.145:80/TCP (0)   0.0.0.0:0 (1) (0) [ClusterIP, non-routable]"), "{out}");
        assert!(out.contains("10.96.48.145:80/TCP (1)   172.20.1.10:80/TCP (1) (1)"), "{out}");
        assert!(out.contains("10.96.48.145:0/ICMP (0)"), "{out}");
    }

    #[test]
    fn l2_list_prints_entries_and_the_heartbeat() {
        let rows = vec![
            L2Row { ip: "fd00::211".parse().unwrap(), ifindex: 3, mac: [2, 0, 0, 0, 0, 0x11], responses: 0 },
            L2Row { ip: "192.168.10.211".parse().unwrap(), ifindex: 3, mac: [2, 0, 0, 0, 0, 0x11], responses: 42 },
        ];
        let names = |i: u32| (i == 3).then(|| "eth1".to_string());
        let live = L2Liveness { refreshed_ns: 9_600_000_000, max_age_ns: 15_000_000_000 };
        let out = l2_list(&rows, Some(&live), 10_000_000_000, Some(&names));
        assert_eq!(
            out,
            "IP               IFINDEX    MAC                 RESPONSES\n\
             192.168.10.211   3 (eth1)   02:00:00:00:00:11   42\n\
             fd00::211        3 (eth1)   02:00:00:00:00:11   0\n\
             liveness: refreshed 0.4s ago, max age 15.0s: answering\n"
        );
        let stale = l2_list(&rows[..1], Some(&live), 30_000_000_000, None);
        assert!(stale.contains("fd00::211   3         02:00:00:00:00:11   0"), "{stale}");
        assert!(stale.ends_with("refreshed 20.4s ago, max age 15.0s: stale, not answering\n"), "{stale}");
        let never = l2_list(&[], Some(&L2Liveness::default()), 1, None);
        assert_eq!(never, "IP   IFINDEX   MAC   RESPONSES\nliveness: never refreshed (or cleared): not answering\n");
    }

    #[test]
    fn ct_list_prints_tuples_and_expiry() {
        let k = Ct4Key::new(
            Ipv4Addr::new(10, 0, 0, 1),
            40000,
            Ipv4Addr::new(10, 96, 0, 1),
            80,
            abi::IPPROTO_TCP,
            abi::CT_SERVICE,
        );
        let e = CtEntry {
            expires_ns: 70_000_000_000,
            packets: 3,
            bytes: 180,
            backend_id: 2,
            rev_nat_index: 1,
            flags: CtFlags::empty(),
            tcp_flags: 0x02,
        };
        let out = ct_list(&[(k, e)], 10_000_000_000);
        assert_eq!(
            out.trim_end(),
            "TCP SERVICE 10.0.0.1:40000 -> 10.96.0.1:80 expires=60s Packets=3 Bytes=180 RevNAT=1 BackendID=2 TxFlagsSeen=0x02 Flags=[]"
        );
        let expired = ct_list(&[(k, e)], 79_000_000_000);
        assert!(expired.contains(" expires=expired Packets=3 "), "{expired}");
    }
}
