//! What the supervisor runs (process specs) and how a process is started inside a host's network
//! namespace.
//!
//! Processes enter only the network namespace (setns between fork and exec), not a mount namespace:
//! unlike `ip netns exec`, which remounts /sys, they see the host's /sys/fs/bpf, so agents can pin
//! BPF objects under the lab's bpffs directory without mounting anything.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use nix::sys::prctl;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::{Pid, getppid, setsid};
use serde::{Deserialize, Serialize};

use crate::Lab;
use crate::error::LabError;
use crate::etcd;

/// Environment variables every supervised process gets.
pub const ENV_LAB: &str = "CILIA_LAB";
pub const ENV_HOST: &str = "CILIA_LAB_HOST";
pub const ENV_DATASTORE: &str = "CILIA_DATASTORE";
/// TLS material for an `https://` datastore: the lab's CA, the node's client certificate and key.
pub const ENV_DATASTORE_CA: &str = "CILIA_DATASTORE_CA";
pub const ENV_DATASTORE_CERT: &str = "CILIA_DATASTORE_CERT";
pub const ENV_DATASTORE_KEY: &str = "CILIA_DATASTORE_KEY";
/// The CA and the host's serving certificate for the metrics endpoints (TLS with client
/// certificates on the node's address, as etcd's).
pub const ENV_METRICS_CA: &str = "CILIA_METRICS_CA";
pub const ENV_METRICS_CERT: &str = "CILIA_METRICS_CERT";
pub const ENV_METRICS_KEY: &str = "CILIA_METRICS_KEY";
/// Where the process should pin BPF objects: `/sys/fs/bpf/cilia/<lab>/<host>`, removed by `down`.
pub const ENV_BPF_DIR: &str = "CILIA_BPF_DIR";

/// One supervised process: started in `host`'s network namespace, restarted when it exits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Unique in the lab; also the name of its log file.
    pub name: String,
    /// A host of the topology, by the guide's name (`k8s-ctr`).
    pub host: String,
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; the lab's state dir when None.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Files removed before every start: unix sockets a killed process leaves behind, which some
    /// programs (etcd 3.4) refuse to replace.
    #[serde(default)]
    pub stale_files: Vec<PathBuf>,
}

impl ProcessSpec {
    pub fn new(name: &str, host: &str, argv: &[&str]) -> Self {
        ProcessSpec {
            name: name.to_string(),
            host: host.to_string(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::new(),
            cwd: None,
            stale_files: Vec::new(),
        }
    }

    /// A subcommand of the running `cilia` binary (`cilia operator`, `cilia agent ...`) in `host`.
    pub fn cilia(lab: &Lab, name: &str, host: &str, args: &[&str]) -> Result<Self, LabError> {
        let exe =
            std::env::current_exe().map_err(|e| LabError::io("find the running executable", "/proc/self/exe", e))?;
        let mut argv = vec![exe.to_string_lossy().into_owned()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut spec = ProcessSpec {
            name: name.to_string(),
            host: host.to_string(),
            argv,
            env: BTreeMap::new(),
            cwd: None,
            stale_files: Vec::new(),
        };
        // Processes on k8s-ctr use etcd's unix socket; the other nodes reach it over the network,
        // as on separate hosts, with TLS and their node's own client certificate.
        match crate::topology::nodes(lab.topology()).into_iter().find(|n| n.name == crate::topology::K8S_CTR) {
            Some(ctr) if host != crate::topology::K8S_CTR => {
                let pki = lab.paths().pki();
                let client = pki.client(host);
                spec.env.insert(ENV_DATASTORE.into(), format!("https://{}:2379", ctr.internal_ip));
                spec.env.insert(ENV_DATASTORE_CA.into(), pki.ca().to_string_lossy().into_owned());
                spec.env.insert(ENV_DATASTORE_CERT.into(), client.cert.to_string_lossy().into_owned());
                spec.env.insert(ENV_DATASTORE_KEY.into(), client.key.to_string_lossy().into_owned());
            }
            _ => {
                spec.env.insert(ENV_DATASTORE.into(), lab.paths().datastore_url());
            }
        }
        let pki = lab.paths().pki();
        let server = pki.server(host);
        spec.env.insert(ENV_METRICS_CA.into(), pki.ca().to_string_lossy().into_owned());
        spec.env.insert(ENV_METRICS_CERT.into(), server.cert.to_string_lossy().into_owned());
        spec.env.insert(ENV_METRICS_KEY.into(), server.key.to_string_lossy().into_owned());
        Ok(spec)
    }
}

/// The processes of a lab in start order. etcd comes first: everything else talks to it.
pub fn default_processes(lab: &Lab) -> Vec<ProcessSpec> {
    vec![
        etcd::spec(lab),
        // The lab's DNS server on the router (see router_dns): needs nothing else.
        crate::router_dns::spec(lab),
        // The cluster's own processes (operator, agents, DNS, pod runtimes) are subcommands of
        // the `cilia` binary, which appends them (`cilia lab up`).
    ]
}

/// Prepares `cmd` to run inside the network namespace `netns`.
///
/// With `parent` set (the supervisor's pid), the process also gets SIGKILL when the supervisor
/// dies, so a supervisor killed with SIGKILL leaves no orphans behind.
#[allow(unsafe_code)] // pre_exec is the only hook that runs in the child between fork and exec.
pub(crate) fn enter_on_spawn(cmd: &mut Command, netns: File, parent: Option<Pid>) {
    let netns: OwnedFd = netns.into();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // operations are allowed. It makes plain system calls (setns, sigprocmask, prctl, getppid) on
    // values prepared before the fork, allocates nothing and takes no locks; errors are built from
    // raw errno values, which does not allocate either.
    unsafe {
        cmd.pre_exec(move || {
            netconf::netns::enter(netns.as_fd()).map_err(io::Error::from)?;
            // The supervisor blocks the signals it reads through a signalfd; a blocked mask is
            // inherited across exec and would make children deaf to SIGTERM.
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(io::Error::from)?;
            if let Some(parent) = parent {
                prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                // The supervisor may have died before the line above took effect.
                if getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            Ok(())
        });
    }
}

/// Prepares `cmd` to start as a daemon: after setsid (no controlling terminal, not in the
/// caller's process group) and with `blocked` signals blocked from its first instruction. The
/// mask is inherited by every thread the program creates, so a multi-threaded program (the CLI
/// runs a tokio runtime) still receives these signals only through its signalfd.
#[allow(unsafe_code)] // pre_exec is the only hook that runs in the child between fork and exec.
pub(crate) fn daemon_on_spawn(cmd: &mut Command, blocked: SigSet) {
    // SAFETY: runs in the forked child before exec; setsid and sigprocmask are plain system calls
    // on a signal set copied into the closure before the fork. Nothing allocates or locks.
    unsafe {
        cmd.pre_exec(move || {
            setsid().map_err(io::Error::from)?;
            sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None).map_err(io::Error::from)?;
            Ok(())
        });
    }
}

/// `argv` for messages.
pub(crate) fn display_argv<S: AsRef<OsStr>>(argv: &[S]) -> String {
    argv.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_serialize_with_optional_fields_omitted_on_input() {
        let spec: ProcessSpec = serde_json::from_str(r#"{"name":"x","host":"router","argv":["sleep","1"]}"#).unwrap();
        assert_eq!(spec, ProcessSpec::new("x", "router", &["sleep", "1"]));
    }

    #[test]
    fn etcd_comes_first() {
        let lab = Lab::new("t1").unwrap();
        let specs = default_processes(&lab);
        assert_eq!(specs[0].name, "etcd");
        assert_eq!(specs[0].host, "k8s-ctr");
    }
}
