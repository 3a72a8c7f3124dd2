//! The cluster zone (`cluster.local.`) and the reverse names of cluster addresses, answered
//! authoritatively from [`Records`], per the Kubernetes DNS-Based Service Discovery
//! specification (schema 1.0.1):
//!
//! | name | records |
//! |---|---|
//! | `cluster.local.` | SOA, NS |
//! | `dns-version.cluster.local.` | TXT `"1.0.1"` (§2.2) |
//! | `ns.dns.cluster.local.` | A: the address the query came to (the NS record's target) |
//! | `<svc>.<ns>.svc.cluster.local.` | A/AAAA: cluster IPs (§2.3.1); headless: ready endpoints, NXDOMAIN without any (§2.4.1); ExternalName: CNAME (§2.5) |
//! | `<hostname>.<svc>.<ns>.svc.cluster.local.` | A/AAAA of a headless endpoint (§2.4.1) |
//! | `_<port>._<proto>.<svc>.<ns>.svc.cluster.local.` | SRV per named port; headless: per ready endpoint (§2.3.2, §2.4.2) |
//! | `<a-b-c-d>.<ns>.pod.cluster.local.` | A `a.b.c.d` (§2.6) |
//! | `<d>.<c>.<b>.<a>.in-addr.arpa.` | PTR of cluster IPs (§2.3.3), headless endpoints (§2.4.3) and pod IPs |
//!
//! A name that exists without data of the asked type is NODATA (NOERROR, no answer), a name that
//! does not exist NXDOMAIN; both carry the zone's SOA in the authority section, whose TTL and
//! minimum give the negative-caching TTL (RFC 2308). Empty non-terminals (`svc.cluster.local.`,
//! `<ns>.svc...`, `_tcp.<svc>...`) exist, so that a resolver that prunes below an NXDOMAIN
//! (RFC 8020) never loses a Service. Reverse names that the cluster does not know are not
//! answered here: they go upstream, as CoreDNS's `fallthrough in-addr.arpa` does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::{
    op::ResponseCode,
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT},
    },
};

use super::{
    CLUSTER_DOMAIN, TTL,
    records::{NamedPort, Records, ServiceKind, ServiceRecord, service_fqdn, undashed_v4},
};

/// The schema version of the spec this implements (§2.2).
pub const SCHEMA_VERSION: &str = "1.0.1";
/// SOA timers (CoreDNS's values); the minimum is the negative-caching TTL.
const SOA_REFRESH: i32 = 7200;
const SOA_RETRY: i32 = 1800;
const SOA_EXPIRE: i32 = 86400;
/// SRV priority and weight: the spec leaves them open; CoreDNS gives 0 and an even share of 100.
const SRV_PRIORITY: u16 = 0;

/// A complete authoritative answer, or an answer ending in a CNAME to resolve further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The answer ends in a CNAME (an ExternalName) whose target holds the asked type: the server
    /// resolves it (here or upstream) and appends what it finds, as the spec's §2.5 example shows.
    pub chase: Option<(Name, RecordType)>,
}

impl Reply {
    fn new(rcode: ResponseCode) -> Reply {
        Reply { rcode, answers: Vec::new(), authorities: Vec::new(), additionals: Vec::new(), chase: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Ours: answered with authority.
    Local(Reply),
    /// Not ours: outside the zone, or a reverse name the cluster does not know.
    Forward,
}

pub fn zone() -> Name {
    Name::from_ascii(format!("{CLUSTER_DOMAIN}.")).expect("a valid zone name")
}

fn ns_name() -> Name {
    Name::from_ascii(format!("ns.dns.{CLUSTER_DOMAIN}.")).expect("a valid name")
}

pub fn soa(serial: u32) -> Record {
    let rname = Name::from_ascii(format!("hostmaster.{CLUSTER_DOMAIN}.")).expect("a valid name");
    let soa = SOA::new(ns_name(), rname, serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, TTL);
    Record::from_rdata(zone(), TTL, RData::SOA(soa))
}

fn ns_record() -> Record {
    Record::from_rdata(zone(), TTL, RData::NS(NS(ns_name())))
}

fn addr_record(name: &Name, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name.clone(), TTL, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name.clone(), TTL, RData::AAAA(AAAA(v6))),
    }
}

/// The addresses of `ips` that answer `qtype` (A: IPv4, AAAA: IPv6).
fn of_type(ips: &[IpAddr], qtype: RecordType) -> impl Iterator<Item = IpAddr> + '_ {
    ips.iter().copied().filter(move |ip| match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        _ => false,
    })
}

/// Answers `qname`/`qtype` from `records`; `server` is the address the query came to (the A
/// record of the NS target).
pub fn lookup(records: &Records, qname: &Name, qtype: RecordType, server: IpAddr) -> Lookup {
    let lower = qname.to_ascii().to_ascii_lowercase();
    let lower = lower.trim_end_matches('.');
    if let Some(ip) = reverse_v4(lower).map(IpAddr::V4).or_else(|| reverse_v6(lower).map(IpAddr::V6)) {
        return match records.ptr.get(&ip) {
            Some(target) => {
                let mut r = Reply::new(ResponseCode::NoError);
                if qtype == RecordType::PTR || qtype == RecordType::ANY {
                    r.answers.push(Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(target.clone()))));
                }
                Local(r)
            }
            None => Lookup::Forward,
        };
    }
    let labels: Vec<&str> = if lower == CLUSTER_DOMAIN {
        Vec::new()
    } else if let Some(rest) = lower.strip_suffix(CLUSTER_DOMAIN).and_then(|r| r.strip_suffix('.')) {
        rest.split('.').collect()
    } else {
        return Lookup::Forward;
    };
    use Lookup::Local;
    let nx = || Local(negative(ResponseCode::NXDomain, records.serial));
    let nodata = || Local(negative(ResponseCode::NoError, records.serial));
    // From the right: svc or pod, namespace, service, ...
    match labels.as_slice() {
        [] => match qtype {
            RecordType::SOA => {
                let mut r = Reply::new(ResponseCode::NoError);
                r.answers.push(soa(records.serial));
                r.authorities.push(ns_record());
                Local(r)
            }
            RecordType::NS => {
                let mut r = Reply::new(ResponseCode::NoError);
                r.answers.push(ns_record());
                r.additionals.push(addr_record(&ns_name(), server));
                Local(r)
            }
            _ => nodata(),
        },
        ["dns-version"] => match qtype {
            RecordType::TXT => {
                let mut r = Reply::new(ResponseCode::NoError);
                let txt = TXT::new(vec![SCHEMA_VERSION.to_string()]);
                r.answers.push(Record::from_rdata(qname.clone(), TTL, RData::TXT(txt)));
                Local(r)
            }
            _ => nodata(),
        },
        ["dns"] => nodata(),
        ["ns", "dns"] => {
            let mut r = Reply::new(ResponseCode::NoError);
            r.answers.extend(of_type(&[server], qtype).map(|ip| addr_record(qname, ip)));
            if r.answers.is_empty() { nodata() } else { Local(r) }
        }
        ["svc"] | ["pod"] | [_, "pod"] => nodata(),
        [ns, "svc"] if records.namespaces.contains(*ns) => nodata(),
        [pod, _ns, "pod"] => match undashed_v4(pod) {
            // §2.6: any a-b-c-d in any namespace.
            Some(ip) => {
                let mut r = Reply::new(ResponseCode::NoError);
                r.answers.extend(of_type(&[IpAddr::V4(ip)], qtype).map(|ip| addr_record(qname, ip)));
                if r.answers.is_empty() { nodata() } else { Local(r) }
            }
            None => nx(),
        },
        [svc, ns, "svc"] => match records.service(ns, svc) {
            None => nx(),
            Some(s) => service(records, qname, qtype, s, svc, ns),
        },
        [first, svc, ns, "svc"] => match records.service(ns, svc) {
            Some(ServiceRecord { kind: ServiceKind::Headless(eps), .. }) => {
                if let Some(ep) = eps.iter().find(|e| e.hostname == *first) {
                    let mut r = Reply::new(ResponseCode::NoError);
                    r.answers.extend(of_type(&ep.ips, qtype).map(|ip| addr_record(qname, ip)));
                    return if r.answers.is_empty() { nodata() } else { Local(r) };
                }
                // `_tcp.<svc>...`: the parent of the SRV names.
                if eps.iter().flat_map(|e| &e.ports).any(|p| format!("_{}", p.protocol) == *first) {
                    return nodata();
                }
                nx()
            }
            Some(s @ ServiceRecord { kind: ServiceKind::ClusterIp(_), .. })
                if s.ports.iter().any(|p| format!("_{}", p.protocol) == *first) =>
            {
                nodata()
            }
            _ => nx(),
        },
        [port, proto, svc, ns, "svc"] => match records.service(ns, svc) {
            Some(s) => srv(records, qname, qtype, s, port, proto, svc, ns),
            None => nx(),
        },
        _ => nx(),
    }
}

use Lookup::Local;

fn negative(rcode: ResponseCode, serial: u32) -> Reply {
    let mut r = Reply::new(rcode);
    r.authorities.push(soa(serial));
    r
}

fn service(records: &Records, qname: &Name, qtype: RecordType, s: &ServiceRecord, svc: &str, ns: &str) -> Lookup {
    let mut r = Reply::new(ResponseCode::NoError);
    match &s.kind {
        ServiceKind::ExternalName(target) => {
            r.answers.push(Record::from_rdata(qname.clone(), TTL, RData::CNAME(CNAME(target.clone()))));
            if qtype != RecordType::CNAME && qtype != RecordType::ANY {
                r.chase = Some((target.clone(), qtype));
            }
        }
        ServiceKind::ClusterIp(ips) => {
            r.answers.extend(of_type(ips, qtype).map(|ip| addr_record(qname, ip)));
            if qtype == RecordType::SRV {
                // All named ports at the Service's own name, as CoreDNS answers it.
                let target = Name::from_ascii(service_fqdn(svc, ns)).ok();
                for p in &s.ports {
                    if let Some(t) = &target {
                        r.answers.push(srv_record(qname, p.port, t, 100));
                    }
                }
                if let Some(t) = &target {
                    r.additionals.extend(ips.iter().map(|ip| addr_record(t, *ip)));
                }
            }
        }
        ServiceKind::Headless(eps) => {
            if eps.is_empty() {
                return Local(negative(ResponseCode::NXDomain, records.serial));
            }
            for ep in eps {
                r.answers.extend(of_type(&ep.ips, qtype).map(|ip| addr_record(qname, ip)));
            }
            if qtype == RecordType::SRV {
                srv_headless(&mut r, qname, eps.iter().map(|e| (e, e.ports.iter().collect())), svc, ns);
            }
        }
    }
    if r.answers.is_empty() { Local(negative(ResponseCode::NoError, records.serial)) } else { Local(r) }
}

#[allow(clippy::too_many_arguments)]
fn srv(
    records: &Records,
    qname: &Name,
    qtype: RecordType,
    s: &ServiceRecord,
    port: &str,
    proto: &str,
    svc: &str,
    ns: &str,
) -> Lookup {
    let (Some(port), Some(proto)) = (port.strip_prefix('_'), proto.strip_prefix('_')) else {
        return Local(negative(ResponseCode::NXDomain, records.serial));
    };
    let matches = |p: &&NamedPort| p.name == port && p.protocol == proto;
    let mut r = Reply::new(ResponseCode::NoError);
    match &s.kind {
        ServiceKind::ClusterIp(ips) => {
            let Some(p) = s.ports.iter().find(matches) else {
                return Local(negative(ResponseCode::NXDomain, records.serial));
            };
            if qtype == RecordType::SRV || qtype == RecordType::ANY {
                let Ok(target) = Name::from_ascii(service_fqdn(svc, ns)) else {
                    return Local(negative(ResponseCode::ServFail, records.serial));
                };
                r.answers.push(srv_record(qname, p.port, &target, 100));
                r.additionals.extend(ips.iter().map(|ip| addr_record(&target, *ip)));
            }
        }
        ServiceKind::Headless(eps) => {
            let with: Vec<_> = eps.iter().map(|e| (e, e.ports.iter().filter(matches).collect::<Vec<_>>())).collect();
            if with.iter().all(|(_, ps)| ps.is_empty()) {
                return Local(negative(ResponseCode::NXDomain, records.serial));
            }
            if qtype == RecordType::SRV || qtype == RecordType::ANY {
                srv_headless(&mut r, qname, with.into_iter(), svc, ns);
            }
        }
        ServiceKind::ExternalName(_) => return Local(negative(ResponseCode::NXDomain, records.serial)),
    }
    if r.answers.is_empty() { Local(negative(ResponseCode::NoError, records.serial)) } else { Local(r) }
}

/// One SRV per (endpoint, port), each pointing at `<hostname>.<svc>.<ns>.svc...`, with the
/// endpoint's addresses in the additional section (§2.4.2).
fn srv_headless<'a>(
    r: &mut Reply,
    qname: &Name,
    eps: impl Iterator<Item = (&'a super::records::EndpointRecord, Vec<&'a NamedPort>)>,
    svc: &str,
    ns: &str,
) {
    let eps: Vec<_> = eps.filter(|(_, ps)| !ps.is_empty()).collect();
    let weight = u16::try_from(100 / eps.len().max(1)).unwrap_or(1).max(1);
    for (ep, ports) in eps {
        let Ok(target) = Name::from_ascii(format!("{}.{}", ep.hostname, service_fqdn(svc, ns))) else { continue };
        for p in ports {
            r.answers.push(srv_record(qname, p.port, &target, weight));
        }
        r.additionals.extend(ep.ips.iter().map(|ip| addr_record(&target, *ip)));
    }
}

fn srv_record(qname: &Name, port: u16, target: &Name, weight: u16) -> Record {
    Record::from_rdata(qname.clone(), TTL, RData::SRV(SRV::new(SRV_PRIORITY, weight, port, target.clone())))
}

/// `4.3.2.1.in-addr.arpa` → 1.2.3.4 (exactly four decimal labels).
fn reverse_v4(lower: &str) -> Option<Ipv4Addr> {
    let rest = lower.strip_suffix(".in-addr.arpa")?;
    let parts: Vec<&str> = rest.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut o = [0u8; 4];
    for (i, p) in parts.iter().rev().enumerate() {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        o[i] = p.parse().ok()?;
    }
    Some(Ipv4Addr::from(o))
}

/// The 32 nibbles of an `ip6.arpa` name.
fn reverse_v6(lower: &str) -> Option<Ipv6Addr> {
    let rest = lower.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<&str> = rest.split('.').collect();
    if nibbles.len() != 32 {
        return None;
    }
    let mut v: u128 = 0;
    for n in nibbles.iter().rev() {
        if n.len() != 1 {
            return None;
        }
        v = (v << 4) | u128::from(u8::from_str_radix(n, 16).ok()?);
    }
    Some(Ipv6Addr::from(v))
}
