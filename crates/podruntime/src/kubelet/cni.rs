//! Calling the CNI plugin exactly as a container runtime does: the `cilia-cni` executable with
//! CNI_* variables and the network configuration on stdin, its result (or CNI error object) on
//! stdout.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// CNI error code 11: try again later (the agent is not listening yet).
pub const TRY_AGAIN_LATER: u32 = 11;
/// cilia's code for an ADD of a container that already has an interface.
pub const ALREADY_ATTACHED: u32 = 102;

/// Longer than the plugin's own 60 s wait for the agent: the plugin times out first and says why.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(90);

/// A failed invocation, with the CNI error code when the plugin printed one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI {command} failed{}: {msg}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
pub struct CniFailure {
    pub command: &'static str,
    pub code: Option<u32>,
    pub msg: String,
}

/// The plugin and the configuration this node's pods are networked with.
#[derive(Debug, Clone)]
pub struct CniPlugin {
    pub binary: PathBuf,
    pub config: Value,
}

/// One pod's side of an invocation.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    pub container_id: &'a str,
    /// The namespace path; empty on DEL when it is gone.
    pub netns: &'a str,
    pub ifname: &'a str,
    pub pod_namespace: &'a str,
    pub pod_name: &'a str,
}

impl CniPlugin {
    /// `cilia-cni` beside the running executable, talking to the agent at `agent_socket`.
    pub fn beside_current_exe(agent_socket: &Path) -> std::io::Result<Self> {
        let binary = std::env::current_exe()?.with_file_name("cilia-cni");
        Ok(CniPlugin { binary, config: network_config(agent_socket) })
    }

    /// ADD; returns the result JSON.
    pub async fn add(&self, a: &Attachment<'_>) -> Result<Value, CniFailure> {
        let out = self.invoke("ADD", a, &self.config).await?;
        serde_json::from_str(&out).map_err(|e| CniFailure {
            command: "ADD",
            code: None,
            msg: format!("the plugin's result is not JSON ({e}): {out}"),
        })
    }

    /// DEL, with the ADD result as `prevResult` when there is one.
    pub async fn del(&self, a: &Attachment<'_>, prev_result: Option<&Value>) -> Result<(), CniFailure> {
        let mut config = self.config.clone();
        if let Some(prev) = prev_result {
            config["prevResult"] = prev.clone();
        }
        self.invoke("DEL", a, &config).await.map(drop)
    }

    async fn invoke(&self, command: &'static str, a: &Attachment<'_>, config: &Value) -> Result<String, CniFailure> {
        let fail = |code, msg: String| CniFailure { command, code, msg };
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            a.pod_namespace, a.pod_name, a.container_id, a.container_id
        );
        let cni_path = self.binary.parent().map(|p| p.display().to_string()).unwrap_or_default();
        let mut child = tokio::process::Command::new(&self.binary)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", a.container_id)
            .env("CNI_NETNS", a.netns)
            .env("CNI_IFNAME", a.ifname)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(None, format!("cannot run {}: {e}", self.binary.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            let bytes = serde_json::to_vec(config).expect("a network configuration always serializes");
            // A plugin that exits without reading stdin reports why on stdout.
            let _ = stdin.write_all(&bytes).await;
        }
        let out = tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| fail(None, format!("{} did not finish within {PLUGIN_TIMEOUT:?}", self.binary.display())))?
            .map_err(|e| fail(None, format!("waiting for {}: {e}", self.binary.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() {
            return Ok(stdout);
        }
        // CNI: on failure the plugin prints {"code", "msg", "details"} on stdout.
        match serde_json::from_str::<Value>(&stdout) {
            Ok(err) if err.get("code").is_some() => {
                let code = err["code"].as_u64().and_then(|c| u32::try_from(c).ok());
                let mut msg = err["msg"].as_str().unwrap_or_default().to_string();
                if let Some(details) = err["details"].as_str().filter(|d| !d.is_empty()) {
                    msg = format!("{msg} ({details})");
                }
                Err(fail(code, msg))
            }
            _ => Err(fail(
                None,
                format!(
                    "{} exited with {}: {stdout} {}",
                    self.binary.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            )),
        }
    }
}

/// The network configuration a runtime reads from `/etc/cni/net.d`, for the lab's node: the
/// agent's socket is per node, so it is part of the configuration.
pub fn network_config(agent_socket: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "cilia",
        "type": "cilia-cni",
        "agentSocket": agent_socket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_names_the_agent_socket() {
        let c = network_config(Path::new("/run/cilia/lab/t1/nodes/k8s-w1/cni.sock"));
        assert_eq!(c["type"], "cilia-cni");
        assert_eq!(c["agentSocket"], "/run/cilia/lab/t1/nodes/k8s-w1/cni.sock");
    }

    #[test]
    fn failures_read_like_the_plugin_said() {
        let f = CniFailure { command: "ADD", code: Some(11), msg: "cilia agent is not reachable".into() };
        assert_eq!(f.to_string(), "CNI ADD failed (code 11): cilia agent is not reachable");
    }
}
