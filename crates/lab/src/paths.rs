//! Where a lab keeps its files. Runtime state (state file, sockets, logs) lives under `/run`, data
//! that should survive a supervisor restart (etcd's data dir) under `/var/lib`, BPF pins under
//! bpffs. `down` removes all three per-lab directories.

use std::path::{Path, PathBuf};

use crate::name::LabName;

pub const STATE_ROOT: &str = "/run/cilia/lab";
pub const DATA_ROOT: &str = "/var/lib/cilia/lab";

/// File name of etcd's client socket inside the state dir. etcd 3.4 only accepts `unix://host:port`
/// URLs and creates the socket as a path relative to its working directory, so etcd listens on
/// `unix://etcd.sock:0` from the state dir and this name is a symlink to that file.
pub const ETCD_SOCKET: &str = "etcd.sock";
pub const ETCD_SOCKET_TARGET: &str = "etcd.sock:0";

#[derive(Clone, Debug)]
pub struct LabPaths {
    state_dir: PathBuf,
    data_dir: PathBuf,
    bpf_dir: PathBuf,
    lock_file: PathBuf,
}

impl LabPaths {
    pub fn new(lab: &LabName) -> Self {
        LabPaths {
            state_dir: Path::new(STATE_ROOT).join(lab.as_str()),
            data_dir: Path::new(DATA_ROOT).join(lab.as_str()),
            bpf_dir: Path::new(datapath::BPF_ROOT).join(lab.as_str()),
            // Beside the state dir, not in it: `down` removes the state dir while holding the lock.
            lock_file: Path::new(STATE_ROOT).join(format!("{}.lock", lab.as_str())),
        }
    }

    /// `/run/cilia/lab/<name>`: state file, process specs, sockets, logs.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `/var/lib/cilia/lab/<name>`: etcd's data and whatever else must outlive a process restart.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `/sys/fs/bpf/cilia/<name>`: where the lab's agents pin their maps and programs.
    pub fn bpf_dir(&self) -> &Path {
        &self.bpf_dir
    }

    /// Serializes `up` and `down` of one lab.
    pub fn lock_file(&self) -> &Path {
        &self.lock_file
    }

    /// The JSON state the supervisor keeps up to date (see [`crate::state::LabState`]).
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    /// The process specs `up` hands to the supervisor.
    pub fn specs_file(&self) -> PathBuf {
        self.state_dir.join("processes.json")
    }

    /// Held by the running supervisor, so that a lab never has two.
    pub fn supervisor_lock(&self) -> PathBuf {
        self.state_dir.join("supervisor.lock")
    }

    /// Left by a rollout restart of `process` for the supervisor: the exit it causes was asked
    /// for, so the process starts again at once and its crash backoff does not grow.
    pub fn restart_request(&self, process: &str) -> PathBuf {
        self.state_dir.join(format!("{process}.restart"))
    }

    /// Hold files of killed nodes (`<node>.json`): the supervisor starts none of their processes
    /// while one exists.
    pub fn held_dir(&self) -> PathBuf {
        self.state_dir.join("held")
    }

    pub fn hold_file(&self, node: &str) -> PathBuf {
        self.held_dir().join(format!("{node}.json"))
    }

    pub fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    pub fn log_file(&self, process: &str) -> PathBuf {
        self.log_dir().join(format!("{process}.log"))
    }

    pub fn supervisor_log(&self) -> PathBuf {
        self.log_file("supervisor")
    }

    /// `/run/cilia/lab/<name>/nodes/<node>`: a node agent's state (pod IP allocations).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.state_dir.join("nodes").join(node)
    }

    /// The socket a node's agent serves the CNI plugin on; the node's pod runtime points the
    /// plugin at it (`agentSocket` in the network configuration).
    pub fn cni_socket(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("cni.sock")
    }

    pub fn etcd_socket(&self) -> PathBuf {
        self.state_dir.join(ETCD_SOCKET)
    }

    /// The lab's CA and certificates ([`crate::pki`]).
    pub fn pki(&self) -> crate::pki::Pki {
        crate::pki::Pki::new(self.data_dir.join("pki"))
    }

    pub fn etcd_data_dir(&self) -> PathBuf {
        self.data_dir.join("etcd")
    }

    /// The datastore URL the CLI and the lab's processes use: `unix:///run/cilia/lab/<name>/etcd.sock`.
    pub fn datastore_url(&self) -> String {
        format!("unix://{}", self.etcd_socket().display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_the_default_lab() {
        let paths = LabPaths::new(&LabName::default());
        assert_eq!(paths.datastore_url(), "unix:///run/cilia/lab/cilia/etcd.sock");
        assert_eq!(paths.etcd_data_dir(), Path::new("/var/lib/cilia/lab/cilia/etcd"));
        assert_eq!(paths.bpf_dir(), Path::new("/sys/fs/bpf/cilia/cilia"));
        assert!(!paths.lock_file().starts_with(paths.state_dir()));
    }
}
