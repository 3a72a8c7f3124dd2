//! The guide's lab on one Linux machine.
//!
//! `up` builds the hands-on guide's environment out of network namespaces (router, k8s-ctr, k8s-w1,
//! k8s-w0, plus an uplink that swallows traffic and a fabric holding the two L2 segments), starts a
//! supervisor daemon that runs etcd on k8s-ctr (and later the operator and agents), and returns the
//! datastore URL. `down` removes all of it. Nothing is added to the root namespace: every address,
//! route and bridge lives in a namespace named `<lab>-<host>`.
//!
//! ```no_run
//! let lab = lab::Lab::new("cilia")?;
//! let report = lab.up(&lab::UpOptions::for_cilia(&lab)?)?;
//! println!("datastore at {}", report.datastore_url);
//! let code = lab.exec("router", &["ping", "-c1", "192.168.20.100"])?;
//! lab.down()?;
//! # Ok::<(), lab::LabError>(())
//! ```
//!
//! Runs as root. The pure parts (topology, plan, parsing) are tested without it.

pub mod cidr;
mod down;
pub mod error;
pub mod etcd;
mod exec;
mod iproute;
pub mod kubernetes;
mod links;
mod lock;
mod logs;
pub mod name;
pub mod netns;
pub mod network;
pub mod node;
pub mod observed;
pub mod paths;
pub mod pki;
pub mod plan;
pub mod process;
pub mod procfs;
mod progress;
mod restart;
pub mod router_dns;
pub mod state;
pub mod status;
mod supervisor;
mod sysctl;
pub mod topology;
mod up;

use std::ffi::OsStr;
use std::process::Command;

pub use down::DownReport;
pub use error::LabError;
pub use name::{DEFAULT_LAB, LabName};
pub use node::{BootReport, Hold, KillReport};
pub use paths::LabPaths;
pub use process::{ProcessSpec, default_processes};
pub use status::LabStatus;
pub use supervisor::{ENV_SUPERVISOR, run_supervisor};
pub use topology::{NodeInfo, Topology, nodes};
pub use up::{UpOptions, UpReport};

/// One lab: its name, topology and directories. Cheap to build; nothing happens until `up`.
#[derive(Clone, Debug)]
pub struct Lab {
    name: LabName,
    topology: Topology,
    paths: LabPaths,
}

impl Lab {
    /// A lab named `name` (lowercase letters and digits): namespaces `<name>-router`, ...
    pub fn new(name: &str) -> Result<Self, LabError> {
        let name = LabName::new(name)?;
        Ok(Lab { topology: Topology::guide(&name), paths: LabPaths::new(&name), name })
    }

    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// What every namespace of this lab starts with (`cilia-`).
    pub fn name_prefix(&self) -> String {
        self.name.namespace_prefix()
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn paths(&self) -> &LabPaths {
        &self.paths
    }

    /// The namespace of a host, or an error that lists the hosts.
    pub fn namespace_of(&self, host: &str) -> Result<&str, LabError> {
        self.topology.namespace_of(host).ok_or_else(|| LabError::UnknownHost {
            lab: self.name().to_string(),
            host: host.to_string(),
            valid: self.topology.host_names(),
        })
    }

    /// Builds or repairs the lab, makes sure the supervisor runs, waits for etcd. Idempotent.
    pub fn up(&self, opts: &UpOptions) -> Result<UpReport, LabError> {
        up::up(self, opts)
    }

    /// Removes everything the lab made, with progress lines on stderr.
    pub fn down(&self) -> Result<DownReport, LabError> {
        down::down(self, true)
    }

    /// [`Lab::down`] without progress lines.
    pub fn down_quiet(&self) -> Result<DownReport, LabError> {
        down::down(self, false)
    }

    pub fn status(&self) -> Result<LabStatus, LabError> {
        status::status(self)
    }

    /// Restarts the supervised process `name` (`operator`, `agent-k8s-ctr`) and waits until it
    /// runs again; returns the new incarnation.
    pub fn restart_process(&self, name: &str, timeout: std::time::Duration) -> Result<procfs::ProcessId, LabError> {
        restart::restart_process(self, name, timeout)
    }

    /// Kills the node `node` as a power loss does: its links down (the moment of the failure,
    /// [`KillReport::failed_at`]), its processes and pods killed and held down, its BPF state gone.
    /// A killed node stays down until [`Lab::boot_node`], [`Lab::reboot_node`] or [`Lab::up`].
    /// Killing a killed node does nothing ([`KillReport::killed`] is false). See [`node`].
    pub fn kill_node(&self, node: &str) -> Result<KillReport, LabError> {
        node::kill_node(self, node)
    }

    /// Boots a killed node: its links up again, its processes started at once; returns when they
    /// all run (within `timeout`). Booting a node that is not killed does nothing.
    pub fn boot_node(&self, node: &str, timeout: std::time::Duration) -> Result<BootReport, LabError> {
        node::boot_node(self, node, timeout)
    }

    /// `sudo reboot` without a clean shutdown: [`Lab::kill_node`], `down_for`, [`Lab::boot_node`].
    pub fn reboot_node(
        &self,
        node: &str,
        down_for: std::time::Duration,
        timeout: std::time::Duration,
    ) -> Result<(KillReport, BootReport), LabError> {
        let killed = self.kill_node(node)?;
        std::thread::sleep(down_for.saturating_sub(killed.failed_instant.elapsed()));
        let booted = self.boot_node(node, timeout)?;
        Ok((killed, booted))
    }

    /// The killed nodes, with when and which links they had up.
    pub fn holds(&self) -> Vec<Hold> {
        node::holds(self)
    }

    /// The datastore URL while the lab's supervisor runs.
    pub fn datastore_url(&self) -> Option<String> {
        let state = state::LabState::read(&self.paths.state_file()).ok()??;
        state.supervisor_alive().then_some(state.datastore_url)
    }

    /// Runs `argv` in `host`'s network namespace with inherited stdio; returns its exit code.
    pub fn exec<S: AsRef<OsStr>>(&self, host: &str, argv: &[S]) -> Result<i32, LabError> {
        exec::exec(self, host, argv)
    }

    /// A `Command` that runs `program` in `host`'s network namespace, for callers that want the
    /// output or their own stdio.
    pub fn command(&self, host: &str, program: impl AsRef<OsStr>) -> Result<Command, LabError> {
        exec::command(self, host, program)
    }
}

/// The datastore URL of the running lab `lab`, or None if it is not running.
pub fn datastore_url(lab: &str) -> Option<String> {
    Lab::new(lab).ok()?.datastore_url()
}

/// Status of the lab `lab` (see [`LabStatus`]; its Display is what `cilia lab status` prints).
pub fn status(lab: &str) -> Result<LabStatus, LabError> {
    Lab::new(lab)?.status()
}

/// Runs `argv` in `host` of the lab `lab`; returns its exit code.
pub fn exec<S: AsRef<OsStr>>(lab: &str, host: &str, argv: &[S]) -> Result<i32, LabError> {
    Lab::new(lab)?.exec(host, argv)
}
