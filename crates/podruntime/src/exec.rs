//! `cilia exec POD -- CMD...`: a command inside a pod, as `kubectl exec` runs one in a container.
//! Lab pods are network namespaces, so the command runs in the pod's namespace with the caller's
//! stdio, and its exit code is passed back. When the pod's runtime wrote a `resolv.conf` for it,
//! the command also gets its own mount namespace with that file over `/etc/resolv.conf`, so names
//! resolve through the cluster DNS as in a container (see [`crate::kubelet::dns`]). With a
//! terminal ([`Streams::Tty`], `kubectl exec -t`) the command gets a pseudo-terminal of its own as
//! its controlling terminal, sized like the caller's, with the caller's terminal in raw mode.

use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use api::types::Pod;

use crate::{
    error::{Error, Result},
    pod_netns,
};

/// The network namespace of `pod`, or why a command cannot run in it yet.
pub fn pod_namespace(lab: &lab::Lab, pod: &Pod) -> Result<String> {
    let name = &pod.metadata.name;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let Some(node) = pod.spec.node_name.as_deref() else {
        let why = pod
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .and_then(|c| c.message.clone())
            .unwrap_or_else(|| "it is not scheduled yet".into());
        return Err(Error::Invalid(format!("pod {name} is not running yet: no node runs it ({why})")));
    };
    if !lab::nodes(lab.topology()).iter().any(|n| n.name == node) {
        return Err(Error::Invalid(format!(
            "pod {name} runs on node {node}, which is not a node of lab {}: cilia exec reaches only the lab's pods",
            lab.name()
        )));
    }
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let netns = pod_netns::name(lab, namespace, name, uid);
    if !pod_netns::exists(&netns) {
        let phase = pod.status.reason.clone().or(pod.status.phase.clone()).unwrap_or_else(|| "Pending".into());
        let detail = pod.status.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        return Err(Error::Invalid(format!("pod {name} is not running yet ({phase} on {node}{detail})")));
    }
    Ok(netns)
}

/// The pod's `resolv.conf` as its runtime wrote it, if any.
pub fn pod_resolv_conf(lab: &lab::Lab, pod: &Pod) -> Option<PathBuf> {
    let node = pod.spec.node_name.as_deref()?;
    crate::kubelet::dns::existing(lab, node, pod.metadata.uid.as_deref()?)
}

/// How the command's standard streams are connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streams {
    /// The caller's stdin, stdout and stderr, as they are.
    Inherit,
    /// A new pseudo-terminal; the caller's stdin is copied to it when `stdin` (`-i`), and its
    /// output to the caller's stdout.
    Tty { stdin: bool },
}

/// Runs `argv` inside `netns` with `streams` (and `resolv_conf` as its /etc/resolv.conf); returns
/// its exit code (128 + signal number when a signal ended it), like a shell reports it.
pub fn run(netns: &str, resolv_conf: Option<&Path>, argv: &[String], streams: Streams) -> Result<i32> {
    let (program, args) = argv.split_first().ok_or_else(|| Error::Invalid("no command given".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    let command = argv.join(" ");
    if let Some(file) = resolv_conf {
        netconf::resolv_conf::bind_on_spawn(&mut cmd, file, netconf::resolv_conf::IfBindFails::Fail)
            .map_err(|e| Error::Command { command: command.clone(), reason: format!("resolv.conf: {e}") })?;
    }
    let fail = |e: std::io::Error| Error::Command { command: command.clone(), reason: e.to_string() };
    let terminal = match streams {
        Streams::Inherit => {
            cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
            None
        }
        Streams::Tty { stdin } => Some((pty::attach(&mut cmd).map_err(fail)?, stdin)),
    };
    let mut child = pod_netns::spawn_inside(netns, move || cmd.spawn()).map_err(|e| Error::Command {
        command: command.clone(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            format!("executable file not found: {program}")
        } else {
            e.to_string()
        },
    })?;
    let status = match terminal {
        None => child.wait().map_err(fail)?,
        Some((pty, stdin)) => pty.serve(&mut child, stdin).map_err(fail)?,
    };
    Ok(status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1))
}

mod pty {
    use std::{
        fs::File,
        io::{self, Read, Write},
        os::{
            fd::{AsFd, OwnedFd},
            unix::process::CommandExt,
        },
        process::{Child, Command, ExitStatus, Stdio},
    };

    use nix::{
        pty::{Winsize, openpty},
        sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr},
    };

    /// The parent's side of a command's pseudo-terminal.
    pub struct Pty {
        master: OwnedFd,
    }

    #[allow(unsafe_code)] // TIOCGWINSZ has no safe wrapper.
    fn winsize() -> Option<Winsize> {
        let mut ws = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer given.
        let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
        (rc == 0 && ws.ws_row > 0).then_some(ws)
    }

    /// A new pty whose slave side becomes `cmd`'s stdio and controlling terminal.
    #[allow(unsafe_code)] // pre_exec is the only hook that runs in the child between fork and exec.
    pub fn attach(cmd: &mut Command) -> io::Result<Pty> {
        let pair = openpty(winsize().as_ref(), None).map_err(io::Error::from)?;
        let slave = File::from(pair.slave);
        cmd.stdin(Stdio::from(slave.try_clone()?)).stdout(Stdio::from(slave.try_clone()?)).stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(Pty { master: pair.master })
    }

    /// Restores the caller's terminal settings when dropped.
    struct RawMode(Option<Termios>);

    impl RawMode {
        fn enter() -> RawMode {
            let stdin = io::stdin();
            let Ok(saved) = tcgetattr(stdin.as_fd()) else { return RawMode(None) };
            let mut raw = saved.clone();
            cfmakeraw(&mut raw);
            if tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
                return RawMode(None);
            }
            RawMode(Some(saved))
        }
    }

    impl Drop for RawMode {
        fn drop(&mut self) {
            if let Some(saved) = &self.0 {
                let _ = tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, saved);
            }
        }
    }

    impl Pty {
        /// Copies the pty's output to stdout (and stdin to the pty when `stdin`) until `child`
        /// exits and its terminal is drained; returns its status.
        pub fn serve(self, child: &mut Child, stdin: bool) -> io::Result<ExitStatus> {
            let _raw = stdin.then(RawMode::enter);
            let mut reader = File::from(self.master);
            let mut writer = reader.try_clone()?;
            if stdin {
                // Ends with the process; a read from the terminal cannot be interrupted portably.
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut input = io::stdin().lock();
                    while let Ok(n) = input.read(&mut buf) {
                        if n == 0 || writer.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
            let output = std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut out = io::stdout();
                // EIO once every slave descriptor is closed: the command and its children exited.
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                        break;
                    }
                }
            });
            let status = child.wait()?;
            let _ = output.join();
            Ok(status)
        }
    }
}
