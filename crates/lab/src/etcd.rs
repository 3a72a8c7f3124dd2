//! The lab's datastore: etcd on k8s-ctr, listening on the node address (for the lab's processes)
//! and on a unix socket in the state dir (for the CLI in the root namespace, which never sends
//! packets to lab addresses).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::Lab;
use crate::error::LabError;
use crate::paths::ETCD_SOCKET_TARGET;
use crate::process::ProcessSpec;
use crate::topology::{K8S_CTR, nodes};

pub const ETCD_PROCESS: &str = "etcd";
/// Revisions of history etcd keeps: it compacts everything older every five minutes
/// (`--auto-compaction-mode=revision`). Controllers' watches resume from at most a few seconds
/// back; an informer that was away longer lists again. Without it every write of the lab's life
/// stays in etcd's database and memory.
pub const COMPACTION_RETENTION_REVISIONS: u32 = 1_000;

/// Raft entries between etcd's snapshots (Kubernetes' kubeadm uses the same).
pub const SNAPSHOT_COUNT: u32 = 10_000;

/// `etcd` as a process spec. It runs in the state dir: etcd 3.4 accepts unix URLs only as
/// `unix://host:port` and creates that name relative to its working directory. The binary is
/// found as [`store::etcd_process::etcd_binary`] finds it; when it is missing, `up` says so before
/// starting anything (see [`check_installed`]).
pub fn spec(lab: &Lab) -> ProcessSpec {
    let binary = store::etcd_process::etcd_binary().unwrap_or_else(|_| ETCD_PROCESS.into());
    let ip = nodes(lab.topology())
        .into_iter()
        .find(|n| n.name == K8S_CTR)
        .map(|n| n.internal_ip.to_string())
        .unwrap_or_else(|| "192.168.10.100".into());
    // TLS with client certificates on the network (clients and peers); the unix socket, in a
    // root-only directory of k8s-ctr's, is for the processes on k8s-ctr and the CLI.
    let client = format!("https://{ip}:2379");
    let peer = format!("https://{ip}:2380");
    let data_dir = lab.paths().etcd_data_dir();
    let pki = lab.paths().pki();
    let (ca, cert, key) = (
        pki.ca().to_string_lossy().into_owned(),
        pki.etcd().cert.to_string_lossy().into_owned(),
        pki.etcd().key.to_string_lossy().into_owned(),
    );
    let mut spec = ProcessSpec::new(
        ETCD_PROCESS,
        K8S_CTR,
        &[
            &binary.to_string_lossy(),
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
            "--trusted-ca-file",
            &ca,
            "--cert-file",
            &cert,
            "--key-file",
            &key,
            "--client-cert-auth",
            "--peer-trusted-ca-file",
            &ca,
            "--peer-cert-file",
            &cert,
            "--peer-key-file",
            &key,
            "--peer-client-cert-auth",
            // etcd keeps this many raft entries in memory before it snapshots and trims its log
            // (3.4's default, 100 000, is hours of lease keep-alives: RSS grew 50 % in an hour).
            "--snapshot-count",
            &SNAPSHOT_COUNT.to_string(),
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

/// Fails, naming the package to install, when there is no etcd binary to run.
pub fn check_installed() -> Result<(), LabError> {
    store::etcd_process::etcd_binary()
        .map(drop)
        .map_err(|source| LabError::Spawn { command: ETCD_PROCESS.into(), source })
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

/// etcd's database file after compaction keeps its size: the freed pages are reused, never given
/// back. A defragmentation rewrites it, blocking etcd meanwhile, so it runs only when at least
/// half the file and [`DEFRAG_MIN_FREE_BYTES`] are free.
pub const DEFRAG_MIN_FREE_BYTES: u64 = 8 << 20;
/// How often the lab's etcd is looked at for defragmentation.
pub const DEFRAG_CHECK_EVERY: Duration = Duration::from_secs(600);

/// Whether a database of `db_size` bytes of which `in_use` hold data is worth defragmenting.
pub fn worth_defragmenting(db_size: u64, in_use: u64) -> bool {
    let free = db_size.saturating_sub(in_use);
    free >= DEFRAG_MIN_FREE_BYTES && free * 2 >= db_size
}

/// `POST path` with body `{}` to etcd's JSON gateway over the unix socket; the response body.
fn gateway_post(socket: &Path, path: &str, timeout: Duration) -> std::io::Result<serde_json::Value> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("{path}: {}", response.lines().next().unwrap_or(""))));
    }
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).map_err(std::io::Error::other)
}

/// The database size and the part in use, from etcd's maintenance status.
pub fn db_size(socket: &Path, timeout: Duration) -> std::io::Result<(u64, u64)> {
    let status = gateway_post(socket, "/v3/maintenance/status", timeout)?;
    // int64 fields come as strings in the gateway's JSON.
    let field = |name: &str| {
        status.get(name).and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_u64())).unwrap_or(0)
    };
    Ok((field("dbSize"), field("dbSizeInUse")))
}

/// Defragments the lab's etcd when [`worth_defragmenting`]. Returns the sizes before and after
/// when it did.
pub fn defragment_if_worth_it(socket: &Path) -> std::io::Result<Option<(u64, u64)>> {
    let (db, in_use) = db_size(socket, Duration::from_secs(2))?;
    if !worth_defragmenting(db, in_use) {
        return Ok(None);
    }
    gateway_post(socket, "/v3/maintenance/defragment", Duration::from_secs(60))?;
    let (after, _) = db_size(socket, Duration::from_secs(2))?;
    Ok(Some((db, after)))
}

/// Looks at the lab's etcd every [`DEFRAG_CHECK_EVERY`] from a thread of its own and defragments
/// it when worth it, saying so in the caller's log.
pub fn spawn_defragmenter(socket: std::path::PathBuf) {
    let spawned = std::thread::Builder::new().name("etcd-defrag".into()).spawn(move || {
        loop {
            std::thread::sleep(DEFRAG_CHECK_EVERY);
            match defragment_if_worth_it(&socket) {
                Ok(Some((before, after))) => eprintln!("etcd defragmented: database {before} -> {after} bytes"),
                Ok(None) => {}
                Err(e) => eprintln!("etcd defragmentation check failed: {e}"),
            }
        }
    });
    if let Err(e) = spawned {
        eprintln!("cannot start the etcd defragmenter: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_on_the_node_address_and_the_socket() {
        let lab = Lab::new("t1").unwrap();
        let spec = spec(&lab);
        let argv = spec.argv.join(" ");
        assert!(argv.contains("--listen-client-urls https://192.168.10.100:2379,unix://etcd.sock:0"), "{argv}");
        // Clients and peers on the network need a certificate from the lab's CA.
        assert!(argv.contains("--client-cert-auth") && argv.contains("--peer-client-cert-auth"), "{argv}");
        assert!(argv.contains("--trusted-ca-file /var/lib/cilia/lab/t1/pki/ca.crt"), "{argv}");
        assert!(argv.contains("--data-dir /var/lib/cilia/lab/t1/etcd"));
        assert_eq!(spec.cwd.as_deref(), Some(Path::new("/run/cilia/lab/t1")));
    }

    #[test]
    fn compacts_its_history() {
        let lab = Lab::new("t1").unwrap();
        let argv = spec(&lab).argv.join(" ");
        assert!(argv.contains("--auto-compaction-mode revision --auto-compaction-retention 1000"), "{argv}");
        assert!(argv.contains("--snapshot-count 10000"), "{argv}");
    }

    #[test]
    fn defragments_only_when_much_is_free() {
        let mib = 1 << 20;
        assert!(!worth_defragmenting(4 * mib, mib), "small files are left alone");
        assert!(!worth_defragmenting(100 * mib, 60 * mib), "less than half free");
        assert!(worth_defragmenting(100 * mib, 40 * mib));
        assert!(!worth_defragmenting(0, 0));
        assert!(defragment_if_worth_it(Path::new("/nonexistent/etcd.sock")).is_err());
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!healthy(&dir.path().join("none.sock"), Duration::from_millis(100)));
    }
}
