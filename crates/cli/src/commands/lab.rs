//! `cilia lab up|down|status|exec|kubeconfig|kubectl|guide|kill|boot|reboot`: the guide's environment on this machine.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use api::{Object, ObjectRef, kinds};
use serde_json::json;
use store::Store;

pub enum LabAction {
    Up {
        routing_mode: Option<String>,
        control_plane: Option<lab::kubernetes::ControlPlane>,
    },
    Kubeconfig,
    Kubectl {
        args: Vec<String>,
    },
    Down,
    Status,
    Exec {
        host: String,
        command: Vec<String>,
    },
    Guide {
        sections: Vec<String>,
    },
    Supervise,
    /// A power loss of a node.
    Kill {
        node: String,
    },
    /// Power on after a kill; with `wait`, until the node's agent is Ready again.
    Boot {
        node: String,
        wait: Option<Duration>,
    },
    /// Kill, `down_for`, boot.
    Reboot {
        node: String,
        down_for: Duration,
        wait: Option<Duration>,
    },
}

/// How long a boot waits for the node's processes to run.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(action: LabAction, name: &str, datastore: Option<&str>) -> Result<ExitCode> {
    let lab = lab::Lab::new(name)?;
    match action {
        LabAction::Up { routing_mode, control_plane } => {
            if let Some(mode) = &routing_mode {
                api::cilium_config::check_value("routing-mode", mode).context("--routing-mode")?;
            }
            let mut opts = lab::UpOptions::for_cilia(&lab)?;
            let kubernetes = match control_plane {
                Some(plane) => plane == lab::kubernetes::ControlPlane::Kubernetes,
                None => lab::kubernetes::runs_in(&lab),
            };
            if kubernetes {
                // After etcd, which kube-apiserver keeps its objects in; before cilia's processes.
                opts.processes.extend(lab::kubernetes::specs(&lab)?);
            }
            if kubernetes {
                opts.processes.push(kubernetes_operator(&lab)?);
            } else {
                push_cilia_processes(&lab, &mut opts)?;
            }
            let report = tokio::task::spawn_blocking({
                let lab = lab.clone();
                move || lab.up(&opts)
            })
            .await??;
            let store = crate::context::connect(&report.datastore_url).await?;
            // The Nodes and the cilium-config of cilia's own control plane.
            if !kubernetes {
                register(store.as_ref(), &lab).await?;
                super::config::ensure_lab_config(store.as_ref(), &lab, routing_mode.as_deref()).await?;
            }
            eprintln!(
                "lab {} is up in {:.1} s; datastore {}",
                lab.name(),
                report.elapsed.as_secs_f64(),
                report.datastore_url
            );
            if kubernetes {
                eprintln!(
                    "kube-apiserver at {}; kubeconfig {} (inside k8s-ctr: `cilia lab kubectl -- get ns`)",
                    lab::kubernetes::apiserver_url(&lab),
                    lab::kubernetes::admin_kubeconfig(&lab).display()
                );
            }
        }
        LabAction::Down => {
            let report = tokio::task::spawn_blocking(move || lab.down()).await??;
            eprintln!(
                "lab removed in {:.1} s: {} namespaces, {} supervisors stopped",
                report.elapsed.as_secs_f64(),
                report.namespaces_removed,
                report.supervisors_stopped
            );
        }
        LabAction::Status => print!("{}", lab.status()?),
        LabAction::Kubeconfig => {
            require_kubernetes(&lab)?;
            println!("{}", lab::kubernetes::admin_kubeconfig(&lab).display());
        }
        LabAction::Kubectl { args } => {
            require_kubernetes(&lab)?;
            let argv = lab::kubernetes::kubectl_argv(&lab, &args)?;
            let code = tokio::task::spawn_blocking(move || lab.exec(lab::topology::K8S_CTR, &argv)).await??;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        LabAction::Exec { host, command } => {
            let code = tokio::task::spawn_blocking(move || lab.exec(&host, &command)).await??;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        LabAction::Guide { sections } => {
            let ok = crate::guide::run(lab.name(), datastore, &sections).await?;
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        LabAction::Supervise => tokio::task::spawn_blocking(move || lab::run_supervisor(lab.name())).await??,
        LabAction::Kill { node } => {
            kill(&lab, &node).await?;
        }
        LabAction::Boot { node, wait } => {
            let before = membership_before(&lab, datastore, &node).await;
            let booted = boot(&lab, &node, None).await?;
            if let (Some(booted), Some(timeout)) = (booted, wait) {
                wait_ready(&lab, datastore, &node, before, booted, timeout).await?;
            }
        }
        LabAction::Reboot { node, down_for, wait } => {
            let Some(killed) = kill(&lab, &node).await? else {
                anyhow::bail!("{node} is killed already; `cilia lab boot {node}` powers it on");
            };
            let before = membership_before(&lab, datastore, &node).await;
            let down = down_for.saturating_sub(killed.failed_instant.elapsed());
            tokio::time::sleep(down).await;
            let booted = boot(&lab, &node, Some(&killed)).await?;
            if let (Some(booted), Some(timeout)) = (booted, wait) {
                wait_ready(&lab, datastore, &node, before, booted, timeout).await?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Fails, saying how to start one, unless the lab runs Kubernetes' control plane.
fn require_kubernetes(lab: &lab::Lab) -> Result<()> {
    if !lab::kubernetes::runs_in(lab) {
        anyhow::bail!(
            "lab {} runs no Kubernetes control plane; `cilia lab up --control-plane kubernetes` starts one",
            lab.name()
        );
    }
    Ok(())
}

/// cilia's processes on the etcd control plane: the operator, and on every node the agent, cluster
/// DNS and the pod runtime; the Deployment controller and scheduler stand-ins once.
fn push_cilia_processes(lab: &lab::Lab, opts: &mut lab::UpOptions) -> Result<()> {
    opts.processes.push(lab::ProcessSpec::cilia(lab, "operator", "k8s-ctr", &["operator", "--identity", "k8s-ctr"])?);
    for node in lab::nodes(lab.topology()) {
        let (dir, socket) = (lab.paths().node_dir(&node.name), lab.paths().cni_socket(&node.name));
        let (dir, socket) = (dir.to_string_lossy(), socket.to_string_lossy());
        // Routing settings come from kube-system/cilium-config, written below.
        // Cluster DNS runs beside the agent (below), not in it.
        let args = ["agent", "--node", &node.name, "--wait-for-config", "--dns-port", "0"];
        let args = [&args[..], &["--state-dir", &dir, "--cni-socket", &socket]];
        let mut spec = lab::ProcessSpec::cilia(lab, &format!("agent-{}", node.name), &node.name, &args.concat())?;
        spec.env.insert("CILIA_LOG".into(), "info".into());
        opts.processes.push(spec);
    }
    // Cluster DNS per node, a process of its own so that an agent restart never
    // interrupts name resolution.
    for node in lab::nodes(lab.topology()) {
        let mut spec =
            lab::ProcessSpec::cilia(lab, &format!("dns-{}", node.name), &node.name, &["dns", "--node", &node.name])?;
        spec.env.insert("CILIA_LOG".into(), "info".into());
        opts.processes.push(spec);
    }
    // The pods' side: a pod runtime per node, the Deployment controller and scheduler once.
    for node in lab::nodes(lab.topology()) {
        let args = ["lab", "kubelet", "--node", &node.name];
        let mut spec = lab::ProcessSpec::cilia(lab, &format!("kubelet-{}", node.name), &node.name, &args)?;
        // What happens to each pod (drained, removed) is worth a line, as a kubelet's log.
        spec.env.insert("CILIA_LOG".into(), "info".into());
        opts.processes.push(spec);
    }
    opts.processes.push(lab::ProcessSpec::cilia(lab, "controllers", "k8s-ctr", &["lab", "controllers"])?);
    Ok(())
}

/// cilia's operator on Kubernetes' control plane: LB-IPAM, pod CIDRs and L2 policy status on
/// kube-apiserver's objects. The agents, cluster DNS and pod runtime do not run on Kubernetes
/// yet, so a Kubernetes lab runs none of them.
fn kubernetes_operator(lab: &lab::Lab) -> Result<lab::ProcessSpec> {
    // As its service account: the rules of deploy/kubernetes/rbac.yaml and nothing more.
    let url = format!("{}{}", crate::context::KUBECONFIG_SCHEME, lab::kubernetes::operator_kubeconfig(lab).display());
    let mut spec = lab::ProcessSpec::cilia(
        lab,
        "operator",
        "k8s-ctr",
        &["operator", "--identity", "k8s-ctr", "--datastore", &url],
    )?;
    spec.env.insert("CILIA_LOG".into(), "info".into());
    Ok(spec)
}

/// `2025-08-09T14:06:08.749123Z (unix 1754748368.749123)`: the wall clock to the microsecond, for
/// people and for scripts.
fn moment(t: chrono::DateTime<chrono::Utc>) -> String {
    format!("{} (unix {}.{:06})", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"), t.timestamp(), t.timestamp_subsec_micros())
}

/// Kills the node and prints what happened; None when it was killed already.
async fn kill(lab: &lab::Lab, node: &str) -> Result<Option<lab::KillReport>> {
    let report = tokio::task::spawn_blocking({
        let (lab, node) = (lab.clone(), node.to_string());
        move || lab.kill_node(&node)
    })
    .await??;
    if !report.killed {
        println!("node {node} is killed already, since {}; nothing done", moment(report.failed_at));
        return Ok(None);
    }
    println!("node {node} killed at {}", moment(report.failed_at));
    println!(
        "  links down: {} ({:.1} ms)",
        if report.links_down.is_empty() { "none".to_string() } else { report.links_down.join(" ") },
        report.links_down_took.as_secs_f64() * 1e3
    );
    println!(
        "  processes killed: {}{}",
        if report.processes_killed.is_empty() { "none".to_string() } else { report.processes_killed.join(" ") },
        match report.other_processes_killed {
            0 => String::new(),
            n => format!(", and {n} more (pods, shells)"),
        }
    );
    println!("  pod namespaces removed: {}", report.pod_namespaces_removed.len());
    match &report.bpf_dir_removed {
        Some(dir) => println!("  BPF state removed: {}", dir.display()),
        None => println!("  BPF state removed: none was pinned"),
    }
    if !report.supervisor_confirmed {
        println!("  no supervisor confirmed the hold (is the lab up?)");
    }
    println!("  done in {:.1} ms", report.elapsed.as_secs_f64() * 1e3);
    Ok(Some(report))
}

/// Boots the node and prints it; None when it was not killed.
async fn boot(lab: &lab::Lab, node: &str, killed: Option<&lab::KillReport>) -> Result<Option<lab::BootReport>> {
    let report = tokio::task::spawn_blocking({
        let (lab, node) = (lab.clone(), node.to_string());
        move || lab.boot_node(&node, BOOT_TIMEOUT)
    })
    .await??;
    if !report.booted {
        println!("node {node} is not killed; nothing done");
        return Ok(None);
    }
    let down = killed
        .and_then(|k| (report.booted_at - k.failed_at).to_std().ok())
        .map(|d| format!(" after {:.2} s down", d.as_secs_f64()))
        .unwrap_or_default();
    println!("node {node} booted at {}{down}", moment(report.booted_at));
    println!("  links up: {}", if report.links_up.is_empty() { "none".to_string() } else { report.links_up.join(" ") });
    let processes: Vec<String> = report.processes.iter().map(|(n, pid)| format!("{n} (pid {pid})")).collect();
    println!(
        "  running after {:.0} ms: {}",
        report.processes_took.as_secs_f64() * 1e3,
        if processes.is_empty() { "no processes".to_string() } else { processes.join(" ") }
    );
    Ok(Some(report))
}

/// What the node's membership Lease was before the boot: its resourceVersion, None when absent;
/// Err when it could not be read (the datastore runs on the killed node).
async fn membership_before(lab: &lab::Lab, datastore: Option<&str>, node: &str) -> Result<Option<String>, ()> {
    let url = crate::context::datastore_url(datastore, lab.name()).map_err(drop)?;
    let store = crate::context::connect(&url).await.map_err(drop)?;
    let lease = membership_ref(node);
    let get = store.get(&lease);
    match tokio::time::timeout(Duration::from_secs(2), get).await {
        Ok(Ok(lease)) => Ok(lease.and_then(|l| l.metadata.resource_version)),
        _ => Err(()),
    }
}

fn membership_ref(node: &str) -> ObjectRef {
    ObjectRef::new(&kinds::LEASE, Some("kube-system"), &format!("cilia-node-{node}"))
}

/// Waits until the node's agent has joined again (a membership Lease written after the boot) and
/// its Node is Ready (reason AgentReady).
async fn wait_ready(
    lab: &lab::Lab,
    datastore: Option<&str>,
    node: &str,
    before: Result<Option<String>, ()>,
    booted: lab::BootReport,
    timeout: Duration,
) -> Result<()> {
    let url = crate::context::datastore_url(datastore, lab.name())?;
    let store = crate::context::connect(&url).await?;
    let deadline = std::time::Instant::now() + timeout;
    // Lease times have whole seconds.
    let booted_second = booted.booted_at.timestamp();
    loop {
        let joined = match store.get(&membership_ref(node)).await {
            Ok(Some(lease)) => match &before {
                Ok(rv) => lease.metadata.resource_version != *rv,
                Err(()) => lease
                    .lookup_path("spec.acquireTime")
                    .and_then(|t| t.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()))
                    .is_some_and(|t| t.timestamp() >= booted_second),
            },
            _ => false,
        };
        let ready = joined
            && store.get(&ObjectRef::new(&kinds::NODE, None, node)).await.ok().flatten().is_some_and(|n| {
                let conditions: Vec<api::Condition> =
                    n.lookup_path("status.conditions").and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
                api::Condition::find(&conditions, "Ready")
                    .is_some_and(|c| c.status == "True" && c.reason == "AgentReady")
            });
        if ready {
            let now = chrono::Utc::now();
            let after = (now - booted.booted_at).to_std().unwrap_or_default();
            println!("node {node} Ready at {}, {:.2} s after boot", moment(now), after.as_secs_f64());
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "node {node} not Ready {} after its boot (its agent has {} its membership lease)",
                api::cilium_config::format_duration(timeout),
                if joined { "renewed" } else { "not renewed" }
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers what a kubelet and kubeadm would: the namespaces and the three Nodes with their
/// hostname label and InternalIP. Existing objects are updated in place, keeping what controllers
/// wrote (pod CIDRs), so `lab up` stays idempotent.
async fn register(store: &dyn Store, lab: &lab::Lab) -> Result<()> {
    for ns in ["default", "kube-system"] {
        create_if_missing(store, Object::new(&kinds::NAMESPACE, None, ns)).await?;
    }
    for node in lab::nodes(lab.topology()) {
        let mut obj = Object::new(&kinds::NODE, None, &node.name);
        obj.metadata.labels.insert(api::labels::HOSTNAME.into(), node.name.clone());
        obj.metadata.labels.insert(api::labels::OS.into(), "linux".into());
        if node.name == "k8s-ctr" {
            obj.metadata.labels.insert(api::labels::CONTROL_PLANE.into(), String::new());
        }
        let addresses = json!([
            {"type": "InternalIP", "address": node.internal_ip.to_string()},
            {"type": "Hostname", "address": node.name},
        ]);
        let oref = ObjectRef::new(&kinds::NODE, None, &node.name);
        if store.get(&oref).await?.is_none() {
            obj.body.insert("status".into(), json!({"addresses": addresses}));
            create_if_missing(store, obj).await?;
        } else {
            store::update_with_retry(store, &oref, |o| {
                let before = o.clone();
                o.metadata.labels.extend(obj.metadata.labels.clone());
                let status = o.body.entry("status").or_insert_with(|| json!({}));
                status["addresses"] = addresses.clone();
                Ok(*o != before)
            })
            .await?;
        }
    }
    Ok(())
}

async fn create_if_missing(store: &dyn Store, obj: Object) -> Result<()> {
    let what = obj.object_ref().map(|r| r.to_string()).unwrap_or_default();
    for _ in 0..3 {
        match store.create(obj.clone()).await {
            Ok(_) | Err(store::Error::AlreadyExists(_)) => return Ok(()),
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(e).with_context(|| format!("registering {what}")),
        }
    }
    anyhow::bail!("registering {what}: the datastore is not answering")
}
