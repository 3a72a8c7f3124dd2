//! Printable tables of the datapath's maps, in the shape of Cilium's `cilium-dbg bpf lb list`
//! and `cilium-dbg bpf ct list global`. Pure formatting over map contents, so the fake datapath
//! prints exactly what the real one would.

use std::fmt::Write as _;

use crate::abi::{self, Ct4Key, CtEntry, Lb4Key, Lb4Service, NatEntry};
use crate::lbstate::LbState;

fn frontend_label(k: &Lb4Key) -> String {
    let scope = if k.scope == abi::LB_SCOPE_LOCAL { "/i" } else { "" };
    format!("{}:{}/{}{}", abi::addr(k.address), k.port(), abi::proto_name(k.proto), scope)
}

fn kind_labels(k: &Lb4Key, v: &Lb4Service) -> String {
    let mut labels = Vec::new();
    if v.flags & abi::SVC_F_ICMP_ECHO != 0 {
        labels.push("ICMP echo");
    } else if v.flags & abi::SVC_F_NODEPORT != 0 {
        labels.push("NodePort");
    } else if v.flags & abi::SVC_F_LOADBALANCER != 0 {
        labels.push("LoadBalancer");
    } else if v.flags & abi::SVC_F_EXTERNAL_IP != 0 {
        labels.push("ExternalIPs");
    } else {
        labels.push("ClusterIP");
    }
    if k.address == [0; 4] {
        labels.push("surrogate");
    }
    if v.flags & abi::SVC_F_ROUTABLE == 0 {
        labels.push("non-routable");
    }
    if v.flags & abi::SVC_F_ETP_LOCAL != 0 {
        labels.push("eTrafficPolicy=Local");
    }
    if v.flags & abi::SVC_F_ITP_LOCAL != 0 {
        labels.push("iTrafficPolicy=Local");
    }
    if v.flags & abi::SVC_F_AFFINITY != 0 {
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
            let extra = if v.flags & abi::SVC_F_AFFINITY != 0 && v.flags & abi::SVC_F_ICMP_ECHO == 0 {
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
/// CLOCK_MONOTONIC, so expiry prints as seconds from now.
pub fn ct_list(entries: &[(Ct4Key, CtEntry)], now_ns: u64) -> String {
    let mut entries = entries.to_vec();
    entries.sort_by_key(|(k, _)| *k);
    let mut out = String::new();
    for (k, e) in entries {
        let expires = (e.expires_ns as i128 - now_ns as i128) / 1_000_000_000;
        let mut flags = Vec::new();
        if e.flags & abi::CT_F_NODEPORT != 0 {
            flags.push("nodeport");
        }
        if e.flags & abi::CT_F_SEEN_REPLY != 0 {
            flags.push("seen-reply");
        }
        if e.flags & abi::CT_F_CLOSING != 0 {
            flags.push("closing");
        }
        let _ = writeln!(
            out,
            "{} expires={}s Packets={} Bytes={} RevNAT={} BackendID={} TxFlagsSeen={:#04x} Flags=[{}]",
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
            flags: 0,
            tcp_flags: 0x02,
        };
        let out = ct_list(&[(k, e)], 10_000_000_000);
        assert_eq!(
            out.trim_end(),
            "TCP SERVICE 10.0.0.1:40000 -> 10.96.0.1:80 expires=60s Packets=3 Bytes=180 RevNAT=1 BackendID=2 TxFlagsSeen=0x02 Flags=[]"
        );
    }
}
