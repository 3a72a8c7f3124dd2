//! `lab down`: removes everything a lab made, in an order that leaves nothing running: the
//! supervisor and its processes, then any other process still inside a lab namespace, then the
//! namespaces (their links go with them), then pins, state and data. Succeeds on a partial lab and
//! when nothing exists.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Lab;
use crate::error::LabError;
use crate::lock::FileLock;
use crate::netns;
use crate::network;
use crate::procfs;
use crate::progress::Progress;
use crate::supervisor;

/// The supervisor's own grace for its children is 5 s; give it a little more before SIGKILL.
const SUPERVISOR_GRACE: Duration = Duration::from_secs(8);
const KILL_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default)]
pub struct DownReport {
    pub supervisors_stopped: usize,
    /// Processes killed because they were still inside a lab namespace.
    pub stragglers_killed: usize,
    pub namespaces_removed: usize,
    pub elapsed: Duration,
}

pub(crate) fn down(lab: &Lab, show_progress: bool) -> Result<DownReport, LabError> {
    let progress = Progress::new(lab.name(), "down", show_progress);
    let paths = lab.paths();
    let lock = FileLock::acquire(paths.lock_file())?;
    let mut report = DownReport::default();

    let step = progress.step("supervisor");
    report.supervisors_stopped = supervisor::stop(lab, SUPERVISOR_GRACE);
    step.done(format!("{} stopped", report.supervisors_stopped));

    // Every namespace with the lab's prefix: the topology's and any made later (pods).
    let mut namespaces = netns::list_with_prefix(&lab.name_prefix());
    for h in lab.topology().hosts() {
        if !namespaces.contains(&h.namespace) {
            namespaces.push(h.namespace.clone());
        }
    }

    let step = progress.step("processes");
    report.stragglers_killed = kill_in_namespaces(lab, &namespaces)?;
    step.done(format!("{} killed", report.stragglers_killed));

    let step = progress.step("namespaces");
    report.namespaces_removed = network::remove_namespaces(namespaces.iter().map(String::as_str))?;
    crate::router_dns::remove_resolv_confs(lab);
    step.done(format!("{} removed", report.namespaces_removed));

    let step = progress.step("files");
    for dir in [paths.bpf_dir(), paths.state_dir(), paths.data_dir()] {
        remove_dir(dir)?;
        // The shared parents (`/sys/fs/bpf/cilia`, ...) go with the last lab; with other labs
        // still up they are not empty and stay.
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    step.done(format!(
        "removed {}, {}, {}",
        paths.bpf_dir().display(),
        paths.state_dir().display(),
        paths.data_dir().display()
    ));

    lock.remove();
    // The lock sat beside the state dir; its parent goes with the last lab too.
    if let Some(parent) = paths.lock_file().parent() {
        let _ = std::fs::remove_dir(parent);
    }
    report.elapsed = progress.elapsed();
    progress.finish(format!("lab {} is down", lab.name()));
    Ok(report)
}

/// SIGKILLs every process inside the namespaces until none is left (bounded).
fn kill_in_namespaces(lab: &Lab, namespaces: &[String]) -> Result<usize, LabError> {
    let inodes: Vec<u64> = namespaces.iter().filter_map(|ns| netns::inode(ns)).collect();
    let mut killed = std::collections::BTreeSet::new();
    let deadline = Instant::now() + KILL_DEADLINE;
    loop {
        let pids = procfs::in_namespaces(&inodes);
        if pids.is_empty() {
            return Ok(killed.len());
        }
        if Instant::now() >= deadline {
            return Err(LabError::Survivors { lab: lab.name().to_string(), pids });
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            killed.insert(pid);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn remove_dir(dir: &Path) -> Result<(), LabError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(LabError::io("remove directory", dir, e)),
        _ => Ok(()),
    }
}
