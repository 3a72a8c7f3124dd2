//! Names outside the cluster go to the node's upstream resolvers, the `nameserver` lines of the
//! node's `resolv.conf`, with answers cached for their TTL ([`super::cache`]).
//!
//! The node's `resolv.conf` is found as `ip netns exec` would show it: when the agent's network
//! namespace is a named one (`/run/netns/<name>`) and `/etc/netns/<name>/resolv.conf` exists, that
//! file, else `/etc/resolv.conf`. The lab gives every host such a file, naming the router's DNS
//! server; on a machine of its own the agent reads the machine's. The file is read again when it
//! changes (checked at most every [`RECHECK`]), as glibc does.
//!
//! Each upstream is asked over UDP from a fresh socket with a random id (a random source port,
//! against spoofed answers), and over TCP when the answer is truncated. An upstream that times
//! out, refuses or fails is skipped for the next; when none answers the client gets SERVFAIL,
//! never NXDOMAIN: only an upstream may say that a name outside the cluster does not exist.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use hickory_proto::{
    op::{Edns, Message, MessageType, Query, ResponseCode},
    rr::{DNSClass, Name, RecordType},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

use super::cache::{Answer, Cache};

/// How often the resolv.conf's modification time is looked at, at most.
pub const RECHECK: Duration = Duration::from_secs(2);
/// One try of one upstream.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Passes over the upstream list before giving up with SERVFAIL.
pub const ROUNDS: usize = 2;
/// glibc reads at most three nameservers (MAXNS).
const MAX_SERVERS: usize = 3;
/// What the forwarder offers upstream (the DNS flag day's safe size, RFC 9715).
const EDNS_PAYLOAD: u16 = 1232;

/// Where upstreams come from.
#[derive(Debug, Clone)]
pub enum Upstreams {
    /// The node's resolv.conf, found as the module docs say.
    Node,
    /// A given resolv.conf.
    File(PathBuf),
    /// Fixed servers (tests).
    Fixed(Vec<SocketAddr>),
}

struct State {
    path: PathBuf,
    modified: Option<SystemTime>,
    checked: Option<Instant>,
    servers: Vec<SocketAddr>,
}

pub struct Forwarder {
    source: Upstreams,
    /// The server's own addresses, never used as upstreams (a resolv.conf naming the node's
    /// cluster DNS would make a loop).
    own: Vec<IpAddr>,
    state: Mutex<State>,
    pub cache: Cache,
}

/// The outcome of a forwarded query.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub answer: Answer,
    /// Served from the cache.
    pub cached: bool,
}

impl Forwarder {
    pub fn new(source: Upstreams, own: Vec<IpAddr>) -> Forwarder {
        let servers = match &source {
            Upstreams::Fixed(s) => s.clone(),
            _ => Vec::new(),
        };
        Forwarder {
            source,
            own,
            state: Mutex::new(State { path: PathBuf::new(), modified: None, checked: None, servers }),
            cache: Cache::new(),
        }
    }

    /// The upstream servers now (re-reading the resolv.conf when it changed).
    pub fn servers(&self) -> Vec<SocketAddr> {
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let path = match &self.source {
            Upstreams::Fixed(_) => return st.servers.clone(),
            Upstreams::File(p) => p.clone(),
            Upstreams::Node => {
                if st.checked.is_some_and(|t| t.elapsed() < RECHECK) {
                    return st.servers.clone();
                }
                node_resolv_conf()
            }
        };
        if st.checked.is_some_and(|t| t.elapsed() < RECHECK) && path == st.path {
            return st.servers.clone();
        }
        st.checked = Some(Instant::now());
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if path != st.path || modified != st.modified {
            let servers: Vec<SocketAddr> = std::fs::read_to_string(&path)
                .map(|text| nameservers(&text))
                .unwrap_or_default()
                .into_iter()
                .filter(|ip| !self.own.contains(ip))
                .map(|ip| SocketAddr::new(ip, 53))
                .collect();
            tracing::info!(resolv_conf = %path.display(), ?servers, "cluster DNS upstreams");
            st.path = path;
            st.modified = modified;
            st.servers = servers;
        }
        st.servers.clone()
    }

    /// A cached answer, without asking anyone.
    pub fn cached(&self, name: &Name, qtype: RecordType, class: DNSClass) -> Option<Answer> {
        self.cache.get(name, qtype, class)
    }

    /// Resolves through the cache and the upstreams; SERVFAIL when no upstream answers.
    pub async fn resolve(&self, name: &Name, qtype: RecordType, class: DNSClass) -> Forwarded {
        if let Some(answer) = self.cached(name, qtype, class) {
            return Forwarded { answer, cached: true };
        }
        let servers = self.servers();
        // A server that answered with a failure (SERVFAIL, REFUSED) is not asked again; one that
        // did not answer gets another round.
        let mut failed = vec![false; servers.len()];
        for _ in 0..ROUNDS {
            for (server, failed) in servers.iter().zip(failed.iter_mut()).filter(|(_, f)| !**f) {
                match exchange(*server, name, qtype, class).await {
                    Ok(answer) if matches!(answer.rcode, ResponseCode::NoError | ResponseCode::NXDomain) => {
                        self.cache.put(name, qtype, class, &answer);
                        return Forwarded { answer, cached: false };
                    }
                    Ok(answer) => {
                        tracing::debug!(%server, %name, rcode = %answer.rcode, "upstream failed");
                        *failed = true;
                    }
                    Err(e) => tracing::debug!(%server, %name, error = %e, "upstream did not answer"),
                }
            }
        }
        if servers.is_empty() {
            tracing::debug!(%name, "no upstream resolver configured");
        }
        let answer = Answer { rcode: ResponseCode::ServFail, answers: Vec::new(), authorities: Vec::new() };
        Forwarded { answer, cached: false }
    }
}

/// The nameservers of a resolv.conf, at most three, as glibc takes them.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        // An IPv6 address may carry a zone (`fe80::1%eth0`): not for a socket address here.
        .filter_map(|a| a.parse().ok())
        .take(MAX_SERVERS)
        .collect()
}

/// `/etc/netns/<name>/resolv.conf` when this process's network namespace is `/run/netns/<name>`
/// and the file exists; else `/etc/resolv.conf`.
pub fn node_resolv_conf() -> PathBuf {
    own_netns_name()
        .map(|n| Path::new("/etc/netns").join(n).join("resolv.conf"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/etc/resolv.conf"))
}

/// The name under `/run/netns` of this process's network namespace, as `ip netns identify`.
fn own_netns_name() -> Option<String> {
    let own = std::fs::metadata("/proc/self/ns/net").ok()?;
    std::fs::read_dir("/run/netns").ok()?.flatten().find_map(|e| {
        let m = std::fs::metadata(e.path()).ok()?;
        (m.dev() == own.dev() && m.ino() == own.ino()).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

fn query_message(name: &Name, qtype: RecordType, class: DNSClass) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    let mut q = Query::query(name.clone(), qtype);
    q.query_class = class;
    m.queries.push(q);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    m.edns = Some(edns);
    m
}

/// Asks `server` once (UDP, then TCP if the answer was truncated).
pub async fn exchange(server: SocketAddr, name: &Name, qtype: RecordType, class: DNSClass) -> io::Result<Answer> {
    let query = query_message(name, qtype, class);
    let bytes = query.to_vec().map_err(io::Error::other)?;
    let resp = tokio::time::timeout(ATTEMPT_TIMEOUT, udp_exchange(server, &bytes, &query))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer over UDP"))??;
    let resp = if resp.metadata.truncation {
        tokio::time::timeout(ATTEMPT_TIMEOUT, tcp_exchange(server, &bytes, &query))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer over TCP"))??
    } else {
        resp
    };
    Ok(Answer { rcode: resp.metadata.response_code, answers: resp.answers, authorities: resp.authorities })
}

/// Whether `resp` answers `query`: same id, a response, the same question (any case).
fn answers(resp: &Message, query: &Message) -> bool {
    resp.metadata.id == query.metadata.id
        && resp.metadata.message_type == MessageType::Response
        && resp.queries.len() == 1
        && resp.queries[0].name == query.queries[0].name
        && resp.queries[0].query_type == query.queries[0].query_type
        && resp.queries[0].query_class == query.queries[0].query_class
}

async fn udp_exchange(server: SocketAddr, bytes: &[u8], query: &Message) -> io::Result<Message> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(server).await?;
    sock.send(bytes).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Anything else on this port (a late or forged datagram) is ignored.
        if let Ok(m) = Message::from_vec(&buf[..n])
            && answers(&m, query)
        {
            return Ok(m);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, bytes: &[u8], query: &Message) -> io::Result<Message> {
    let mut conn = TcpStream::connect(server).await?;
    let len = u16::try_from(bytes.len()).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    conn.write_all(&out).await?;
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).await?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut msg).await?;
    let m = Message::from_vec(&msg).map_err(io::Error::other)?;
    if answers(&m, query) { Ok(m) } else { Err(io::Error::other("an answer to another question")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch lab\nnameserver 192.168.10.200\nnameserver  fe80::1%eth0\n\
                    nameserver 2001:db8::53\nnameserver 10.0.0.1\nnameserver 10.0.0.2\noptions ndots:1\n";
        let ns = nameservers(text);
        assert_eq!(
            ns,
            ["192.168.10.200".parse::<IpAddr>().unwrap(), "2001:db8::53".parse().unwrap(), "10.0.0.1".parse().unwrap()]
        );
    }

    #[test]
    fn own_addresses_are_never_upstreams() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(&p, "nameserver 172.20.0.1\nnameserver 192.168.10.200\n").unwrap();
        let f = Forwarder::new(Upstreams::File(p), vec!["172.20.0.1".parse().unwrap()]);
        assert_eq!(f.servers(), ["192.168.10.200:53".parse().unwrap()]);
    }

    #[tokio::test]
    async fn no_upstream_is_servfail_never_nxdomain() {
        let f = Forwarder::new(Upstreams::Fixed(Vec::new()), Vec::new());
        let r = f.resolve(&Name::from_ascii("example.com.").unwrap(), RecordType::A, DNSClass::IN).await;
        assert_eq!(r.answer.rcode, ResponseCode::ServFail);
        // A closed port on loopback refuses at once: SERVFAIL again, quickly.
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let f = Forwarder::new(Upstreams::Fixed(vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))]), Vec::new());
        let t = Instant::now();
        let r = f.resolve(&Name::from_ascii("example.com.").unwrap(), RecordType::A, DNSClass::IN).await;
        assert_eq!(r.answer.rcode, ResponseCode::ServFail);
        assert!(t.elapsed() < ATTEMPT_TIMEOUT * 3, "{:?}", t.elapsed());
    }
}
