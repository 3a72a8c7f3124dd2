//! `cilia exec POD -- CMD...`: a command inside a pod, as `kubectl exec` runs one in a container.
//! Lab pods are network namespaces, so the command runs in the pod's namespace with the caller's
//! stdio, and its exit code is passed back. When the pod's runtime wrote a `resolv.conf` for it,
//! the command also gets its own mount namespace with that file over `/etc/resolv.conf`, so names
//! resolve through the cluster DNS as in a container (see [`crate::kubelet::dns`]).

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

/// Runs `argv` inside `netns` with inherited stdio (and `resolv_conf` as its /etc/resolv.conf);
/// returns its exit code (128 + signal number when a signal ended it), like a shell reports it.
pub fn run(netns: &str, resolv_conf: Option<&Path>, argv: &[String]) -> Result<i32> {
    let (program, args) = argv.split_first().ok_or_else(|| Error::Invalid("no command given".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
    let command = argv.join(" ");
    if let Some(file) = resolv_conf {
        crate::kubelet::dns::bind_on_spawn(&mut cmd, file)
            .map_err(|e| Error::Command { command: command.clone(), reason: format!("resolv.conf: {e}") })?;
    }
    let mut child = pod_netns::spawn_inside(netns, move || cmd.spawn()).map_err(|e| Error::Command {
        command: command.clone(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            format!("executable file not found: {program}")
        } else {
            e.to_string()
        },
    })?;
    let status = child.wait().map_err(|e| Error::Command { command, reason: e.to_string() })?;
    Ok(status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1))
}
