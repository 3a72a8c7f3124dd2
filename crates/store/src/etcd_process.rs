//! Runs a single-member etcd server as a child process, listening on unix sockets in a directory
//! (and optionally on a loopback TCP port), for tests, benchmarks and throwaway setups.
//!
//! etcd runs under a small `sh` watchdog that reads its stdin from us: when this process exits for
//! any reason, even SIGKILL, the pipe closes and the watchdog SIGKILLs etcd, so no server outlives
//! the process that started it.

use std::{
    io::{self, Read as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

use crate::{etcd::EtcdStore, store::Store};

/// The etcd binary: `$CILIA_ETCD_BIN`, or `etcd` found on `PATH`. When there is none, the error
/// says where to get it (Debian's package `etcd-server`).
pub fn etcd_binary() -> io::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CILIA_ETCD_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("etcd")).find(|bin| bin.is_file()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "etcd is not on PATH: install the package etcd-server (apt-get install etcd-server) or set CILIA_ETCD_BIN",
        )
    })
}

/// Where clients reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// Only the unix socket `<dir>/localhost:2379`.
    Unix,
    /// `http://<addr>` (use a loopback address).
    Tcp(SocketAddr),
}

/// A running etcd. Killed (SIGKILL) on drop.
pub struct EtcdProcess {
    dir: PathBuf,
    listen: Listen,
    running: Option<(Child, ChildStdin)>,
}

impl EtcdProcess {
    /// Starts etcd with its data in `<dir>/data`, its log in `<dir>/etcd.log` and its peer socket
    /// in `dir`. Returns once the process runs; see [`Self::wait_ready`].
    pub fn spawn(dir: &Path, listen: Listen) -> io::Result<EtcdProcess> {
        let mut process = EtcdProcess { dir: dir.to_path_buf(), listen, running: None };
        process.start()?;
        Ok(process)
    }

    /// The URL for [`EtcdStore::connect`].
    pub fn url(&self) -> String {
        match self.listen {
            // etcd 3.4 takes only `unix://host:port` and names the socket file `host:port`, in its
            // working directory.
            Listen::Unix => format!("unix://{}", self.dir.join("localhost:2379").display()),
            Listen::Tcp(addr) => format!("http://{addr}"),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// The end of etcd's log, for error messages.
    pub fn log_tail(&self) -> String {
        let mut log = String::new();
        if let Ok(mut file) = std::fs::File::open(self.log_path()) {
            let _ = file.read_to_string(&mut log);
        }
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn start(&mut self) -> io::Result<()> {
        let client_url = match self.listen {
            Listen::Unix => "unix://localhost:2379".to_string(),
            Listen::Tcp(addr) => format!("http://{addr}"),
        };
        // A socket file left by a killed server would make the new one fail to listen.
        for socket in ["localhost:2379", "localhost:2380"] {
            match std::fs::remove_file(self.dir.join(socket)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let binary = etcd_binary()?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let mut child = Command::new("sh")
            .arg("-c")
            // `read` returns when our end of the pipe closes: on kill(), on drop, or when this
            // process dies. The background job's stdin is /dev/null, so etcd never holds the pipe.
            .arg(r#"bin=$1; shift; "$bin" "$@" & pid=$!; read -r _; kill -9 "$pid" 2>/dev/null; wait "$pid""#)
            .arg("sh")
            .arg(binary)
            .args(["--name", "default", "--data-dir", "data"])
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", "unix://localhost:2380"])
            .args(["--initial-advertise-peer-urls", "unix://localhost:2380"])
            .args(["--initial-cluster", "default=unix://localhost:2380"])
            // A fast election gets a fresh single-member server serving in a fraction of a second;
            // it also lowers the minimum lease TTL to 1 s.
            .args(["--heartbeat-interval", "10", "--election-timeout", "100"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| io::Error::other("no stdin pipe to the etcd watchdog"))?;
        self.running = Some((child, stdin));
        Ok(())
    }

    /// Waits until etcd answers requests, or fails after `timeout` with the end of its log.
    pub async fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        let store = EtcdStore::connect(&self.url())
            .await
            .map_err(io::Error::other)?
            .with_request_timeout(Duration::from_millis(500));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if store.revision().await.is_ok() {
                return Ok(());
            }
            if let Some((child, _)) = &mut self.running
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!("etcd exited ({status}):\n{}", self.log_tail())));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "etcd at {} not ready within {timeout:?}:\n{}",
                    self.url(),
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs etcd, as a crash would, and waits for it to be gone.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some((mut child, stdin)) = self.running.take() {
            drop(stdin);
            child.wait()?;
        }
        Ok(())
    }

    /// Starts etcd again on the same data directory and addresses.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill()?;
        self.start()
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
