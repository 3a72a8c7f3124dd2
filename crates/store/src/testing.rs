//! Test support (feature `testing`): a throwaway etcd per test, and waiting for conditions
//! instead of sleeping.

use std::{io, net::TcpListener, time::Duration};

use tempfile::TempDir;

use crate::etcd_process::{EtcdProcess, Listen};

/// How long a fresh etcd may take to serve, generous for a loaded two-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// An etcd server in a temporary directory, killed and removed on drop (also when the test
/// panics, and by its watchdog when the test process is killed).
pub struct EtcdGuard {
    // Declared before `dir` so that etcd is gone before its directory is removed.
    process: EtcdProcess,
    dir: TempDir,
}

impl EtcdGuard {
    /// Starts etcd on a unix socket; returns the guard and the URL to connect to.
    pub async fn start() -> io::Result<(EtcdGuard, String)> {
        Self::start_listening(Listen::Unix).await
    }

    /// Starts etcd on 127.0.0.1 with a free port.
    pub async fn start_tcp() -> io::Result<(EtcdGuard, String)> {
        // The port is free when we look; another process could take it before etcd binds it, which
        // shows up as etcd failing to start, not as a silent mix-up.
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        Self::start_listening(Listen::Tcp(addr)).await
    }

    async fn start_listening(listen: Listen) -> io::Result<(EtcdGuard, String)> {
        let dir = tempfile::Builder::new().prefix("cilia-etcd-").tempdir()?;
        let mut process = EtcdProcess::spawn(dir.path(), listen)?;
        process.wait_ready(READY_TIMEOUT).await?;
        let url = process.url();
        Ok((EtcdGuard { process, dir }, url))
    }

    pub fn url(&self) -> String {
        self.process.url()
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// SIGKILLs etcd.
    pub fn kill(&mut self) -> io::Result<()> {
        self.process.kill()
    }

    /// Starts etcd again on the same data and socket, and waits until it serves.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.process.restart()?;
        self.process.wait_ready(READY_TIMEOUT).await
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held (the kit's).
pub use testkit::wait_until_async as wait_until;
