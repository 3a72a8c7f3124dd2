//! Drives the LB-IPAM reconciler (`ipam::lbipam`) from the datastore: pools and Services in,
//! Service and pool statuses out.
//!
//! A stored Service that does not parse (written around the API, or by a newer version) is never
//! taken for a deleted one: that would hand its address to another Service. Its last readable
//! version stands in for it; without one, the addresses its status records stay held.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use api::{
    Object, ObjectRef, kinds,
    types::{LbIpPool, Service},
};
use ipam::lbipam::{LbIpam, LbIpamConfig, StatusUpdate};
use store::{Change, Informer, Store, WatchEventType};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::{config::OperatorConfig, status};

pub async fn run(
    store: Arc<dyn Store>,
    pools: Arc<Informer>,
    services: Arc<Informer>,
    config: OperatorConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut pool_sub = pools.subscribe();
    let mut svc_sub = services.subscribe();
    let mut ipam = LbIpam::new(LbIpamConfig { l2_announcements: config.l2_announcements, ..LbIpamConfig::default() });
    let mut known_pools: BTreeSet<String> = BTreeSet::new();
    let mut known_services: BTreeSet<(String, String)> = BTreeSet::new();

    // Start-up: both full states at once, so every Service keeps the address it already has.
    let (Some(Change::Resync(all_pools)), Some(Change::Resync(all_services))) =
        (pool_sub.recv().await, svc_sub.recv().await)
    else {
        return Ok(());
    };
    let pools0: Vec<LbIpPool> = Object::typed_all(&all_pools);
    let mut last_readable: BTreeMap<(String, String), Service> = BTreeMap::new();
    let services0 = readable_services(&all_services, &mut last_readable);
    known_pools.extend(pools0.iter().map(|p| p.metadata.name.clone()));
    known_services.extend(services0.iter().map(service_key));
    // Writes that failed (datastore unreachable) are retried: the reconciler already counts them as
    // published, so dropping them would leave a status stale until the object changes again.
    let mut failed = write(store.as_ref(), ipam.initial_sync(&pools0, &services0)).await;
    let mut retry = tokio::time::interval(std::time::Duration::from_secs(1));

    loop {
        let updates = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = retry.tick(), if !failed.is_empty() => std::mem::take(&mut failed),
            change = pool_sub.recv() => match change {
                None => return Ok(()),
                Some(Change::Resync(all)) => {
                    let pools: Vec<LbIpPool> = Object::typed_all(&all);
                    let now: BTreeSet<String> = pools.iter().map(|p| p.metadata.name.clone()).collect();
                    let mut updates = Vec::new();
                    for gone in known_pools.difference(&now) {
                        updates.extend(ipam.delete_pool(gone));
                    }
                    for p in &pools {
                        updates.extend(ipam.upsert_pool(p));
                    }
                    known_pools = now;
                    updates
                }
                Some(Change::Event(ev)) if ev.type_ == WatchEventType::Deleted => {
                    known_pools.remove(ev.object.name());
                    ipam.delete_pool(ev.object.name())
                }
                Some(Change::Event(ev)) => match ev.object.to_typed_or_skip::<LbIpPool>() {
                    Some(p) => {
                        known_pools.insert(p.metadata.name.clone());
                        ipam.upsert_pool(&p)
                    }
                    None => Vec::new(),
                },
            },
            change = svc_sub.recv() => match change {
                None => return Ok(()),
                Some(Change::Resync(all)) => {
                    let services = readable_services(&all, &mut last_readable);
                    let now: BTreeSet<(String, String)> = services.iter().map(service_key).collect();
                    let mut updates = Vec::new();
                    for (ns, name) in known_services.difference(&now) {
                        updates.extend(ipam.delete_service(ns, name));
                    }
                    for s in &services {
                        updates.extend(ipam.upsert_service(s));
                    }
                    known_services = now;
                    updates
                }
                Some(Change::Event(ev)) if ev.type_ == WatchEventType::Deleted => {
                    let ns = ev.object.namespace().unwrap_or_default().to_string();
                    known_services.remove(&(ns.clone(), ev.object.name().to_string()));
                    last_readable.remove(&(ns.clone(), ev.object.name().to_string()));
                    ipam.delete_service(&ns, ev.object.name())
                }
                // An update that does not parse changes nothing: the Service keeps what it had.
                Some(Change::Event(ev)) => match ev.object.to_typed_or_skip::<Service>() {
                    Some(s) => {
                        known_services.insert(service_key(&s));
                        last_readable.insert(service_key(&s), s.clone());
                        ipam.upsert_service(&s)
                    }
                    None => Vec::new(),
                },
            },
        };
        failed.extend(write(store.as_ref(), updates).await);
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
            tracing::warn!(error = %crate::error_chain(&e), "writing an LB-IPAM status; will retry");
            failed.push(update);
        }
    }
    failed
}
