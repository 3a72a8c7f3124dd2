//! Cluster-pool IPAM of the operator against an in-memory datastore: the guide's numbering,
//! assignments kept across restarts, exhaustion reported on the Node, bad pools refused.

mod common;

use std::{sync::Arc, time::Duration};

use api::{Object, ObjectRef, kinds};
use common::wait_for;
use operator::OperatorConfig;
use serde_json::json;
use store::{MemoryStore, Store};
use tokio_util::sync::CancellationToken;

fn config(pools: &[&str], mask: u8) -> OperatorConfig {
    let mut config = OperatorConfig::new("op");
    config.lease_ttl = Duration::from_secs(1);
    config.cluster_pool_cidrs = pools.iter().map(|p| p.parse().unwrap()).collect();
    config.cluster_pool_mask = mask;
    config
}

fn start(
    store: Arc<dyn Store>,
    config: OperatorConfig,
) -> (CancellationToken, tokio::task::JoinHandle<operator::Result<()>>) {
    let token = CancellationToken::new();
    let handle = tokio::spawn(operator::run(store, config, token.clone()));
    (token, handle)
}

async fn stop(token: CancellationToken, task: tokio::task::JoinHandle<operator::Result<()>>) {
    token.cancel();
    task.await.unwrap().unwrap();
}

/// Registers a Node as `cilia lab up` does: hostname label and InternalIP.
async fn register(store: &dyn Store, name: &str, ip: &str) {
    let mut obj = Object::new(&kinds::NODE, None, name);
    obj.metadata.labels.insert("kubernetes.io/hostname".into(), name.into());
    obj.body.insert("status".into(), json!({"addresses": [{"type": "InternalIP", "address": ip}]}));
    store.create(obj).await.unwrap();
}

async fn node(store: &dyn Store, name: &str) -> Option<Object> {
    store.get(&ObjectRef::new(&kinds::NODE, None, name)).await.unwrap()
}

async fn pod_cidr(store: &dyn Store, name: &str) -> Option<String> {
    node(store, name).await?.lookup_path("spec.podCIDR").and_then(|v| v.as_str().map(str::to_string))
}

async fn wait_cidr(store: &dyn Store, name: &str) -> String {
    wait_for(&format!("a pod CIDR on {name}"), async || pod_cidr(store, name).await).await
}

const GUIDE: [(&str, &str); 3] =
    [("k8s-ctr", "192.168.10.100"), ("k8s-w1", "192.168.10.101"), ("k8s-w0", "192.168.20.100")];

#[tokio::test]
async fn the_guides_nodes_get_the_guides_cidrs_whether_registered_before_or_after_the_start() {
    for register_first in [true, false] {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        if register_first {
            for (name, ip) in GUIDE {
                register(store.as_ref(), name, ip).await;
            }
        }
        let (token, task) = start(store.clone(), config(&["172.20.0.0/16"], 24));
        if !register_first {
            for (name, ip) in GUIDE {
                register(store.as_ref(), name, ip).await;
            }
        }
        let got = [
            wait_cidr(store.as_ref(), "k8s-ctr").await,
            wait_cidr(store.as_ref(), "k8s-w1").await,
            wait_cidr(store.as_ref(), "k8s-w0").await,
        ];
        assert_eq!(got, ["172.20.0.0/24", "172.20.1.0/24", "172.20.2.0/24"], "registered first: {register_first}");
        let obj = node(store.as_ref(), "k8s-w1").await.unwrap();
        assert_eq!(obj.lookup_path("spec.podCIDRs").unwrap(), json!(["172.20.1.0/24"]));
        let cond = &obj.lookup_path("status.conditions").unwrap()[0];
        assert_eq!(cond["type"], "cilia.io/PodCIDRAllocated");
        assert_eq!(cond["status"], "True");
        // The typed Node still parses: nothing outside its schema was written.
        obj.to_typed::<api::types::Node>().unwrap();
        stop(token, task).await;
    }
}

#[tokio::test]
async fn a_restarted_operator_keeps_assignments_and_reuses_freed_cidrs() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (token, task) = start(store.clone(), config(&["172.20.0.0/16"], 24));
    for (name, ip) in GUIDE {
        register(store.as_ref(), name, ip).await;
        wait_cidr(store.as_ref(), name).await;
    }
    stop(token, task).await;

    // While no operator runs: k8s-w1 leaves, k8s-w2 joins.
    store.delete(&ObjectRef::new(&kinds::NODE, None, "k8s-w1"), None).await.unwrap();
    register(store.as_ref(), "k8s-w2", "192.168.10.102").await;
    let (token, task) = start(store.clone(), config(&["172.20.0.0/16"], 24));
    assert_eq!(wait_cidr(store.as_ref(), "k8s-w2").await, "172.20.1.0/24");
    assert_eq!(pod_cidr(store.as_ref(), "k8s-ctr").await.unwrap(), "172.20.0.0/24");
    assert_eq!(pod_cidr(store.as_ref(), "k8s-w0").await.unwrap(), "172.20.2.0/24");
    register(store.as_ref(), "k8s-w3", "192.168.10.103").await;
    assert_eq!(wait_cidr(store.as_ref(), "k8s-w3").await, "172.20.3.0/24");
    stop(token, task).await;
}

#[tokio::test]
async fn exhaustion_is_reported_on_the_node_until_a_cidr_frees_up() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (token, task) = start(store.clone(), config(&["172.20.0.0/23"], 24));
    for (name, ip) in GUIDE {
        register(store.as_ref(), name, ip).await;
    }
    wait_cidr(store.as_ref(), "k8s-ctr").await;
    wait_cidr(store.as_ref(), "k8s-w1").await;
    let cond = wait_for("the exhaustion condition", async || {
        let conds = node(store.as_ref(), "k8s-w0").await?.lookup_path("status.conditions")?;
        conds.as_array()?.iter().find(|c| c["type"] == "cilia.io/PodCIDRAllocated").cloned()
    })
    .await;
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "CIDRNotAvailable");
    assert_eq!(cond["message"], "no free /24 left in the cluster pool 172.20.0.0/23 (2 of 2 allocated)");
    assert_eq!(pod_cidr(store.as_ref(), "k8s-w0").await, None);

    store.delete(&ObjectRef::new(&kinds::NODE, None, "k8s-w1"), None).await.unwrap();
    assert_eq!(wait_cidr(store.as_ref(), "k8s-w0").await, "172.20.1.0/24");
    let obj = node(store.as_ref(), "k8s-w0").await.unwrap();
    assert_eq!(obj.lookup_path("status.conditions").unwrap()[0]["status"], "True");
    stop(token, task).await;
}

#[tokio::test]
async fn overlapping_pools_are_refused_at_start() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let err = operator::run(store, config(&["172.20.0.0/16", "172.20.128.0/17"], 24), CancellationToken::new())
        .await
        .unwrap_err();
    // as the CLI prints it: the error, then its causes
    assert_eq!(
        format!("{:#}", anyhow::Error::new(err)),
        "invalid cluster-pool IPAM configuration: cluster pool CIDRs 172.20.0.0/16 and 172.20.128.0/17 overlap"
    );
}
