//! The lab's supervisor: a daemon (one per lab) that starts every process spec in its host's
//! network namespace, restarts it with backoff when it exits, and stops them all on SIGTERM.
//!
//! It is the `cilia` binary itself (`cilia lab supervise --lab NAME`). Run in the foreground, it
//! starts a copy of itself marked with `CILIA_LAB_SUPERVISOR=<lab>` and returns. The copy has called
//! setsid (no terminal, no parent waiting for it) and has its signals blocked before it runs. The
//! marker also lets `down` find a supervisor whose state file is gone.
//!
//! It waits on a signalfd (SIGTERM, SIGINT, SIGHUP, SIGCHLD) with a timeout for the next restart:
//! one loop, no code in signal handlers. Every turn of the loop reads the lab's hold files
//! (`held/<node>.json`, left by `lab kill`): it starts no process of a held node, kills any that
//! still runs, and starts them all at once when the hold goes. SIGHUP only wakes it for that. Because the signals are blocked from exec on, this holds
//! even when the program that calls [`run_supervisor`] runs other threads (a tokio runtime).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{Pid, setsid};

use crate::Lab;
use crate::error::{Chain, LabError};
use crate::lock::FileLock;
use crate::logs;
use crate::netns;
use crate::node::held_nodes;
use crate::process::{self, ENV_BPF_DIR, ENV_HOST, ENV_LAB, ProcessSpec};
use crate::procfs::{self, ProcessId};
use crate::state::{LabState, ProcessState};

/// Marks the detached supervisor of a lab (value: the lab name).
pub const ENV_SUPERVISOR: &str = "CILIA_LAB_SUPERVISOR";

/// First restart delay, doubled after every quick exit up to the maximum.
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A process that ran this long counts as healthy: its next restart is quick again.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// How long children get between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Entry point of `cilia lab supervise --lab NAME`. In the foreground it detaches a copy of the
/// current command and returns at once; in the detached copy it supervises until SIGTERM.
pub fn run_supervisor(lab: &str) -> Result<(), LabError> {
    let lab = Lab::new(lab)?;
    if std::env::var_os(ENV_SUPERVISOR).as_deref() == Some(lab.name().as_ref()) {
        Supervisor::start(lab)?.run()
    } else {
        detach(&lab)
    }
}

/// Starts the current executable again, with the same arguments, as the daemon.
fn detach(lab: &Lab) -> Result<(), LabError> {
    let log_path = lab.paths().supervisor_log();
    let log = logs::open_append(&log_path)?;
    let log2 = log.try_clone().map_err(|e| LabError::io("duplicate", &log_path, e))?;
    let exe = std::env::current_exe().map_err(|e| LabError::io("find the running executable", "/proc/self/exe", e))?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut cmd = Command::new(&exe);
    cmd.args(&args).env(ENV_SUPERVISOR, lab.name()).current_dir("/").stdin(Stdio::null()).stdout(log).stderr(log2);
    process::daemon_on_spawn(&mut cmd, handled_signals());
    cmd.spawn().map_err(|source| LabError::Spawn {
        command: format!("{} {}", exe.display(), process::display_argv(&args)),
        source,
    })?;
    Ok(())
}

struct Supervised {
    spec: ProcessSpec,
    namespace: String,
    log: PathBuf,
    child: Option<Child>,
    id: Option<ProcessId>,
    started_at: Option<DateTime<Utc>>,
    started: Option<Instant>,
    /// When to start it next; None while it runs.
    next_start: Option<Instant>,
    backoff: Duration,
    starts: u32,
    last_exit: Option<String>,
}

struct Supervisor {
    lab: Lab,
    me: ProcessId,
    started_at: DateTime<Utc>,
    signals: SignalFd,
    children: Vec<Supervised>,
    /// Nodes held by `lab kill`: none of their processes runs.
    held: BTreeSet<String>,
    stopping: bool,
    _lock: FileLock,
}

impl Supervisor {
    fn start(lab: Lab) -> Result<Self, LabError> {
        // setsid fails if `detach` already called it, which is just as detached.
        let _ = setsid();
        let paths = lab.paths().clone();
        let lock_path = paths.supervisor_lock();
        let lock = FileLock::try_acquire(&lock_path)?
            .ok_or_else(|| LabError::SupervisorRunning { lab: lab.name().to_string(), lock: lock_path.clone() })?;

        // Already blocked since exec when started by `detach`; blocking again covers a supervisor
        // started some other way (single-threaded then, or it would miss signals).
        let mask = handled_signals();
        mask.thread_block().map_err(|e| LabError::sys("block signals", e))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| LabError::sys("signalfd", e))?;

        let specs_path = paths.specs_file();
        let specs: Vec<ProcessSpec> = match fs::read_to_string(&specs_path) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|source| LabError::Json { path: specs_path.clone(), source })?
            }
            Err(e) => return Err(LabError::io("read process specs", &specs_path, e)),
        };
        let now = Instant::now();
        let children = specs
            .into_iter()
            .map(|spec| {
                let namespace = lab.namespace_of(&spec.host)?.to_string();
                Ok(Supervised {
                    log: paths.log_file(&spec.name),
                    namespace,
                    spec,
                    child: None,
                    id: None,
                    started_at: None,
                    started: None,
                    next_start: Some(now),
                    backoff: BACKOFF_INITIAL,
                    starts: 0,
                    last_exit: None,
                })
            })
            .collect::<Result<Vec<_>, LabError>>()?;

        let me = ProcessId::of(std::process::id() as i32).ok_or_else(|| {
            LabError::io("read", "/proc/self/stat", std::io::Error::from(std::io::ErrorKind::NotFound))
        })?;
        let mut supervisor = Supervisor {
            lab,
            me,
            started_at: Utc::now(),
            signals,
            children,
            held: BTreeSet::new(),
            stopping: false,
            _lock: lock,
        };
        supervisor.refresh_holds();
        Ok(supervisor)
    }

    fn run(mut self) -> Result<(), LabError> {
        say(format_args!(
            "supervisor of lab {} started (pid {}), {} processes",
            self.lab.name(),
            self.me.pid,
            self.children.len()
        ));
        self.write_state()?;
        crate::etcd::spawn_defragmenter(self.lab.paths().etcd_socket());
        loop {
            let mut changed = self.refresh_holds();
            changed |= self.reap(true);
            if self.stopping {
                break;
            }
            changed |= self.start_due();
            if changed {
                self.write_state()?;
            }
            let wait = self
                .children
                .iter()
                .filter_map(|c| c.next_start)
                .min()
                .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(Instant::now()))
                .min(Duration::from_secs(1));
            self.wait_for_signal(wait)?;
        }
        self.shutdown()
    }

    /// Waits up to `timeout` for a signal and handles what arrived.
    fn wait_for_signal(&mut self, timeout: Duration) -> Result<(), LabError> {
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(LabError::sys("poll signalfd", e)),
        }
        while let Ok(Some(info)) = self.signals.read_signal() {
            let signo = info.ssi_signo as i32;
            if signo == Signal::SIGTERM as i32 || signo == Signal::SIGINT as i32 {
                if !self.stopping {
                    say(format_args!("signal {signo}: stopping"));
                }
                self.stopping = true;
            }
            // SIGCHLD: reaped by the caller. SIGHUP: nothing to reload; ignored.
        }
        Ok(())
    }

    /// Reads the hold files: processes of newly held nodes are killed and not scheduled, those of
    /// released nodes are started at once with a fresh backoff. Returns whether anything changed.
    fn refresh_holds(&mut self) -> bool {
        let now = held_nodes(&self.lab.paths().held_dir());
        if now == self.held {
            return false;
        }
        let now_instant = Instant::now();
        for c in &mut self.children {
            let was = self.held.contains(&c.spec.host);
            let is = now.contains(&c.spec.host);
            if is && !was {
                c.next_start = None;
                if let Some(child) = &c.child {
                    let pgid = Pid::from_raw(child.id() as i32);
                    let _ = killpg(pgid, Signal::SIGKILL).or_else(|_| kill(pgid, Signal::SIGKILL));
                }
                say(format_args!("{}: held (node {} is killed)", c.spec.name, c.spec.host));
            } else if was && !is && c.child.is_none() {
                c.next_start = Some(now_instant);
                c.backoff = BACKOFF_INITIAL;
                say(format_args!("{}: node {} booted; starting", c.spec.name, c.spec.host));
            }
        }
        self.held = now;
        true
    }

    /// Starts every process whose time has come. Returns whether anything changed.
    fn start_due(&mut self) -> bool {
        let now = Instant::now();
        let mut changed = false;
        for i in 0..self.children.len() {
            if self.held.contains(&self.children[i].spec.host) {
                self.children[i].next_start = None;
                continue;
            }
            if self.children[i].next_start.is_some_and(|t| t <= now) {
                changed = true;
                if let Err(e) = self.spawn(i) {
                    let c = &mut self.children[i];
                    say(format_args!("{}: {}", c.spec.name, Chain(&e)));
                    c.last_exit = Some(format!("failed to start: {}", Chain(&e)));
                    c.next_start = Some(now + c.backoff);
                    c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        changed
    }

    fn spawn(&mut self, i: usize) -> Result<(), LabError> {
        let state_dir = self.lab.paths().state_dir().to_path_buf();
        let bpf_dir = self.lab.paths().bpf_dir().to_path_buf();
        let lab_name = self.lab.name().to_string();
        let parent = Pid::from_raw(self.me.pid);
        let c = &mut self.children[i];
        c.starts += 1;
        let (program, args) = c
            .spec
            .argv
            .split_first()
            .ok_or_else(|| LabError::EmptyCommand { what: format!("process {}", c.spec.name) })?;
        for stale in &c.spec.stale_files {
            match fs::remove_file(stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(LabError::io("remove stale file", stale, e));
                }
                _ => {}
            }
        }
        let netns = netns::open(&c.namespace)?;
        let mut log = logs::open_append(&c.log)?;
        let stderr = log.try_clone().map_err(|e| LabError::io("duplicate", &c.log, e))?;
        let _ = writeln!(
            log,
            "--- {} supervisor: starting {} in {} (start {}): {}",
            Utc::now().to_rfc3339(),
            c.spec.name,
            c.namespace,
            c.starts,
            c.spec.argv.join(" ")
        );
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_remove(ENV_SUPERVISOR)
            .env(ENV_LAB, &lab_name)
            .env(ENV_HOST, &c.spec.host)
            .env(ENV_BPF_DIR, bpf_dir.join(&c.spec.host))
            .envs(&c.spec.env)
            .current_dir(c.spec.cwd.as_deref().unwrap_or(&state_dir))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            // Its own process group, so stopping it also stops whatever it started.
            .process_group(0);
        process::enter_on_spawn(&mut cmd, netns, Some(parent));
        let child = cmd.spawn().map_err(|source| LabError::Spawn { command: c.spec.argv.join(" "), source })?;
        let pid = child.id() as i32;
        say(format_args!("{}: started pid {pid} in {} (start {})", c.spec.name, c.namespace, c.starts));
        c.id = ProcessId::of(pid).or(Some(ProcessId { pid, start_ticks: 0 }));
        c.child = Some(child);
        c.started_at = Some(Utc::now());
        c.started = Some(Instant::now());
        c.next_start = None;
        Ok(())
    }

    /// Collects exited children; with `restart`, schedules them again. Returns whether any exited.
    fn reap(&mut self, restart: bool) -> bool {
        let mut changed = false;
        for c in &mut self.children {
            let Some(child) = c.child.as_mut() else {
                continue;
            };
            let status = match child.try_wait() {
                Ok(Some(status)) => status.to_string(),
                Ok(None) => continue,
                Err(e) => format!("lost: {e}"),
            };
            changed = true;
            c.child = None;
            c.last_exit = Some(status.clone());
            if !restart || self.stopping {
                say(format_args!("{}: {status}", c.spec.name));
                continue;
            }
            if self.held.contains(&c.spec.host) {
                say(format_args!("{}: {status}; held until node {} boots", c.spec.name, c.spec.host));
                c.next_start = None;
                continue;
            }
            let request = self.lab.paths().restart_request(&c.spec.name);
            if fs::remove_file(&request).is_ok() {
                say(format_args!("{}: {status}; restart requested, starting again", c.spec.name));
                c.next_start = Some(Instant::now());
                continue;
            }
            if c.started.is_some_and(|t| t.elapsed() >= HEALTHY_RUN) {
                c.backoff = BACKOFF_INITIAL;
            }
            say(format_args!("{}: {status}; restarting in {:?}", c.spec.name, c.backoff));
            c.next_start = Some(Instant::now() + c.backoff);
            c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
        }
        changed
    }

    /// SIGTERM to every process group (last started first), SIGKILL after the grace period.
    fn shutdown(mut self) -> Result<(), LabError> {
        self.write_state()?;
        let signal_all = |children: &[Supervised], signal: Signal| {
            for c in children.iter().rev() {
                if let Some(child) = &c.child {
                    let pgid = Pid::from_raw(child.id() as i32);
                    let _ = killpg(pgid, signal).or_else(|_| kill(pgid, signal));
                }
            }
        };
        signal_all(&self.children, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while self.children.iter().any(|c| c.child.is_some()) && Instant::now() < deadline {
            self.wait_for_signal(Duration::from_millis(50))?;
            self.reap(false);
        }
        signal_all(&self.children, Signal::SIGKILL);
        for c in &mut self.children {
            if let Some(mut child) = c.child.take() {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                say(format_args!("{}: killed after {STOP_GRACE:?}: {status}", c.spec.name));
                c.last_exit = Some(status);
            }
        }
        self.write_state()?;
        say(format_args!("supervisor of lab {} stopped", self.lab.name()));
        Ok(())
    }

    fn write_state(&self) -> Result<(), LabError> {
        let state = LabState {
            lab: self.lab.name().to_string(),
            datastore_url: self.lab.paths().datastore_url(),
            started_at: self.started_at,
            supervisor: self.me,
            stopping: self.stopping,
            held: self.held.iter().cloned().collect(),
            processes: self
                .children
                .iter()
                .map(|c| ProcessState {
                    name: c.spec.name.clone(),
                    host: c.spec.host.clone(),
                    namespace: c.namespace.clone(),
                    pid: c.id,
                    running: c.child.is_some(),
                    restarts: c.starts.saturating_sub(1),
                    started_at: c.started_at,
                    last_exit: c.last_exit.clone(),
                    log: c.log.clone(),
                })
                .collect(),
        };
        state.write(&self.lab.paths().state_file())
    }
}

/// The signals the supervisor reads from its signalfd.
fn handled_signals() -> SigSet {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        mask.add(s);
    }
    mask
}

/// A line in the supervisor's log (its stderr).
fn say(msg: std::fmt::Arguments<'_>) {
    eprintln!("{} {msg}", Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"));
}

/// The supervisor recorded in the state file, if it still runs.
pub(crate) fn running(lab: &Lab) -> Option<ProcessId> {
    LabState::read(&lab.paths().state_file()).ok().flatten().map(|s| s.supervisor).filter(ProcessId::is_alive)
}

/// Runs `argv` (which must end up in [`run_supervisor`]) and waits until the daemon has written
/// its state. Returns the daemon's pid.
pub(crate) fn start(lab: &Lab, argv: &[OsString]) -> Result<ProcessId, LabError> {
    let log_path = lab.paths().supervisor_log();
    let fail = |what: String| LabError::Supervisor {
        lab: lab.name().to_string(),
        what,
        log: log_path.clone(),
        tail: logs::tail(&log_path, 20),
    };
    let (program, args) = argv.split_first().ok_or_else(|| LabError::EmptyCommand { what: "the supervisor".into() })?;
    let log = logs::open_append(&log_path)?;
    let log2 = log.try_clone().map_err(|e| LabError::io("duplicate", &log_path, e))?;
    let mut first = Command::new(program)
        .args(args)
        .env_remove(ENV_SUPERVISOR)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|source| LabError::Spawn { command: process::display_argv(argv), source })?;

    // The foreground part only detaches the daemon and exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match first.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(status)) => {
                return Err(fail(format!("`{}` failed ({status})", process::display_argv(argv))));
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = first.kill();
                let _ = first.wait();
                return Err(fail(format!(
                    "`{}` did not return within 10s; it must detach (run_supervisor does)",
                    process::display_argv(argv)
                )));
            }
            Err(e) => return Err(LabError::io("wait for", program, e)),
        }
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(id) = running(lab) {
            return Ok(id);
        }
        if Instant::now() >= deadline {
            return Err(fail("did not write its state within 10s".into()));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Stops the lab's supervisor (and through it, its processes): SIGTERM, then SIGKILL after
/// `grace`. Finds it through the state file and through its environment marker. Returns how many
/// supervisors were stopped.
pub(crate) fn stop(lab: &Lab, grace: Duration) -> usize {
    let mut ids: Vec<ProcessId> = running(lab).into_iter().collect();
    for pid in procfs::with_env(ENV_SUPERVISOR, lab.name()) {
        if let Some(id) = ProcessId::of(pid)
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    for id in &ids {
        let _ = kill(Pid::from_raw(id.pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while ids.iter().any(ProcessId::is_alive) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    for id in ids.iter().filter(|id| id.is_alive()) {
        let _ = kill(Pid::from_raw(id.pid), Signal::SIGKILL);
    }
    ids.len()
}
