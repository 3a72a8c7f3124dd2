//! `cilia status [--wait]`: the minimal form of `cilium status`, read from the datastore. One line
//! per component, healthy or not with the reason:
//!
//! ```text
//! datastore          OK     revision 4182
//! operator           OK     leader k8s-ctr
//! agent k8s-ctr      OK     ready: cilia agent is ready: pod CIDR 172.20.0.0/24, ...
//! agent k8s-w1       FAIL   no membership lease: agent not running
//! routing            OK     native, auto-direct-node-routes=true
//! l2-announcements   OK     enabled (heartbeat 100ms, dead after 500ms)
//! ```
//!
//! An agent is healthy when its Node's `Ready` condition is True with reason `AgentReady` and its
//! membership Lease `kube-system/cilia-node-<node>` exists: the condition alone outlives an agent
//! that died without shutting down, the Lease lapses with it.

use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use api::{Condition, ObjectRef, Selector, cilium_config, kinds};
use store::Store;

/// The operator's leader Lease.
const OPERATOR_LEASE: &str = "cilia-operator";
const LEASE_NAMESPACE: &str = "kube-system";
const AGENT_READY: &str = "AgentReady";
const POLL: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// `datastore`, `operator`, `agent k8s-w1`, `routing`, `l2-announcements`.
    pub name: String,
    pub healthy: bool,
    /// What it is (when healthy) or what is wrong.
    pub detail: String,
}

impl Component {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Component { name: name.into(), healthy: true, detail: detail.into() }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Component { name: name.into(), healthy: false, detail: detail.into() }
    }
}

/// Every component's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report(pub Vec<Component>);

impl Report {
    pub fn healthy(&self) -> bool {
        self.0.iter().all(|c| c.healthy)
    }

    pub fn unhealthy(&self) -> impl Iterator<Item = &Component> {
        self.0.iter().filter(|c| !c.healthy)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.0.iter().map(|c| c.name.len()).max().unwrap_or(0).max(16);
        for c in &self.0 {
            let state = if c.healthy { "OK" } else { "FAIL" };
            writeln!(f, "{:<width$}   {state:<4}   {}", c.name, c.detail)?;
        }
        Ok(())
    }
}

/// Reads every component's state once.
pub async fn check(store: &dyn Store) -> Report {
    let mut out = Vec::new();
    match store.revision().await {
        Ok(rev) => out.push(Component::ok("datastore", format!("revision {rev}"))),
        Err(e) => {
            out.push(Component::fail("datastore", format!("not answering: {e}")));
            return Report(out);
        }
    }

    let lease = |name: &str| ObjectRef::new(&kinds::LEASE, Some(LEASE_NAMESPACE), name);
    out.push(match store.get(&lease(OPERATOR_LEASE)).await {
        Ok(Some(l)) => match l.lookup_path("spec.holderIdentity").and_then(|h| h.as_str().map(str::to_string)) {
            Some(holder) if !holder.is_empty() => Component::ok("operator", format!("leader {holder}")),
            _ => Component::fail("operator", "no leader: Lease kube-system/cilia-operator has no holder"),
        },
        Ok(None) => {
            Component::fail("operator", "no leader: no Lease kube-system/cilia-operator (operator not running)")
        }
        Err(e) => Component::fail("operator", format!("cannot read its Lease: {e}")),
    });

    match store.list(&kinds::NODE, None, &Selector::everything()).await {
        Ok(nodes) if nodes.items.is_empty() => out.push(Component::fail("agents", "no Nodes registered")),
        Ok(nodes) => {
            for node in nodes.items {
                let name = node.metadata.name.clone();
                let conditions: Vec<Condition> = node
                    .lookup_path("status.conditions")
                    .and_then(|c| serde_json::from_value(c).ok())
                    .unwrap_or_default();
                let membership = store.get(&lease(&format!("cilia-node-{name}"))).await;
                out.push(agent(&name, Condition::find(&conditions, "Ready"), membership.map(|l| l.is_some())));
            }
        }
        Err(e) => out.push(Component::fail("agents", format!("cannot list Nodes: {e}"))),
    }

    let config =
        store.get(&ObjectRef::new(&kinds::CONFIG_MAP, Some(cilium_config::NAMESPACE), cilium_config::NAME)).await;
    match config {
        Ok(Some(obj)) => {
            let data: BTreeMap<String, String> =
                obj.lookup_path("data").and_then(|d| serde_json::from_value(d).ok()).unwrap_or_default();
            out.extend(config_lines(&data));
        }
        Ok(None) => out.push(Component::fail("config", "no ConfigMap kube-system/cilium-config")),
        Err(e) => out.push(Component::fail("config", format!("cannot read kube-system/cilium-config: {e}"))),
    }
    Report(out)
}

/// One agent's line from its Node's Ready condition and whether its membership Lease exists.
fn agent(node: &str, ready: Option<&Condition>, lease: store::Result<bool>) -> Component {
    let name = format!("agent {node}");
    let lease = match lease {
        Ok(present) => present,
        Err(e) => return Component::fail(name, format!("cannot read its membership lease: {e}")),
    };
    match ready {
        _ if !lease => Component::fail(name, "no membership lease: agent not running"),
        None => Component::fail(name, "not ready: the agent has not reported yet"),
        Some(c) if c.status != "True" => {
            Component::fail(name, format!("not ready: {}: {}", c.reason, c.message).trim_end_matches(": ").to_string())
        }
        Some(c) if c.reason != AGENT_READY => {
            Component::fail(name, format!("Ready set by {:?}, not by the agent ({AGENT_READY})", c.reason))
        }
        Some(c) => Component::ok(name, format!("ready: {}", c.message)),
    }
}

/// The routing and L2 announcement settings as lines; one failing `config` line when the
/// configuration is invalid.
fn config_lines(data: &BTreeMap<String, String>) -> Vec<Component> {
    if let Err(e) = cilium_config::check(data) {
        return vec![Component::fail("config", format!("kube-system/cilium-config is invalid: {e}"))];
    }
    let cfg = cilium_config::CiliumConfig::from_data(data);
    let mut routing = cfg.routing_mode.clone();
    if cfg.routing_mode != "native" {
        routing.push_str(&format!(" ({} port {})", cfg.tunnel_protocol, cfg.tunnel_port));
    }
    routing.push_str(&format!(", auto-direct-node-routes={}", cfg.auto_direct_node_routes));
    let l2 = if cfg.enable_l2_announcements {
        format!(
            "enabled (heartbeat {}, dead after {})",
            cilium_config::format_duration(cfg.l2_heartbeat_interval),
            cilium_config::format_duration(cfg.l2_dead_after)
        )
    } else {
        "disabled".to_string()
    };
    vec![Component::ok("routing", routing), Component::ok("l2-announcements", l2)]
}

/// Parses a duration argument like `5m`, `2s`, `1.5s` (Go's syntax, as Cilium's flags take).
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    cilium_config::parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration like 2s, 500ms or 5m"))
}

/// Polls until every component is healthy or `timeout` passed; returns the last report.
pub async fn wait(store: &dyn Store, timeout: Duration) -> Report {
    let deadline = Instant::now() + timeout;
    loop {
        let report = check(store).await;
        if report.healthy() || Instant::now() >= deadline {
            return report;
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// `cilia status [--wait] [--wait-duration D]`: prints the report; exit 0 when all is healthy.
pub async fn run(store: &dyn Store, wait_for: Option<Duration>) -> Result<ExitCode> {
    let report = match wait_for {
        Some(timeout) => wait(store, timeout).await,
        None => check(store).await,
    };
    print!("{report}");
    if report.healthy() {
        return Ok(ExitCode::SUCCESS);
    }
    let failing: Vec<String> = report.unhealthy().map(|c| format!("{} ({})", c.name, c.detail)).collect();
    match wait_for {
        Some(timeout) => {
            eprintln!("error: not healthy after {}: {}", cilium_config::format_duration(timeout), failing.join("; "))
        }
        None => eprintln!("error: unhealthy: {}", failing.join("; ")),
    }
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use api::Object;
    use serde_json::json;

    use super::*;

    async fn cluster(store: &dyn Store) {
        for node in ["k8s-ctr", "k8s-w1"] {
            let mut n = Object::new(&kinds::NODE, None, node);
            n.body.insert(
                "status".into(),
                json!({"conditions": [{"type": "Ready", "status": "True", "reason": "AgentReady",
                    "message": "cilia agent is ready: native routing"}]}),
            );
            store.create(n).await.unwrap();
        }
        store.create(lease("cilia-operator", "k8s-ctr")).await.unwrap();
        store.create(lease("cilia-node-k8s-ctr", "k8s-ctr")).await.unwrap();
        let mut cm = Object::new(&kinds::CONFIG_MAP, Some("kube-system"), "cilium-config");
        cm.body.insert(
            "data".into(),
            json!({"routing-mode": "native", "auto-direct-node-routes": "true",
                "enable-l2-announcements": "true", "kube-proxy-replacement": "true"}),
        );
        store.create(cm).await.unwrap();
    }

    fn lease(name: &str, holder: &str) -> Object {
        let mut l = Object::new(&kinds::LEASE, Some("kube-system"), name);
        l.body.insert("spec".into(), json!({"holderIdentity": holder}));
        l
    }

    fn line<'a>(report: &'a Report, name: &str) -> &'a Component {
        report.0.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{name} in {report}"))
    }

    #[tokio::test]
    async fn an_agent_without_its_membership_lease_is_unhealthy() {
        let store = store::MemoryStore::new();
        cluster(&store).await;
        let report = check(&store).await;
        assert!(!report.healthy());
        assert!(line(&report, "datastore").healthy);
        assert!(line(&report, "datastore").detail.starts_with("revision "));
        assert_eq!(line(&report, "operator"), &Component::ok("operator", "leader k8s-ctr"));
        assert!(line(&report, "agent k8s-ctr").healthy);
        assert_eq!(
            line(&report, "agent k8s-w1"),
            &Component::fail("agent k8s-w1", "no membership lease: agent not running")
        );
        assert_eq!(line(&report, "routing").detail, "native, auto-direct-node-routes=true");
        assert_eq!(line(&report, "l2-announcements").detail, "enabled (heartbeat 100ms, dead after 500ms)");
        let printed = report.to_string();
        assert!(printed.contains("agent k8s-w1       FAIL   no membership lease: agent not running\n"), "{printed}");
        assert!(printed.contains("operator           OK     leader k8s-ctr\n"), "{printed}");
    }

    #[test]
    fn agent_lines_name_what_is_wrong() {
        let cond = |status: &str, reason: &str, message: &str| Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            ..Condition::default()
        };
        let stopped = cond("False", "AgentStopped", "cilia agent stopped");
        assert_eq!(agent("n", Some(&stopped), Ok(true)).detail, "not ready: AgentStopped: cilia agent stopped");
        assert_eq!(agent("n", None, Ok(true)).detail, "not ready: the agent has not reported yet");
        let kubelet = cond("True", "KubeletReady", "");
        assert!(!agent("n", Some(&kubelet), Ok(true)).healthy);
        let ready = cond("True", "AgentReady", "ok");
        assert!(agent("n", Some(&ready), Ok(true)).healthy);
        assert!(!agent("n", Some(&ready), Ok(false)).healthy);
    }

    #[tokio::test]
    async fn missing_operator_and_invalid_config_are_failures() {
        let store = store::MemoryStore::new();
        let report = check(&store).await;
        assert_eq!(
            line(&report, "operator").detail,
            "no leader: no Lease kube-system/cilia-operator (operator not running)"
        );
        assert_eq!(line(&report, "agents").detail, "no Nodes registered");
        assert_eq!(line(&report, "config").detail, "no ConfigMap kube-system/cilium-config");
        let mut cm = Object::new(&kinds::CONFIG_MAP, Some("kube-system"), "cilium-config");
        cm.body.insert("data".into(), json!({"enable-l2-announcements": "true", "kube-proxy-replacement": "false"}));
        store.create(cm).await.unwrap();
        let report = check(&store).await;
        assert!(line(&report, "config").detail.contains("requires kube-proxy-replacement=true"));
    }

    #[tokio::test]
    async fn wait_returns_once_healthy_and_reports_failures_at_its_deadline() {
        let store: Arc<dyn Store> = Arc::new(store::MemoryStore::new());
        cluster(store.as_ref()).await;
        let report = wait(store.as_ref(), Duration::from_millis(300)).await;
        assert_eq!(report.unhealthy().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["agent k8s-w1"]);

        let later = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            later.create(lease("cilia-node-k8s-w1", "k8s-w1")).await.unwrap();
        });
        let started = Instant::now();
        let report = wait(store.as_ref(), Duration::from_secs(10)).await;
        assert!(report.healthy(), "{report}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
