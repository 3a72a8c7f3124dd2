//! Gives Services their cluster IP and node ports, as the Kubernetes API server does at creation:
//! a cluster IP from the service CIDR for every Service but ExternalName and headless ones, and a
//! node port for each port of NodePort and LoadBalancer Services. Addresses are released when a
//! Service is deleted, and node ports when it turns back into a ClusterIP Service.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    net::IpAddr,
    sync::Arc,
};

use api::{Object, ObjectRef, kinds, types::Service};
use store::{
    Change, Informer, Store, WatchEventType,
    reconcile::{Outcome, Reconcile, Runner, Wake},
};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::{
    config::OperatorConfig,
    service_addresses::{ClusterIps, NodePorts},
    status,
};

type Key = (String, String);

/// What one Service holds.
#[derive(Default, Clone, PartialEq)]
struct Held {
    cluster_ip: Option<IpAddr>,
    node_ports: BTreeSet<u16>,
}

struct Controller {
    store: Arc<dyn Store>,
    cluster_ips: ClusterIps,
    node_ports: NodePorts,
    held: BTreeMap<Key, Held>,
    /// What Services still need, by Service: filled in by the next pass.
    wanted: BTreeMap<Key, (ObjectRef, Wanted)>,
}

pub async fn run(
    store: Arc<dyn Store>,
    services: Arc<Informer>,
    config: OperatorConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    // Addresses are claimed and released as the changes come, in the informer's order (a
    // resync claims everything held before anything is allocated); a pass allocates what the
    // Services still need and writes it.
    let runner = Runner::new("service-addresses").watch_changes(&services, |ctl: &mut Controller, change| {
        match change {
            Change::Resync(all) => {
                let work = ctl.resync(&all);
                ctl.wanted.extend(work);
            }
            Change::Event(ev) if ev.type_ == WatchEventType::Deleted => {
                let k = key(&ev.object);
                ctl.release(&k);
                ctl.wanted.remove(&k);
            }
            Change::Event(ev) => {
                let k = key(&ev.object);
                match ctl.observe(&ev.object) {
                    Some(work) => ctl.wanted.insert(k, work),
                    None => ctl.wanted.remove(&k),
                };
            }
        }
        Wake::Now
    });
    let ctl = Controller {
        store,
        cluster_ips: ClusterIps::new(config.service_cidr),
        node_ports: NodePorts::new(config.node_ports.0, config.node_ports.1),
        held: BTreeMap::new(),
        wanted: BTreeMap::new(),
    };
    runner.run_until_cancelled(ctl, shutdown).await;
    Ok(())
}

impl Reconcile for Controller {
    type Error = Infallible;

    /// Fills in what the Services need. A write that fails is not retried: the Service's next
    /// change looks at it again.
    async fn pass(&mut self) -> std::result::Result<Outcome, Infallible> {
        for (target, wanted) in std::mem::take(&mut self.wanted).into_values() {
            if let Err(e) = self.allocate_and_write(&target, wanted).await {
                tracing::warn!(error = %api::error::Chain(&e), "assigning service addresses");
            }
        }
        Ok(Outcome::Done)
    }
}

fn key(obj: &Object) -> Key {
    (obj.namespace().unwrap_or_default().to_string(), obj.name().to_string())
}

/// What a Service needs filled in.
struct Wanted {
    cluster_ip: bool,
    node_port_ports: Vec<usize>,
    drop_node_ports: bool,
}

impl Controller {
    /// Claims everything the stored Services hold, then finds what is missing. Existing
    /// assignments always win over new ones, so a restarted operator never moves an address.
    fn resync(&mut self, all: &[Object]) -> Vec<(Key, (ObjectRef, Wanted))> {
        let keys: BTreeSet<Key> = all.iter().map(key).collect();
        let gone: Vec<Key> = self.held.keys().filter(|k| !keys.contains(*k)).cloned().collect();
        for k in gone {
            self.release(&k);
        }
        self.wanted.clear();
        all.iter().filter_map(|o| Some((key(o), self.observe(o)?))).collect()
    }

    fn release(&mut self, k: &Key) {
        if let Some(held) = self.held.remove(k) {
            if let Some(ip) = held.cluster_ip {
                self.cluster_ips.release(ip);
            }
            for p in held.node_ports {
                self.node_ports.release(p);
            }
        }
    }

    /// Records what the Service holds (claiming it) and says what it still needs.
    fn observe(&mut self, obj: &Object) -> Option<(ObjectRef, Wanted)> {
        let svc: Service = match obj.to_typed() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(service = %key(obj).1, error = %e, "skipping a Service that does not parse");
                return None;
            }
        };
        let k = key(obj);
        let before = self.held.get(&k).cloned().unwrap_or_default();
        let mut now = Held::default();
        let ip = svc.spec.cluster_ip.as_deref().filter(|s| !s.is_empty() && *s != "None");
        if let Some(ip) = ip.and_then(|s| s.parse::<IpAddr>().ok()) {
            if before.cluster_ip == Some(ip) {
                now.cluster_ip = Some(ip);
            } else {
                match self.cluster_ips.claim(ip) {
                    Ok(()) => now.cluster_ip = Some(ip),
                    Err(e) => tracing::warn!(service = %format!("{}/{}", k.0, k.1), error = %e, "cluster IP"),
                }
            }
        }
        for port in svc.spec.ports.iter().filter_map(|p| p.node_port).filter_map(|p| u16::try_from(p).ok()) {
            if before.node_ports.contains(&port) || self.node_ports.claim(port).is_ok() {
                now.node_ports.insert(port);
            } else {
                tracing::warn!(service = %format!("{}/{}", k.0, k.1), port, "node port already in use by another Service");
            }
        }
        // Release what the Service no longer holds.
        if let Some(old) = before.cluster_ip.filter(|ip| now.cluster_ip != Some(*ip)) {
            self.cluster_ips.release(old);
        }
        for old in before.node_ports.difference(&now.node_ports) {
            self.node_ports.release(*old);
        }
        self.held.insert(k, now.clone());

        let type_ = svc.type_();
        let wants_node_ports = type_ == "NodePort"
            || (type_ == "LoadBalancer" && svc.spec.allocate_load_balancer_node_ports != Some(false));
        let wanted = Wanted {
            cluster_ip: type_ != "ExternalName"
                && svc.spec.cluster_ip.as_deref() != Some("None")
                && now.cluster_ip.is_none(),
            node_port_ports: if wants_node_ports {
                svc.spec.ports.iter().enumerate().filter(|(_, p)| p.node_port.is_none()).map(|(i, _)| i).collect()
            } else {
                Vec::new()
            },
            drop_node_ports: !wants_node_ports && svc.spec.ports.iter().any(|p| p.node_port.is_some()),
        };
        let needed = wanted.cluster_ip || !wanted.node_port_ports.is_empty() || wanted.drop_node_ports;
        needed.then(|| {
            (
                ObjectRef::new(&kinds::SERVICE, Some(&obj.metadata.namespace.clone().unwrap_or_default()), obj.name()),
                wanted,
            )
        })
    }

    async fn allocate_and_write(&mut self, target: &ObjectRef, wanted: Wanted) -> Result<()> {
        let k = (target.namespace.clone().unwrap_or_default(), target.name.clone());
        let ip = if wanted.cluster_ip { Some(self.cluster_ips.allocate(rand::random())?) } else { None };
        let mut ports = Vec::new();
        for _ in &wanted.node_port_ports {
            ports.push(self.node_ports.allocate(rand::random())?);
        }
        let held = self.held.entry(k).or_default();
        if let Some(ip) = ip {
            held.cluster_ip = Some(ip);
        }
        held.node_ports.extend(ports.iter().copied());
        let ports_by_index: BTreeMap<usize, u16> = wanted.node_port_ports.iter().copied().zip(ports).collect();
        status::write(self.store.as_ref(), target, |obj| {
            let spec = obj.body.entry("spec").or_insert_with(|| serde_json::json!({}));
            let mut changed = false;
            if let Some(ip) = ip
                && spec.get("clusterIP").and_then(|v| v.as_str()).is_none_or(str::is_empty)
            {
                spec["clusterIP"] = ip.to_string().into();
                spec["clusterIPs"] = serde_json::json!([ip.to_string()]);
                changed = true;
            }
            if let Some(ports) = spec.get_mut("ports").and_then(|p| p.as_array_mut()) {
                for (i, port) in ports.iter_mut().enumerate() {
                    if wanted.drop_node_ports {
                        changed |= port.as_object_mut().and_then(|p| p.remove("nodePort")).is_some();
                    } else if let Some(np) = ports_by_index.get(&i)
                        && port.get("nodePort").is_none()
                    {
                        port["nodePort"] = (*np).into();
                        changed = true;
                    }
                }
            }
            Ok(changed)
        })
        .await
    }
}
