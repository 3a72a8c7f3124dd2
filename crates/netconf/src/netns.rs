//! Network namespace handles and running code inside a namespace.
//!
//! Namespaces are per thread: `setns(2)` moves only the calling thread. So code that must run in
//! another namespace (opening a netlink socket there, writing its sysctls) runs on a short-lived
//! thread of its own that enters the namespace and then exits, never on a runtime worker thread,
//! which would stay in the wrong namespace for every task scheduled on it afterwards.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sched::{CloneFlags, setns};

use crate::error::{Error, Result};

/// An open network namespace: a file descriptor plus a name used in error messages.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    name: String,
}

impl Netns {
    /// Opens a namespace by path, e.g. `/run/netns/NAME` or `/proc/PID/ns/net`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| Error::OpenNetns { path: path.to_path_buf(), source })?;
        Ok(Netns { fd: file.into(), name: path.display().to_string() })
    }

    /// Wraps a namespace file descriptor obtained elsewhere; `name` appears in errors.
    pub fn from_fd(fd: OwnedFd, name: impl Into<String>) -> Self {
        Netns { fd, name: name.into() }
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<Self> {
        let mut ns = Netns::open("/proc/thread-self/ns/net")?;
        ns.name = current_label();
        Ok(ns)
    }

    /// The name used in error messages (the path it was opened from, or `net:[inode]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A second handle on the same namespace.
    pub fn try_clone(&self) -> Result<Self> {
        let fd = self.fd.try_clone().map_err(|source| Error::OpenNetns { path: self.name.clone().into(), source })?;
        Ok(Netns { fd, name: self.name.clone() })
    }

    /// Moves the calling thread into this namespace.
    ///
    /// Only call this on a thread you own (a test thread, a dedicated agent thread started before
    /// its runtime): every later socket and /proc/sys access of that thread lands in this
    /// namespace.
    pub fn enter(&self) -> Result<()> {
        enter(self.fd.as_fd()).map_err(|source| Error::EnterNetns { netns: self.name.clone(), source })
    }

    /// Runs `f` on a fresh thread that has entered this namespace, and waits for it without
    /// blocking the async runtime.
    pub async fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let ns = self.try_clone()?;
        let name = self.name.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("netns-worker".into())
            .spawn(move || {
                let result = ns.enter().and_then(|()| f());
                let _ = tx.send(result);
            })
            .map_err(|e| Error::Worker { netns: name.clone(), reason: format!("cannot spawn: {e}") })?;
        rx.await.map_err(|_| Error::Worker { netns: name, reason: "thread panicked".into() })?
    }

    /// Same as [`Netns::run`], for callers without an async runtime.
    pub fn run_blocking<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> Result<T> + Send,
        T: Send,
    {
        let entered = on_thread_inside(self.fd.as_fd(), f)
            .map_err(|_| Error::Worker { netns: self.name.clone(), reason: "thread panicked".into() })?;
        entered.map_err(|source| Error::EnterNetns { netns: self.name.clone(), source })?
    }
}

/// Moves the calling thread into the network namespace `ns`; the one place this crate (and the
/// crates built on it) calls `setns(2)`.
pub fn enter(ns: BorrowedFd<'_>) -> nix::Result<()> {
    setns(ns, CloneFlags::CLONE_NEWNET)
}

/// Runs `f` on a new thread that first enters the network namespace `ns`, and waits for it. Only
/// that thread changes namespace and it ends with `f`, so the caller's threads never leave their
/// own; sockets it opens and `/proc/sys/net` files it touches belong to `ns`.
///
/// The outer result is the thread's: `Err` carries the panic payload of `f`, for the caller to
/// resume or report. The inner one is `Err` when the thread could not enter the namespace.
pub fn on_thread_inside<T: Send>(
    ns: BorrowedFd<'_>,
    f: impl FnOnce() -> T + Send,
) -> std::thread::Result<nix::Result<T>> {
    std::thread::scope(|s| {
        s.spawn(move || {
            enter(ns)?;
            Ok(f())
        })
        .join()
    })
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Netns {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `net:[inode]` of the calling thread's namespace, the same label `ip netns identify` works from.
pub(crate) fn current_label() -> String {
    std::fs::read_link("/proc/thread-self/ns/net").map(|p| p.display().to_string()).unwrap_or_else(|_| "current".into())
}
