//! The lab's datastore: etcd on k8s-ctr, listening on the node address (for the lab's processes)
//! and on a unix socket in the state dir (for the CLI in the root namespace, which never sends
//! packets to lab addresses).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::Lab;
use crate::paths::ETCD_SOCKET_TARGET;
use crate::process::ProcessSpec;
use crate::topology::{K8S_CTR, nodes};

pub const ETCD_PROCESS: &str = "etcd";
const ETCD_BINARY: &str = "/usr/bin/etcd";
/// Revisions of history etcd keeps: it compacts everything older every five minutes
/// (`--auto-compaction-mode=revision`). Controllers' watches resume from at most a few seconds
/// back; an informer that was away longer lists again. Without it every write of the lab's life
/// stays in etcd's database and memory.
pub const COMPACTION_RETENTION_REVISIONS: u32 = 10_000;

/// `etcd` as a process spec. It runs in the state dir: etcd 3.4 accepts unix URLs only as
/// `unix://host:port` and creates that name relative to its working directory.
pub fn spec(lab: &Lab) -> ProcessSpec {
    let ip = nodes(lab.topology())
        .into_iter()
        .find(|n| n.name == K8S_CTR)
        .map(|n| n.internal_ip.to_string())
        .unwrap_or_else(|| "192.168.10.100".into());
    let client = format!("http://{ip}:2379");
    let peer = format!("http://{ip}:2380");
    let data_dir = lab.paths().etcd_data_dir();
    let mut spec = ProcessSpec::new(
        ETCD_PROCESS,
        K8S_CTR,
        &[
            ETCD_BINARY,
            "--name",
            K8S_CTR,
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--listen-client-urls",
            &format!("{client},unix://{ETCD_SOCKET_TARGET}"),
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("{K8S_CTR}={peer}"),
            "--initial-cluster-state",
            "new",
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            &COMPACTION_RETENTION_REVISIONS.to_string(),
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ],
    );
    spec.cwd = Some(lab.paths().state_dir().to_path_buf());
    // etcd 3.4 does not replace the socket a killed etcd left: "bind: address already in use".
    spec.stale_files = vec![lab.paths().state_dir().join(ETCD_SOCKET_TARGET)];
    spec
}

/// GET /health over the unix socket. True when etcd answers `"health":"true"`.
pub fn healthy(socket: &Path, timeout: Duration) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") && response.contains(r#""health":"true""#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_on_the_node_address_and_the_socket() {
        let lab = Lab::new("t1").unwrap();
        let spec = spec(&lab);
        let argv = spec.argv.join(" ");
        assert!(argv.contains("--listen-client-urls http://192.168.10.100:2379,unix://etcd.sock:0"));
        assert!(argv.contains("--data-dir /var/lib/cilia/lab/t1/etcd"));
        assert_eq!(spec.cwd.as_deref(), Some(Path::new("/run/cilia/lab/t1")));
    }

    #[test]
    fn compacts_its_history() {
        let lab = Lab::new("t1").unwrap();
        let argv = spec(&lab).argv.join(" ");
        assert!(argv.contains("--auto-compaction-mode revision --auto-compaction-retention 10000"), "{argv}");
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!healthy(&dir.path().join("none.sock"), Duration::from_millis(100)));
    }
}
