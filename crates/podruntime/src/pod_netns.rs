//! Pod network namespaces: their names, creating and removing them, and starting processes in
//! them. Shared by the pod runtime and `cilia exec`.
//!
//! Names are `<lab>-pod-<namespace>-<name>-<uid prefix>`: they start with the lab's prefix, so
//! `cilia lab down` removes them with the lab's own namespaces, and `ip netns` shows which pod
//! each belongs to. The uid part keeps a pod deleted and recreated under the same name (possibly
//! on another node, torn down and set up concurrently) from meeting its predecessor's namespace.

use std::{fs::File, io, os::fd::AsFd, path::PathBuf, process::Stdio};

use crate::error::{Error, Result};

/// Infix of every pod namespace after the lab's prefix.
pub const POD_INFIX: &str = "pod-";

/// Namespace names end up as file names under /run/netns; stay well below the 255-byte limit.
const MAX_NAME: usize = 200;

/// What every pod namespace of `lab` starts with: `<lab>-pod-`.
pub fn prefix(lab: &lab::Lab) -> String {
    format!("{}{POD_INFIX}", lab.name_prefix())
}

/// The namespace of the pod `namespace/name` with `uid`, in `lab`.
pub fn name(lab: &lab::Lab, namespace: &str, pod: &str, uid: &str) -> String {
    let uid: String = uid.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    let mut middle = format!("{namespace}-{pod}");
    let room = MAX_NAME.saturating_sub(prefix(lab).len() + uid.len() + 1);
    if middle.len() > room {
        middle.truncate(room);
    }
    format!("{}{middle}-{uid}", prefix(lab))
}

/// `/run/netns/<name>`, what CNI_NETNS carries.
pub fn path(name: &str) -> PathBuf {
    lab::netns::path(name)
}

pub fn exists(name: &str) -> bool {
    lab::netns::state(name) == lab::netns::State::Present
}

fn ip_binary() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("ip")
}

async fn ip(args: &[&str]) -> Result<()> {
    let command = format!("ip {}", args.join(" "));
    let out = tokio::process::Command::new(ip_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Command { command: command.clone(), reason: e.to_string() })?;
    if !out.status.success() {
        return Err(Error::Command { command, reason: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(())
}

/// Creates the namespace (as `ip netns add` does, so `ip netns` lists it) with loopback up.
/// An existing namespace is kept; a stale file from a crash is replaced.
pub async fn create(name: &str) -> Result<()> {
    match lab::netns::state(name) {
        lab::netns::State::Present => {}
        lab::netns::State::Stale => {
            lab::netns::remove_stale(name)?;
            ip(&["netns", "add", name]).await?;
        }
        lab::netns::State::Missing => ip(&["netns", "add", name]).await?,
    }
    ip(&["-n", name, "link", "set", "lo", "up"]).await
}

/// Removes the namespace (and with it the pod end of its veth). Processes still inside must be
/// gone first, or the namespace lives on unnamed; see [`kill_all_inside`].
pub async fn delete(name: &str) -> Result<()> {
    match lab::netns::state(name) {
        lab::netns::State::Missing => Ok(()),
        lab::netns::State::Stale => Ok(lab::netns::remove_stale(name)?),
        lab::netns::State::Present => ip(&["netns", "delete", name]).await,
    }
}

/// SIGKILLs every process inside the namespace (stray `cilia exec` shells, a container that
/// ignored SIGTERM) until none is left, for at most a few seconds.
pub async fn kill_all_inside(name: &str) {
    let Some(inode) = lab::netns::inode(name) else { return };
    for _ in 0..200 {
        let pids = lab::procfs::in_namespaces(&[inode]);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tracing::warn!(netns = %name, "processes survive in a pod namespace");
}

/// Runs `spawn` on a short-lived thread that has entered the namespace, so that the process it
/// starts is born inside it; the caller's threads never leave their own namespace
/// ([`netconf::netns::on_thread_inside`]).
pub fn spawn_inside<T: Send>(name: &str, spawn: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = File::open(path(name))?;
    netconf::netns::on_thread_inside(ns.as_fd(), spawn)
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        .map_err(io::Error::from)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_lab_prefix_the_pod_and_its_uid() {
        let lab = lab::Lab::new("t9").unwrap();
        let n = name(&lab, "default", "curl-pod", "3f2a9c1e-aaaa-bbbb-cccc-dddddddddddd");
        assert_eq!(n, "t9-pod-default-curl-pod-3f2a9c1e");
        assert!(n.starts_with(&lab.name_prefix()), "lab down removes it");
        let long = name(&lab, "default", &"x".repeat(300), "3f2a9c1e");
        assert!(long.len() <= MAX_NAME && long.ends_with("-3f2a9c1e"), "{long}");
    }
}
