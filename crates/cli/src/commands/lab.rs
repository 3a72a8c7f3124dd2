//! `cilia lab up|down|status|exec|guide`: the guide's environment on this machine.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use api::{Object, ObjectRef, kinds};
use serde_json::json;
use store::Store;

pub enum LabAction {
    Up { routing_mode: Option<String> },
    Down,
    Status,
    Exec { host: String, command: Vec<String> },
    Guide { sections: Vec<String> },
    Supervise,
}

pub async fn run(action: LabAction, name: &str, datastore: Option<&str>) -> Result<ExitCode> {
    let lab = lab::Lab::new(name)?;
    match action {
        LabAction::Up { routing_mode } => {
            if let Some(mode) = &routing_mode {
                api::cilium_config::check_value("routing-mode", mode).context("--routing-mode")?;
            }
            let mut opts = lab::UpOptions::for_cilia(&lab)?;
            opts.processes.push(lab::ProcessSpec::cilia(
                &lab,
                "operator",
                "k8s-ctr",
                &["operator", "--identity", "k8s-ctr"],
            )?);
            for node in lab::nodes(lab.topology()) {
                let (dir, socket) = (lab.paths().node_dir(&node.name), lab.paths().cni_socket(&node.name));
                let (dir, socket) = (dir.to_string_lossy(), socket.to_string_lossy());
                // Routing settings come from kube-system/cilium-config, written below.
                let args = ["agent", "--node", &node.name, "--wait-for-config"];
                let args = [&args[..], &["--state-dir", &dir, "--cni-socket", &socket]];
                let mut spec =
                    lab::ProcessSpec::cilia(&lab, &format!("agent-{}", node.name), &node.name, &args.concat())?;
                spec.env.insert("CILIA_LOG".into(), "info".into());
                opts.processes.push(spec);
            }
            // The pods' side: a pod runtime per node, the Deployment controller and scheduler once.
            for node in lab::nodes(lab.topology()) {
                let args = ["lab", "kubelet", "--node", &node.name];
                opts.processes.push(lab::ProcessSpec::cilia(
                    &lab,
                    &format!("kubelet-{}", node.name),
                    &node.name,
                    &args,
                )?);
            }
            opts.processes.push(lab::ProcessSpec::cilia(&lab, "controllers", "k8s-ctr", &["lab", "controllers"])?);
            let report = tokio::task::spawn_blocking({
                let lab = lab.clone();
                move || lab.up(&opts)
            })
            .await??;
            let store = crate::context::connect(&report.datastore_url).await?;
            register(store.as_ref(), &lab).await?;
            super::config::ensure_lab_config(store.as_ref(), &lab, routing_mode.as_deref()).await?;
            eprintln!(
                "lab {} is up in {:.1} s; datastore {}",
                lab.name(),
                report.elapsed.as_secs_f64(),
                report.datastore_url
            );
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
        LabAction::Exec { host, command } => {
            let code = tokio::task::spawn_blocking(move || lab.exec(&host, &command)).await??;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        LabAction::Guide { sections } => {
            let ok = crate::guide::run(lab.name(), datastore, &sections).await?;
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        LabAction::Supervise => tokio::task::spawn_blocking(move || lab::run_supervisor(lab.name())).await??,
    }
    Ok(ExitCode::SUCCESS)
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
        obj.metadata.labels.insert("kubernetes.io/hostname".into(), node.name.clone());
        obj.metadata.labels.insert("kubernetes.io/os".into(), "linux".into());
        if node.name == "k8s-ctr" {
            obj.metadata.labels.insert("node-role.kubernetes.io/control-plane".into(), String::new());
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
