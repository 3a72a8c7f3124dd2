//! What the `cilia-cni` executable does, as a function of its environment and stdin.

use crate::client;
use crate::config::{NetworkConfig, sniff_version};
use crate::env::{Command, Invocation};
use crate::error::{CniError, code};
use crate::protocol::{PROTOCOL_VERSION, Request, Response};
use crate::result;
use crate::version::{self, CURRENT_VERSION};

/// What the executable prints on stdout and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub exit_code: i32,
}

/// Runs one CNI invocation: validates, forwards ADD/DEL/CHECK to the agent and renders its
/// answer. Failures print the CNI error object and exit 1.
pub fn run(var: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Output {
    let inv = match Invocation::from_env(var) {
        Ok(inv) => inv,
        Err(e) => return failure(&e, sniff_version(stdin).as_deref()),
    };
    if inv.command == Command::Version {
        return Output { stdout: version::version_info_json(), exit_code: 0 };
    }
    let config = match NetworkConfig::parse(stdin) {
        Ok(c) => c,
        Err(e) => return failure(&e, sniff_version(stdin).as_deref()),
    };
    match execute(&inv, &config) {
        Ok(stdout) => Output { stdout, exit_code: 0 },
        Err(e) => failure(&e, Some(&config.cni_version)),
    }
}

fn execute(inv: &Invocation, config: &NetworkConfig) -> Result<String, CniError> {
    if inv.command == Command::Check && !version::supports_check(&config.cni_version) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("CHECK is not defined for cniVersion {}", config.cni_version),
        ));
    }
    let request = Request {
        version: PROTOCOL_VERSION,
        command: inv.command,
        container_id: inv.container_id.clone(),
        netns: inv.netns.clone(),
        ifname: inv.ifname.clone(),
        network: config.name.clone(),
        args: inv.args.clone(),
        mtu: config.mtu,
        prev_ip: config.prev_result.as_ref().and_then(result::prev_ip),
    };
    match client::call(&config.agent_socket, &request)? {
        Response::Error(e) => Err(e),
        Response::Ok { attachment } => match inv.command {
            Command::Add => {
                let attachment = attachment.ok_or_else(|| {
                    CniError::new(code::PROTOCOL_ERROR, "cilia agent answered ADD without an attachment")
                })?;
                Ok(result::render(&attachment, &config.cni_version, config.dns.as_ref()).to_string())
            }
            // DEL and CHECK print nothing on success.
            _ => Ok(String::new()),
        },
    }
}

fn failure(e: &CniError, cni_version: Option<&str>) -> Output {
    Output { stdout: e.to_json(cni_version.unwrap_or(CURRENT_VERSION)), exit_code: 1 }
}
