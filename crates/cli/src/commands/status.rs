//! `cilia status [--wait]`: the form of `cilium status`. One line per component, healthy or not
//! with the reason:
//!
//! ```text
//! datastore          OK     revision 4182
//! operator           OK     leader k8s-ctr (ready: datastore connected (revision 4182), leading)
//! agent k8s-ctr      OK     heartbeat 31ms ago; 9 programs attached; IPAM 3/253; flows 212/4096; flow events lost 0; GC removed 40 conntrack, 7 SNAT, pins of 2 devices
//! agent k8s-w1       FAIL   stalled: no answer on .../nodes/k8s-w1/metrics.sock within 500ms
//! routing            OK     native, auto-direct-node-routes=true
//! l2-announcements   OK     enabled (heartbeat 100ms, dead after 500ms), 1 address announced
//! ```
//!
//! From the datastore: an agent needs its Node's `Ready` condition True with reason `AgentReady`
//! and its membership Lease `kube-system/cilia-node-<node>` (the condition alone outlives an agent
//! that died without shutting down, the Lease lapses with it, but only after its TTL).
//!
//! In a lab, also from each process's own health endpoint, read over the unix socket in its
//! node's directory ([`telemetry`]) with a deadline of [`PROBE_TIMEOUT`]: a killed agent refuses
//! the connection and a stopped one (SIGSTOP) lets the deadline pass, so either shows by name at
//! once, long before its Lease lapses. Its metrics give the datapath programs attached, IPAM
//! usage, the flow buffer's fill, the flow events lost and the L2 addresses announced. Operators are found by their
//! sockets: the Lease holder's must answer; others that answer are standbys.

use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use api::{Condition, ObjectRef, Selector, cilium_config, kinds};
use store::Store;
use telemetry::HealthReport;
use telemetry::client::ClientError;
use telemetry::exposition::{self, Sample};

/// The operator's leader Lease.
const OPERATOR_LEASE: &str = "cilia-operator";
const LEASE_NAMESPACE: &str = "kube-system";
const AGENT_READY: &str = "AgentReady";
const POLL: Duration = Duration::from_millis(500);
/// How long a process's health endpoint may take: well inside the 2 s in which a stalled agent
/// must show, and far above an answer's few milliseconds.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Where a lab's processes serve their health and metrics.
#[derive(Clone, Debug)]
pub struct Sockets {
    nodes_dir: std::path::PathBuf,
}

impl Sockets {
    /// The lab's sockets, when the lab exists on this machine.
    pub fn for_lab(name: &str) -> Option<Self> {
        let lab = lab::Lab::new(name).ok()?;
        let nodes_dir = lab.paths().state_dir().join("nodes");
        nodes_dir.is_dir().then_some(Sockets { nodes_dir })
    }

    pub fn agent(&self, node: &str) -> std::path::PathBuf {
        self.nodes_dir.join(node).join(telemetry::AGENT_SOCKET)
    }

    /// Hosts with an operator's socket file, by name.
    pub fn operators(&self) -> Vec<(String, std::path::PathBuf)> {
        let Ok(dir) = std::fs::read_dir(&self.nodes_dir) else { return Vec::new() };
        let mut out: Vec<_> = dir
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path().join(telemetry::OPERATOR_SOCKET)))
            .filter(|(_, p)| p.exists())
            .collect();
        out.sort();
        out
    }
}

/// What one process's endpoints said.
#[derive(Clone, Debug)]
pub struct Probe {
    /// `/readyz` (its body also when not ready), or why there was no answer.
    pub health: Result<HealthReport, String>,
    /// `/metrics` samples; empty when they could not be read.
    pub metrics: Vec<Sample>,
}

impl Probe {
    /// Asks `/readyz` and `/metrics` at once, each within [`PROBE_TIMEOUT`].
    pub async fn ask(socket: &std::path::Path) -> Probe {
        let (ready, metrics) = futures::join!(
            telemetry::client::get(socket, "/readyz", PROBE_TIMEOUT),
            telemetry::client::get(socket, "/metrics", PROBE_TIMEOUT)
        );
        let health = match ready {
            Ok(a) => serde_json::from_str::<HealthReport>(&a.body)
                .map_err(|e| format!("its /readyz answer ({}) is not a health report: {e}", a.status)),
            Err(e @ ClientError::Timeout { .. }) => Err(format!("stalled: {e}")),
            // the socket and why it cannot be reached
            Err(e) => Err(format!("not running: {:#}", anyhow::Error::new(e))),
        };
        let metrics = metrics.map(|a| exposition::samples(&a.body)).unwrap_or_default();
        Probe { health, metrics }
    }

    fn metric(&self, name: &str) -> Option<f64> {
        exposition::sum(&self.metrics, name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// `datastore`, `operator`, `agent k8s-w1`, `routing`, `l2-announcements`, `unreadable`.
    pub name: String,
    pub healthy: bool,
    /// Healthy, but something needs a look (shown as `WARN`).
    pub warning: bool,
    /// What it is (when healthy) or what is wrong.
    pub detail: String,
}

impl Component {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Component { name: name.into(), healthy: true, warning: false, detail: detail.into() }
    }

    fn warn(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Component { name: name.into(), healthy: true, warning: true, detail: detail.into() }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Component { name: name.into(), healthy: false, warning: false, detail: detail.into() }
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
            let state = match (c.healthy, c.warning) {
                (false, _) => "FAIL",
                (true, true) => "WARN",
                (true, false) => "OK",
            };
            writeln!(f, "{:<width$}   {state:<4}   {}", c.name, c.detail)?;
        }
        Ok(())
    }
}

/// Reads every component's state once; with `sockets`, also every process's health endpoint.
pub async fn check(store: &dyn Store, sockets: Option<&Sockets>) -> Report {
    let mut out = Vec::new();
    match store.revision().await {
        Ok(rev) => out.push(Component::ok("datastore", format!("revision {rev}"))),
        Err(e) => {
            out.push(Component::fail("datastore", format!("not answering: {e}")));
            return Report(out);
        }
    }

    let lease = |name: &str| ObjectRef::new(&kinds::LEASE, Some(LEASE_NAMESPACE), name);
    let operators = match sockets {
        Some(s) => {
            let found = s.operators();
            let probes = futures::future::join_all(found.iter().map(|(_, path)| Probe::ask(path))).await;
            found.into_iter().map(|(host, _)| host).zip(probes).collect()
        }
        None => Vec::new(),
    };
    let holder = match store.get(&lease(OPERATOR_LEASE)).await {
        Ok(Some(l)) => match l.lookup_path("spec.holderIdentity").and_then(|h| h.as_str().map(str::to_string)) {
            Some(holder) if !holder.is_empty() => Ok(holder),
            _ => Err(Component::fail("operator", "no leader: Lease kube-system/cilia-operator has no holder")),
        },
        Ok(None) => {
            Err(Component::fail("operator", "no leader: no Lease kube-system/cilia-operator (operator not running)"))
        }
        Err(e) => Err(Component::fail("operator", format!("cannot read its Lease: {e}"))),
    };
    out.extend(operator_lines(holder, &operators));
    // Each process's count of stored objects it could not read, by component.
    let mut unreadable: Vec<(String, Option<f64>)> = operators
        .iter()
        .filter(|(_, p)| p.health.is_ok())
        .map(|(host, p)| (format!("operator {host}"), p.metric("cilia_operator_datastore_unreadable_objects")))
        .collect();

    let mut announced = 0.0;
    match store.list(&kinds::NODE, None, &Selector::everything()).await {
        Ok(nodes) if nodes.items.is_empty() => out.push(Component::fail("agents", "no Nodes registered")),
        Ok(nodes) => {
            let probes = match sockets {
                Some(s) => {
                    let asks = nodes.items.iter().map(|n| {
                        let path = s.agent(n.name());
                        async move { Some(Probe::ask(&path).await) }
                    });
                    futures::future::join_all(asks).await
                }
                None => vec![None; nodes.items.len()],
            };
            for (node, probe) in nodes.items.into_iter().zip(&probes) {
                let name = node.metadata.name.clone();
                if let Some(p) = probe.as_ref().filter(|p| p.health.is_ok()) {
                    unreadable.push((format!("agent {name}"), p.metric("cilia_datastore_unreadable_objects")));
                }
                let conditions: Vec<Condition> = node
                    .lookup_path("status.conditions")
                    .and_then(|c| serde_json::from_value(c).ok())
                    .unwrap_or_default();
                let membership = store.get(&lease(&format!("cilia-node-{name}"))).await;
                let line = agent(&name, Condition::find(&conditions, "Ready"), membership.map(|l| l.is_some()));
                out.push(match probe {
                    Some(p) => agent_endpoint(line, p),
                    None => line,
                });
            }
            announced = probes.iter().flatten().filter_map(|p| p.metric("cilia_l2_announcements")).sum::<f64>();
        }
        Err(e) => out.push(Component::fail("agents", format!("cannot list Nodes: {e}"))),
    }
    if sockets.is_some() {
        out.extend(unreadable_line(&unreadable));
    }

    let config =
        store.get(&ObjectRef::new(&kinds::CONFIG_MAP, Some(cilium_config::NAMESPACE), cilium_config::NAME)).await;
    match config {
        Ok(Some(obj)) => {
            let data: BTreeMap<String, String> =
                obj.lookup_path("data").and_then(|d| serde_json::from_value(d).ok()).unwrap_or_default();
            let mut lines = config_lines(&data);
            if sockets.is_some() {
                for l in lines.iter_mut().filter(|l| l.name == "l2-announcements" && l.detail.starts_with("enabled")) {
                    let n = announced as u64;
                    l.detail.push_str(&format!(", {n} address{} announced", if n == 1 { "" } else { "es" }));
                }
            }
            out.extend(lines);
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

/// The `operator` line from the leader Lease, checked against the holder's own endpoint when it
/// has a socket here, and a line per other operator that answers (a standby).
fn operator_lines(holder: Result<String, Component>, operators: &[(String, Probe)]) -> Vec<Component> {
    let holder = match holder {
        Ok(h) => h,
        Err(line) => return vec![line],
    };
    let mut out = Vec::new();
    match operators.iter().find(|(host, _)| *host == holder) {
        None => out.push(Component::ok("operator", format!("leader {holder}"))),
        Some((_, probe)) => out.push(match &probe.health {
            Err(why) => Component::fail("operator", format!("leader {holder} holds the Lease but is {why}")),
            Ok(r) if !r.ready => {
                Component::fail("operator", format!("leader {holder} is not ready: {}", r.not_ready().join(", ")))
            }
            Ok(r) => Component::ok("operator", format!("leader {holder} (ready: {})", details(r))),
        }),
    }
    for (host, probe) in operators.iter().filter(|(host, _)| *host != holder) {
        // A socket that refuses is what an operator that left behind; only live ones count.
        if let Ok(r) = &probe.health {
            let name = format!("operator {host}");
            out.push(if r.ready {
                Component::ok(name, format!("standby ({})", details(r)))
            } else {
                Component::fail(name, format!("standby not ready: {}", r.not_ready().join(", ")))
            });
        }
    }
    out
}

fn details(r: &HealthReport) -> String {
    r.checks.values().map(|c| c.detail.as_str()).collect::<Vec<_>>().join(", ")
}

/// An agent's line with what its own endpoint said: unhealthy when it does not answer in time,
/// its heartbeat is stale, or a readiness check fails; otherwise the datastore's verdict, with
/// the figures of its metrics.
fn agent_endpoint(line: Component, probe: &Probe) -> Component {
    let report = match &probe.health {
        Err(why) => return Component::fail(line.name, why.clone()),
        Ok(r) => r,
    };
    if !report.healthy {
        return Component::fail(line.name, format!("stalled: last heartbeat {}ms ago", report.heartbeat_age_ms));
    }
    if !report.ready {
        return Component::fail(line.name, format!("not ready: {}", report.not_ready().join(", ")));
    }
    if !line.healthy {
        return line;
    }
    let mut detail = format!("heartbeat {}ms ago", report.heartbeat_age_ms);
    if let Some(n) = probe.metric("cilia_datapath_programs_attached") {
        detail.push_str(&format!("; {n} programs attached"));
    }
    if let (Some(used), Some(cap)) = (probe.metric("cilia_ipam_ip_addresses"), probe.metric("cilia_ipam_capacity")) {
        detail.push_str(&format!("; IPAM {used}/{cap}"));
    }
    if let (Some(flows), Some(cap)) =
        (probe.metric("cilia_flow_buffer_flows"), probe.metric("cilia_flow_buffer_capacity"))
    {
        detail.push_str(&format!("; flows {flows}/{cap}"));
    }
    if let Some(lost) = probe.metric("cilia_flow_events_lost_total") {
        detail.push_str(&format!("; flow events lost {lost}"));
    }
    // What the datapath's garbage collection removed since the agent started.
    if let (Some(ct), Some(nat), Some(pins)) = (
        probe.metric("cilia_conntrack_gc_deleted_total"),
        probe.metric("cilia_nat_gc_deleted_total"),
        probe.metric("cilia_device_links_unpinned_total"),
    ) {
        detail.push_str(&format!("; GC removed {ct} conntrack, {nat} SNAT, pins of {pins} devices"));
    }
    Component::ok(line.name, detail)
}

/// The `unreadable` line: how many stored objects each answering process could not read (values
/// written around cilia, or corrupt), which lists and watches skip and informers replace with the
/// last readable version. A warning when any process has one: that object's changes are not acted on.
fn unreadable_line(counts: &[(String, Option<f64>)]) -> Option<Component> {
    if counts.is_empty() {
        return None;
    }
    let each: Vec<String> = counts
        .iter()
        .map(|(who, n)| match n {
            Some(n) => format!("{who} {n}"),
            None => format!("{who} ?"),
        })
        .collect();
    let each = each.join(", ");
    Some(if counts.iter().any(|(_, n)| n.is_some_and(|n| n > 0.0)) {
        Component::warn(
            "unreadable",
            format!(
                "stored objects that are not readable, kept at their last readable version: {each} (see the logs for the keys)"
            ),
        )
    } else {
        Component::ok("unreadable", format!("stored objects not readable: {each}"))
    })
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
pub async fn wait(store: &dyn Store, sockets: Option<&Sockets>, timeout: Duration) -> Report {
    let deadline = Instant::now() + timeout;
    loop {
        let report = check(store, sockets).await;
        if report.healthy() || Instant::now() >= deadline {
            return report;
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// `cilia status [--wait] [--wait-duration D]`: prints the report; exit 0 when all is healthy.
pub async fn run(store: &dyn Store, lab: &str, wait_for: Option<Duration>) -> Result<ExitCode> {
    let sockets = Sockets::for_lab(lab);
    let report = match wait_for {
        Some(timeout) => wait(store, sockets.as_ref(), timeout).await,
        None => check(store, sockets.as_ref()).await,
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
        let report = check(&store, None).await;
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
        let report = check(&store, None).await;
        assert_eq!(
            line(&report, "operator").detail,
            "no leader: no Lease kube-system/cilia-operator (operator not running)"
        );
        assert_eq!(line(&report, "agents").detail, "no Nodes registered");
        assert_eq!(line(&report, "config").detail, "no ConfigMap kube-system/cilium-config");
        let mut cm = Object::new(&kinds::CONFIG_MAP, Some("kube-system"), "cilium-config");
        cm.body.insert("data".into(), json!({"enable-l2-announcements": "true", "kube-proxy-replacement": "false"}));
        store.create(cm).await.unwrap();
        let report = check(&store, None).await;
        assert!(line(&report, "config").detail.contains("requires kube-proxy-replacement=true"));
    }

    fn report(ready: bool, heartbeat_age_ms: u64) -> HealthReport {
        let mut h = HealthReport {
            heartbeat_age_ms,
            uptime_seconds: 60,
            healthy: heartbeat_age_ms < 1000,
            ready,
            checks: Default::default(),
        };
        let check = telemetry::Check { ok: ready, detail: if ready { "leading".into() } else { "no programs".into() } };
        h.checks.insert("datapath".into(), check);
        h
    }

    #[test]
    fn an_agent_that_does_not_answer_or_is_stale_fails_by_name() {
        let ok = Component::ok("agent k8s-w1", "ready: fine");
        let silent = Probe { health: Err("stalled: no answer on x within 500ms".into()), metrics: vec![] };
        assert_eq!(
            agent_endpoint(ok.clone(), &silent),
            Component::fail("agent k8s-w1", "stalled: no answer on x within 500ms")
        );
        let stale = Probe { health: Ok(report(true, 4000)), metrics: vec![] };
        assert_eq!(agent_endpoint(ok.clone(), &stale).detail, "stalled: last heartbeat 4000ms ago");
        let unready = Probe { health: Ok(report(false, 20)), metrics: vec![] };
        assert_eq!(agent_endpoint(ok.clone(), &unready).detail, "not ready: datapath: no programs");
        let text = "cilia_datapath_programs_attached 9\ncilia_ipam_ip_addresses 3\ncilia_ipam_capacity 253\n\
                    cilia_flow_buffer_flows 12\ncilia_flow_buffer_capacity 4096\ncilia_flow_events_lost_total 0\n\
                    cilia_conntrack_gc_deleted_total 40\ncilia_nat_gc_deleted_total 7\ncilia_device_links_unpinned_total 2\n";
        let fine = Probe { health: Ok(report(true, 20)), metrics: exposition::samples(text) };
        assert_eq!(
            agent_endpoint(ok, &fine),
            Component::ok(
                "agent k8s-w1",
                "heartbeat 20ms ago; 9 programs attached; IPAM 3/253; flows 12/4096; flow events lost 0; \
                 GC removed 40 conntrack, 7 SNAT, pins of 2 devices"
            )
        );
        let no_lease = Component::fail("agent k8s-w1", "no membership lease: agent not running");
        assert_eq!(agent_endpoint(no_lease.clone(), &fine), no_lease, "the datastore's verdict still counts");
    }

    #[test]
    fn the_lease_holder_must_answer_and_live_standbys_are_listed() {
        let answering = |ready| Probe { health: Ok(report(ready, 10)), metrics: vec![] };
        let gone = Probe { health: Err("not running: connection refused".into()), metrics: vec![] };
        let lines = operator_lines(
            Ok("k8s-ctr".into()),
            &[("k8s-ctr".into(), answering(true)), ("k8s-w1".into(), answering(true)), ("k8s-w0".into(), gone.clone())],
        );
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], Component::ok("operator", "leader k8s-ctr (ready: leading)"));
        assert_eq!(lines[1], Component::ok("operator k8s-w1", "standby (leading)"));
        let lines = operator_lines(Ok("k8s-ctr".into()), &[("k8s-ctr".into(), gone)]);
        assert_eq!(lines[0].detail, "leader k8s-ctr holds the Lease but is not running: connection refused");
        assert!(!lines[0].healthy);
        assert_eq!(operator_lines(Ok("elsewhere".into()), &[]), [Component::ok("operator", "leader elsewhere")]);
    }

    #[test]
    fn unreadable_objects_are_counted_by_component_and_warn_when_any() {
        assert_eq!(unreadable_line(&[]), None, "outside a lab no process answers");
        let none = unreadable_line(&[("operator a".into(), Some(0.0)), ("agent a".into(), Some(0.0))]).unwrap();
        assert_eq!(none, Component::ok("unreadable", "stored objects not readable: operator a 0, agent a 0"));
        let some = unreadable_line(&[("operator a".into(), Some(0.0)), ("agent b".into(), Some(2.0))]).unwrap();
        assert!(some.healthy && some.warning, "{some:?}");
        assert!(some.detail.contains("operator a 0, agent b 2"), "{}", some.detail);
        assert!(Report(vec![some]).to_string().contains("unreadable         WARN   stored objects"));
        let unknown = unreadable_line(&[("agent c".into(), None)]).unwrap();
        assert_eq!(unknown.detail, "stored objects not readable: agent c ?");
    }

    #[tokio::test]
    async fn wait_returns_once_healthy_and_reports_failures_at_its_deadline() {
        let store: Arc<dyn Store> = Arc::new(store::MemoryStore::new());
        cluster(store.as_ref()).await;
        let report = wait(store.as_ref(), None, Duration::from_millis(300)).await;
        assert_eq!(report.unhealthy().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["agent k8s-w1"]);

        let later = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            later.create(lease("cilia-node-k8s-w1", "k8s-w1")).await.unwrap();
        });
        let started = Instant::now();
        let report = wait(store.as_ref(), None, Duration::from_secs(10)).await;
        assert!(report.healthy(), "{report}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
