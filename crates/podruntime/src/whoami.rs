//! The lab's `traefik/whoami`: an HTTP/1.1 server that answers every request with who answered
//! and what was asked, byte for byte in whoami's format, so the guide's
//! `curl -s webpod | grep Hostname` reads the same:
//!
//! ```text
//! Hostname: webpod-5f6b6b4cd7-hwmcr
//! IP: 127.0.0.1
//! IP: ::1
//! IP: 172.20.1.94
//! IP: fe80::b0c4:85ff:fe55:1f7e
//! RemoteAddr: 172.20.0.124:54326
//! GET / HTTP/1.1
//! Host: 172.20.1.94
//! User-Agent: curl/8.5.0
//! Accept: */*
//! ```
//!
//! The first lines come from whoami's `fmt.Fprintln` (LF), the request from Go's
//! `Request.Write` (CRLF, headers after Host and User-Agent sorted by name). Connections are kept
//! alive and pipelined requests answered in order. `/bench` answers `1` and `/health` an empty
//! 200, as whoami does; they are what load generators hit.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Requests with larger heads are refused; whoami serves probes and benchmarks, not uploads.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;
const MAX_HEADERS: usize = 64;

/// What the server says about itself; fixed at start (the pod's addresses are in place before
/// its container starts).
#[derive(Debug, Clone)]
pub struct Whoami {
    /// `Hostname: ...` and `IP: ...` lines.
    identity: Vec<u8>,
}

impl Whoami {
    pub fn new(hostname: &str, addresses: &[IpAddr]) -> Self {
        let mut identity = format!("Hostname: {hostname}\n").into_bytes();
        for ip in addresses {
            identity.extend_from_slice(format!("IP: {ip}\n").as_bytes());
        }
        Whoami { identity }
    }

    /// With the addresses of this network namespace's interfaces, grouped by interface in the
    /// kernel's order (`lo` first), as Go's `net.Interfaces` lists them.
    pub fn from_interfaces(hostname: &str) -> io::Result<Self> {
        let mut by_interface: Vec<(String, Vec<IpAddr>)> = Vec::new();
        for ifa in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
            let Some(addr) = ifa.address else { continue };
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            match by_interface.iter_mut().find(|(name, _)| *name == ifa.interface_name) {
                Some((_, ips)) => ips.push(ip),
                None => by_interface.push((ifa.interface_name.clone(), vec![ip])),
            }
        }
        let addresses: Vec<IpAddr> = by_interface.into_iter().flat_map(|(_, ips)| ips).collect();
        Ok(Whoami::new(hostname, &addresses))
    }

    /// Appends the whole HTTP response to `req` to `out`.
    pub fn respond(&self, req: &Request<'_>, peer: SocketAddr, out: &mut Vec<u8>) {
        let path = req.target.split('?').next().unwrap_or(req.target);
        let mut body = Vec::with_capacity(512);
        match path {
            "/bench" => body.push(b'1'),
            "/health" => {}
            _ => self.describe(req, peer, &mut body),
        }
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
        out.extend_from_slice(
            format!("HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Length: {}\r\n", body.len()).as_bytes(),
        );
        if !body.is_empty() {
            out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
        }
        if !req.keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
    }

    /// whoami's body: identity, peer, then the request as Go's `Request.Write` renders it.
    fn describe(&self, req: &Request<'_>, peer: SocketAddr, body: &mut Vec<u8>) {
        body.extend_from_slice(&self.identity);
        body.extend_from_slice(format!("RemoteAddr: {peer}\n").as_bytes());
        body.extend_from_slice(format!("{} {} HTTP/1.1\r\n", req.method, req.target).as_bytes());
        let header = |name: &str| req.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
        body.extend_from_slice(format!("Host: {}\r\n", header("host").unwrap_or_default()).as_bytes());
        body.extend_from_slice(
            format!("User-Agent: {}\r\n", header("user-agent").unwrap_or("Go-http-client/1.1")).as_bytes(),
        );
        let mut rest: Vec<(String, &str)> = req
            .headers
            .iter()
            .filter(|(n, _)| {
                !["host", "user-agent", "content-length", "transfer-encoding", "trailer"]
                    .iter()
                    .any(|x| n.eq_ignore_ascii_case(x))
            })
            .map(|(n, v)| (canonical(n), *v))
            .collect();
        // Stable: repeated headers keep their order, as in Go's Header map.
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in rest {
            body.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !req.body.is_empty() {
            body.extend_from_slice(format!("Content-Length: {}\r\n", req.body.len()).as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(req.body);
    }
}

/// Go's `CanonicalHeaderKey`: `x-forwarded-for` → `X-Forwarded-For`.
fn canonical(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() };
            upper = c == '-';
            out
        })
        .collect()
}

/// One parsed request.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

/// The outcome of parsing the start of a buffer.
#[derive(Debug)]
pub enum Parsed<'a> {
    /// A request and the number of bytes it took.
    Complete(Request<'a>, usize),
    Partial,
    Invalid(&'static str),
}

pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Parsed::Invalid("request head too large"),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid("malformed request"),
    };
    let version = req.version.unwrap_or(1);
    let headers: Vec<(&str, &str)> =
        req.headers.iter().map(|h| (h.name, std::str::from_utf8(h.value).unwrap_or_default())).collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
    if header("transfer-encoding").is_some() {
        return Parsed::Invalid("chunked request bodies are not supported");
    }
    let length = match header("content-length").map(|v| v.trim().parse::<usize>()) {
        None => 0,
        Some(Ok(n)) if n <= MAX_BODY => n,
        Some(_) => return Parsed::Invalid("bad or too large Content-Length"),
    };
    if buf.len() < head_len + length {
        return Parsed::Partial;
    }
    let connection = header("connection").unwrap_or_default();
    let keep_alive = if version == 0 {
        connection.eq_ignore_ascii_case("keep-alive")
    } else {
        !connection.eq_ignore_ascii_case("close")
    };
    let request = Request {
        method: req.method.unwrap_or("GET"),
        target: req.path.unwrap_or("/"),
        headers,
        body: &buf[head_len..head_len + length],
        keep_alive,
    };
    Parsed::Complete(request, head_len + length)
}

/// Serves connections until the listener fails.
pub async fn serve(listener: TcpListener, whoami: Arc<Whoami>) -> io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: pass, without spinning.
            Err(e) => {
                tracing::warn!(error = &e as &dyn std::error::Error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, peer, whoami.clone()));
    }
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, whoami: Arc<Whoami>) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // Answer everything complete in the buffer (pipelining), then write once.
        let mut consumed = 0;
        let mut close = false;
        loop {
            match parse(&buf[consumed..]) {
                Parsed::Complete(req, n) => {
                    whoami.respond(&req, peer, &mut out);
                    consumed += n;
                    if !req.keep_alive {
                        close = true;
                        break;
                    }
                }
                Parsed::Partial => break,
                Parsed::Invalid(why) => {
                    let body = format!("400 Bad Request: {why}");
                    out.extend_from_slice(
                        format!(
                            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    close = true;
                    break;
                }
            }
        }
        buf.drain(..consumed);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whoami() -> Whoami {
        let ips: Vec<IpAddr> = ["127.0.0.1", "::1", "172.20.1.94"].iter().map(|s| s.parse().unwrap()).collect();
        Whoami::new("webpod-5f6b6b4cd7-hwmcr", &ips)
    }

    fn body(response: &[u8]) -> String {
        let text = String::from_utf8(response.to_vec()).unwrap();
        text.split_once("\r\n\r\n").unwrap().1.to_string()
    }

    #[test]
    fn answers_like_traefik_whoami() {
        let raw = b"GET / HTTP/1.1\r\nHost: webpod\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
        let Parsed::Complete(req, n) = parse(raw) else { panic!("incomplete") };
        assert_eq!(n, raw.len());
        let mut out = Vec::new();
        whoami().respond(&req, "172.20.0.124:54326".parse().unwrap(), &mut out);
        let head = String::from_utf8_lossy(&out).split_once("\r\n\r\n").unwrap().0.to_string();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: text/plain; charset=utf-8"), "{head}");
        assert_eq!(
            body(&out),
            "Hostname: webpod-5f6b6b4cd7-hwmcr\nIP: 127.0.0.1\nIP: ::1\nIP: 172.20.1.94\nRemoteAddr: 172.20.0.124:54326\n\
             GET / HTTP/1.1\r\nHost: webpod\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
        );
        let length: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
        assert_eq!(length, body(&out).len());
    }

    #[test]
    fn headers_are_canonical_and_sorted_and_bodies_echoed() {
        let raw = b"POST /x?y=1 HTTP/1.1\r\nhost: h\r\nx-b: 2\r\naccept: */*\r\nX-A: 1\r\ncontent-length: 3\r\n\r\nabc";
        let Parsed::Complete(req, _) = parse(raw) else { panic!("incomplete") };
        let mut out = Vec::new();
        whoami().respond(&req, "10.0.0.1:1".parse().unwrap(), &mut out);
        let b = body(&out);
        assert!(
            b.ends_with("POST /x?y=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: Go-http-client/1.1\r\nAccept: */*\r\nX-A: 1\r\nX-B: 2\r\nContent-Length: 3\r\n\r\nabc"),
            "{b:?}"
        );
    }

    #[test]
    fn keep_alive_rules_and_partial_input() {
        let Parsed::Complete(r, _) = parse(b"GET / HTTP/1.0\r\n\r\n") else { panic!() };
        assert!(!r.keep_alive);
        let Parsed::Complete(r, _) = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") else { panic!() };
        assert!(r.keep_alive);
        let Parsed::Complete(r, _) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n") else { panic!() };
        assert!(!r.keep_alive);
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial));
        assert!(matches!(parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"), Parsed::Partial));
        assert!(matches!(parse(b"\x01\x02 nonsense\r\n\r\n"), Parsed::Invalid(_)));
        let mut out = Vec::new();
        let Parsed::Complete(r, _) = parse(b"GET /bench HTTP/1.1\r\n\r\n") else { panic!() };
        whoami().respond(&r, "10.0.0.1:1".parse().unwrap(), &mut out);
        assert_eq!(body(&out), "1");
    }

    #[tokio::test]
    async fn serves_pipelined_keep_alive_requests_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::new(whoami())));
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let two = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        conn.write_all(two).await.unwrap();
        let mut all = Vec::new();
        conn.read_to_end(&mut all).await.unwrap();
        let text = String::from_utf8(all).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
        assert!(text.contains("GET /a HTTP/1.1") && text.contains("GET /b HTTP/1.1"), "{text}");
        assert!(text.contains(&format!("RemoteAddr: {}", conn.local_addr().unwrap())), "{text}");
        server.abort();
    }
}
