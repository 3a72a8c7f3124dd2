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

fn start(store: Arc<dyn Store>, identity: &str) -> (CancellationToken, tokio::task::JoinHandle<operator::Result<()>>) {
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

/// A Service stored in a form that does not parse (here an unknown spec field, written around
/// the API) keeps its LoadBalancer IP: not when it changes while the operator runs, and not across
/// an operator restart, when the operator has never read it. No other Service gets that address.
#[tokio::test]
async fn a_service_that_does_not_parse_keeps_its_address() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (stop, task) = start(store.clone(), "op-1");
    apply(store.as_ref(), POOL).await;
    apply(store.as_ref(), &WEBPOD_SVC.replace("ClusterIP", "LoadBalancer")).await;
    let webpod = ObjectRef::new(&kinds::SERVICE, Some("default"), "webpod");
    let ip = "status.loadBalancer.ingress.0.ip";
    wait_for("webpod's IP", async || field(store.as_ref(), &webpod, ip).await).await;
    assert_eq!(field(store.as_ref(), &webpod, ip).await.unwrap(), "192.168.10.241");

    let corrupt = |name: &str| {
        let store = store.clone();
        let r = ObjectRef::new(&kinds::SERVICE, Some("default"), name);
        async move {
            let mut obj = store.get(&r).await.unwrap().unwrap();
            obj.body["spec"]["sessionAfinity"] = serde_json::json!("None");
            store.update(obj).await.unwrap();
        }
    };
    let lb = |name: &str| {
        WEBPOD_SVC.replace("ClusterIP", "LoadBalancer").replace("name: webpod,", &format!("name: {name},"))
    };

    // While the operator runs.
    corrupt("webpod").await;
    apply(store.as_ref(), &lb("second")).await;
    let second = ObjectRef::new(&kinds::SERVICE, Some("default"), "second");
    let got = wait_for("second's IP", async || field(store.as_ref(), &second, ip).await).await;
    assert_eq!(got, "192.168.10.242", "the unparsable Service's address was handed out");

    // Across a restart: the new operator never read webpod in a parsable form.
    stop.cancel();
    task.await.unwrap().unwrap();
    apply(store.as_ref(), &lb("third")).await;
    let (stop, task) = start(store.clone(), "op-2");
    let third = ObjectRef::new(&kinds::SERVICE, Some("default"), "third");
    let got = wait_for("third's IP", async || field(store.as_ref(), &third, ip).await).await;
    assert_eq!(got, "192.168.10.243", "an address held by a Service that does not parse was handed out");
    assert_eq!(field(store.as_ref(), &webpod, ip).await.unwrap(), "192.168.10.241");
    stop.cancel();
    task.await.unwrap().unwrap();
}
