//! `cilia exec POD -- CMD...`: runs a command inside a lab pod's network namespace (with the pod's
//! resolv.conf bind-mounted in a private mount namespace), with this terminal's stdio, and exits
//! with its exit code.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use api::{ObjectRef, kinds, types::Pod};

use crate::context::Ctx;

/// `-i` and `-t` are accepted for kubectl's muscle memory: the command always gets this
/// process's stdin and terminal.
pub async fn run(ctx: &Ctx, lab: &str, pod: &str, _stdin: bool, _tty: bool, command: &[String]) -> Result<ExitCode> {
    let lab = lab::Lab::new(lab)?;
    let target = ObjectRef::new(&kinds::POD, Some(&ctx.namespace), pod);
    let Some(obj) = ctx.store.get(&target).await? else {
        bail!("pods \"{pod}\" not found in namespace {}", ctx.namespace);
    };
    let typed: Pod = obj.to_typed().with_context(|| format!("reading pod {pod}"))?;
    let netns = podruntime::exec::pod_namespace(&lab, &typed)?;
    let resolv_conf = podruntime::exec::pod_resolv_conf(&lab, &typed);
    let argv = command.to_vec();
    let code =
        tokio::task::spawn_blocking(move || podruntime::exec::run(&netns, resolv_conf.as_deref(), &argv)).await??;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
