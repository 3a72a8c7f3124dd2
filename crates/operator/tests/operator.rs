//! The operator against an in-memory datastore: services get addresses, LB-IPAM assigns pool IPs,
//! and a standby takes over when the leader stops.

mod common;

use std::{sync::Arc, time::Duration};

use api::{Object, ObjectRef, kinds, manifest};
use common::wait_for;
use operator::OperatorConfig;
use store::{MemoryStore, Store};
use tokio_util::sync::CancellationToken;

async fn apply(store: &dyn Store, yaml: &str) {
    for obj in manifest::parse("test.yaml", yaml, "default").unwrap() {
        store.create(obj).await.unwrap();
    }
}

async fn field(store: &dyn Store, r: &ObjectRef, path: &str) -> Option<serde_json::Value> {
    store.get(r).await.unwrap().and_then(|o: Object| o.lookup_path(path))
}

fn start(store: Arc<dyn Store>, identity: &str) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let token = CancellationToken::new();
    let mut config = OperatorConfig::new(identity);
    config.lease_ttl = Duration::from_secs(1);
    let handle = tokio::spawn(operator::run(store, config, token.clone()));
    (token, handle)
}

const POOL: &str = include_str!("../../../examples/guide/lb-ippool.yaml");
const WEBPOD_SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: webpod, labels: {app: webpod}}\nspec:\n  selector: {app: webpod}\n  ports: [{port: 80, targetPort: 80}]\n  type: ClusterIP\n";

#[tokio::test]
async fn guide_lbipam_flow() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (stop, task) = start(store.clone(), "op-1");
    apply(store.as_ref(), WEBPOD_SVC).await;
    apply(store.as_ref(), POOL).await;
    let svc = ObjectRef::new(&kinds::SERVICE, Some("default"), "webpod");
    let pool = ObjectRef::new(&kinds::LB_IP_POOL, None, "cilium-lb-ippool");

    let ip = wait_for("a cluster IP", async || field(store.as_ref(), &svc, "spec.clusterIP").await).await;
    assert!(ip.as_str().unwrap().starts_with("10.96."), "{ip}");
    assert_eq!(field(store.as_ref(), &svc, "spec.ports.0.nodePort").await, None, "ClusterIP services get no node port");
    wait_for("5 available", async || {
        let conds = field(store.as_ref(), &pool, "status.conditions").await?;
        conds.as_array()?.iter().any(|c| c["type"] == "cilium.io/IPsAvailable" && c["message"] == "5").then_some(())
    })
    .await;

    store::update_with_retry(store.as_ref(), &svc, |o| {
        o.body["spec"]["type"] = "LoadBalancer".into();
        Ok(true)
    })
    .await
    .unwrap();
    let lb =
        wait_for("a LoadBalancer IP", async || field(store.as_ref(), &svc, "status.loadBalancer.ingress.0.ip").await)
            .await;
    assert_eq!(lb, "192.168.10.241");
    let np = wait_for("a node port", async || field(store.as_ref(), &svc, "spec.ports.0.nodePort").await).await;
    assert!((30000..=32767).contains(&np.as_u64().unwrap()), "{np}");
    assert_eq!(field(store.as_ref(), &svc, "spec.clusterIP").await, Some(ip.clone()), "cluster IP is kept");

    store::update_with_retry(store.as_ref(), &svc, |o| {
        o.metadata.annotations.insert("lbipam.cilium.io/ips".into(), "192.168.10.245".into());
        Ok(true)
    })
    .await
    .unwrap();
    wait_for("the requested IP", async || {
        (field(store.as_ref(), &svc, "status.loadBalancer.ingress.0.ip").await? == "192.168.10.245").then_some(())
    })
    .await;

    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn standby_takes_over_and_keeps_assignments() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (stop1, task1) = start(store.clone(), "op-1");
    let lease = ObjectRef::new(&kinds::LEASE, Some("kube-system"), "cilia-operator");
    wait_for("op-1 to lead", async || {
        (field(store.as_ref(), &lease, "spec.holderIdentity").await? == "op-1").then_some(())
    })
    .await;
    let (stop2, task2) = start(store.clone(), "op-2");
    apply(store.as_ref(), POOL).await;
    apply(store.as_ref(), &WEBPOD_SVC.replace("ClusterIP", "LoadBalancer")).await;
    let svc = ObjectRef::new(&kinds::SERVICE, Some("default"), "webpod");
    wait_for("an IP from op-1", async || field(store.as_ref(), &svc, "status.loadBalancer.ingress.0.ip").await).await;
    let cluster_ip = field(store.as_ref(), &svc, "spec.clusterIP").await;
    assert_eq!(field(store.as_ref(), &lease, "spec.holderIdentity").await.unwrap(), "op-1", "op-2 stands by");

    stop1.cancel();
    task1.await.unwrap().unwrap();
    wait_for("op-2 to lead", async || {
        (field(store.as_ref(), &lease, "spec.holderIdentity").await? == "op-2").then_some(())
    })
    .await;
    // A second Service is served by the new leader; the first keeps its addresses.
    apply(store.as_ref(), &WEBPOD_SVC.replace("ClusterIP", "LoadBalancer").replace("name: webpod,", "name: other,"))
        .await;
    let other = ObjectRef::new(&kinds::SERVICE, Some("default"), "other");
    let ip2 =
        wait_for("an IP from op-2", async || field(store.as_ref(), &other, "status.loadBalancer.ingress.0.ip").await)
            .await;
    assert_eq!(ip2, "192.168.10.242");
    assert_eq!(field(store.as_ref(), &svc, "status.loadBalancer.ingress.0.ip").await.unwrap(), "192.168.10.241");
    assert_eq!(field(store.as_ref(), &svc, "spec.clusterIP").await, cluster_ip);
    stop2.cancel();
    task2.await.unwrap().unwrap();
}
