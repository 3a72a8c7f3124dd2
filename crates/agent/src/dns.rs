//! Cluster DNS: every agent answers A queries for `<service>.<namespace>.svc.cluster.local` with
//! the Service's cluster IP, on its node's router IP (the `cilium_host` address, port 53, UDP and
//! TCP). Pods reach that address through their default route without the service datapath, so
//! name resolution keeps working whatever the datapath does, and every node answers for itself.
//!
//! Names under `cluster.local` that name no Service get NXDOMAIN, existing names asked for
//! another type get an empty answer (NODATA), both with the zone's SOA for negative caching.
//! There is no upstream: names outside the cluster get NXDOMAIN too, so a search-path walk ends
//! quickly. Messages are parsed and built with hickory-proto.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use api::types::Service;
use hickory_proto::{
    op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, SOA},
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{Semaphore, watch},
};
use tokio_util::sync::CancellationToken;

pub const CLUSTER_DOMAIN: &str = "cluster.local";
pub const DNS_PORT: u16 = 53;
/// CoreDNS's default TTL for Kubernetes records: short, services come and go.
const TTL: u32 = 5;
/// Open TCP connections at once; more wait for a slot.
const MAX_TCP: usize = 64;
const TCP_IDLE: Duration = Duration::from_secs(10);
const RETRY_BIND: Duration = Duration::from_secs(2);

/// The names the server knows: services by namespace and name, with their cluster IPs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    services: BTreeMap<(String, String), Vec<Ipv4Addr>>,
    namespaces: BTreeSet<String>,
}

impl Records {
    /// Headless services (and ExternalName ones) are names without addresses here: they answer
    /// NODATA rather than NXDOMAIN.
    pub fn from_services(services: &[Service]) -> Records {
        let mut r = Records::default();
        for svc in services {
            let ns = svc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let spec = &svc.spec;
            let mut ips: Vec<Ipv4Addr> =
                spec.cluster_ip.iter().chain(spec.cluster_ips.iter()).filter_map(|ip| ip.parse().ok()).collect();
            ips.sort_unstable();
            ips.dedup();
            r.namespaces.insert(ns.clone());
            r.services.insert((ns, svc.metadata.name.clone()), ips);
        }
        r
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// What a name and type resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    A(Vec<Ipv4Addr>),
    /// The name exists, without records of that type.
    NoData,
    NxDomain,
}

/// Resolves `name` (any case, with or without the trailing dot).
pub fn lookup(records: &Records, name: &str, qtype: RecordType) -> Answer {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let Some(rest) = name.strip_suffix(CLUSTER_DOMAIN) else { return Answer::NxDomain };
    let labels: Vec<&str> = match rest.strip_suffix('.') {
        Some(r) if !r.is_empty() => r.split('.').collect(),
        None if rest.is_empty() => Vec::new(),
        _ => return Answer::NxDomain,
    };
    // Labels from the right: svc, namespace, service.
    match labels.as_slice() {
        [] | ["svc"] => Answer::NoData,
        [ns, "svc"] if records.namespaces.contains(*ns) => Answer::NoData,
        [svc, ns, "svc"] => match records.services.get(&(ns.to_string(), svc.to_string())) {
            Some(ips) if qtype == RecordType::A && !ips.is_empty() => Answer::A(ips.clone()),
            Some(_) => Answer::NoData,
            None => Answer::NxDomain,
        },
        _ => Answer::NxDomain,
    }
}

fn soa() -> Record {
    let zone = Name::from_ascii(format!("{CLUSTER_DOMAIN}.")).expect("a valid zone name");
    let mname = Name::from_ascii(format!("ns.dns.{CLUSTER_DOMAIN}.")).expect("a valid name");
    let rname = Name::from_ascii(format!("hostmaster.{CLUSTER_DOMAIN}.")).expect("a valid name");
    Record::from_rdata(zone, TTL, RData::SOA(SOA::new(mname, rname, 1, 7200, 1800, 86400, TTL)))
}

/// Answers one DNS message; None for what deserves no answer (a response, garbage too short to
/// carry an id).
pub fn respond(records: &Records, request: &[u8]) -> Option<Vec<u8>> {
    let req = match Message::from_vec(request) {
        Ok(m) => m,
        Err(_) if request.len() >= 2 => {
            let id = u16::from_be_bytes([request[0], request[1]]);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec().ok();
        }
        Err(_) => return None,
    };
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata = Metadata::response_from_request(&req.metadata);
    resp.metadata.authoritative = true;
    resp.queries.clone_from(&req.queries);
    if req.edns.is_some() {
        resp.edns = Some(Edns::new());
    }
    let query = match (req.metadata.op_code, req.queries.as_slice()) {
        (OpCode::Query, [q]) => q,
        (OpCode::Query, _) => {
            resp.metadata.response_code = ResponseCode::FormErr;
            return resp.to_vec().ok();
        }
        _ => {
            resp.metadata.response_code = ResponseCode::NotImp;
            return resp.to_vec().ok();
        }
    };
    match lookup(records, &query.name.to_ascii(), query.query_type) {
        Answer::A(ips) => {
            for ip in ips {
                resp.answers.push(Record::from_rdata(query.name.clone(), TTL, RData::A(A(ip))));
            }
        }
        Answer::NoData => resp.authorities.push(soa()),
        Answer::NxDomain => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            resp.authorities.push(soa());
        }
    }
    resp.to_vec().ok()
}

/// Serves DNS on `address:port` (UDP and TCP) until `shutdown`, answering from the latest
/// `records`. Binding is retried while the address is not there yet.
pub async fn serve(address: Ipv4Addr, port: u16, records: watch::Receiver<Arc<Records>>, shutdown: CancellationToken) {
    let at = SocketAddr::from((address, port));
    let (udp, tcp) = loop {
        match (UdpSocket::bind(at).await, TcpListener::bind(at).await) {
            (Ok(u), Ok(t)) => break (u, t),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(%at, error = %e, "cannot listen for DNS; retrying in {RETRY_BIND:?}");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_BIND) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    };
    tracing::info!(%at, "cluster DNS listening (UDP and TCP) for *.svc.{CLUSTER_DOMAIN}");
    let udp_task = serve_udp(udp, records.clone());
    let tcp_task = serve_tcp(tcp, records, shutdown.clone());
    tokio::select! {
        () = udp_task => {}
        () = tcp_task => {}
        () = shutdown.cancelled() => {}
    }
}

async fn serve_udp(sock: UdpSocket, records: watch::Receiver<Arc<Records>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "DNS over UDP: receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let current = records.borrow().clone();
        if let Some(answer) = respond(&current, &buf[..n])
            && let Err(e) = sock.send_to(&answer, peer).await
        {
            tracing::debug!(%peer, error = %e, "DNS over UDP: send failed");
        }
    }
}

async fn serve_tcp(listener: TcpListener, records: watch::Receiver<Arc<Records>>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (conn, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "DNS over TCP: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let records = records.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                r = tcp_connection(conn, records) => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "DNS over TCP connection ended");
                },
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// RFC 1035 §4.2.2: each message is preceded by its length in two bytes.
async fn tcp_connection(mut conn: TcpStream, records: watch::Receiver<Arc<Records>>) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut len)).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut msg))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "message incomplete"))??;
        let current = records.borrow().clone();
        let Some(answer) = respond(&current, &msg) else { continue };
        let Ok(n) = u16::try_from(answer.len()) else { continue };
        let mut out = Vec::with_capacity(answer.len() + 2);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&answer);
        conn.write_all(&out).await?;
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;
    use serde_json::json;

    use super::*;

    fn records() -> Records {
        let svc = |name: &str, ns: &str, ip: &str| -> Service {
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}))
            .unwrap()
        };
        Records::from_services(&[
            svc("webpod", "default", "10.96.41.64"),
            svc("kube-dns", "kube-system", "10.96.0.10"),
            svc("headless", "default", "None"),
        ])
    }

    #[test]
    fn service_names_and_their_search_path_forms() {
        let r = records();
        let a = |ip: &str| Answer::A(vec![ip.parse().unwrap()]);
        assert_eq!(lookup(&r, "webpod.default.svc.cluster.local.", RecordType::A), a("10.96.41.64"));
        assert_eq!(lookup(&r, "WebPod.Default.svc.Cluster.Local", RecordType::A), a("10.96.41.64"));
        assert_eq!(lookup(&r, "kube-dns.kube-system.svc.cluster.local", RecordType::A), a("10.96.0.10"));
        // AAAA of a service: the name exists, no IPv6 address.
        assert_eq!(lookup(&r, "webpod.default.svc.cluster.local", RecordType::AAAA), Answer::NoData);
        assert_eq!(lookup(&r, "headless.default.svc.cluster.local", RecordType::A), Answer::NoData);
        // What a search path produces on the way ("webpod" from a pod in default, ndots:5).
        assert_eq!(lookup(&r, "webpod.svc.cluster.local", RecordType::A), Answer::NxDomain);
        assert_eq!(lookup(&r, "webpod.cluster.local", RecordType::A), Answer::NxDomain);
        assert_eq!(lookup(&r, "webpod", RecordType::A), Answer::NxDomain);
        assert_eq!(lookup(&r, "nothere.default.svc.cluster.local", RecordType::A), Answer::NxDomain);
        assert_eq!(lookup(&r, "webpod.other.svc.cluster.local", RecordType::A), Answer::NxDomain);
        assert_eq!(lookup(&r, "default.svc.cluster.local", RecordType::A), Answer::NoData);
        assert_eq!(lookup(&r, "cluster.local", RecordType::SOA), Answer::NoData);
        assert_eq!(lookup(&r, "example.com", RecordType::A), Answer::NxDomain);
        assert_eq!(lookup(&r, "notcluster.local", RecordType::A), Answer::NxDomain);
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x4242;
        m.metadata.recursion_desired = true;
        m.queries.push(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    #[test]
    fn wire_answers() {
        let r = records();
        let resp = Message::from_vec(&respond(&r, &query("webpod.default.svc.cluster.local.", RecordType::A)).unwrap())
            .unwrap();
        assert_eq!(resp.metadata.id, 0x4242);
        assert_eq!(resp.metadata.message_type, MessageType::Response);
        assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
        assert!(resp.metadata.authoritative && resp.metadata.recursion_desired);
        assert_eq!(resp.queries.len(), 1);
        let ips: Vec<_> = resp
            .answers
            .iter()
            .filter_map(|a| match &a.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        assert_eq!(ips, [Ipv4Addr::new(10, 96, 41, 64)]);

        let nx =
            Message::from_vec(&respond(&r, &query("nope.default.svc.cluster.local.", RecordType::A)).unwrap()).unwrap();
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(nx.answers.is_empty());
        assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);

        let nodata =
            Message::from_vec(&respond(&r, &query("webpod.default.svc.cluster.local.", RecordType::AAAA)).unwrap())
                .unwrap();
        assert_eq!((nodata.metadata.response_code, nodata.answers.len()), (ResponseCode::NoError, 0));

        // Garbage with an id gets FORMERR; less than an id gets nothing.
        let bad = Message::from_vec(&respond(&r, &[0x12, 0x34, 0xff]).unwrap()).unwrap();
        assert_eq!((bad.metadata.id, bad.metadata.response_code), (0x1234, ResponseCode::FormErr));
        assert_eq!(respond(&r, &[1]), None);
        // A response is never answered (no loops between servers).
        let mut not_a_query = Message::from_vec(&query("webpod.default.svc.cluster.local.", RecordType::A)).unwrap();
        not_a_query.metadata.message_type = MessageType::Response;
        assert_eq!(respond(&r, &not_a_query.to_vec().unwrap()), None);
    }

    #[tokio::test]
    async fn answers_over_udp_and_tcp_on_loopback() {
        let (tx, rx) = watch::channel(Arc::new(records()));
        let shutdown = CancellationToken::new();
        // Find a free port on loopback for both protocols.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = tokio::spawn(serve(Ipv4Addr::LOCALHOST, port, rx, shutdown.clone()));
        let at = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = [0u8; 512];
        let mut got = None;
        for _ in 0..50 {
            udp.send_to(&query("webpod.default.svc.cluster.local.", RecordType::A), at).await.unwrap();
            if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(100), udp.recv_from(&mut buf)).await {
                got = Some(Message::from_vec(&buf[..n]).unwrap());
                break;
            }
        }
        assert_eq!(got.expect("an answer over UDP").answers.len(), 1);

        // A record added later is answered without a restart.
        let mut more = records();
        more.services.insert(("default".into(), "new".into()), vec![Ipv4Addr::new(10, 96, 9, 9)]);
        tx.send(Arc::new(more)).unwrap();
        let mut conn = TcpStream::connect(at).await.unwrap();
        let q = query("new.default.svc.cluster.local.", RecordType::A);
        conn.write_all(&u16::try_from(q.len()).unwrap().to_be_bytes()).await.unwrap();
        conn.write_all(&q).await.unwrap();
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).await.unwrap();
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut msg).await.unwrap();
        let resp = Message::from_vec(&msg).unwrap();
        assert_eq!(resp.answers[0].data, RData::A(A(Ipv4Addr::new(10, 96, 9, 9))));

        shutdown.cancel();
        server.await.unwrap();
    }
}
