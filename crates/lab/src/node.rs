//! Killing and booting a node: the guide's `sudo reboot` of a node, and a power loss.
//!
//! A kill is a hard stop, as fast as it can be made, in this order:
//!
//! 1. every link of the node's namespace except lo goes down: this is the moment of the failure
//!    ([`KillReport::failed_at`]). The node's peers see its carrier go, as a switch sees a dead
//!    machine; the kernel drops the node's routes through those links, as a reboot loses them;
//! 2. the node is marked *held* by a file in the lab's state dir (`held/<node>.json`, which also
//!    records the links that were up), so the supervisor does not restart its processes, also
//!    after the supervisor itself restarts; then every supervised process of the node gets SIGKILL
//!    to its process group, and the supervisor a SIGHUP to read the hold at once;
//! 3. the node's pods die: every process of the node (by its `CILIA_LAB`/`CILIA_LAB_HOST`
//!    environment, which the pod runtime hands down to the pods' processes), every process inside
//!    the node's namespace or one of its pods' namespaces gets SIGKILL, and the pods' namespaces are
//!    deleted. A power loss takes every network namespace of the machine with it; the pod runtime's
//!    records stay (they stand for the kubelet's state on disk), and on boot the runtime finds
//!    each pod's namespace gone and sets the pod up again (CNI DEL of the old wiring, then ADD), as
//!    a kubelet creates new sandboxes after a reboot;
//! 4. the node's bpffs directory `/sys/fs/bpf/cilia/<lab>/<node>/` is removed, as a reboot loses
//!    every BPF object; with the pins go the pinned links, which detaches the node's programs.
//!
//! A boot brings up exactly the links that were up, restores the topology's addresses and routes
//! of the node, waits until its links forward, removes the hold and wakes the supervisor, which
//! starts the node's processes at once (no backoff), and returns once they all run.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::Lab;
use crate::error::LabError;
use crate::iproute;
use crate::links;
use crate::lock::FileLock;
use crate::netns;
use crate::network;
use crate::plan::plan;
use crate::process::{ENV_HOST, ENV_LAB};
use crate::procfs::{self, ProcessId};
use crate::state::{LabState, write_json_atomically};
use crate::supervisor;
use crate::topology::{Host, HostRole};

/// How long a kill keeps SIGKILLing what is left of a node before it gives up.
const KILL_DEADLINE: Duration = Duration::from_secs(5);
/// How long a kill waits for the supervisor to confirm the hold.
const CONFIRM_DEADLINE: Duration = Duration::from_secs(5);
/// How long a boot waits for the node's links to forward.
const CARRIER_PATIENCE: Duration = Duration::from_secs(5);

/// What a kill leaves in `held/<node>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub node: String,
    /// When the node's links went down.
    pub killed_at: DateTime<Utc>,
    /// The links that were up before, brought up again on boot.
    pub links_up: Vec<String>,
}

impl Hold {
    pub fn read(lab: &Lab, node: &str) -> Result<Option<Hold>, LabError> {
        let path = lab.paths().hold_file(node);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|source| LabError::Json { path, source }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LabError::io("read", path, e)),
        }
    }
}

/// The nodes held right now, by name, from the lab's hold files.
pub fn held_nodes(held_dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = fs::read_dir(held_dir) else { return BTreeSet::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect()
}

/// Every hold of the lab, sorted by node.
pub fn holds(lab: &Lab) -> Vec<Hold> {
    held_nodes(&lab.paths().held_dir()).iter().filter_map(|n| Hold::read(lab, n).ok().flatten()).collect()
}

/// What [`Lab::kill_node`] did.
#[derive(Clone, Debug)]
pub struct KillReport {
    pub node: String,
    /// False when the node was killed already: nothing was done and `failed_at` is the earlier
    /// kill's.
    pub killed: bool,
    /// The moment of the failure: every link of the node was down by then (wall clock, for other
    /// processes and logs).
    pub failed_at: DateTime<Utc>,
    /// The same moment on this process's monotonic clock, for in-process measurements.
    pub failed_instant: Instant,
    /// How long setting the links down took, entering the namespace included.
    pub links_down_took: Duration,
    /// The links that went down.
    pub links_down: Vec<String>,
    /// Supervised processes killed (by name).
    pub processes_killed: Vec<String>,
    /// Other processes killed: pods' processes and whatever else ran in the node.
    pub other_processes_killed: usize,
    /// Pod namespaces deleted.
    pub pod_namespaces_removed: Vec<String>,
    /// The bpffs directory removed, if it existed.
    pub bpf_dir_removed: Option<PathBuf>,
    /// The supervisor confirmed the hold (it will not start the node's processes). False when no
    /// supervisor runs.
    pub supervisor_confirmed: bool,
    /// From the start of the call to its end.
    pub elapsed: Duration,
}

/// What [`Lab::boot_node`] did.
#[derive(Clone, Debug)]
pub struct BootReport {
    pub node: String,
    /// False when the node was not killed: nothing was done.
    pub booted: bool,
    /// When the hold was removed (the node's links were up and forwarding by then).
    pub booted_at: DateTime<Utc>,
    pub links_up: Vec<String>,
    /// The node's supervised processes, now running: (name, pid).
    pub processes: Vec<(String, i32)>,
    /// From the removal of the hold until every process of the node ran.
    pub processes_took: Duration,
    pub elapsed: Duration,
}

/// A node of the topology, or an error naming the nodes.
pub(crate) fn node_host<'a>(lab: &'a Lab, node: &str) -> Result<&'a Host, LabError> {
    let nodes = || {
        lab.topology()
            .hosts()
            .iter()
            .filter(|h| h.role == HostRole::Node)
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match lab.topology().host(node) {
        Some(h) if h.role == HostRole::Node => Ok(h),
        Some(h) => Err(LabError::NotANode { lab: lab.name().to_string(), host: h.name.clone(), nodes: nodes() }),
        None => Err(LabError::UnknownNode { lab: lab.name().to_string(), node: node.to_string(), nodes: nodes() }),
    }
}

fn namespace_present(lab: &Lab, host: &Host) -> Result<(), LabError> {
    if netns::state(&host.namespace) != netns::State::Present {
        return Err(LabError::HostDown {
            lab: lab.name().to_string(),
            host: host.name.clone(),
            namespace: host.namespace.clone(),
        });
    }
    Ok(())
}

pub(crate) fn kill_node(lab: &Lab, node: &str) -> Result<KillReport, LabError> {
    let started = Instant::now();
    let host = node_host(lab, node)?;
    namespace_present(lab, host)?;
    let paths = lab.paths();
    let _lock = FileLock::acquire(paths.lock_file())?;
    if let Some(hold) = Hold::read(lab, node)? {
        return Ok(KillReport {
            node: node.to_string(),
            killed: false,
            failed_at: hold.killed_at,
            failed_instant: Instant::now(),
            links_down_took: Duration::ZERO,
            links_down: Vec::new(),
            processes_killed: Vec::new(),
            other_processes_killed: 0,
            pod_namespaces_removed: Vec::new(),
            bpf_dir_removed: None,
            supervisor_confirmed: false,
            elapsed: started.elapsed(),
        });
    }

    // 1. The failure.
    let before = Instant::now();
    let links_down = links::all_down(&host.namespace)?;
    let failed_instant = Instant::now();
    let failed_at = Utc::now();

    // 2. Hold, then the supervised processes.
    let held_dir = paths.held_dir();
    fs::create_dir_all(&held_dir).map_err(|e| LabError::io("create directory", &held_dir, e))?;
    let hold = Hold { node: node.to_string(), killed_at: failed_at, links_up: links_down.clone() };
    write_json_atomically(&paths.hold_file(node), &hold)?;
    let mut processes_killed = Vec::new();
    let state = LabState::read(&paths.state_file()).ok().flatten();
    for p in state.iter().flat_map(|s| &s.processes).filter(|p| p.host == node && p.running) {
        if let Some(id) = p.pid.filter(ProcessId::is_alive) {
            let _ = killpg(Pid::from_raw(id.pid), Signal::SIGKILL)
                .or_else(|_| kill(Pid::from_raw(id.pid), Signal::SIGKILL));
            processes_killed.push(p.name.clone());
        }
    }
    processes_killed.sort();
    let supervisor = supervisor::running(lab);
    if let Some(s) = supervisor {
        let _ = kill(Pid::from_raw(s.pid), Signal::SIGHUP);
    }

    // 3. Everything else of the node, then its pods' namespaces.
    let pod_namespaces = pod_namespaces_of(lab, node);
    let mut inodes: Vec<u64> = pod_namespaces.iter().filter_map(|ns| netns::inode(ns)).collect();
    inodes.extend(netns::inode(&host.namespace));
    let other_processes_killed = kill_everything_of(lab, node, &inodes)?;
    let mut pod_namespaces_removed = Vec::new();
    for ns in &pod_namespaces {
        if network::remove_namespaces([ns.as_str()])? > 0 {
            pod_namespaces_removed.push(ns.clone());
        }
    }

    // 4. BPF state.
    let bpf_dir = paths.bpf_dir().join(node);
    let bpf_dir_removed = match fs::remove_dir_all(&bpf_dir) {
        Ok(()) => Some(bpf_dir),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(LabError::io("remove the node's BPF state", bpf_dir, e)),
    };

    let supervisor_confirmed = supervisor.is_some() && confirm_hold(lab, node);
    Ok(KillReport {
        node: node.to_string(),
        killed: true,
        failed_at,
        failed_instant,
        links_down_took: failed_instant - before,
        links_down,
        processes_killed,
        other_processes_killed,
        pod_namespaces_removed,
        bpf_dir_removed,
        supervisor_confirmed,
        elapsed: started.elapsed(),
    })
}

/// The pod namespaces the node's pod runtime records (`nodes/<node>/pods/*.json`, field
/// `netns`), limited to the lab's own pod namespaces.
fn pod_namespaces_of(lab: &Lab, node: &str) -> Vec<String> {
    let prefix = format!("{}pod-", lab.name_prefix());
    let Ok(entries) = fs::read_dir(lab.paths().node_dir(node).join("pods")) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .filter_map(|v| v.get("netns")?.as_str().map(str::to_string))
        .filter(|ns| ns.starts_with(&prefix))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// SIGKILLs, until none is left, every process that belongs to `node`: inside one of `inodes`
/// or carrying the node's lab environment. Returns how many were killed.
fn kill_everything_of(lab: &Lab, node: &str, inodes: &[u64]) -> Result<usize, LabError> {
    let mut killed = BTreeSet::new();
    let deadline = Instant::now() + KILL_DEADLINE;
    loop {
        let mut pids: BTreeSet<i32> = procfs::in_namespaces(inodes).into_iter().collect();
        pids.extend(procfs::with_env_all(&[(ENV_LAB, lab.name()), (ENV_HOST, node)]));
        if pids.is_empty() {
            return Ok(killed.len());
        }
        if Instant::now() >= deadline {
            return Err(LabError::Survivors { lab: lab.name().to_string(), pids: pids.into_iter().collect() });
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            killed.insert(pid);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the supervisor's state says the node is held and none of its processes runs;
/// kills any that the supervisor started in the moment before it read the hold.
fn confirm_hold(lab: &Lab, node: &str) -> bool {
    let deadline = Instant::now() + CONFIRM_DEADLINE;
    loop {
        if let Ok(Some(state)) = LabState::read(&lab.paths().state_file()) {
            let running: Vec<ProcessId> = state
                .processes
                .iter()
                .filter(|p| p.host == node && p.running)
                .filter_map(|p| p.pid.filter(ProcessId::is_alive))
                .collect();
            if state.held.iter().any(|h| h == node) && running.is_empty() {
                return true;
            }
            for id in running {
                let _ = killpg(Pid::from_raw(id.pid), Signal::SIGKILL);
            }
        }
        if Instant::now() >= deadline || supervisor::running(lab).is_none() {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn boot_node(lab: &Lab, node: &str, timeout: Duration) -> Result<BootReport, LabError> {
    let started = Instant::now();
    let host = node_host(lab, node)?;
    let paths = lab.paths();
    let lock = FileLock::acquire(paths.lock_file())?;
    let Some(hold) = Hold::read(lab, node)? else {
        return Ok(BootReport {
            node: node.to_string(),
            booted: false,
            booted_at: Utc::now(),
            links_up: Vec::new(),
            processes: Vec::new(),
            processes_took: Duration::ZERO,
            elapsed: started.elapsed(),
        });
    };
    namespace_present(lab, host)?;
    let links_up = bring_up(lab, host, &hold)?;
    network::wait_host_links_forward(lab.topology(), node, CARRIER_PATIENCE)?;
    release(lab, node)?;
    let booted_instant = Instant::now();
    let booted_at = Utc::now();
    drop(lock);

    let processes = wait_until_running(lab, node, timeout)?;
    Ok(BootReport {
        node: node.to_string(),
        booted: true,
        booted_at,
        links_up,
        processes,
        processes_took: booted_instant.elapsed(),
        elapsed: started.elapsed(),
    })
}

/// The held links up again, then the topology's addresses and routes of the node (the kernel
/// dropped its routes with the links).
fn bring_up(lab: &Lab, host: &Host, hold: &Hold) -> Result<Vec<String>, LabError> {
    let brought = links::up(&host.namespace, &hold.links_up)?;
    let todo = plan(lab.topology(), &network::observe(lab.topology())?);
    if let Some(lines) = todo.configure.get(&host.namespace) {
        iproute::batch(&host.namespace, lines)?;
    }
    Ok(brought)
}

/// Removes the hold and wakes the supervisor.
fn release(lab: &Lab, node: &str) -> Result<(), LabError> {
    let path = lab.paths().hold_file(node);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(LabError::io("remove", path, e)),
        _ => {}
    }
    if let Some(s) = supervisor::running(lab) {
        let _ = kill(Pid::from_raw(s.pid), Signal::SIGHUP);
    }
    Ok(())
}

/// For `up`: brings every held node's links up and removes its hold. `up` itself restores the
/// topology's links, addresses and routes. Returns the released nodes.
pub(crate) fn release_all(lab: &Lab) -> Result<Vec<String>, LabError> {
    let mut released = Vec::new();
    for hold in holds(lab) {
        if let Ok(host) = node_host(lab, &hold.node)
            && netns::state(&host.namespace) == netns::State::Present
        {
            links::up(&host.namespace, &hold.links_up)?;
        }
        release(lab, &hold.node)?;
        released.push(hold.node);
    }
    Ok(released)
}

/// Waits until every supervised process of `node` runs (a new incarnation, since the kill ended
/// the old ones). Returns them as (name, pid).
fn wait_until_running(lab: &Lab, node: &str, timeout: Duration) -> Result<Vec<(String, i32)>, LabError> {
    if supervisor::running(lab).is_none() {
        return Err(LabError::NotRunning {
            lab: lab.name().to_string(),
            what: format!("no supervisor runs, so nothing starts the processes of {node}; run `cilia lab up`"),
        });
    }
    let deadline = Instant::now() + timeout;
    loop {
        let state = LabState::read(&lab.paths().state_file())?;
        let mine: Vec<_> = state.iter().flat_map(|s| &s.processes).filter(|p| p.host == node).collect();
        let running: Vec<(String, i32)> = mine
            .iter()
            .filter(|p| p.running)
            .filter_map(|p| p.pid.filter(ProcessId::is_alive).map(|id| (p.name.clone(), id.pid)))
            .collect();
        if running.len() == mine.len() {
            return Ok(running);
        }
        if Instant::now() >= deadline {
            let waiting: Vec<&str> =
                mine.iter().map(|p| p.name.as_str()).filter(|n| !running.iter().any(|(r, _)| r == n)).collect();
            return Err(LabError::NotRunning {
                lab: lab.name().to_string(),
                what: format!("{} of {node} not running {timeout:?} after its boot", waiting.join(", ")),
            });
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nodes_can_be_killed() {
        let lab = Lab::new("tnodes").unwrap();
        assert!(node_host(&lab, "k8s-w1").is_ok());
        let e = node_host(&lab, "router").unwrap_err().to_string();
        assert!(e.contains("router is not a node") && e.contains("k8s-ctr, k8s-w1, k8s-w0"), "{e}");
        let e = node_host(&lab, "k8s-w9").unwrap_err().to_string();
        assert!(e.contains("no node \"k8s-w9\"") && e.contains("nodes are: k8s-ctr, k8s-w1, k8s-w0"), "{e}");
    }

    #[test]
    fn holds_are_listed_by_file_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(held_nodes(&dir.path().join("missing")).is_empty());
        fs::write(dir.path().join("k8s-w1.json"), "{}").unwrap();
        fs::write(dir.path().join("k8s-w0.json.tmp"), "{}").unwrap();
        assert_eq!(held_nodes(dir.path()), BTreeSet::from(["k8s-w1".to_string()]));
    }
}
