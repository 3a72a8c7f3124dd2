//! `cilia exec POD -- CMD...`: runs a command inside a lab pod's network namespace (with the pod's
//! resolv.conf bind-mounted in a private mount namespace), with this terminal's stdio, and exits
//! with its exit code.
//!
//! `-t` gives the command a pseudo-terminal, as kubectl does (and, as kubectl, says so and goes on
//! without one when stdin is not a terminal); `-i` passes stdin to it.
//!
//! The agents' and the operator's pods in kube-system ([`operator::cilium_pods`]) are mirror pods
//! on the host network: a command runs in their node's namespace, and `cilium-dbg ARGS` in an agent's pod is
//! `cilia dbg NODE ARGS`, as `kubectl exec -n kube-system cilium-xxxxx -- cilium-dbg ...` is with
//! Cilium.

use std::{io::IsTerminal as _, process::ExitCode};

use anyhow::{Context as _, Result, bail};
use api::{ObjectRef, kinds, types::Pod};
use podruntime::exec::Streams;

use crate::context::Ctx;

/// kubectl's words when `-t` is given but stdin is not a terminal.
const NO_TTY: &str = "Unable to use a TTY - input is not a terminal or the right kind of file";

pub async fn run(ctx: &Ctx, lab: &str, pod: &str, stdin: bool, tty: bool, command: &[String]) -> Result<ExitCode> {
    let lab_name = lab;
    let lab = lab::Lab::new(lab)?;
    let target = ObjectRef::new(&kinds::POD, Some(&ctx.namespace), pod);
    let Some(obj) = ctx.store.get(&target).await? else {
        bail!("pods \"{pod}\" not found in namespace {}", ctx.namespace);
    };
    let typed: Pod = obj.to_typed().with_context(|| format!("reading pod {pod}"))?;
    let streams = if tty && std::io::stdin().is_terminal() {
        Streams::Tty { stdin }
    } else {
        if tty {
            eprintln!("{NO_TTY}");
        }
        Streams::Inherit
    };
    let (netns, resolv_conf) = if typed.is_mirror() {
        let node = typed.spec.node_name.clone().with_context(|| format!("pod {pod} has no node"))?;
        let is_agent = typed.metadata.labels.get(operator::cilium_pods::AGENT_LABEL.0).map(String::as_str)
            == Some(operator::cilium_pods::AGENT_LABEL.1);
        if is_agent && command.first().is_some_and(|c| c == "cilium-dbg" || c == "cilium") {
            return crate::commands::dbg::run(lab_name, &node, &command[1..]);
        }
        let netns = lab
            .namespace_of(&node)
            .with_context(|| format!("pod {pod} runs on {node}, which is not a host of lab {}", lab.name()))?
            .to_string();
        (netns, None)
    } else {
        (podruntime::exec::pod_namespace(&lab, &typed)?, podruntime::exec::pod_resolv_conf(&lab, &typed))
    };
    let argv = command.to_vec();
    let code =
        tokio::task::spawn_blocking(move || podruntime::exec::run(&netns, resolv_conf.as_deref(), &argv, streams))
            .await??;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
