//! The one place that runs iproute2. `ip -n NS -batch -` applies a whole namespace's changes in one
//! process, which is what keeps `up` fast; `ip -j` gives parseable state back.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::LabError;
use crate::observed::{self, ObservedNamespace};

/// Root's PATH may lack /usr/sbin when run from a plain shell or a test harness.
fn ip_binary() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].into_iter().find(|p| Path::new(p).exists()).unwrap_or("ip")
}

fn where_(namespace: Option<&str>) -> String {
    namespace.map_or_else(|| "the root namespace".to_string(), |ns| format!("namespace {ns}"))
}

/// Runs `ip [-n namespace] args...` and returns its stdout.
pub fn ip(namespace: Option<&str>, args: &[&str]) -> Result<String, LabError> {
    let mut cmd = Command::new(ip_binary());
    if let Some(ns) = namespace {
        cmd.args(["-n", ns]);
    }
    cmd.args(args);
    let command = format!("ip {}{}", namespace.map(|ns| format!("-n {ns} ")).unwrap_or_default(), args.join(" "));
    let out = cmd.output().map_err(|source| LabError::Spawn { command: command.clone(), source })?;
    if !out.status.success() {
        return Err(LabError::Command {
            namespace: where_(namespace),
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `lines` as one `ip -n namespace -batch -`. Stops at the first failing line; the error
/// carries ip's message, which names the line.
pub fn batch(namespace: &str, lines: &[String]) -> Result<(), LabError> {
    if lines.is_empty() {
        return Ok(());
    }
    let command = format!("ip -n {namespace} -batch - ({})", lines.join("; "));
    let spawn_err = |source| LabError::Spawn { command: command.clone(), source };
    let mut child = Command::new(ip_binary())
        .args(["-n", namespace, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let mut input = lines.join("\n");
    input.push('\n');
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(LabError::Command {
            namespace: where_(Some(namespace)),
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Links (with addresses) and main-table routes of a namespace.
pub fn observe(namespace: &str) -> Result<ObservedNamespace, LabError> {
    let parse_err =
        |command: &str, reason: String| LabError::Parse { command: format!("ip -n {namespace} {command}"), reason };
    let links = ip(Some(namespace), &["-j", "-d", "addr", "show"])?;
    let links = observed::parse_links(&links).map_err(|r| parse_err("-j -d addr show", r))?;
    let routes = ip(Some(namespace), &["-j", "route", "show"])?;
    let routes = observed::parse_routes(&routes).map_err(|r| parse_err("-j route show", r))?;
    Ok(ObservedNamespace { links, routes })
}

pub fn netns_add(namespace: &str) -> Result<(), LabError> {
    ip(None, &["netns", "add", namespace]).map(drop)
}

pub fn netns_del(namespace: &str) -> Result<(), LabError> {
    ip(None, &["netns", "del", namespace]).map(drop)
}
