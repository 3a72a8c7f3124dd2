use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use api::types::{EndpointSlice, Pod, Service};
use hickory_proto::{
    op::{Edns, Message, MessageType, Query, ResponseCode},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{A, CNAME, PTR, SOA},
    },
};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

use super::{
    server::{Handler, Transport},
    zone::{Lookup, lookup},
    *,
};

const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(172, 20, 0, 1));

fn svc(name: &str, ns: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns}, "spec": spec}))
    .unwrap()
}

fn slice(svc: &str, eps: &[(&str, bool, &str)], ports: serde_json::Value) -> EndpointSlice {
    let endpoints: Vec<_> = eps
        .iter()
        .map(|(ip, ready, pod)| {
            json!({"addresses": [ip], "conditions": {"ready": ready},
                   "targetRef": {"kind": "Pod", "namespace": "default", "name": pod}})
        })
        .collect();
    serde_json::from_value(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-abc"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": ports}))
    .unwrap()
}

fn pod(name: &str, ip: &str, hostname: Option<&str>, subdomain: Option<&str>) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
    if let Some(h) = hostname {
        spec["hostname"] = json!(h);
    }
    if let Some(s) = subdomain {
        spec["subdomain"] = json!(s);
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": {"podIP": ip}}))
    .unwrap()
}

fn records() -> Records {
    let services = [
        svc(
            "webpod",
            "default",
            json!({"clusterIP": "10.96.41.64",
            "ports": [{"name": "http", "port": 80}, {"port": 8080}]}),
        ),
        svc(
            "kube-dns",
            "kube-system",
            json!({"clusterIP": "10.96.0.10",
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}),
        ),
        svc("headless", "default", json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]})),
        svc("empty", "default", json!({"clusterIP": "None"})),
        svc("ext", "default", json!({"type": "ExternalName", "externalName": "www.example.lab"})),
        svc("alias", "default", json!({"type": "ExternalName", "externalName": "webpod.default.svc.cluster.local."})),
        svc("pending", "default", json!({"ports": [{"port": 80}]})),
    ];
    let slices = [slice(
        "headless",
        &[("172.20.1.5", true, "web-0"), ("172.20.2.7", true, "web-1"), ("172.20.0.9", false, "web-2")],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
    )];
    let pods = [
        pod("web-0", "172.20.1.5", Some("web-0"), Some("headless")),
        pod("web-1", "172.20.2.7", None, None),
        pod("curl-pod", "172.20.0.33", None, None),
    ];
    let mut r = Records::build(&services, &slices, &pods);
    r.serial = 7;
    r
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn local(r: &Records, q: &str, t: RecordType) -> zone::Reply {
    match lookup(r, &name(q), t, SERVER) {
        Lookup::Local(reply) => reply,
        Lookup::Forward => panic!("{q} {t} was forwarded"),
    }
}

fn ips(reply: &zone::Reply) -> Vec<String> {
    reply
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

fn rcode(r: &Records, q: &str, t: RecordType) -> (ResponseCode, usize) {
    let reply = local(r, q, t);
    (reply.rcode, reply.answers.len())
}

const NX: (ResponseCode, usize) = (ResponseCode::NXDomain, 0);
const NODATA: (ResponseCode, usize) = (ResponseCode::NoError, 0);

#[test]
fn cluster_ip_services_and_their_search_path_forms() {
    let r = records();
    assert_eq!(ips(&local(&r, "webpod.default.svc.cluster.local.", RecordType::A)), ["10.96.41.64"]);
    assert_eq!(ips(&local(&r, "WebPod.Default.svc.Cluster.Local", RecordType::A)), ["10.96.41.64"]);
    assert_eq!(ips(&local(&r, "kube-dns.kube-system.svc.cluster.local", RecordType::A)), ["10.96.0.10"]);
    // AAAA of an IPv4-only service: the name exists, no IPv6 address.
    assert_eq!(rcode(&r, "webpod.default.svc.cluster.local.", RecordType::AAAA), NODATA);
    assert_eq!(rcode(&r, "pending.default.svc.cluster.local.", RecordType::A), NODATA);
    // What a search path produces on the way ("webpod" from a pod in default, ndots:5).
    assert_eq!(rcode(&r, "webpod.svc.cluster.local", RecordType::A), NX);
    assert_eq!(rcode(&r, "webpod.cluster.local", RecordType::A), NX);
    assert_eq!(rcode(&r, "nothere.default.svc.cluster.local", RecordType::A), NX);
    assert_eq!(rcode(&r, "webpod.other.svc.cluster.local", RecordType::A), NX);
    // Empty non-terminals exist.
    assert_eq!(rcode(&r, "default.svc.cluster.local", RecordType::A), NODATA);
    assert_eq!(rcode(&r, "svc.cluster.local", RecordType::A), NODATA);
    assert_eq!(rcode(&r, "_tcp.webpod.default.svc.cluster.local", RecordType::A), NODATA);
    // Negative answers carry the SOA, whose minimum is the negative TTL.
    let nx = local(&r, "nothere.default.svc.cluster.local", RecordType::A);
    match &nx.authorities[0].data {
        RData::SOA(soa) => assert_eq!((soa.serial, soa.minimum, nx.authorities[0].ttl), (7, TTL, TTL)),
        other => panic!("{other:?}"),
    }
    // Names outside the zone are not ours.
    assert_eq!(lookup(&r, &name("example.com."), RecordType::A, SERVER), Lookup::Forward);
    assert_eq!(lookup(&r, &name("notcluster.local."), RecordType::A, SERVER), Lookup::Forward);
}

#[test]
fn headless_services_answer_their_ready_endpoints() {
    let r = records();
    let reply = local(&r, "headless.default.svc.cluster.local.", RecordType::A);
    let mut got = ips(&reply);
    got.sort();
    assert_eq!(got, ["172.20.1.5", "172.20.2.7"], "not-ready 172.20.0.9 is left out");
    // By hostname: the pod's own (hostname + subdomain = the Service), else the dashed address.
    assert_eq!(ips(&local(&r, "web-0.headless.default.svc.cluster.local.", RecordType::A)), ["172.20.1.5"]);
    assert_eq!(ips(&local(&r, "172-20-2-7.headless.default.svc.cluster.local.", RecordType::A)), ["172.20.2.7"]);
    assert_eq!(rcode(&r, "172-20-0-9.headless.default.svc.cluster.local.", RecordType::A), NX);
    // No ready endpoint: NXDOMAIN (§2.4.1).
    assert_eq!(rcode(&r, "empty.default.svc.cluster.local.", RecordType::A), NX);
}

fn srv_of(reply: &zone::Reply) -> Vec<(u16, String)> {
    let mut v: Vec<_> = reply
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::SRV(s) => Some((s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn srv_for_named_ports() {
    let r = records();
    let reply = local(&r, "_http._tcp.webpod.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(srv_of(&reply), [(80, "webpod.default.svc.cluster.local.".to_string())]);
    assert_eq!(ips(&zone::Reply { answers: reply.additionals.clone(), ..reply.clone() }), ["10.96.41.64"]);
    let dns = local(&r, "_dns._udp.kube-dns.kube-system.svc.cluster.local.", RecordType::SRV);
    assert_eq!(srv_of(&dns), [(53, "kube-dns.kube-system.svc.cluster.local.".to_string())]);
    assert_eq!(rcode(&r, "_dns._tcp.kube-dns.kube-system.svc.cluster.local.", RecordType::SRV), NX);
    assert_eq!(rcode(&r, "_nope._tcp.webpod.default.svc.cluster.local.", RecordType::SRV), NX);
    assert_eq!(rcode(&r, "_http._tcp.webpod.default.svc.cluster.local.", RecordType::A), NODATA);
    // Headless: one per ready endpoint, at the endpoint's port, pointing at its hostname.
    let h = local(&r, "_http._tcp.headless.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        srv_of(&h),
        [
            (8080, "172-20-2-7.headless.default.svc.cluster.local.".to_string()),
            (8080, "web-0.headless.default.svc.cluster.local.".to_string())
        ]
    );
    assert_eq!(h.additionals.len(), 2);
}

#[test]
fn external_names_are_cnames() {
    let r = records();
    let reply = local(&r, "ext.default.svc.cluster.local.", RecordType::A);
    assert_eq!(reply.answers[0].data, RData::CNAME(CNAME(name("www.example.lab."))));
    assert_eq!(reply.chase, Some((name("www.example.lab."), RecordType::A)));
    let reply = local(&r, "ext.default.svc.cluster.local.", RecordType::CNAME);
    assert_eq!((reply.answers.len(), reply.chase), (1, None));
}

#[test]
fn ptr_schema_version_soa_ns_and_pod_names() {
    let r = records();
    let ptr = |q: &str| match lookup(&r, &name(q), RecordType::PTR, SERVER) {
        Lookup::Local(reply) => match &reply.answers[0].data {
            RData::PTR(PTR(n)) => n.to_ascii(),
            other => panic!("{other:?}"),
        },
        Lookup::Forward => "forwarded".into(),
    };
    assert_eq!(ptr("64.41.96.10.in-addr.arpa."), "webpod.default.svc.cluster.local.");
    assert_eq!(ptr("5.1.20.172.in-addr.arpa."), "web-0.headless.default.svc.cluster.local.");
    assert_eq!(ptr("7.2.20.172.in-addr.arpa."), "172-20-2-7.headless.default.svc.cluster.local.");
    assert_eq!(ptr("33.0.20.172.in-addr.arpa."), "172-20-0-33.default.pod.cluster.local.");
    assert_eq!(ptr("200.10.168.192.in-addr.arpa."), "forwarded");

    let txt = local(&r, "dns-version.cluster.local.", RecordType::TXT);
    assert!(matches!(&txt.answers[0].data, RData::TXT(t) if t.to_string().contains("1.0.1")), "{txt:?}");
    let soa = local(&r, "cluster.local.", RecordType::SOA);
    assert_eq!((soa.answers[0].record_type(), soa.authorities[0].record_type()), (RecordType::SOA, RecordType::NS));
    let ns = local(&r, "cluster.local.", RecordType::NS);
    assert_eq!(ips(&zone::Reply { answers: ns.additionals.clone(), ..ns.clone() }), ["172.20.0.1"]);
    assert_eq!(ips(&local(&r, "ns.dns.cluster.local.", RecordType::A)), ["172.20.0.1"]);

    assert_eq!(ips(&local(&r, "10-0-0-1.anything.pod.cluster.local.", RecordType::A)), ["10.0.0.1"]);
    assert_eq!(rcode(&r, "10-0-0-1.default.pod.cluster.local.", RecordType::AAAA), NODATA);
    assert_eq!(rcode(&r, "10-0-0-256.default.pod.cluster.local.", RecordType::A), NX);
    assert_eq!(rcode(&r, "default.pod.cluster.local.", RecordType::A), NODATA);
}

// --- on the wire ---

fn query(q: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x4242;
    m.metadata.recursion_desired = true;
    m.queries.push(Query::query(name(q), t));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

fn handler(records: Records, upstreams: Vec<SocketAddr>) -> Handler {
    let (_tx, rx) = watch::channel(Arc::new(records));
    Handler { records: rx, forwarder: Arc::new(Forwarder::new(Upstreams::Fixed(upstreams), vec![])), address: SERVER }
}

async fn ask(h: &Handler, q: &str, t: RecordType, transport: Transport, edns: Option<u16>) -> Message {
    Message::from_vec(&h.handle(&query(q, t, edns), transport).await.unwrap()).unwrap()
}

#[tokio::test]
async fn wire_answers_flags_and_errors() {
    let h = handler(records(), vec![]);
    let resp = ask(&h, "webpod.default.svc.cluster.local.", RecordType::A, Transport::Udp, None).await;
    assert_eq!(resp.metadata.id, 0x4242);
    assert_eq!(resp.metadata.message_type, MessageType::Response);
    assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
    assert!(resp.metadata.authoritative && resp.metadata.recursion_desired && resp.metadata.recursion_available);
    assert_eq!(resp.answers[0].data, RData::A(A(Ipv4Addr::new(10, 96, 41, 64))));

    let nx = ask(&h, "nope.default.svc.cluster.local.", RecordType::A, Transport::Udp, None).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);

    // Garbage with an id gets FORMERR; less than an id gets nothing; responses are never answered.
    let bad = Message::from_vec(&h.handle(&[0x12, 0x34, 0xff], Transport::Udp).await.unwrap()).unwrap();
    assert_eq!((bad.metadata.id, bad.metadata.response_code), (0x1234, ResponseCode::FormErr));
    assert_eq!(h.handle(&[1], Transport::Udp).await, None);
    let mut not_a_query = Message::from_vec(&query("webpod.default.svc.cluster.local.", RecordType::A, None)).unwrap();
    not_a_query.metadata.message_type = MessageType::Response;
    assert_eq!(h.handle(&not_a_query.to_vec().unwrap(), Transport::Udp).await, None);
}

#[tokio::test]
async fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    // A headless Service with 40 ready endpoints: 40 A records do not fit in 512 bytes.
    let eps: Vec<(String, bool, String)> = (1..=40).map(|i| (format!("172.20.1.{i}"), true, format!("p{i}"))).collect();
    let eps: Vec<(&str, bool, &str)> = eps.iter().map(|(a, r, p)| (a.as_str(), *r, p.as_str())).collect();
    let r =
        Records::build(&[svc("big", "default", json!({"clusterIP": "None"}))], &[slice("big", &eps, json!([]))], &[]);
    let h = handler(r, vec![]);
    let q = "big.default.svc.cluster.local.";
    let udp = ask(&h, q, RecordType::A, Transport::Udp, None).await;
    assert!(udp.metadata.truncation, "TC over UDP without EDNS");
    assert!(!udp.answers.is_empty() && udp.answers.len() < 40, "{}", udp.answers.len());
    assert!(h.handle(&query(q, RecordType::A, None), Transport::Udp).await.unwrap().len() <= 512);
    let edns = ask(&h, q, RecordType::A, Transport::Udp, Some(1232)).await;
    assert!(!edns.metadata.truncation && edns.answers.len() == 40, "fits in 1232 bytes");
    let tcp = ask(&h, q, RecordType::A, Transport::Tcp, None).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 40);
}

/// An upstream on loopback answering from a table, counting the queries it got.
type Table = Vec<(Name, RecordType, ResponseCode, Vec<Record>, Vec<Record>)>;

async fn fake_upstream(table: Table) -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let at = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
            seen.fetch_add(1, Ordering::SeqCst);
            let req = Message::from_vec(&buf[..n]).unwrap();
            let q = &req.queries[0];
            let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
            resp.queries = req.queries.clone();
            resp.metadata.recursion_available = true;
            match table.iter().find(|(n, t, ..)| *n == q.name && *t == q.query_type) {
                Some((_, _, rc, ans, auth)) => {
                    resp.metadata.response_code = *rc;
                    resp.answers = ans.clone();
                    resp.authorities = auth.clone();
                }
                None => resp.metadata.response_code = ResponseCode::Refused,
            }
            sock.send_to(&resp.to_vec().unwrap(), peer).await.unwrap();
        }
    });
    (at, count)
}

#[tokio::test]
async fn outside_names_are_forwarded_cached_and_never_made_nxdomain() {
    let www = name("www.example.lab.");
    let soa = Record::from_rdata(
        name("lab."),
        60,
        RData::SOA(SOA::new(name("router.lab."), name("hostmaster.lab."), 1, 1200, 180, 1209600, 3)),
    );
    let (up, count) = fake_upstream(vec![
        (
            www.clone(),
            RecordType::A,
            ResponseCode::NoError,
            vec![Record::from_rdata(www.clone(), 300, RData::A(A::new(192, 168, 10, 200)))],
            vec![],
        ),
        (name("nothere.example.lab."), RecordType::A, ResponseCode::NXDomain, vec![], vec![soa]),
    ])
    .await;
    let h = handler(records(), vec![up]);

    let a = ask(&h, "www.example.lab.", RecordType::A, Transport::Udp, None).await;
    assert_eq!((a.metadata.response_code, a.metadata.authoritative), (ResponseCode::NoError, false));
    assert_eq!(a.answers[0].data, RData::A(A::new(192, 168, 10, 200)));
    let again = ask(&h, "WWW.example.lab.", RecordType::A, Transport::Udp, None).await;
    assert_eq!(again.answers.len(), 1);
    assert_eq!(count.load(Ordering::SeqCst), 1, "the second answer came from the cache");

    // A true NXDOMAIN from upstream passes, with its SOA, and is cached for the negative TTL.
    let nx = ask(&h, "nothere.example.lab.", RecordType::A, Transport::Udp, None).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
    ask(&h, "nothere.example.lab.", RecordType::A, Transport::Udp, None).await;
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // The upstream refuses example.com: SERVFAIL, not NXDOMAIN.
    let refused = ask(&h, "example.com.", RecordType::A, Transport::Udp, None).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::ServFail);

    // An ExternalName to an outside name: the CNAME, then the upstream's A.
    let ext = ask(&h, "ext.default.svc.cluster.local.", RecordType::A, Transport::Udp, None).await;
    assert_eq!(ext.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ext.answers.len(), 2, "{:?}", ext.answers);
    assert_eq!(ext.answers[1].data, RData::A(A::new(192, 168, 10, 200)));
    // ... and to a cluster name: followed inside the zone.
    let alias = ask(&h, "alias.default.svc.cluster.local.", RecordType::A, Transport::Udp, None).await;
    assert_eq!(alias.answers[1].data, RData::A(A(Ipv4Addr::new(10, 96, 41, 64))));

    // An unknown reverse name goes upstream too (and is refused there).
    let ptr = ask(&h, "200.10.168.192.in-addr.arpa.", RecordType::PTR, Transport::Udp, None).await;
    assert_eq!(ptr.metadata.response_code, ResponseCode::ServFail);
    let _ = DNSClass::IN;
}

#[tokio::test]
async fn answers_over_udp_and_tcp_on_loopback() {
    let (tx, rx) = watch::channel(Arc::new(records()));
    let shutdown = CancellationToken::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let forwarder = Arc::new(Forwarder::new(Upstreams::Fixed(vec![]), vec![]));
    let server = tokio::spawn(serve_with(Ipv4Addr::LOCALHOST, port, rx, forwarder, shutdown.clone()));
    let at = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 512];
    let mut got = None;
    for _ in 0..50 {
        udp.send_to(&query("webpod.default.svc.cluster.local.", RecordType::A, None), at).await.unwrap();
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(100), udp.recv_from(&mut buf)).await {
            got = Some(Message::from_vec(&buf[..n]).unwrap());
            break;
        }
    }
    assert_eq!(got.expect("an answer over UDP").answers.len(), 1);

    // A record added later is answered without a restart.
    let more = Records::build(&[svc("new", "default", json!({"clusterIP": "10.96.9.9"}))], &[], &[]);
    tx.send(Arc::new(more)).unwrap();
    let mut conn = TcpStream::connect(at).await.unwrap();
    let q = query("new.default.svc.cluster.local.", RecordType::A, None);
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

#[test]
fn the_serial_grows_with_changes_only() {
    let prev = records();
    let objs = |v: serde_json::Value| -> Vec<api::Object> { vec![serde_json::from_value(v).unwrap()] };
    let s = objs(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.1"}}));
    let first = controller::build(&s, &[], &[], &[], &prev);
    assert_eq!(first.serial, 8);
    assert_eq!(controller::build(&s, &[], &[], &[], &first).serial, 8);
}

/// The cost of answering one cluster name, in process (no sockets):
/// `cargo test --release -p agent --lib dns::tests::answer_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a test"]
fn answer_cost() {
    let h = handler(records(), vec![]);
    let q = query("webpod.default.svc.cluster.local.", RecordType::A, Some(1232));
    let n = 200_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        match h.prepare(&q, Transport::Udp) {
            super::Prepared::Done(Some(b)) => assert!(b.len() > 12),
            _ => panic!("not answered"),
        }
    }
    let per = t.elapsed() / n;
    println!("prepare: {per:?} per answer ({:.0} answers/s on one core)", 1.0 / per.as_secs_f64());
}

#[test]
#[ignore = "a measurement, not a test"]
fn answer_cost_parts() {
    let r = records();
    let q = query("webpod.default.svc.cluster.local.", RecordType::A, Some(1232));
    let n = 200_000u32;
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(Message::from_vec(&q).unwrap());
    }
    println!("parse: {:?}", t.elapsed() / n);
    let m = Message::from_vec(&q).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(lookup(&r, &m.queries[0].name, RecordType::A, SERVER));
    }
    println!("lookup: {:?}", t.elapsed() / n);
    let h = handler(records(), vec![]);
    let resp = Message::from_vec(&match h.prepare(&q, Transport::Udp) {
        super::Prepared::Done(Some(b)) => b,
        _ => panic!(),
    })
    .unwrap();
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(resp.to_vec().unwrap());
    }
    println!("encode: {:?}", t.elapsed() / n);
}

#[tokio::test]
async fn the_packet_cache_answers_the_same_question_until_the_records_change() {
    let (tx, rx) = watch::channel(Arc::new(records()));
    let h =
        Handler { records: rx, forwarder: Arc::new(Forwarder::new(Upstreams::Fixed(vec![]), vec![])), address: SERVER };
    let mut cache = super::server::PacketCache::new();
    let answer = |cache: &mut super::server::PacketCache, id: u16, q: &str| {
        let mut m = Message::from_vec(&query(q, RecordType::A, Some(1232))).unwrap();
        m.metadata.id = id;
        match cache.prepare(&h, &m.to_vec().unwrap()) {
            super::Prepared::Done(Some(b)) => Message::from_vec(&b).unwrap(),
            _ => panic!("not answered at once"),
        }
    };
    let first = answer(&mut cache, 1, "webpod.default.svc.cluster.local.");
    let again = answer(&mut cache, 2, "webpod.default.svc.cluster.local.");
    assert_eq!((first.metadata.id, again.metadata.id), (1, 2));
    assert_eq!(first.answers, again.answers);
    // The question's case is the client's (0x20): another key, echoed as asked.
    let mixed = answer(&mut cache, 3, "WebPod.default.svc.cluster.local.");
    assert_eq!(mixed.queries[0].name.to_ascii(), "WebPod.default.svc.cluster.local.");
    // New records: a new answer.
    tx.send(Arc::new(Records::build(&[svc("webpod", "default", json!({"clusterIP": "10.96.7.7"}))], &[], &[])))
        .unwrap();
    let changed = answer(&mut cache, 4, "webpod.default.svc.cluster.local.");
    assert_eq!(changed.answers[0].data, RData::A(A(Ipv4Addr::new(10, 96, 7, 7))));
    // Names outside the cluster are never kept (no upstream here: SERVFAIL each time).
    let mut m = Message::from_vec(&query("example.com.", RecordType::A, None)).unwrap();
    m.metadata.id = 5;
    assert!(matches!(cache.prepare(&h, &m.to_vec().unwrap()), super::Prepared::Upstream(_)));
    assert!(matches!(cache.prepare(&h, &m.to_vec().unwrap()), super::Prepared::Upstream(_)));
}

#[test]
#[ignore = "a measurement, not a test"]
fn packet_cache_cost() {
    let h = handler(records(), vec![]);
    let mut cache = super::server::PacketCache::new();
    let q = query("webpod.default.svc.cluster.local.", RecordType::A, Some(1232));
    let n = 1_000_000u32;
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(cache.prepare(&h, &q));
    }
    println!("packet cache hit: {:?} per answer", t.elapsed() / n);
}

#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn forwarded_hit_cost() {
    let www = name("www.example.lab.");
    let (up, _) = fake_upstream(vec![(
        www.clone(),
        RecordType::A,
        ResponseCode::NoError,
        vec![Record::from_rdata(www.clone(), 300, RData::A(A::new(192, 168, 10, 200)))],
        vec![],
    )])
    .await;
    let h = handler(records(), vec![up]);
    let q = query("www.example.lab.", RecordType::A, Some(1232));
    h.handle(&q, Transport::Udp).await.unwrap();
    let n = 200_000u32;
    let t = std::time::Instant::now();
    for _ in 0..n {
        match h.prepare(&q, Transport::Udp) {
            super::Prepared::Done(Some(b)) => assert!(b.len() > 12),
            _ => panic!("not a hit"),
        }
    }
    println!("forwarded cache hit: {:?} per answer", t.elapsed() / n);
}

#[tokio::test]
async fn other_classes_are_refused_and_other_opcodes_not_implemented() {
    let h = handler(records(), vec![]);
    let mut m = Message::from_vec(&query("version.bind.", RecordType::TXT, None)).unwrap();
    m.queries[0].query_class = DNSClass::CH;
    let resp = Message::from_vec(&h.handle(&m.to_vec().unwrap(), Transport::Udp).await.unwrap()).unwrap();
    assert_eq!(resp.metadata.response_code, ResponseCode::Refused);
    let mut m = Message::from_vec(&query("webpod.default.svc.cluster.local.", RecordType::A, None)).unwrap();
    m.metadata.op_code = hickory_proto::op::OpCode::Status;
    let resp = Message::from_vec(&h.handle(&m.to_vec().unwrap(), Transport::Udp).await.unwrap()).unwrap();
    assert_eq!(resp.metadata.response_code, ResponseCode::NotImp);
}
