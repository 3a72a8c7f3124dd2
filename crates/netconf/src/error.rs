//! Errors of kernel configuration, each naming the namespace, device and operation involved.

use std::io;
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What failed, in which network namespace, on which device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The namespace file could not be opened (missing path, not a namespace, permissions).
    #[error("cannot open network namespace {path}")]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// `setns(2)` into the namespace failed on a worker thread.
    #[error("cannot enter network namespace {netns}")]
    EnterNetns {
        netns: String,
        #[source]
        source: nix::Error,
    },

    /// The worker thread that runs code inside a namespace could not start or died.
    #[error("worker thread for network namespace {netns}: {reason}")]
    Worker { netns: String, reason: String },

    /// The netlink socket could not be created inside the namespace.
    #[error("cannot open a netlink socket in network namespace {netns}")]
    Socket {
        netns: String,
        #[source]
        source: io::Error,
    },

    /// A netlink request was refused by the kernel or could not be sent.
    #[error("{op} {device} in network namespace {netns}")]
    Netlink {
        netns: String,
        device: String,
        op: &'static str,
        /// Boxed: rtnetlink's error embeds whole netlink messages.
        #[source]
        source: Box<rtnetlink::Error>,
    },

    /// A device the operation needs does not exist.
    #[error("{op}: no device {device} in network namespace {netns}")]
    NoSuchDevice { netns: String, device: String, op: &'static str },

    /// A sysctl under /proc/sys could not be written.
    #[error("sysctl {key}={value} in network namespace {netns}")]
    Sysctl {
        netns: String,
        key: String,
        value: String,
        #[source]
        source: io::Error,
    },

    /// The caller asked for something the kernel cannot express (bad device name, MTU, ...).
    #[error("{op} {device} in network namespace {netns}: {reason}")]
    Invalid { netns: String, device: String, op: &'static str, reason: String },

    /// Kernel state differs from what was expected (used by checks).
    #[error("{device} in network namespace {netns}: {what}")]
    Mismatch { netns: String, device: String, what: String },
}

impl Error {
    /// The errno the kernel answered with, when the failure was a netlink error message.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink { source, .. } => match source.as_ref() {
                rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The object the operation wanted to create exists already (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc_errno::EEXIST)
    }

    /// The object (device, route, address) is not there (ENODEV, ESRCH, ENOENT, EADDRNOTAVAIL).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NoSuchDevice { .. })
            || matches!(
                self.errno(),
                Some(libc_errno::ENODEV | libc_errno::ESRCH | libc_errno::ENOENT | libc_errno::EADDRNOTAVAIL)
            )
    }
}

/// The few errno values the crate tests for, from nix so no libc dependency is needed.
pub(crate) mod libc_errno {
    use nix::errno::Errno;
    pub const EEXIST: i32 = Errno::EEXIST as i32;
    pub const ENODEV: i32 = Errno::ENODEV as i32;
    pub const ESRCH: i32 = Errno::ESRCH as i32;
    pub const ENOENT: i32 = Errno::ENOENT as i32;
    pub const EADDRNOTAVAIL: i32 = Errno::EADDRNOTAVAIL as i32;
}
