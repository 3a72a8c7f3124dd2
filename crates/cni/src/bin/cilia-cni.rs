//! `cilia-cni`: the CNI 1.0 plugin executable. Thin: it validates the invocation and forwards
//! it to the node agent over its unix socket; the agent does the kernel work.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let output = match std::io::stdin().read_to_end(&mut stdin).context("reading the network configuration from stdin")
    {
        Ok(_) => cni::plugin::run(|name| std::env::var(name).ok(), &stdin),
        Err(e) => cni::plugin::Output {
            stdout: cni::CniError::new(cni::error::code::IO_FAILURE, format!("{e:#}"))
                .to_json(cni::version::CURRENT_VERSION),
            exit_code: 1,
        },
    };
    let mut out = std::io::stdout().lock();
    // Nothing useful can be done if stdout is gone: the runtime is not listening anymore.
    let _ = out.write_all(output.stdout.as_bytes()).and_then(|()| out.flush());
    ExitCode::from(u8::try_from(output.exit_code).unwrap_or(1))
}
