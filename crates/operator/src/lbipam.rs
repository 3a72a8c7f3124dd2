//! Drives the LB-IPAM reconciler (`ipam::lbipam`) from the datastore: pools and Services in,
//! Service and pool statuses out.
//!
//! A stored Service that does not parse (written around the API, or by a newer version) is never
//! taken for a deleted one: that would hand its address to another Service. Its last readable
//! version stands in for it; without one, the addresses its status records stay held.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    sync::Arc,
};

use api::{
    Object, ObjectRef, kinds,
    types::{LbIpPool, Service},
};
use ipam::lbipam::{LbIpam, LbIpamConfig, StatusUpdate};
use store::{
    Change, Informer, Store, WatchEventType,
    reconcile::{Outcome, Reconcile, Runner, Wake},
};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::{config::OperatorConfig, status};

/// LB-IPAM hands out addresses first come, first served over all Services and pools, so its work
/// is not per object: every pool and Service change goes into the allocator as it comes, in the
/// informers' order ([`Runner::watch_changes`]), and a pass writes the statuses that changed.
pub async fn run(
    store: Arc<dyn Store>,
    pools: Arc<Informer>,
    services: Arc<Informer>,
    config: OperatorConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let ipam = LbIpam::new(LbIpamConfig { l2_announcements: config.l2_announcements, ..LbIpamConfig::default() });
    let runner = Runner::new("lbipam")
        .watch_changes(&pools, |ctl: &mut Allocator, change| {
            ctl.pools_changed(change);
            Wake::Now
        })
        .watch_changes(&services, |ctl: &mut Allocator, change| {
            ctl.services_changed(change);
            Wake::Now
        });
    let state = Allocator {
        store,
        ipam,
        start: Start::default(),
        known_pools: BTreeSet::new(),
        known_services: BTreeSet::new(),
        last_readable: BTreeMap::new(),
        unwritten: Vec::new(),
    };
    runner.run_until_cancelled(state, shutdown).await;
    Ok(())
}

/// The first complete states of both kinds, until both are in, and the changes that came after
/// one of them meanwhile.
#[derive(Default)]
struct Start {
    pools: Option<Vec<Object>>,
    services: Option<Vec<Object>>,
    later: Vec<Later>,
    done: bool,
}

enum Later {
    Pools(Change),
    Services(Change),
}

struct Allocator {
    store: Arc<dyn Store>,
    ipam: LbIpam,
    start: Start,
    known_pools: BTreeSet<String>,
    known_services: BTreeSet<(String, String)>,
    last_readable: BTreeMap<(String, String), Service>,
    /// Status updates the allocator published, in order; kept until written. Writes that failed
    /// (datastore unreachable) are retried: the allocator already counts them as published, so
    /// dropping them would leave a status stale until the object changes again.
    unwritten: Vec<StatusUpdate>,
}

impl Reconcile for Allocator {
    type Error = Infallible;

    async fn pass(&mut self) -> std::result::Result<Outcome, Infallible> {
        let updates = std::mem::take(&mut self.unwritten);
        self.unwritten = write(self.store.as_ref(), updates).await;
        Ok(if self.unwritten.is_empty() { Outcome::Done } else { Outcome::Retry })
    }
}

impl Allocator {
    /// Start-up takes both full states at once, so every Service keeps the address it already has.
    fn start_if_complete(&mut self) {
        let (Some(pools), Some(services)) = (&self.start.pools, &self.start.services) else { return };
        let pools0: Vec<LbIpPool> = Object::typed_all(pools);
        let services0 = readable_services(services, &mut self.last_readable);
        self.known_pools.extend(pools0.iter().map(|p| p.metadata.name.clone()));
        self.known_services.extend(services0.iter().map(service_key));
        let updates = self.ipam.initial_sync(&pools0, &services0);
        self.unwritten.extend(updates);
        let later = std::mem::take(&mut self.start.later);
        self.start = Start { done: true, ..Start::default() };
        for change in later {
            match change {
                Later::Pools(change) => self.pools_changed(change),
                Later::Services(change) => self.services_changed(change),
            }
        }
    }

    fn pools_changed(&mut self, change: Change) {
        if !self.start.done {
            // Each subscription starts with the complete state; events come after it.
            match change {
                Change::Resync(all) => {
                    self.start.pools = Some(all);
                    self.start_if_complete();
                }
                later => self.start.later.push(Later::Pools(later)),
            }
            return;
        }
        let updates = match change {
            Change::Resync(all) => {
                let pools: Vec<LbIpPool> = Object::typed_all(&all);
                let now: BTreeSet<String> = pools.iter().map(|p| p.metadata.name.clone()).collect();
                let mut updates = Vec::new();
                for gone in self.known_pools.difference(&now) {
                    updates.extend(self.ipam.delete_pool(gone));
                }
                for p in &pools {
                    updates.extend(self.ipam.upsert_pool(p));
                }
                self.known_pools = now;
                updates
            }
            Change::Event(ev) if ev.type_ == WatchEventType::Deleted => {
                self.known_pools.remove(ev.object.name());
                self.ipam.delete_pool(ev.object.name())
            }
            Change::Event(ev) => match ev.object.to_typed_or_skip::<LbIpPool>() {
                Some(p) => {
                    self.known_pools.insert(p.metadata.name.clone());
                    self.ipam.upsert_pool(&p)
                }
                None => Vec::new(),
            },
        };
        self.unwritten.extend(updates);
    }

    fn services_changed(&mut self, change: Change) {
        if !self.start.done {
            match change {
                Change::Resync(all) => {
                    self.start.services = Some(all);
                    self.start_if_complete();
                }
                later => self.start.later.push(Later::Services(later)),
            }
            return;
        }
        let updates = match change {
            Change::Resync(all) => {
                let services = readable_services(&all, &mut self.last_readable);
                let now: BTreeSet<(String, String)> = services.iter().map(service_key).collect();
                let mut updates = Vec::new();
                for (ns, name) in self.known_services.difference(&now) {
                    updates.extend(self.ipam.delete_service(ns, name));
                }
                for s in &services {
                    updates.extend(self.ipam.upsert_service(s));
                }
                self.known_services = now;
                updates
            }
            Change::Event(ev) if ev.type_ == WatchEventType::Deleted => {
                let k = (ev.object.namespace().unwrap_or_default().to_string(), ev.object.name().to_string());
                self.known_services.remove(&k);
                self.last_readable.remove(&k);
                self.ipam.delete_service(&k.0, &k.1)
            }
            // An update that does not parse changes nothing: the Service keeps what it had.
            Change::Event(ev) => match ev.object.to_typed_or_skip::<Service>() {
                Some(s) => {
                    self.known_services.insert(service_key(&s));
                    self.last_readable.insert(service_key(&s), s.clone());
                    self.ipam.upsert_service(&s)
                }
                None => Vec::new(),
            },
        };
        self.unwritten.extend(updates);
    }
}

/// Every stored Service as LB-IPAM must see it: parsed, or else its last readable version, or
/// else (never read before) a stand-in that holds the addresses its status records. Remembers
/// each parsed one in `last_readable`.
fn readable_services(objects: &[Object], last_readable: &mut BTreeMap<(String, String), Service>) -> Vec<Service> {
    let mut out = Vec::with_capacity(objects.len());
    for object in objects {
        let key = (object.namespace().unwrap_or_default().to_string(), object.name().to_string());
        match object.to_typed_or_skip::<Service>() {
            Some(s) => {
                last_readable.insert(key, s.clone());
                out.push(s);
            }
            None => out.extend(last_readable.get(&key).cloned().or_else(|| holding_stand_in(object))),
        }
    }
    out
}

/// A LoadBalancer Service with only the identity and the ingress addresses of `object`, so that
/// LB-IPAM keeps those addresses held; None when its status records none.
fn holding_stand_in(object: &Object) -> Option<Service> {
    let ingress = object.lookup_path("status.loadBalancer.ingress")?;
    let ips: Vec<serde_json::Value> = ingress
        .as_array()?
        .iter()
        .filter_map(|i| i.get("ip").cloned())
        .map(|ip| serde_json::json!({ "ip": ip }))
        .collect();
    if ips.is_empty() {
        return None;
    }
    let stand_in = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": object.name(),
            "namespace": object.namespace().unwrap_or("default"),
            "uid": object.metadata.uid,
        },
        "spec": { "type": "LoadBalancer" },
        "status": { "loadBalancer": { "ingress": ips } },
    });
    let service: Service = serde_json::from_value(stand_in).ok()?;
    tracing::warn!(
        service = %format!("{}/{}", object.namespace().unwrap_or("default"), object.name()),
        "a Service that does not parse keeps the addresses its status records"
    );
    Some(service)
}

fn service_key(s: &Service) -> (String, String) {
    (s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone())
}

/// Writes the updates; returns those that failed.
async fn write(store: &dyn Store, updates: Vec<StatusUpdate>) -> Vec<StatusUpdate> {
    let mut failed = Vec::new();
    for update in updates {
        let result = match &update {
            StatusUpdate::Service { namespace, name, status } => {
                status::write_status(store, &ObjectRef::new(&kinds::SERVICE, Some(namespace), name), status).await
            }
            StatusUpdate::Pool { name, status } => {
                status::write_status(store, &ObjectRef::new(&kinds::LB_IP_POOL, None, name), status).await
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %api::error::Chain(&e), "writing an LB-IPAM status; will retry");
            failed.push(update);
        }
    }
    failed
}
