//! `cilia exec POD -- CMD...`: runs a command inside a lab pod's network namespace.

use std::process::ExitCode;

use anyhow::Result;

use crate::context::Ctx;

pub async fn run(_ctx: &Ctx, _lab: &str, pod: &str, _stdin: bool, _tty: bool, _command: &[String]) -> Result<ExitCode> {
    anyhow::bail!("pod {pod}: exec is not built yet")
}
