//! `cilia lab controllers`: the lab's stand-ins for kube-controller-manager's Deployment
//! controller and for kube-scheduler, in one process on k8s-ctr.
//!
//! Both are level-triggered: any change to Deployments, Pods or Nodes wakes one pass that looks at
//! the whole (small) cluster. The watch cache may lag behind the controller's own writes, so the
//! pass remembers what it just did: pods it created and does not see yet count as existing
//! (expectations, as in the ReplicaSet controller), pods it deleted no longer count, and pods it
//! bound count on their node (the scheduler's "assumed" pods).

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use api::{
    Object, ObjectRef, kinds,
    types::{Deployment, Node, Pod, PodStatus},
};
use store::{
    Informer, Store,
    reconcile::{Outcome, Reconcile, Runner},
};
use tokio_util::sync::CancellationToken;

use crate::{
    conditions,
    deployment::{self, PodFacts},
    error::Result,
    scheduler::{self, Decision, Placed},
};

/// How long an expectation or an assumed binding is trusted without the cache confirming it.
const EXPECTATION_TTL: Duration = Duration::from_secs(30);
/// A pass also runs this often without any change: expectations expire, `minReadySeconds` pass.
const RESYNC: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Memory {
    /// Deployment uid → names of pods created and not seen in the cache yet.
    creating: HashMap<String, HashMap<String, Instant>>,
    /// Uids of pods deleted and still in the cache.
    deleting: HashMap<String, Instant>,
    /// Pod uid → node, for bindings the cache does not show yet.
    assumed: HashMap<String, (String, Instant)>,
}

/// Both controllers' state: the informers they read and what they remember between passes.
struct Controllers {
    store: Arc<dyn Store>,
    deployments: Informer,
    pods: Informer,
    nodes: Informer,
    memory: Memory,
    /// Whether the first pass ran, to say so once.
    started: bool,
}

impl Reconcile for Controllers {
    type Error = Infallible;

    async fn pass(&mut self) -> std::result::Result<Outcome, Infallible> {
        if !self.started {
            self.started = true;
            tracing::info!("deployment controller and scheduler running");
        }
        let snapshot = Snapshot {
            deployments: Object::typed_all(&self.deployments.snapshot()),
            pods: Object::typed_all(&self.pods.snapshot()),
            nodes: Object::typed_all(&self.nodes.snapshot()),
        };
        reconcile(self.store.as_ref(), &snapshot, &mut self.memory).await;
        Ok(Outcome::RequeueAfter(RESYNC))
    }
}

/// Runs the Deployment controller and the scheduler until `shutdown`. Any change makes a pass
/// at once; a burst of them (a Deployment's pods all turning Ready) makes one pass, not many.
pub async fn run(store: Arc<dyn Store>, shutdown: CancellationToken) -> Result<()> {
    let controllers = Controllers {
        deployments: Informer::start(store.clone(), &kinds::DEPLOYMENT, None),
        pods: Informer::start(store.clone(), &kinds::POD, None),
        nodes: Informer::start(store.clone(), &kinds::NODE, None),
        store,
        memory: Memory::default(),
        started: false,
    };
    Runner::new("deployments")
        .watch(&controllers.deployments)
        .watch(&controllers.pods)
        .watch(&controllers.nodes)
        .run_until_cancelled(controllers, shutdown)
        .await;
    Ok(())
}

/// The cluster as one pass sees it.
pub struct Snapshot {
    pub deployments: Vec<Deployment>,
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
}

fn uid(meta: &api::ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

fn pod_ref(pod: &Pod) -> ObjectRef {
    ObjectRef::new(&kinds::POD, pod.metadata.namespace.as_deref(), &pod.metadata.name)
}

async fn reconcile(store: &dyn Store, snap: &Snapshot, memory: &mut Memory) {
    forget_confirmed(snap, memory);
    delete_orphans(store, snap, memory).await;
    for d in &snap.deployments {
        if d.metadata.deletion_timestamp.is_none() {
            reconcile_deployment(store, d, snap, memory).await;
        }
    }
    schedule_pending(store, snap, memory).await;
}

/// Drops what the cache now confirms, and what it never confirmed in time (a lost write).
fn forget_confirmed(snap: &Snapshot, memory: &mut Memory) {
    let now = Instant::now();
    let names: std::collections::HashSet<(&str, &str)> = snap
        .pods
        .iter()
        .map(|p| (p.metadata.namespace.as_deref().unwrap_or_default(), p.metadata.name.as_str()))
        .collect();
    let by_uid: HashMap<&str, &Pod> = snap.pods.iter().map(|p| (uid(&p.metadata), p)).collect();
    for (deployment_uid, created) in memory.creating.iter_mut() {
        let ns = snap
            .deployments
            .iter()
            .find(|d| uid(&d.metadata) == deployment_uid)
            .and_then(|d| d.metadata.namespace.as_deref())
            .unwrap_or_default();
        created.retain(|name, at| !names.contains(&(ns, name.as_str())) && now - *at < EXPECTATION_TTL);
    }
    memory.creating.retain(|_, created| !created.is_empty());
    memory.deleting.retain(|uid, at| by_uid.contains_key(uid.as_str()) && now - *at < EXPECTATION_TTL);
    memory.assumed.retain(|uid, (_, at)| {
        by_uid.get(uid.as_str()).is_some_and(|p| p.spec.node_name.is_none()) && now - *at < EXPECTATION_TTL
    });
}

/// Pods whose owning Deployment is gone: what Kubernetes' garbage collector removes.
async fn delete_orphans(store: &dyn Store, snap: &Snapshot, memory: &mut Memory) {
    let owners: std::collections::HashSet<&str> = snap.deployments.iter().map(|d| uid(&d.metadata)).collect();
    for pod in &snap.pods {
        let orphaned = pod
            .metadata
            .owner_references
            .iter()
            .any(|o| o.kind == "Deployment" && o.controller == Some(true) && !owners.contains(o.uid.as_str()));
        if orphaned && !memory.deleting.contains_key(uid(&pod.metadata)) {
            tracing::info!(pod = %pod.metadata.name, "deleting a pod whose Deployment is gone");
            delete_pod(store, pod, memory).await;
        }
    }
}

async fn delete_pod(store: &dyn Store, pod: &Pod, memory: &mut Memory) {
    match store.delete(&pod_ref(pod), None).await {
        Ok(_) => {
            memory.deleting.insert(uid(&pod.metadata).to_string(), Instant::now());
        }
        Err(e) => tracing::warn!(pod = %pod.metadata.name, error = &e as &dyn std::error::Error, "deleting a pod"),
    }
}

async fn reconcile_deployment(store: &dyn Store, d: &Deployment, snap: &Snapshot, memory: &mut Memory) {
    let d_uid = uid(&d.metadata);
    let namespace = d.metadata.namespace.as_deref().unwrap_or("default");
    let min_ready = chrono::Duration::seconds(d.spec.min_ready_seconds.unwrap_or(0).max(0));
    let now = chrono::Utc::now();
    let owned: Vec<PodFacts<'_>> = snap
        .pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| deployment::is_owned_by(&p.metadata, d_uid) && deployment::is_active(p))
        .filter(|p| !memory.deleting.contains_key(uid(&p.metadata)))
        .map(|pod| PodFacts {
            pod,
            available: pod.is_ready() && conditions::since(&pod.status, "Ready").is_none_or(|t| t + min_ready <= now),
        })
        .collect();
    let in_flight = memory.creating.get(d_uid).map_or(0, HashMap::len);
    let plan = deployment::plan(d, &owned, in_flight);
    if d.spec.paused != Some(true) {
        for pod in plan.create {
            let name = pod.metadata.name.clone();
            match store.create(pod).await {
                Ok(_) => {
                    tracing::info!(deployment = %d.metadata.name, pod = %name, "created pod");
                    memory.creating.entry(d_uid.to_string()).or_default().insert(name, Instant::now());
                }
                Err(e) => {
                    tracing::warn!(deployment = %d.metadata.name, pod = %name, error = &e as &dyn std::error::Error, "creating a pod")
                }
            }
        }
        for name in plan.delete {
            if let Some(f) = owned.iter().find(|f| f.pod.metadata.name == name) {
                tracing::info!(deployment = %d.metadata.name, pod = %name, "deleting pod");
                delete_pod(store, f.pod, memory).await;
            }
        }
    }
    if plan.status != d.status {
        let target = ObjectRef::new(&kinds::DEPLOYMENT, Some(namespace), &d.metadata.name);
        let value = serde_json::to_value(&plan.status).expect("a status always serializes");
        let result = store::update_with_retry(store, &target, |obj| {
            if obj.metadata.uid != d.metadata.uid || obj.body.get("status") == Some(&value) {
                return Ok(false);
            }
            obj.body.insert("status".into(), value.clone());
            Ok(true)
        })
        .await;
        if let Err(e) = result.map(drop).or_else(ignore_not_found) {
            tracing::warn!(deployment = %d.metadata.name, error = &e as &dyn std::error::Error, "writing deployment status");
        }
    }
}

fn ignore_not_found(e: store::Error) -> store::Result<()> {
    match e {
        store::Error::NotFound(_) => Ok(()),
        e => Err(e),
    }
}

async fn schedule_pending(store: &dyn Store, snap: &Snapshot, memory: &mut Memory) {
    let mut bound: Vec<(&Pod, String)> = Vec::new();
    let mut pending: Vec<&Pod> = Vec::new();
    for pod in &snap.pods {
        if memory.deleting.contains_key(uid(&pod.metadata)) {
            continue;
        }
        match (&pod.spec.node_name, memory.assumed.get(uid(&pod.metadata))) {
            (Some(node), _) | (None, Some((node, _))) => bound.push((pod, node.clone())),
            (None, None) if pod.metadata.deletion_timestamp.is_none() => pending.push(pod),
            (None, None) => {}
        }
    }
    if pending.is_empty() {
        return;
    }
    pending.sort_by(|a, b| {
        (&a.metadata.creation_timestamp, &a.metadata.name).cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
    });
    for pod in pending {
        let placed: Vec<Placed<'_>> = bound.iter().map(|(p, n)| Placed { pod: p, node: n.as_str() }).collect();
        match scheduler::schedule(pod, &snap.nodes, &placed) {
            Decision::Bind(node) => {
                if bind(store, pod, &node).await {
                    tracing::info!(pod = %pod.metadata.name, %node, "scheduled");
                    memory.assumed.insert(uid(&pod.metadata).to_string(), (node.clone(), Instant::now()));
                    bound.push((pod, node));
                }
            }
            Decision::Unschedulable(message) => mark_unschedulable(store, pod, &message).await,
        }
    }
}

/// Sets `spec.nodeName` (unless someone else did) and `PodScheduled=True`.
async fn bind(store: &dyn Store, pod: &Pod, node: &str) -> bool {
    let result = store::update_with_retry(store, &pod_ref(pod), |obj| {
        if obj.metadata.uid != pod.metadata.uid || obj.lookup_path("spec.nodeName").is_some() {
            return Ok(false);
        }
        let spec = obj.body.entry("spec").or_insert_with(|| serde_json::json!({}));
        spec["nodeName"] = node.into();
        let mut status = pod_status(obj);
        conditions::set(&mut status, "PodScheduled", true, None, None);
        status.phase.get_or_insert_with(|| "Pending".into());
        put_status(obj, &status);
        Ok(true)
    })
    .await;
    match result {
        Ok(obj) => obj.lookup_path("spec.nodeName").is_some_and(|n| n == node),
        Err(e) => {
            tracing::warn!(pod = %pod.metadata.name, error = &e as &dyn std::error::Error, "binding a pod");
            false
        }
    }
}

async fn mark_unschedulable(store: &dyn Store, pod: &Pod, message: &str) {
    let result = store::update_with_retry(store, &pod_ref(pod), |obj| {
        if obj.metadata.uid != pod.metadata.uid || obj.lookup_path("spec.nodeName").is_some() {
            return Ok(false);
        }
        let mut status = pod_status(obj);
        let mut changed = conditions::set(&mut status, "PodScheduled", false, Some("Unschedulable"), Some(message));
        if status.phase.is_none() {
            status.phase = Some("Pending".into());
            changed = true;
        }
        if changed {
            put_status(obj, &status);
        }
        Ok(changed)
    })
    .await;
    if let Err(e) = result.map(drop).or_else(ignore_not_found) {
        tracing::warn!(pod = %pod.metadata.name, error = &e as &dyn std::error::Error, "recording that a pod is unschedulable");
    } else {
        tracing::debug!(pod = %pod.metadata.name, %message, "unschedulable");
    }
}

/// The pod's status as the typed view, empty when absent or unreadable.
pub(crate) fn pod_status(obj: &Object) -> PodStatus {
    obj.body.get("status").and_then(|s| serde_json::from_value(s.clone()).ok()).unwrap_or_default()
}

pub(crate) fn put_status(obj: &mut Object, status: &PodStatus) {
    obj.body.insert("status".into(), serde_json::to_value(status).expect("a status always serializes"));
}

#[cfg(test)]
mod tests {
    use store::MemoryStore;

    use super::*;

    const WEBPOD: &str = include_str!("../../../examples/guide/webpod.yaml");

    async fn apply(store: &dyn Store, yaml: &str) {
        for obj in api::manifest::parse("test.yaml", yaml, "default").unwrap() {
            store.create(obj).await.unwrap();
        }
    }

    async fn node(store: &dyn Store, name: &str) {
        let mut n = Object::new(&kinds::NODE, None, name);
        n.metadata.labels.insert("kubernetes.io/hostname".into(), name.into());
        store.create(n).await.unwrap();
    }

    async fn pods(store: &dyn Store) -> Vec<Pod> {
        let list = store.list(&kinds::POD, Some("default"), &api::Selector::everything()).await.unwrap();
        Object::typed_all(&list.items)
    }

    async fn wait_for(what: &str, probe: impl AsyncFnMut() -> bool) {
        assert!(testkit::wait_until_async(Duration::from_secs(10), probe).await, "timed out waiting for {what}");
    }

    async fn set_replicas(store: &dyn Store, n: i64) {
        let d = ObjectRef::new(&kinds::DEPLOYMENT, Some("default"), "webpod");
        store::update_with_retry(store, &d, |o| {
            o.body["spec"]["replicas"] = n.into();
            Ok(true)
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn guide_deployment_spreads_scales_and_goes_away_with_its_owner() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        for n in ["k8s-ctr", "k8s-w1", "k8s-w0"] {
            node(store.as_ref(), n).await;
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(store.clone(), stop.clone()));
        apply(store.as_ref(), WEBPOD).await;

        wait_for("3 pods on 3 nodes", async || {
            let pods = pods(store.as_ref()).await;
            let nodes: std::collections::BTreeSet<_> = pods.iter().filter_map(|p| p.spec.node_name.clone()).collect();
            pods.len() == 3 && nodes.len() == 3
        })
        .await;
        for p in pods(store.as_ref()).await {
            assert!(p.metadata.name.starts_with("webpod-"), "{}", p.metadata.name);
            assert!(p.status.conditions.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
        }

        // A fourth replica has nowhere to go.
        set_replicas(store.as_ref(), 4).await;
        wait_for("a pending, unschedulable fourth pod", async || {
            let pods = pods(store.as_ref()).await;
            pods.len() == 4
                && pods.iter().any(|p| {
                    p.spec.node_name.is_none()
                        && p.status.phase.as_deref() == Some("Pending")
                        && p.status.conditions.iter().any(|c| {
                            c.type_ == "PodScheduled"
                                && c.status == "False"
                                && c.reason.as_deref() == Some("Unschedulable")
                                && c.message.as_deref()
                                    == Some("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.")
                        })
                })
        })
        .await;

        // Scaling down removes the unschedulable pod first.
        set_replicas(store.as_ref(), 2).await;
        wait_for("2 scheduled pods", async || {
            let pods = pods(store.as_ref()).await;
            pods.len() == 2 && pods.iter().all(|p| p.spec.node_name.is_some())
        })
        .await;
        let d = ObjectRef::new(&kinds::DEPLOYMENT, Some("default"), "webpod");
        wait_for("status.replicas 2", async || {
            let obj = store.get(&d).await.unwrap().unwrap();
            obj.lookup_path("status.replicas") == Some(2.into())
                && obj.lookup_path("status.updatedReplicas") == Some(2.into())
        })
        .await;

        // Deleting the Deployment (without the CLI's cascade) removes its pods.
        store.delete(&d, None).await.unwrap();
        wait_for("no pods", async || pods(store.as_ref()).await.is_empty()).await;

        stop.cancel();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn ready_pods_are_counted_and_template_changes_replace_pods() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        node(store.as_ref(), "n1").await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(store.clone(), stop.clone()));
        let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: webpod}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: webpod}}\n  template:\n    metadata: {labels: {app: webpod}}\n    spec: {containers: [{name: w, image: traefik/whoami}]}\n";
        apply(store.as_ref(), yaml).await;
        // Stands in for the pod runtime: every scheduled pod becomes Ready.
        let kubelet = {
            let store = store.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    for p in pods(store.as_ref()).await {
                        if p.spec.node_name.is_some() && !p.is_ready() {
                            let _ = store::update_with_retry(store.as_ref(), &pod_ref(&p), |o| {
                                let mut s = pod_status(o);
                                s.phase = Some("Running".into());
                                conditions::set(&mut s, "Ready", true, None, None);
                                put_status(o, &s);
                                Ok(true)
                            })
                            .await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let d = ObjectRef::new(&kinds::DEPLOYMENT, Some("default"), "webpod");
        wait_for("2 ready replicas", async || {
            let obj = store.get(&d).await.unwrap().unwrap();
            obj.lookup_path("status.readyReplicas") == Some(2.into())
                && obj.lookup_path("status.availableReplicas") == Some(2.into())
        })
        .await;
        let before: std::collections::BTreeSet<String> =
            pods(store.as_ref()).await.into_iter().map(|p| p.metadata.name).collect();
        store::update_with_retry(store.as_ref(), &d, |o| {
            o.body["spec"]["template"]["spec"]["containers"][0]["image"] = "traefik/whoami:v2".into();
            Ok(true)
        })
        .await
        .unwrap();
        wait_for("2 new ready pods and no old one", async || {
            let pods = pods(store.as_ref()).await;
            pods.len() == 2
                && pods.iter().all(|p| !before.contains(&p.metadata.name) && p.is_ready())
                && pods.iter().all(|p| p.spec.containers[0].image == "traefik/whoami:v2")
        })
        .await;
        stop.cancel();
        task.await.unwrap().unwrap();
        kubelet.await.unwrap();
    }
}
