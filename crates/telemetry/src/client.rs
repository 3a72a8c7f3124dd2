//! One HTTP GET over a unix socket, with a deadline for the whole exchange: how the CLI reads
//! a node's endpoints. A stopped process still has its socket accept connections (the kernel
//! queues them), so only the deadline tells a stalled process from a slow one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Answers larger than this are refused (an exposition is a few tens of kB).
const MAX_ANSWER: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no answer on {} within {}ms", path.display(), timeout.as_millis())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("cannot reach {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} answered something that is not HTTP: {what}", path.display())]
    Malformed { path: PathBuf, what: String },
}

/// An answer: status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// `GET uri` on the socket at `path`, all within `timeout`.
pub async fn get(path: &Path, uri: &str, timeout: Duration) -> Result<Answer, ClientError> {
    let exchange = async {
        let mut stream = UnixStream::connect(path).await?;
        let request = format!("GET {uri} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => return Err(ClientError::Timeout { path: path.into(), timeout }),
        Ok(Err(source)) => return Err(ClientError::Io { path: path.into(), source }),
        Ok(Ok(raw)) => raw,
    };
    parse_answer(&raw).map_err(|what| ClientError::Malformed { path: path.into(), what })
}

/// [`get`] for callers without a runtime: blocking socket calls, each bounded by `timeout`.
pub fn get_blocking(path: &Path, uri: &str, timeout: Duration) -> Result<Answer, ClientError> {
    use std::io::{Read as _, Write as _};
    let io = |source: std::io::Error| {
        if matches!(source.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
            ClientError::Timeout { path: path.into(), timeout }
        } else {
            ClientError::Io { path: path.into(), source }
        }
    };
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!("GET {uri} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut raw).map_err(io)?;
    parse_answer(&raw).map_err(|what| ClientError::Malformed { path: path.into(), what })
}

/// Splits a complete HTTP/1.1 answer (the server closed the connection after it) into status
/// and body, undoing chunked transfer coding if used.
pub fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked { dechunk(body)? } else { body.to_string() };
    Ok(Answer { status, body })
}

fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("truncated chunk size")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = after.get(..size).ok_or("truncated chunk")?;
        out.push_str(chunk);
        rest = after.get(size..).and_then(|r| r.strip_prefix("\r\n")).ok_or("chunk without its end")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 3\r\n\r\nno\n";
        assert_eq!(parse_answer(plain).unwrap(), Answer { status: 503, body: "no\n".into() });
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n";
        assert_eq!(parse_answer(chunked).unwrap(), Answer { status: 200, body: "hello!".into() });
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[tokio::test]
    async fn a_listener_that_never_answers_times_out_and_a_missing_socket_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stalled.sock");
        // Bound and listening but never accepting: what a SIGSTOPped process's socket looks like.
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        let started = std::time::Instant::now();
        let err = get(&path, "/healthz", Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let err = get(&dir.path().join("none.sock"), "/healthz", Duration::from_millis(200)).await.unwrap_err();
        assert!(err.to_string().contains("none.sock"), "{err}");
        let blocking = get_blocking(&path, "/healthz", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(blocking, ClientError::Timeout { .. }), "{blocking}");
    }
}
