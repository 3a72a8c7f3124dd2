//! Named network namespaces as iproute2 keeps them: bind mounts of nsfs files under `/run/netns`.
//! Creating and deleting go through `ip netns` (see the iproute module); this module inspects the
//! files and enters namespaces from a thread of this process.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{NSFS_MAGIC, statfs};

use crate::error::LabError;

pub const NETNS_DIR: &str = "/run/netns";

pub fn path(namespace: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(namespace)
}

/// Whether `/run/netns/<namespace>` is missing, a real namespace, or a leftover plain file (after
/// a crash between creating the file and mounting it, or a reboot of a persistent /run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Missing,
    Stale,
    Present,
}

pub fn state(namespace: &str) -> State {
    let p = path(namespace);
    if !p.exists() {
        return State::Missing;
    }
    match statfs(&p) {
        Ok(fs) if fs.filesystem_type() == NSFS_MAGIC => State::Present,
        _ => State::Stale,
    }
}

/// Removes a stale namespace file so `ip netns add` can create it again.
pub fn remove_stale(namespace: &str) -> Result<(), LabError> {
    let p = path(namespace);
    match fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LabError::io("remove stale namespace file", p, e)),
        _ => Ok(()),
    }
}

/// Every namespace whose name starts with `prefix`, present or stale.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> =
        entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    names
}

/// The namespace's inode number, as `/proc/<pid>/ns/net` shows it (`net:[<inode>]`).
pub fn inode(namespace: &str) -> Option<u64> {
    if state(namespace) != State::Present {
        return None;
    }
    fs::metadata(path(namespace)).ok().map(|m| m.ino())
}

pub fn open(namespace: &str) -> Result<File, LabError> {
    File::open(path(namespace)).map_err(|e| LabError::io("open network namespace", path(namespace), e))
}

/// Runs `f` on a new thread that has entered `namespace` ([`netconf::netns::on_thread_inside`]):
/// the rest of the process never sees the switch, and files under `/proc/sys/net` opened by that
/// thread belong to the namespace. A panic in `f` resumes in the caller.
pub fn run_in<T: Send>(namespace: &str, f: impl FnOnce() -> Result<T, LabError> + Send) -> Result<T, LabError> {
    let ns = open(namespace)?;
    netconf::netns::on_thread_inside(ns.as_fd(), f)
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        .map_err(|source| LabError::Netns { namespace: namespace.to_string(), action: "setns", source })?
}
