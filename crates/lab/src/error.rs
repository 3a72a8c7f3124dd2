//! What can go wrong while building, running or removing a lab. Every variant names the lab object
//! (namespace, host, file, command) it is about, so a message alone tells the user where to look.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// How the lab prints an error with its causes, as the rest of the tree does.
pub use api::error::Chain;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab name cannot be used as a namespace prefix and directory name. Not retryable.
    #[error("invalid lab name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    /// `exec` or a process spec named a host the topology does not have. Not retryable.
    #[error("lab {lab} has no host {host:?}; hosts are: {valid}")]
    UnknownHost { lab: String, host: String, valid: String },

    /// `kill`/`reboot` named a host the topology does not have. Not retryable.
    #[error("lab {lab} has no node {node:?}; nodes are: {nodes}")]
    UnknownNode { lab: String, node: String, nodes: String },

    /// `kill`/`reboot` named a host that is not a Kubernetes node (the router, the uplink, the
    /// fabric). Not retryable.
    #[error("lab {lab}: {host} is not a node and cannot be killed or rebooted; nodes are: {nodes}")]
    NotANode { lab: String, host: String, nodes: String },

    /// A process spec cannot be run. Not retryable.
    #[error("process spec {name:?}: {reason}")]
    InvalidSpec { name: String, reason: &'static str },

    /// The host exists in the topology but its namespace does not: the lab is not (fully) up.
    #[error("lab {lab}: host {host} has no namespace {namespace}; run `cilia lab up` first")]
    HostDown { lab: String, host: String, namespace: String },

    /// A command line was empty where a program was expected.
    #[error("empty command line for {what}")]
    EmptyCommand { what: String },

    /// An external command (mostly `ip`) ran and failed. `namespace` is where it ran.
    #[error("`{command}` failed in {namespace}: {stderr}")]
    Command { namespace: String, command: String, stderr: String },

    /// An external command could not be started at all (missing binary, permissions).
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },

    /// A file or directory operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A namespace-level system call (setns, statfs) failed.
    #[error("namespace {namespace}: {action} failed")]
    Netns {
        namespace: String,
        action: &'static str,
        #[source]
        source: nix::Error,
    },

    /// A process-level system call (kill, setsid, signalfd, poll) failed.
    #[error("{action} failed")]
    Sys {
        action: &'static str,
        #[source]
        source: nix::Error,
    },

    /// `ip -j` printed something this crate does not understand.
    #[error("cannot parse the output of `{command}`: {reason}")]
    Parse { command: String, reason: String },

    /// The state or spec file of a lab is not valid JSON of the expected shape.
    #[error("invalid JSON in {}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// After applying the plan (and a clean rebuild) the kernel still differs from the topology.
    #[error("lab {lab}: the network still differs from the topology after a rebuild: {remaining}")]
    NotConverged { lab: String, remaining: String },

    /// The supervisor did not start, or died while `up` waited for it.
    #[error("supervisor of lab {lab} {what}; last lines of {}:\n{tail}", log.display())]
    Supervisor { lab: String, what: String, log: PathBuf, tail: String },

    /// etcd did not answer its health check in time. Retryable: `up` again waits again.
    #[error(
        "etcd of lab {lab} did not become healthy within {timeout:?} at {socket}; last lines of {}:\n{tail}",
        log.display()
    )]
    EtcdTimeout { lab: String, timeout: Duration, socket: PathBuf, log: PathBuf, tail: String },

    /// kube-apiserver did not answer `/readyz` in time. Retryable: `up` again waits again.
    #[error(
        "kube-apiserver of lab {lab} was not ready within {timeout:?}; last lines of {}:\n{tail}",
        log.display()
    )]
    ApiserverTimeout { lab: String, timeout: Duration, log: PathBuf, tail: String },

    /// `--control-plane kubernetes` without Kubernetes' binaries. Not retryable until they are built.
    #[error(
        "Kubernetes {version} is not built: no {}; scripts/install-kubernetes.sh builds it (needs Go >= 1.24)",
        binary.display()
    )]
    KubernetesMissing { version: &'static str, binary: PathBuf },

    /// Another supervisor already runs for this lab.
    #[error("lab {lab}: another supervisor already holds {}", lock.display())]
    SupervisorRunning { lab: String, lock: PathBuf },

    /// Some processes survived `down`'s SIGKILL within its deadline.
    #[error("lab {lab}: {what}")]
    NotRunning { lab: String, what: String },

    #[error("lab {lab}: processes still alive after SIGKILL: {pids:?}")]
    Survivors { lab: String, pids: Vec<i32> },
}

impl LabError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LabError::Io { action, path: path.into(), source }
    }

    pub(crate) fn sys(action: &'static str, source: nix::Error) -> Self {
        LabError::Sys { action, source }
    }
}
