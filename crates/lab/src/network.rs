//! Builds, repairs and removes the lab's network: observe the kernel, plan the difference, apply it
//! with one `ip -batch` per namespace and phase, then check that nothing is left to do. If repairing
//! in place fails, the namespaces are deleted and built again from nothing; `up` never returns with
//! a half-built lab.

use std::thread;
use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::iproute;
use crate::netns::{self, State};
use crate::observed::{Observed, Presence};
use crate::plan::{Plan, plan};
use crate::progress::Progress;
use crate::sysctl;
use crate::topology::Topology;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkReport {
    /// Namespaces created, `ip` commands run and sysctls changed. Zero on a complete lab.
    pub changes: usize,
    /// Repairing in place failed and the lab's namespaces were built again from nothing.
    pub rebuilt: bool,
    /// Hosts whose namespace is new; processes that ran there must be restarted.
    pub new_hosts: Vec<String>,
}

/// Reads every namespace of the topology, in parallel.
pub fn observe(topology: &Topology) -> Result<Observed, LabError> {
    thread::scope(|s| {
        let handles: Vec<_> = topology
            .hosts()
            .iter()
            .map(|h| {
                let ns = h.namespace.as_str();
                s.spawn(move || -> Result<(String, Presence), LabError> {
                    let presence = match netns::state(ns) {
                        State::Missing => Presence::Missing,
                        State::Stale => Presence::Stale,
                        State::Present => Presence::Present(iproute::observe(ns)?),
                    };
                    Ok((ns.to_string(), presence))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

/// Makes the kernel match `topology`, creating only what is missing.
pub fn ensure(topology: &Topology, progress: &Progress) -> Result<NetworkReport, LabError> {
    let step = progress.step("observe");
    let observed = observe(topology)?;
    let todo = plan(topology, &observed);
    let present = observed.values().filter(|p| matches!(p, Presence::Present(_))).count();
    step.done(format!(
        "{present}/{} namespaces present, {} network changes needed",
        topology.hosts().len(),
        todo.changes()
    ));

    match apply(topology, &todo, progress) {
        Ok(changes) => Ok(NetworkReport { changes, rebuilt: false, new_hosts: todo.new_hosts }),
        Err(repair_error) => {
            let step = progress.step("rebuild");
            remove_namespaces(topology.hosts().iter().map(|h| h.namespace.as_str()))?;
            step.done(format!("repair failed ({repair_error}); namespaces removed"));
            let full = plan(topology, &Observed::new());
            let changes = apply(topology, &full, progress)?;
            Ok(NetworkReport {
                changes,
                rebuilt: true,
                new_hosts: topology.hosts().iter().map(|h| h.name.clone()).collect(),
            })
        }
    }
}

/// Applies `todo` and checks the result. Returns the number of changes made.
fn apply(topology: &Topology, todo: &Plan, progress: &Progress) -> Result<usize, LabError> {
    let step = progress.step("namespaces");
    for ns in &todo.stale_namespaces {
        netns::remove_stale(ns)?;
    }
    for ns in &todo.create_namespaces {
        iproute::netns_add(ns)?;
    }
    step.done(format!("{} created", todo.create_namespaces.len()));

    // Before links: `default` values apply to interfaces created afterwards.
    let step = progress.step("sysctls");
    let sysctl_changes = thread::scope(|s| {
        let handles: Vec<_> =
            topology.hosts().iter().map(|h| s.spawn(move || sysctl::apply(&h.namespace, &h.sysctls))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .sum::<Result<usize, LabError>>()
    })?;
    step.done(format!("{sysctl_changes} changed"));

    let step = progress.step("links");
    // A link seen a moment ago may be gone by now: deleting a namespace destroys the veth peers in
    // other namespaces asynchronously. Gone is what a deletion wants, so that is not an error.
    for (ns, lines) in &todo.delete {
        for line in lines {
            match iproute::batch(ns, std::slice::from_ref(line)) {
                Err(LabError::Command { stderr, .. }) if stderr.contains("Cannot find device") => {}
                other => other?,
            }
        }
    }
    for phase in [&todo.create, &todo.configure] {
        thread::scope(|s| {
            let handles: Vec<_> = phase.iter().map(|(ns, lines)| s.spawn(move || iproute::batch(ns, lines))).collect();
            handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })?;
    }
    let commands = todo.changes() - todo.create_namespaces.len();
    step.done(format!("{commands} ip commands"));

    // The nodes' eth1 stand for their NICs, which receive with GRO like real ones.
    let mut gro_changes = 0;
    for host in topology.hosts().iter().filter(|h| h.role == crate::topology::HostRole::Node) {
        gro_changes += usize::from(sysctl::gro_on(&host.namespace, "eth1")?);
    }

    if !todo.is_empty() {
        let step = progress.step("verify");
        let left = plan(topology, &observe(topology)?);
        if !left.is_empty() {
            return Err(LabError::NotConverged { lab: topology.lab().to_string(), remaining: left.describe() });
        }
        step.done("network matches the topology");
    }
    Ok(todo.changes() + sysctl_changes + gro_changes)
}

/// A link whose carrier just came up drops what it sends, and a bridge port drops what it receives,
/// until the kernel's link watcher has acted on the carrier, which it does asynchronously and
/// postpones by up to a second when many links change at once. `up` returns a lab whose first
/// packet is delivered, so it waits for this (while etcd starts).
pub fn wait_until_links_forward(topology: &Topology, progress: &Progress) -> Result<(), LabError> {
    const PATIENCE: Duration = Duration::from_secs(5);
    let step = progress.step("carrier");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let waiting: Vec<String> = observe(topology)?
            .iter()
            .filter_map(|(ns, presence)| match presence {
                Presence::Present(observed) => Some((ns, observed.links_not_forwarding())),
                _ => None,
            })
            .flat_map(|(ns, links)| links.into_iter().map(move |l| format!("{ns}/{l}")))
            .collect();
        if waiting.is_empty() {
            step.done("every link forwards");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::NotConverged {
                lab: topology.lab().to_string(),
                remaining: format!("links not forwarding after {PATIENCE:?}: {}", waiting.join(", ")),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_until_links_forward`] for one host: its own links and their peers (the fabric's bridge
/// ports, the uplink's ends), as after a boot, while other hosts may still be down.
pub fn wait_host_links_forward(topology: &Topology, host: &str, patience: Duration) -> Result<(), LabError> {
    let mut ends: Vec<(String, String)> = Vec::new();
    for v in topology.veths() {
        if v.a.host == host || v.b.host == host {
            for e in [&v.a, &v.b] {
                if let Some(ns) = topology.namespace_of(&e.host) {
                    ends.push((ns.to_string(), e.ifname.clone()));
                }
            }
        }
    }
    let deadline = Instant::now() + patience;
    loop {
        let observed = observe(topology)?;
        let waiting: Vec<String> = ends
            .iter()
            .filter(|(ns, ifname)| match observed.get(ns) {
                Some(Presence::Present(o)) => o.links_not_forwarding().contains(&ifname.as_str()),
                _ => false,
            })
            .map(|(ns, ifname)| format!("{ns}/{ifname}"))
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::NotConverged {
                lab: topology.lab().to_string(),
                remaining: format!("links of {host} not forwarding after {patience:?}: {}", waiting.join(", ")),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Deletes namespaces (or their stale files). Links inside disappear with them.
pub fn remove_namespaces<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<usize, LabError> {
    let mut removed = 0;
    for ns in names {
        match netns::state(ns) {
            State::Missing => {}
            State::Stale => {
                netns::remove_stale(ns)?;
                removed += 1;
            }
            State::Present => {
                iproute::netns_del(ns)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
