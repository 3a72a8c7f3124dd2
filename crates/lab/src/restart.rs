//! Restarting one supervised process, as `kubectl rollout restart` replaces a pod: SIGTERM to its
//! process group (it exits cleanly), and the supervisor starts it again at once: the request is
//! marked with a file, so the exit does not count as a crash and adds no backoff.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::Lab;
use crate::error::LabError;
use crate::procfs::ProcessId;
use crate::state::LabState;

fn current(lab: &Lab, name: &str) -> Result<Option<ProcessId>, LabError> {
    let state = LabState::read(&lab.paths().state_file())?.ok_or_else(|| LabError::NotRunning {
        lab: lab.name().to_string(),
        what: format!("no state file, so no process {name}"),
    })?;
    let Some(p) = state.processes.iter().find(|p| p.name == name) else {
        let names: Vec<&str> = state.processes.iter().map(|p| p.name.as_str()).collect();
        return Err(LabError::NotRunning {
            lab: lab.name().to_string(),
            what: format!("no process {name:?}; processes: {}", names.join(", ")),
        });
    };
    Ok(if p.running { p.pid.filter(ProcessId::is_alive) } else { None })
}

/// Stops `name` and waits until the supervisor runs a new incarnation; returns it.
pub fn restart_process(lab: &Lab, name: &str, timeout: Duration) -> Result<ProcessId, LabError> {
    let old = current(lab, name)?;
    if let Some(old) = old {
        let request = lab.paths().restart_request(name);
        fs::write(&request, b"").map_err(|e| LabError::io("write restart request", &request, e))?;
        // Processes are started as process-group leaders: their children go too.
        match killpg(Pid::from_raw(old.pid), Signal::SIGTERM) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => {
                let _ = fs::remove_file(&request);
                return Err(LabError::sys("signal the process group", e));
            }
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(now) = current(lab, name)?
            && Some(now) != old
        {
            return Ok(now);
        }
        if Instant::now() >= deadline {
            return Err(LabError::NotRunning {
                lab: lab.name().to_string(),
                what: format!("{name} did not run again within {timeout:?} of its restart"),
            });
        }
        thread::sleep(Duration::from_millis(50));
    }
}
