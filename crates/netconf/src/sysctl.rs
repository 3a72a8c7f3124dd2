//! Per-namespace sysctls under /proc/sys/net.
//!
//! /proc/sys/net resolves against the namespace of the thread that opens the file, so a write for
//! another namespace happens on a thread that entered it.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::handle::Netconf;

impl Netconf {
    /// Writes `value` to `/proc/sys/<key>` (key with slashes, e.g. `net/ipv4/ip_forward`) in this
    /// connection's namespace.
    pub async fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.set_sysctls(&[(key.to_string(), value.to_string())]).await
    }

    /// Writes several sysctls in one trip into the namespace.
    pub async fn set_sysctls(&self, entries: &[(String, String)]) -> Result<()> {
        let label = self.netns_name().to_string();
        let entries = entries.to_vec();
        let write = move || write_all(&label, &entries);
        match &self.netns {
            None => write(),
            Some(ns) => ns.run(write).await,
        }
    }
}

fn write_all(netns: &str, entries: &[(String, String)]) -> Result<()> {
    for (key, value) in entries {
        write_here(key, value).map_err(|source| Error::Sysctl {
            netns: netns.to_string(),
            key: key.clone(),
            value: value.clone(),
            source,
        })?;
    }
    Ok(())
}

/// `/proc/sys/<key>`, for a key written with slashes (`net/ipv4/ip_forward`).
pub fn path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.trim_start_matches('/'))
}

/// Reads a sysctl in the calling thread's namespace, without the trailing newline.
pub fn read_here(key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(path(key))?.trim().to_string())
}

/// Writes a sysctl in the calling thread's namespace (see [`crate::netns::on_thread_inside`] for
/// another namespace).
pub fn write_here(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(path(key), value.as_bytes())
}

/// `net/ipv4/conf/<dev>/<name>`.
pub fn ipv4_conf(device: &str, name: &str) -> String {
    format!("net/ipv4/conf/{device}/{name}")
}
