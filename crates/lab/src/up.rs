//! `lab up`: network, then supervisor, then wait for etcd. Safe to run on a complete lab (nothing
//! changes, the running supervisor is kept) and on a broken one (what is missing comes back, and
//! processes whose namespace had to be recreated are restarted). Killed nodes boot: their links
//! come up and their holds go, so the supervisor starts their processes.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;
use std::thread;
use std::time::{Duration, Instant};

use crate::Lab;
use crate::error::LabError;
use crate::etcd::{self, ETCD_PROCESS};
use crate::kubernetes;
use crate::lock::FileLock;
use crate::logs;
use crate::network::{self, NetworkReport};
use crate::node;
use crate::paths::ETCD_SOCKET_TARGET;
use crate::process::{ProcessSpec, default_processes};
use crate::progress::Progress;
use crate::state::write_json_atomically;
use crate::supervisor;

#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Command line that ends up in [`crate::run_supervisor`] for this lab, e.g.
    /// `cilia lab supervise --lab NAME`.
    pub supervisor: Vec<OsString>,
    /// What the supervisor runs, in start order. Default: [`default_processes`].
    pub processes: Vec<ProcessSpec>,
    /// How long `up` waits for etcd to answer its health check.
    pub etcd_timeout: Duration,
    /// How long `up` waits for kube-apiserver to be ready, when it runs one.
    pub apiserver_timeout: Duration,
    /// Print one line per step on stderr.
    pub progress: bool,
}

impl UpOptions {
    pub fn new(lab: &Lab, supervisor: Vec<OsString>) -> Self {
        UpOptions {
            supervisor,
            processes: default_processes(lab),
            etcd_timeout: Duration::from_secs(30),
            apiserver_timeout: Duration::from_secs(90),
            progress: true,
        }
    }

    /// For the `cilia` binary: the supervisor is `<this executable> lab supervise --lab NAME`.
    pub fn for_cilia(lab: &Lab) -> Result<Self, LabError> {
        let exe =
            std::env::current_exe().map_err(|e| LabError::io("find the running executable", "/proc/self/exe", e))?;
        let argv = vec![exe.into_os_string(), "lab".into(), "supervise".into(), "--lab".into(), lab.name().into()];
        Ok(Self::new(lab, argv))
    }
}

#[derive(Clone, Debug)]
pub struct UpReport {
    /// `unix:///run/cilia/lab/<name>/etcd.sock`
    pub datastore_url: String,
    pub network: NetworkReport,
    /// The supervisor was started (or restarted) by this call.
    pub supervisor_started: bool,
    pub supervisor_pid: i32,
    pub elapsed: Duration,
}

pub(crate) fn up(lab: &Lab, opts: &UpOptions) -> Result<UpReport, LabError> {
    let progress = Progress::new(lab.name(), "up", opts.progress);
    check_specs(lab, &opts.processes)?;
    if opts.processes.iter().any(|p| p.name == ETCD_PROCESS) {
        etcd::check_installed()?;
    }
    let paths = lab.paths();
    let _lock = FileLock::acquire(paths.lock_file())?;

    for dir in [paths.state_dir().to_path_buf(), paths.log_dir(), paths.data_dir().to_path_buf()] {
        fs::create_dir_all(&dir).map_err(|e| LabError::io("create directory", &dir, e))?;
    }
    // The socket path clients use; it resolves once etcd listens (see paths::ETCD_SOCKET).
    match symlink(ETCD_SOCKET_TARGET, paths.etcd_socket()) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            return Err(LabError::io("create symlink", paths.etcd_socket(), e));
        }
        _ => {}
    }

    // The certificates etcd and the other nodes' processes start with.
    let node_names: Vec<String> = crate::topology::nodes(lab.topology()).into_iter().map(|n| n.name).collect();
    let ctr_ips: Vec<std::net::Ipv4Addr> = crate::topology::nodes(lab.topology())
        .into_iter()
        .filter(|n| n.name == crate::topology::K8S_CTR)
        .map(|n| n.internal_ip)
        .collect();
    let clients: Vec<&str> = node_names.iter().map(String::as_str).chain(["admin"]).collect();
    let servers: Vec<(String, std::net::Ipv4Addr)> =
        crate::topology::nodes(lab.topology()).into_iter().map(|n| (n.name, n.internal_ip)).collect();
    let servers: Vec<(&str, std::net::Ipv4Addr)> = servers.iter().map(|(n, ip)| (n.as_str(), *ip)).collect();
    paths.pki().ensure(&ctr_ips, &clients, &servers, &kubernetes::apiserver_ips(lab))?;
    let kubernetes = opts.processes.iter().any(|p| p.name == kubernetes::APISERVER_PROCESS);
    if kubernetes {
        kubernetes::write_kubeconfigs(lab)?;
    }

    let network = network::ensure(lab.topology(), &progress)?;
    crate::router_dns::write_resolv_confs(lab)?;
    if !node::holds(lab).is_empty() {
        let step = progress.step("nodes");
        let released = node::release_all(lab)?;
        step.done(format!("booted {} (killed before)", released.join(", ")));
    }

    let step = progress.step("supervisor");
    let specs_json = serde_json::to_string_pretty(&opts.processes)
        .map_err(|source| LabError::Json { path: paths.specs_file(), source })?;
    let specs_changed = fs::read_to_string(paths.specs_file()).ok().as_deref() != Some(specs_json.as_str());
    let process_hosts: BTreeSet<&str> = opts.processes.iter().map(|p| p.host.as_str()).collect();
    let moved = network.new_hosts.iter().any(|h| process_hosts.contains(h.as_str()));
    let running = supervisor::running(lab);
    let (supervisor_pid, started, detail) = match running {
        Some(id) if !specs_changed && !moved => (id.pid, false, format!("running (pid {})", id.pid)),
        _ => {
            let why = match running {
                None => "started",
                Some(_) if moved => "restarted: its processes' namespaces were recreated",
                Some(_) => "restarted: the process list changed",
            };
            if running.is_some() {
                supervisor::stop(lab, Duration::from_secs(10));
            }
            write_json_atomically(&paths.specs_file(), &opts.processes)?;
            let id = supervisor::start(lab, &opts.supervisor)?;
            (id.pid, true, format!("{why} (pid {})", id.pid))
        }
    };
    step.done(detail);

    if opts.processes.iter().any(|p| p.name == ETCD_PROCESS) {
        let step = progress.step("etcd");
        wait_for_etcd(lab, opts.etcd_timeout)?;
        step.done(format!("healthy at {}", paths.datastore_url()));
    }
    if kubernetes {
        let step = progress.step("kube-apiserver");
        kubernetes::wait_until_ready(lab, opts.apiserver_timeout)?;
        step.done(format!("ready at {}", kubernetes::apiserver_url(lab)));
        let step = progress.step("manifests");
        kubernetes::install_manifests(lab)?;
        step.done("Cilium's CRDs, the operator's service account and RBAC");
    }
    if network.changes > 0 {
        network::wait_until_links_forward(lab.topology(), &progress)?;
    }
    progress.finish(format!("lab {} is up", lab.name()));
    Ok(UpReport {
        datastore_url: paths.datastore_url(),
        network,
        supervisor_started: started,
        supervisor_pid,
        elapsed: progress.elapsed(),
    })
}

/// Every spec runs on a known host, has a program and a unique name.
fn check_specs(lab: &Lab, specs: &[ProcessSpec]) -> Result<(), LabError> {
    let mut names = BTreeSet::new();
    for spec in specs {
        lab.namespace_of(&spec.host)?;
        let invalid = |reason| LabError::InvalidSpec { name: spec.name.clone(), reason };
        if spec.argv.is_empty() {
            return Err(invalid("argv is empty"));
        }
        if spec.name.is_empty() || spec.name.contains('/') {
            return Err(invalid("the name must be a non-empty file name"));
        }
        if !names.insert(spec.name.as_str()) {
            return Err(invalid("two processes have this name"));
        }
    }
    Ok(())
}

fn wait_for_etcd(lab: &Lab, timeout: Duration) -> Result<(), LabError> {
    let paths = lab.paths();
    let socket = paths.etcd_socket();
    let deadline = Instant::now() + timeout;
    loop {
        if etcd::healthy(&socket, Duration::from_millis(500)) {
            return Ok(());
        }
        if supervisor::running(lab).is_none() {
            let log = paths.supervisor_log();
            return Err(LabError::Supervisor {
                lab: lab.name().to_string(),
                what: "exited while waiting for etcd".into(),
                tail: logs::tail(&log, 20),
                log,
            });
        }
        if Instant::now() >= deadline {
            let log = paths.log_file(ETCD_PROCESS);
            return Err(LabError::EtcdTimeout {
                lab: lab.name().to_string(),
                timeout,
                socket,
                tail: logs::tail(&log, 20),
                log,
            });
        }
        thread::sleep(Duration::from_millis(25));
    }
}
