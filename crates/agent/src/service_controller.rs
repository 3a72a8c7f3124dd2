//! Keeps the node's service datapath in line with the cluster: informers on Services,
//! EndpointSlices and Nodes feed [`crate::services::desired`], whose result goes to the datapath
//! as a whole (its sync is idempotent and writes only what changed). The cluster DNS records
//! have a controller of their own ([`crate::dns::controller`]).
//!
//! The first pass waits until all three informers hold the complete lists: a restarted agent
//! finds the previous run's services in the pinned maps, and syncing a partial list would take
//! frontends away from connections that are fine. Later changes are batched for a few
//! milliseconds, so a rollout that touches many slices costs a handful of syncs.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use api::{
    LastReadable, Object, kinds,
    types::{EndpointSlice, Service},
};
use datapath::{LbDatapath, ServiceEntry, SyncStats};
use store::{Informer, Store};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    node_view::NodeView,
    services::{self, BuildOptions, Conflict},
};

/// One node's datapath, shared by the service controller and the device attacher.
pub type SharedDatapath = Arc<Mutex<Box<dyn LbDatapath>>>;

/// Changes arriving within this window are handled by one pass.
const DEBOUNCE: Duration = Duration::from_millis(10);
const RETRY: Duration = Duration::from_secs(1);
/// Expired conntrack entries are removed this often (the LRU maps evict under pressure anyway).
const CT_GC: Duration = Duration::from_secs(30);

pub struct ServiceController {
    options: BuildOptions,
    datapath: SharedDatapath,
    /// What the last successful sync wrote; None before the first.
    applied: Option<Vec<ServiceEntry>>,
    conflicts: Vec<Conflict>,
    refused: Vec<services::Refused>,
    /// A Service or slice that stops parsing keeps its last readable version: its frontends and
    /// backends stay, rather than going as if it were deleted.
    readable_services: LastReadable<Service>,
    readable_slices: LastReadable<EndpointSlice>,
}

impl ServiceController {
    pub fn new(options: BuildOptions, datapath: SharedDatapath) -> Self {
        ServiceController {
            options,
            datapath,
            applied: None,
            conflicts: Vec::new(),
            refused: Vec::new(),
            readable_services: LastReadable::default(),
            readable_slices: LastReadable::default(),
        }
    }

    /// One pass over the complete lists. Returns the sync's statistics, or None when nothing
    /// changed since the last successful sync.
    pub fn pass(
        &mut self,
        services: &[Object],
        slices: &[Object],
        nodes: &[Object],
    ) -> Result<Option<SyncStats>, datapath::Error> {
        let services = self.readable_services.read(services);
        let slices = self.readable_slices.read(slices);
        let nodes: Vec<NodeView> = nodes.iter().map(NodeView::of).collect();

        let desired = services::desired(&self.options, &services, &slices, &nodes);
        if desired.conflicts != self.conflicts {
            for c in &desired.conflicts {
                tracing::warn!(
                    "{}:{} is claimed by {} and {}; {} keeps it",
                    c.frontend.address,
                    c.frontend.port,
                    c.kept,
                    c.dropped,
                    c.kept
                );
            }
            self.conflicts = desired.conflicts;
        }
        if desired.refused != self.refused {
            for r in &desired.refused {
                tracing::warn!(service = %r.service, address = %r.address, "frontend refused: {}", r.why);
            }
            self.refused = desired.refused;
        }
        if self.applied.as_ref() == Some(&desired.entries) {
            return Ok(None);
        }
        let stats = {
            let mut dp = self.datapath.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            dp.sync_services(&desired.entries)?
        };
        self.applied = Some(desired.entries);
        Ok(Some(stats))
    }

    /// Takes the nodes heartbeats say are down; true when that changes the backends to compute.
    pub fn set_unreachable_nodes(&mut self, nodes: BTreeSet<String>) -> bool {
        if self.options.unreachable_nodes == nodes {
            return false;
        }
        if !nodes.is_empty() {
            tracing::info!(nodes = ?nodes, "nodes unreachable by heartbeat: their endpoints get no new connections");
        }
        self.options.unreachable_nodes = nodes;
        true
    }

    pub fn frontends(&self) -> usize {
        self.applied.as_ref().map_or(0, Vec::len)
    }

    /// Backends of all frontends the last sync wrote.
    pub fn backends(&self) -> usize {
        self.applied.as_ref().map_or(0, |entries| entries.iter().map(|e| e.backends.len()).sum())
    }
}

/// Runs the controller until `shutdown`. `unreachable` carries the nodes the L2 heartbeats say
/// are down (never changes without L2 announcements).
pub async fn run(
    store: Arc<dyn Store>,
    mut controller: ServiceController,
    mut unreachable: watch::Receiver<BTreeSet<String>>,
    shutdown: CancellationToken,
) {
    let services = Informer::start(store.clone(), &kinds::SERVICE, None);
    let slices = Informer::start(store.clone(), &kinds::ENDPOINT_SLICE, None);
    let nodes = Informer::start(store, &kinds::NODE, None);
    let (mut svc_sub, mut slice_sub, mut node_sub) = (services.subscribe(), slices.subscribe(), nodes.subscribe());
    tokio::select! {
        () = async { services.wait_synced().await; slices.wait_synced().await; nodes.wait_synced().await } => {}
        () = shutdown.cancelled() => return,
    }
    let mut due = Some(Instant::now());
    let mut sync_log = crate::datapath_gc::SyncLog::default();
    let mut heartbeats = true;
    let mut gc = tokio::time::interval(CT_GC);
    gc.reset();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = gc.tick() => {
                crate::datapath_gc::collect(&controller.datapath);
                sync_log.flush();
            }
            c = svc_sub.recv() => if c.is_none() { return } else { due.get_or_insert_with(|| Instant::now() + DEBOUNCE); },
            c = slice_sub.recv() => if c.is_none() { return } else { due.get_or_insert_with(|| Instant::now() + DEBOUNCE); },
            c = node_sub.recv() => if c.is_none() { return } else { due.get_or_insert_with(|| Instant::now() + DEBOUNCE); },
            changed = unreachable.changed(), if heartbeats => {
                // Without heartbeats (no L2 announcements) the sender is gone: stop looking.
                heartbeats = changed.is_ok();
                if heartbeats && controller.set_unreachable_nodes(unreachable.borrow_and_update().clone()) {
                    due = Some(Instant::now());
                }
            },
            () = sleep_until_some(due) => {
                due = None;
                let started = std::time::Instant::now();
                match controller.pass(&services.snapshot(), &slices.snapshot(), &nodes.snapshot()) {
                    Ok(Some(stats)) => {
                        crate::metrics::services_programmed(started.elapsed(), controller.frontends(), controller.backends());
                        if !sync_log.started() || stats.upserts + stats.deletes > 0 {
                            sync_log.synced(controller.frontends(), stats.upserts, stats.deletes);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "syncing services to the datapath failed; retrying");
                        due = Some(Instant::now() + RETRY);
                    }
                }
            }
        }
    }
}

async fn sleep_until_some(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use datapath::FakeDatapath;
    use serde_json::json;

    use super::*;

    fn object(kind: &'static api::ResourceKind, value: serde_json::Value) -> Object {
        let mut o: Object = serde_json::from_value(value).unwrap();
        o.kind = kind.kind.to_string();
        o
    }

    fn inputs(backends: &[&str]) -> (Vec<Object>, Vec<Object>, Vec<Object>) {
        let svc = object(
            &kinds::SERVICE,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "webpod", "namespace": "default"},
                   "spec": {"clusterIP": "10.96.41.64", "ports": [{"port": 80}]}}),
        );
        let endpoints: Vec<_> = backends
            .iter()
            .map(|a| json!({"addresses": [a], "nodeName": "k8s-w1", "conditions": {"ready": true}}))
            .collect();
        let slice = object(
            &kinds::ENDPOINT_SLICE,
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": "webpod-abcde", "namespace": "default", "labels": {"kubernetes.io/service-name": "webpod"}},
                   "addressType": "IPv4", "ports": [{"name": "", "port": 80}], "endpoints": endpoints}),
        );
        let node = object(
            &kinds::NODE,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "k8s-w1"},
                   "status": {"addresses": [{"type": "InternalIP", "address": "192.168.10.101"}]}}),
        );
        (vec![svc], vec![slice], vec![node])
    }

    #[test]
    fn passes_sync_changes_only() {
        let fake = FakeDatapath::new();
        let shared: SharedDatapath = Arc::new(Mutex::new(Box::new(fake.clone())));
        let options = BuildOptions {
            node_name: "k8s-w1".into(),
            default_algorithm: datapath::LbAlgorithm::Random,
            unreachable_nodes: Default::default(),
        };
        let mut c = ServiceController::new(options, shared);

        let (s, e, n) = inputs(&["172.20.1.10", "172.20.1.11"]);
        let stats = c.pass(&s, &e, &n).unwrap().expect("first pass syncs");
        assert!(stats.upserts > 0);
        assert_eq!(fake.state().services[0].backends.len(), 2);
        assert_eq!(c.pass(&s, &e, &n).unwrap(), None, "nothing changed, no sync");
        assert_eq!(fake.state().syncs, 1);

        // A backend goes away: synced; a failure is reported and the next pass retries.
        let (s, e, n) = inputs(&["172.20.1.10"]);
        fake.fail_next("map full");
        assert!(c.pass(&s, &e, &n).is_err());
        c.pass(&s, &e, &n).unwrap().expect("retried");
        assert_eq!(fake.state().services[0].backends.len(), 1);

        // An object that does not parse is skipped, the others still apply.
        let mut broken = s.clone();
        broken.push(object(
            &kinds::SERVICE,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": "nope"}}),
        ));
        assert_eq!(c.pass(&broken, &e, &n).unwrap(), None);

        // A Service that stops parsing keeps its frontend and backends: it was not deleted.
        let mut corrupt = s.clone();
        corrupt[0].body["spec"]["sessionAfinity"] = json!("None");
        assert_eq!(c.pass(&corrupt, &e, &n).unwrap(), None, "the Service's frontend was removed");
        assert_eq!(fake.state().services[0].backends.len(), 1);
    }
}
