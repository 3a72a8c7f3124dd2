//! The lab's stand-in for containers. There are no images: a container whose image is a whoami
//! image (`traefik/whoami`) runs `cilia lab whoami` inside the pod's namespace; any other image
//! (`nicolaka/netshoot`) runs nothing, and the pod is a network namespace that `cilia exec`
//! enters, which is what the guide does with such pods.
//!
//! Processes run in their own process group, not in the runtime's: the supervisor stops a
//! runtime by signalling its group, and pods must outlive a runtime restart, as containers
//! outlive a kubelet restart.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use api::types::Container;
use lab::procfs::ProcessId;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

use crate::{error::Error, pod_netns};

/// What a container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `cilia lab whoami --name <pod> --port <port>`.
    Whoami { port: u16 },
    /// Nothing: the container is its network namespace.
    Idle,
}

impl Program {
    pub fn of(container: &Container) -> Program {
        if container.image.contains("whoami") {
            let port = container.ports.first().and_then(|p| u16::try_from(p.container_port).ok()).unwrap_or(80);
            Program::Whoami { port }
        } else {
            Program::Idle
        }
    }
}

/// Starts `program` for the pod `pod_name` inside `netns`, output appended to `log`.
pub fn start(program: &Program, netns: &str, pod_name: &str, log: &Path) -> Result<Option<ProcessId>, Error> {
    let Program::Whoami { port } = program else { return Ok(None) };
    let exe = std::env::current_exe().map_err(|e| Error::io("find the running executable", "/proc/self/exe", e))?;
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| Error::io("open", log, e))?;
    let err = out.try_clone().map_err(|e| Error::io("duplicate", log, e))?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(["lab", "whoami", "--name", pod_name, "--port", &port.to_string()])
        .env_remove("CILIA_DATASTORE")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false);
    let handle = tokio::runtime::Handle::current();
    let child = pod_netns::spawn_inside(netns, move || {
        // tokio registers the child with the runtime's reaper, which needs its context.
        let _runtime = handle.enter();
        cmd.spawn()
    })
    .map_err(|e| Error::Command {
        command: format!("{} lab whoami (in {netns})", exe.display()),
        reason: e.to_string(),
    })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).ok_or_else(|| Error::Command {
        command: format!("{} lab whoami", exe.display()),
        reason: "exited at once".into(),
    })?;
    // Dropping the handle neither kills nor leaks the process: the runtime reaps it when it
    // exits, and it is watched through /proc like an adopted one.
    drop(child);
    Ok(Some(ProcessId::of(pid).unwrap_or(ProcessId { pid, start_ticks: 0 })))
}

/// SIGTERM to the process group, SIGKILL after `grace`.
pub async fn stop(process: ProcessId, grace: Duration) {
    if !process.is_alive() {
        return;
    }
    let group = Pid::from_raw(process.pid);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while process.is_alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if process.is_alive() {
        let _ = killpg(group, Signal::SIGKILL);
        for _ in 0..200 {
            if !process.is_alive() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Whether the process's network namespace has a TCP socket listening on `port`: the server
/// accepts connections from then on. Read from /proc, so no probe traffic is needed.
pub fn listening(process: ProcessId, port: u16) -> bool {
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{}/net/{f}", process.pid)).is_ok_and(|t| has_listener(&t, port))
    })
}

/// Parses `/proc/net/tcp`: `sl local_address rem_address st ...`, addresses as `HEXIP:HEXPORT`,
/// state `0A` = LISTEN.
fn has_listener(table: &str, port: u16) -> bool {
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1);
        let state = fields.nth(1);
        state == Some("0A")
            && local.and_then(|l| l.rsplit_once(':')).and_then(|(_, p)| u16::from_str_radix(p, 16).ok()) == Some(port)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_map_to_programs() {
        let c = |image: &str, port: Option<i64>| Container {
            name: "c".into(),
            image: image.into(),
            ports: port
                .map(|p| api::types::ContainerPort { container_port: p, ..Default::default() })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        assert_eq!(Program::of(&c("traefik/whoami", Some(80))), Program::Whoami { port: 80 });
        assert_eq!(Program::of(&c("traefik/whoami:v1.10", Some(8080))), Program::Whoami { port: 8080 });
        assert_eq!(Program::of(&c("containous/whoami", None)), Program::Whoami { port: 80 });
        assert_eq!(Program::of(&c("nicolaka/netshoot", None)), Program::Idle);
    }

    #[test]
    fn listeners_from_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n";
        assert!(has_listener(table, 80));
        assert!(!has_listener(table, 8080), "established, not listening");
        assert!(!has_listener(table, 443));
        assert!(!has_listener("", 80));
    }
}
