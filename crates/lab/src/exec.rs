//! `lab exec HOST CMD...`: a command inside a host's network namespace with the caller's stdio,
//! like `ip netns exec`, except that /sys is not remounted, so bpffs stays visible. Netlink, sockets,
//! `/proc/net` and `/proc/sys/net` belong to the host; `/sys/class/net` still shows the root
//! namespace's devices. `/etc/resolv.conf` is the host's own, in a mount namespace of the command's
//! ([`crate::router_dns`]).

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use crate::Lab;
use crate::error::LabError;
use crate::netns;
use crate::process::{self, ENV_HOST, ENV_LAB};

/// A `Command` for `program` that will run in `host`'s namespace.
pub(crate) fn command(lab: &Lab, host: &str, program: impl AsRef<OsStr>) -> Result<Command, LabError> {
    let namespace = lab.namespace_of(host)?;
    if netns::state(namespace) != netns::State::Present {
        return Err(LabError::HostDown {
            lab: lab.name().to_string(),
            host: host.to_string(),
            namespace: namespace.to_string(),
        });
    }
    let file = netns::open(namespace)?;
    let mut cmd = Command::new(program);
    cmd.env(ENV_LAB, lab.name()).env(ENV_HOST, host);
    process::enter_on_spawn(&mut cmd, file, None);
    // The host's resolv.conf over /etc/resolv.conf, as `ip netns exec` does (see router_dns).
    crate::router_dns::bind_on_spawn(&mut cmd, namespace)
        .map_err(|e| LabError::io("prepare the resolv.conf of", crate::router_dns::resolv_conf_path(namespace), e))?;
    Ok(cmd)
}

/// Runs `argv` in `host` and returns its exit code (128 + signal number if a signal ended it).
pub(crate) fn exec<S: AsRef<OsStr>>(lab: &Lab, host: &str, argv: &[S]) -> Result<i32, LabError> {
    let (program, args) =
        argv.split_first().ok_or_else(|| LabError::EmptyCommand { what: format!("lab exec {host}") })?;
    let status = command(lab, host, program)?.args(args).status().map_err(|source| LabError::Spawn {
        command: format!("{} (in {host})", process::display_argv(argv)),
        source,
    })?;
    Ok(status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1))
}
