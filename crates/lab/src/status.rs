//! `lab status`: what exists of a lab right now, read from the kernel and the state file, and
//! printed like `ip -br addr` per host plus a process table.

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::Lab;
use crate::error::LabError;
use crate::network;
use crate::node;
use crate::observed::Presence;
use crate::state::LabState;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabStatus {
    pub lab: String,
    pub hosts: Vec<HostStatus>,
    pub supervisor: Option<SupervisorStatus>,
    /// Set while the supervisor runs.
    pub datastore_url: Option<String>,
    pub processes: Vec<ProcessStatus>,
    /// Nodes killed by `lab kill` and not booted since.
    pub killed: Vec<KilledNode>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KilledNode {
    pub node: String,
    pub killed_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostStatus {
    pub name: String,
    pub namespace: String,
    pub present: bool,
    pub interfaces: Vec<InterfaceStatus>,
}

/// One line of `ip -br addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceStatus {
    /// `eth1@if7` for a veth, as ip prints it.
    pub name: String,
    pub state: String,
    pub addresses: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorStatus {
    pub pid: i32,
    pub running: bool,
    pub started_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessStatus {
    pub name: String,
    pub host: String,
    pub namespace: String,
    pub pid: Option<i32>,
    pub running: bool,
    /// Its host is a killed node: the supervisor does not start it.
    pub held: bool,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub log: PathBuf,
}

impl LabStatus {
    /// Every namespace exists and the supervisor runs.
    pub fn is_up(&self) -> bool {
        self.hosts.iter().all(|h| h.present) && self.supervisor.as_ref().is_some_and(|s| s.running)
    }

    pub fn is_killed(&self, node: &str) -> bool {
        self.killed.iter().any(|k| k.node == node)
    }

    /// Nothing of the lab exists.
    pub fn is_down(&self) -> bool {
        self.hosts.iter().all(|h| !h.present) && self.supervisor.as_ref().is_none_or(|s| !s.running)
    }
}

pub(crate) fn status(lab: &Lab) -> Result<LabStatus, LabError> {
    let observed = network::observe(lab.topology())?;
    let hosts = lab
        .topology()
        .hosts()
        .iter()
        .map(|h| {
            let (present, interfaces) = match observed.get(&h.namespace) {
                Some(Presence::Present(ns)) => (
                    true,
                    ns.links
                        .iter()
                        .map(|l| InterfaceStatus {
                            name: match l.peer_ifindex {
                                Some(i) => format!("{}@if{i}", l.name),
                                None => l.name.clone(),
                            },
                            state: l.operstate.clone(),
                            addresses: l.all_addresses.clone(),
                        })
                        .collect(),
                ),
                _ => (false, Vec::new()),
            };
            HostStatus { name: h.name.clone(), namespace: h.namespace.clone(), present, interfaces }
        })
        .collect();

    let killed: Vec<KilledNode> =
        node::holds(lab).into_iter().map(|h| KilledNode { node: h.node, killed_at: h.killed_at }).collect();
    let state = LabState::read(&lab.paths().state_file())?;
    let alive = state.as_ref().is_some_and(LabState::supervisor_alive);
    let supervisor =
        state.as_ref().map(|s| SupervisorStatus { pid: s.supervisor.pid, running: alive, started_at: s.started_at });
    let processes = state
        .as_ref()
        .map(|s| {
            s.processes
                .iter()
                .map(|p| ProcessStatus {
                    name: p.name.clone(),
                    host: p.host.clone(),
                    namespace: p.namespace.clone(),
                    pid: p.pid.map(|id| id.pid),
                    running: alive && p.running && p.pid.is_some_and(|id| id.is_alive()),
                    held: killed.iter().any(|k| k.node == p.host),
                    restarts: p.restarts,
                    last_exit: p.last_exit.clone(),
                    log: p.log.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(LabStatus {
        lab: lab.name().to_string(),
        hosts,
        datastore_url: state.filter(|_| alive).map(|s| s.datastore_url),
        supervisor,
        processes,
        killed,
    })
}

impl fmt::Display for LabStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let killed: Vec<&str> = self.killed.iter().map(|k| k.node.as_str()).collect();
        let overall = if self.is_up() && !killed.is_empty() {
            format!("up, killed: {}", killed.join(", "))
        } else if self.is_up() {
            "up".to_string()
        } else if self.is_down() {
            "down".to_string()
        } else {
            "partial (run `cilia lab up` to repair)".to_string()
        };
        write!(f, "lab {}: {overall}", self.lab)?;
        match &self.supervisor {
            Some(s) if s.running => {
                writeln!(f, ", supervisor pid {} since {}", s.pid, s.started_at.format("%Y-%m-%d %H:%M:%S UTC"))?
            }
            Some(s) => writeln!(f, ", supervisor pid {} not running", s.pid)?,
            None => writeln!(f)?,
        }
        if let Some(url) = &self.datastore_url {
            writeln!(f, "datastore: {url}")?;
        }
        for h in &self.hosts {
            writeln!(f)?;
            if !h.present {
                writeln!(f, "{} (netns {}): missing", h.name, h.namespace)?;
                continue;
            }
            match self.killed.iter().find(|k| k.node == h.name) {
                Some(k) => writeln!(
                    f,
                    "{} (netns {}): killed at {}; links down, processes held (`cilia lab reboot {}` or `cilia lab up` boots it)",
                    h.name,
                    h.namespace,
                    k.killed_at.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
                    h.name
                )?,
                None => writeln!(f, "{} (netns {})", h.name, h.namespace)?,
            }
            for i in &h.interfaces {
                writeln!(f, "  {:<16} {:<14} {}", i.name, i.state, i.addresses.join(" "))?;
            }
        }
        if !self.processes.is_empty() {
            writeln!(f)?;
            // As wide as the longest name (kube-controller-manager), so the columns stay aligned.
            let w = self.processes.iter().map(|p| p.name.len()).max().unwrap_or(0).max(12);
            let hw = self.processes.iter().map(|p| p.host.len()).max().unwrap_or(0).max(8);
            writeln!(f, "{:<w$} {:<hw$} {:>8}  {:<8} {:>8}  LOG", "PROCESS", "HOST", "PID", "STATE", "RESTARTS")?;
            for p in &self.processes {
                let pid = p.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
                let state = if p.running {
                    "running"
                } else if p.held {
                    "held"
                } else {
                    "stopped"
                };
                writeln!(
                    f,
                    "{:<w$} {:<hw$} {:>8}  {:<8} {:>8}  {}",
                    p.name,
                    p.host,
                    pid,
                    state,
                    p.restarts,
                    p.log.display()
                )?;
                if !p.running
                    && !p.held
                    && let Some(exit) = &p.last_exit
                {
                    writeln!(f, "{:<w$} last exit: {exit}", "")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_hosts_like_ip_br_addr_and_a_process_table() {
        let status = LabStatus {
            lab: "t1".into(),
            hosts: vec![
                HostStatus {
                    name: "k8s-ctr".into(),
                    namespace: "t1-k8s-ctr".into(),
                    present: true,
                    interfaces: vec![InterfaceStatus {
                        name: "eth1@if7".into(),
                        state: "UP".into(),
                        addresses: vec!["192.168.10.100/24".into()],
                    }],
                },
                HostStatus {
                    name: "k8s-w0".into(),
                    namespace: "t1-k8s-w0".into(),
                    present: false,
                    interfaces: Vec::new(),
                },
            ],
            supervisor: Some(SupervisorStatus {
                pid: 10,
                running: true,
                started_at: DateTime::from_timestamp(0, 0).unwrap(),
            }),
            datastore_url: Some("unix:///run/cilia/lab/t1/etcd.sock".into()),
            processes: vec![ProcessStatus {
                name: "etcd".into(),
                host: "k8s-ctr".into(),
                namespace: "t1-k8s-ctr".into(),
                pid: Some(42),
                running: true,
                held: false,
                restarts: 1,
                last_exit: Some("signal: 9 (SIGKILL)".into()),
                log: "/run/cilia/lab/t1/logs/etcd.log".into(),
            }],
            killed: Vec::new(),
        };
        let text = status.to_string();
        assert!(text.starts_with("lab t1: partial"), "{text}");
        assert!(text.contains("datastore: unix:///run/cilia/lab/t1/etcd.sock"));
        assert!(text.contains("  eth1@if7         UP             192.168.10.100/24\n"));
        assert!(text.contains("k8s-w0 (netns t1-k8s-w0): missing"));
        assert!(
            text.contains("etcd         k8s-ctr        42  running         1  /run/cilia/lab/t1/logs/etcd.log"),
            "{text}"
        );
    }

    #[test]
    fn a_killed_node_says_so_and_its_processes_are_held() {
        let status = LabStatus {
            lab: "t1".into(),
            hosts: vec![HostStatus {
                name: "k8s-w1".into(),
                namespace: "t1-k8s-w1".into(),
                present: true,
                interfaces: vec![InterfaceStatus {
                    name: "eth1@if9".into(),
                    state: "DOWN".into(),
                    addresses: vec!["192.168.10.101/24".into()],
                }],
            }],
            supervisor: Some(SupervisorStatus {
                pid: 10,
                running: true,
                started_at: DateTime::from_timestamp(0, 0).unwrap(),
            }),
            datastore_url: None,
            processes: vec![ProcessStatus {
                name: "agent-k8s-w1".into(),
                host: "k8s-w1".into(),
                namespace: "t1-k8s-w1".into(),
                pid: Some(42),
                running: false,
                held: true,
                restarts: 0,
                last_exit: Some("signal: 9 (SIGKILL)".into()),
                log: "/run/cilia/lab/t1/logs/agent-k8s-w1.log".into(),
            }],
            killed: vec![KilledNode {
                node: "k8s-w1".into(),
                killed_at: DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap(),
            }],
        };
        assert!(status.is_killed("k8s-w1"));
        let text = status.to_string();
        assert!(text.starts_with("lab t1: up, killed: k8s-w1,"), "{text}");
        assert!(
            text.contains(
                "k8s-w1 (netns t1-k8s-w1): killed at 2023-11-14T22:13:20.123456Z; links down, processes held"
            ),
            "{text}"
        );
        assert!(text.contains("agent-k8s-w1 k8s-w1         42  held            0"), "{text}");
        assert!(!text.contains("last exit"), "{text}");
    }
}
