//! The agent's CNI socket: a root-only unix socket answering the plugin's requests.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::error::{CniError, code};
use crate::pod_network::{CniHandler, PodNetwork, PodNetworkConfig, PodNetworkError};
use crate::protocol::{self, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Request, Response};

/// A plugin that connects and then says nothing is dropped after this long.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the agent's CNI side is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniServerConfig {
    pub pod_network: PodNetworkConfig,
    /// Where to listen, e.g. [`crate::config::DEFAULT_AGENT_SOCKET`].
    pub socket_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("CNI socket {path}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    PodNetwork(#[from] PodNetworkError),
}

/// The listening socket and its accept loop. Dropping it stops accepting and removes the socket
/// file; requests already accepted run to completion.
#[derive(Debug)]
pub struct CniServer {
    socket_path: PathBuf,
    accept: JoinHandle<()>,
}

impl CniServer {
    /// Starts pod networking ([`PodNetwork::start`]: host device, allocations, reconciliation)
    /// and serves it on the configured socket. Must run inside the node's namespace unless
    /// `pod_network.node_netns` names it.
    pub async fn start(config: CniServerConfig) -> Result<(CniServer, Arc<PodNetwork>), ServerError> {
        let network = Arc::new(PodNetwork::start(config.pod_network).await?);
        let server = CniServer::serve(&config.socket_path, network.clone())?;
        Ok((server, network))
    }

    /// Serves `handler` on `socket_path` (mode 0600, replacing a stale socket).
    pub fn serve<H: CniHandler>(socket_path: &Path, handler: Arc<H>) -> Result<CniServer, ServerError> {
        let listener = bind_private(socket_path)
            .map_err(|source| ServerError::Socket { path: socket_path.to_path_buf(), source })?;
        let accept = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_connection(stream, handler.clone()));
                    }
                    Err(e) => {
                        // EMFILE and friends pass; back off instead of spinning.
                        tracing::warn!(error = %e, "CNI socket accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(CniServer { socket_path: socket_path.to_path_buf(), accept })
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }
}

impl Drop for CniServer {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

/// Binds with mode 0600 from the first instant: the socket is created inside a fresh 0700
/// directory, restricted, then renamed into place, so no other user ever sees it with the
/// default permissions (a umask change would be process-wide and racy).
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let file_name = path.file_name().ok_or_else(|| std::io::Error::other("socket path has no file name"))?;
    let staging = parent.join(format!(".{}.{}.bind", file_name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let result = (|| {
        let staged = staging.join("sock");
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

async fn serve_connection<H: CniHandler>(stream: UnixStream, handler: Arc<H>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_MESSAGE_BYTES as u64));
    let mut line = Vec::new();
    let response = match tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
        Err(_) => return,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "CNI socket read failed");
            return;
        }
        Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
            Ok(req) if req.version == PROTOCOL_VERSION => Response::from(handler.handle(req).await),
            Ok(req) => Response::Error(CniError::new(
                code::PROTOCOL_ERROR,
                format!("plugin speaks protocol {}, this agent {PROTOCOL_VERSION}", req.version),
            )),
            Err(e) => Response::Error(
                CniError::new(code::PROTOCOL_ERROR, "cannot decode the plugin's request").with_details(e.to_string()),
            ),
        },
    };
    if let Err(e) = write.write_all(&protocol::encode(&response)).await {
        tracing::debug!(error = %e, "CNI socket write failed");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::client;
    use crate::env::Command;
    use crate::protocol::{Attachment, Interface};

    /// Answers ADD with a fixed attachment and fails everything else with code 3.
    struct Fake;

    impl CniHandler for Fake {
        async fn handle(&self, request: Request) -> Result<Option<Attachment>, CniError> {
            match request.command {
                Command::Add => Ok(Some(Attachment {
                    host_interface: Interface { name: "lxc0".into(), mac: "02:00:00:00:00:01".into() },
                    pod_interface: Interface { name: request.ifname, mac: "02:00:00:00:00:02".into() },
                    sandbox: request.netns,
                    ip: "10.0.0.2/32".parse().unwrap(),
                    gateway: "10.0.0.1".parse().unwrap(),
                    routes: vec![],
                    mtu: 1500,
                    node: "fake".into(),
                })),
                _ => Err(CniError::new(code::UNKNOWN_CONTAINER, "nope")),
            }
        }
    }

    fn request(command: Command) -> Request {
        Request {
            version: PROTOCOL_VERSION,
            command,
            container_id: "c".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            network: "cilia".into(),
            args: BTreeMap::new(),
            mtu: None,
            prev_ip: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_requests_on_a_private_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cni.sock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"stale").unwrap();
        let server = CniServer::serve(&path, Arc::new(Fake)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let p = path.clone();
        let (add, del, garbage, old) = tokio::task::spawn_blocking(move || {
            let add = client::call(&p, &request(Command::Add)).unwrap();
            let del = client::call(&p, &request(Command::Del)).unwrap();
            let mut raw = std::os::unix::net::UnixStream::connect(&p).unwrap();
            raw.write_all(b"not json\n").unwrap();
            let mut garbage = String::new();
            raw.read_to_string(&mut garbage).unwrap();
            let old = client::call(&p, &Request { version: 0, ..request(Command::Add) }).unwrap();
            (add, del, garbage, old)
        })
        .await
        .unwrap();
        assert!(matches!(add, Response::Ok { attachment: Some(ref a) } if a.pod_interface.name == "eth0"), "{add:?}");
        assert!(matches!(del, Response::Error(ref e) if e.code == code::UNKNOWN_CONTAINER), "{del:?}");
        assert!(garbage.contains(r#""code":103"#), "{garbage}");
        assert!(matches!(old, Response::Error(ref e) if e.code == code::PROTOCOL_ERROR), "{old:?}");

        drop(server);
        assert!(!path.exists());
        let err = client::call(&path, &request(Command::Add)).unwrap_err();
        assert_eq!(err.code, code::TRY_AGAIN_LATER);
    }
}
