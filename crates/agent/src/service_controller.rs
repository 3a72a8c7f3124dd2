//! Keeps the node's service datapath in line with the cluster: informers on Services,
//! EndpointSlices and Nodes feed [`crate::services::desired`], whose result goes to the datapath
//! as a whole (its sync is idempotent and writes only what changed). The cluster DNS records
//! have a controller of their own ([`crate::dns::controller`]).
//!
//! The first pass waits until all three informers hold the complete lists: a restarted agent
//! finds the previous run's services in the pinned maps, and syncing a partial list would take
//! frontends away from connections that are fine. Later changes are batched for a few
//! milliseconds, so a rollout that touches many slices costs a handful of syncs.

use std::{collections::BTreeSet, convert::Infallible, sync::Arc, time::Duration};

use api::error::Chain;
use api::{
    LastReadable, Object, kinds,
    types::{EndpointSlice, Service},
};
use datapath::{ServiceEntry, SyncStats};
use store::{
    Informer, Store,
    reconcile::{Backoff, Outcome, Reconcile, Runner, Wake},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    datapath_worker::DatapathHandle,
    node_view::NodeView,
    service_fit,
    services::{self, BuildOptions, Conflict},
};

/// Changes arriving within this window are handled by one pass.
const DEBOUNCE: Duration = Duration::from_millis(10);
const RETRY: Duration = Duration::from_secs(1);

pub struct ServiceController {
    options: BuildOptions,
    datapath: DatapathHandle,
    /// What the last successful sync wrote; None before the first.
    applied: Option<Vec<ServiceEntry>>,
    conflicts: Vec<Conflict>,
    refused: Vec<services::Refused>,
    /// Services the datapath's maps had no room for, newest last ([`crate::service_fit`]).
    left_out: Vec<String>,
    /// A Service or slice that stops parsing keeps its last readable version: its frontends and
    /// backends stay, rather than going as if it were deleted.
    readable_services: LastReadable<Service>,
    readable_slices: LastReadable<EndpointSlice>,
}

impl ServiceController {
    pub fn new(options: BuildOptions, datapath: DatapathHandle) -> Self {
        ServiceController {
            options,
            datapath,
            applied: None,
            conflicts: Vec::new(),
            refused: Vec::new(),
            left_out: Vec::new(),
            readable_services: LastReadable::default(),
            readable_slices: LastReadable::default(),
        }
    }

    /// One pass over the complete lists. Returns the sync's statistics, or None when nothing
    /// changed since the last successful sync.
    pub async fn pass(
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
        // The datapath checks every map before it writes: only when the whole set does not fit
        // are the Services that do chosen (the oldest), so a pass that fits costs nothing more.
        let (fitted, stats) = match self.sync_if_changed(&desired.entries).await {
            Err(datapath::Error::Exhausted { .. }) => {
                let capacity = self.datapath.call(|dp| dp.capacity()).await?;
                let fitted = service_fit::fit(&services, desired.entries, capacity.as_ref(), |subset| {
                    services::desired(&self.options, subset, &slices, &nodes).entries
                });
                let stats = self.sync_if_changed(&fitted.entries).await?;
                (fitted, stats)
            }
            result => (service_fit::Fitted { entries: desired.entries, ..Default::default() }, result?),
        };
        // Reported only once the datapath holds what the report says: a failed sync keeps the
        // previous word on which Services are left out.
        if fitted.left_out != self.left_out {
            match fitted.full_map {
                Some((map, needed, holds)) => tracing::warn!(
                    map,
                    needed,
                    holds,
                    left_out = ?fitted.left_out,
                    "the service maps cannot hold every Service: the newest are left out until there is room \
                     (raise bpf-lb-map-max)"
                ),
                None => tracing::info!("every Service fits the service maps again"),
            }
            self.left_out = fitted.left_out;
            crate::metrics::services_left_out(self.left_out.len());
        }
        Ok(stats)
    }

    /// Syncs `entries` unless the last successful sync wrote exactly them.
    async fn sync_if_changed(&mut self, entries: &[ServiceEntry]) -> Result<Option<SyncStats>, datapath::Error> {
        if self.applied.as_deref() == Some(entries) {
            return Ok(None);
        }
        let owned = entries.to_vec();
        let stats = self.datapath.try_call(move |dp| dp.sync_services(&owned)).await?;
        self.applied = Some(entries.to_vec());
        Ok(Some(stats))
    }

    /// Services left out of the datapath because its maps are full (`namespace/name`).
    pub fn left_out(&self) -> &[String] {
        &self.left_out
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

/// The controller with its inputs and outputs, as the runner drives it.
struct Running {
    controller: ServiceController,
    services: Informer,
    slices: Informer,
    nodes: Informer,
    left_out: watch::Sender<Vec<String>>,
    sync_log: crate::datapath_gc::SyncLog,
}

impl Reconcile for Running {
    type Error = Infallible;

    async fn pass(&mut self) -> Result<Outcome, Infallible> {
        let controller = &mut self.controller;
        let started = std::time::Instant::now();
        let result = controller.pass(&self.services.snapshot(), &self.slices.snapshot(), &self.nodes.snapshot()).await;
        self.left_out.send_if_modified(|sent| {
            let changed = sent.as_slice() != controller.left_out();
            if changed {
                *sent = controller.left_out().to_vec();
            }
            changed
        });
        match result {
            Ok(Some(stats)) => {
                crate::metrics::services_programmed(started.elapsed(), controller.frontends(), controller.backends());
                if !self.sync_log.started() || stats.upserts + stats.deletes > 0 {
                    self.sync_log.synced(controller.frontends(), stats.upserts, stats.deletes);
                }
                Ok(Outcome::Done)
            }
            Ok(None) => Ok(Outcome::Done),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "syncing services to the datapath failed; retrying");
                Ok(Outcome::Retry)
            }
        }
    }
}

impl Running {
    fn flush_sync_log(&mut self) -> Wake {
        self.sync_log.flush();
        Wake::No
    }
}

/// Runs the controller until `shutdown`. `unreachable` carries the nodes the L2 heartbeats say
/// are down (never changes without L2 announcements); `left_out` gets the Services the maps had
/// no room for after each pass ([`crate::service_conditions`] reports them).
pub async fn run(
    store: Arc<dyn Store>,
    controller: ServiceController,
    unreachable: watch::Receiver<BTreeSet<String>>,
    left_out: watch::Sender<Vec<String>>,
    shutdown: CancellationToken,
) {
    let running = Running {
        controller,
        services: Informer::start(store.clone(), &kinds::SERVICE, None),
        slices: Informer::start(store.clone(), &kinds::ENDPOINT_SLICE, None),
        nodes: Informer::start(store, &kinds::NODE, None),
        left_out,
        sync_log: crate::datapath_gc::SyncLog::default(),
    };
    Runner::new("services")
        .debounce(DEBOUNCE)
        .backoff(Backoff::fixed(RETRY))
        // A datapath that refused a sync is not asked again faster because Services change.
        .hold_changes_while_retrying()
        .watch(&running.services)
        .watch(&running.slices)
        .watch(&running.nodes)
        .every(crate::datapath_gc::SyncLog::EVERY, Running::flush_sync_log)
        // Without L2 announcements nothing ever sends, and the sender is gone.
        .on_change(
            unreachable,
            |running: &mut Running, nodes| {
                if running.controller.set_unreachable_nodes(nodes) { Wake::Now } else { Wake::No }
            },
        )
        .run_until_cancelled(running, shutdown)
        .await;
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

    /// k8s-w1's controller on a clone of `fake`.
    fn controller_on(fake: &FakeDatapath) -> ServiceController {
        let shared = DatapathHandle::spawn(Box::new(fake.clone())).unwrap();
        let options = BuildOptions {
            node_name: "k8s-w1".into(),
            default_algorithm: datapath::LbAlgorithm::Random,
            unreachable_nodes: Default::default(),
        };
        ServiceController::new(options, shared)
    }

    #[tokio::test]
    async fn passes_sync_changes_only() {
        let fake = FakeDatapath::new();
        let mut c = controller_on(&fake);

        let (s, e, n) = inputs(&["172.20.1.10", "172.20.1.11"]);
        let stats = c.pass(&s, &e, &n).await.unwrap().expect("first pass syncs");
        assert!(stats.upserts > 0);
        assert_eq!(fake.state().services[0].backends.len(), 2);
        assert_eq!(c.pass(&s, &e, &n).await.unwrap(), None, "nothing changed, no sync");
        assert_eq!(fake.state().syncs, 1);

        // A backend goes away: synced; a failure is reported and the next pass retries.
        let (s, e, n) = inputs(&["172.20.1.10"]);
        fake.fail_next("map full");
        assert!(c.pass(&s, &e, &n).await.is_err());
        c.pass(&s, &e, &n).await.unwrap().expect("retried");
        assert_eq!(fake.state().services[0].backends.len(), 1);

        // An object that does not parse is skipped, the others still apply.
        let mut broken = s.clone();
        broken.push(object(
            &kinds::SERVICE,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": "nope"}}),
        ));
        assert_eq!(c.pass(&broken, &e, &n).await.unwrap(), None);

        // A Service that stops parsing keeps its frontend and backends: it was not deleted.
        let mut corrupt = s.clone();
        corrupt[0].body["spec"]["sessionAfinity"] = json!("None");
        assert_eq!(c.pass(&corrupt, &e, &n).await.unwrap(), None, "the Service's frontend was removed");
        assert_eq!(fake.state().services[0].backends.len(), 1);
    }

    /// A Service `name` made at `minute` with ClusterIP 10.96.0.`ip`, over the same slice's
    /// backends as webpod's (its slice is a copy of `slice` under its name).
    fn another(name: &str, minute: u8, ip: u8, slice: &Object) -> (Object, Object) {
        let svc = object(
            &kinds::SERVICE,
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": name, "namespace": "default", "creationTimestamp": format!("2026-12-07T10:{minute:02}:00Z")},
                   "spec": {"clusterIP": format!("10.96.0.{ip}"), "ports": [{"port": 80}]}}),
        );
        let mut slice = slice.clone();
        slice.metadata.name = format!("{name}-abcde");
        slice.metadata.labels.insert("kubernetes.io/service-name".into(), name.into());
        (svc, slice)
    }

    #[tokio::test]
    async fn services_that_do_not_fit_wait_for_room_and_the_rest_are_programmed() {
        let fake = FakeDatapath::new();
        let mut c = controller_on(&fake);
        let (_, e, n) = inputs(&["172.20.1.10", "172.20.1.11"]);
        let (old, old_slice) = another("old", 1, 10, &e[0]);
        let (new, new_slice) = another("new", 2, 20, &e[0]);
        let (newest, newest_slice) = another("newest", 3, 30, &e[0]);
        // Room for one Service and a half: each takes a frontend row, two slots and an ICMP row.
        let one = datapath::LbUsage::needed(&entries_of(&c, &old, &old_slice, &n)).unwrap();
        fake.state().capacity = Some(datapath::LbUsage { services: one.services * 3 / 2, ..one });
        let frontends = |fake: &FakeDatapath| -> Vec<String> {
            fake.state().services.iter().map(|e| e.frontend.address.to_string()).collect()
        };

        // The newest are left out, newest last; the oldest is programmed, and no error stalls it.
        let s = vec![newest.clone(), old.clone(), new.clone()];
        let slices = vec![old_slice.clone(), new_slice.clone(), newest_slice.clone()];
        c.pass(&s, &slices, &n).await.unwrap().expect("the oldest is programmed");
        assert_eq!(frontends(&fake), ["10.96.0.10"]);
        assert_eq!(c.left_out(), ["default/new", "default/newest"]);
        // A change to a programmed Service's backends still goes through.
        let mut fewer = old_slice.clone();
        fewer.body["endpoints"].as_array_mut().unwrap().pop();
        c.pass(&s, &[fewer, new_slice.clone(), newest_slice.clone()], &n).await.unwrap().expect("synced");
        assert_eq!(fake.state().services[0].backends.len(), 1);

        // The oldest goes: the next in age takes its room.
        c.pass(&[newest, new], &[new_slice, newest_slice], &n).await.unwrap().expect("synced");
        assert_eq!(frontends(&fake), ["10.96.0.20"]);
        assert_eq!(c.left_out(), ["default/newest"]);
    }

    /// The entries of one Service, as the controller builds them.
    fn entries_of(c: &ServiceController, svc: &Object, slice: &Object, nodes: &[Object]) -> Vec<ServiceEntry> {
        let services: Vec<Service> = vec![serde_json::from_value(serde_json::to_value(svc).unwrap()).unwrap()];
        let slices: Vec<EndpointSlice> = vec![serde_json::from_value(serde_json::to_value(slice).unwrap()).unwrap()];
        let nodes: Vec<NodeView> = nodes.iter().map(NodeView::of).collect();
        services::desired(&c.options, &services, &slices, &nodes).entries
    }
}
