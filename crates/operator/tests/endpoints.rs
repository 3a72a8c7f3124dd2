//! EndpointSlices against an in-memory datastore: the guide's webpod Service gets one slice that
//! follows its pods' addresses and readiness, and loses it with its selector or on deletion.

mod common;

use std::{sync::Arc, time::Duration};

use api::{Object, ObjectRef, Selector, kinds, manifest};
use common::wait_for;
use operator::OperatorConfig;
use serde_json::json;
use store::{MemoryStore, Store};
use tokio_util::sync::CancellationToken;

const WEBPOD_SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: webpod, labels: {app: webpod}}\nspec:\n  selector: {app: webpod}\n  ports: [{port: 80, targetPort: 80}]\n  type: ClusterIP\n";

async fn slices(store: &dyn Store) -> Vec<Object> {
    let sel = Selector::parse("kubernetes.io/service-name=webpod").unwrap();
    store.list(&kinds::ENDPOINT_SLICE, Some("default"), &sel).await.unwrap().items
}

async fn pod(store: &dyn Store, name: &str, ip: &str, node: &str, ready: bool) {
    let obj = Object::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "webpod"}},
        "spec": {"nodeName": node, "containers": [{"name": "webpod", "image": "traefik/whoami", "ports": [{"containerPort": 80}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .unwrap();
    store.create(obj).await.unwrap();
}

fn endpoints(slice: &Object) -> Vec<(String, bool)> {
    slice.body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["addresses"][0].as_str().unwrap().to_string(), e["conditions"]["ready"] == true))
        .collect()
}

#[tokio::test]
async fn webpod_slice_follows_pods_and_goes_with_the_service() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let stop = CancellationToken::new();
    let mut config = OperatorConfig::new("op");
    config.lease_ttl = Duration::from_secs(1);
    let task = tokio::spawn(operator::run(store.clone(), config, stop.clone()));
    for obj in manifest::parse("svc.yaml", WEBPOD_SVC, "default").unwrap() {
        store.create(obj).await.unwrap();
    }
    // A Service without pods has one empty slice.
    let empty = wait_for("an empty slice", async || slices(store.as_ref()).await.into_iter().next()).await;
    assert!(empty.body["endpoints"].as_array().unwrap().is_empty());
    assert_eq!(empty.metadata.owner_references[0].kind, "Service");
    assert_eq!(empty.metadata.labels["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");

    pod(store.as_ref(), "webpod-a", "172.20.0.5", "k8s-ctr", true).await;
    pod(store.as_ref(), "webpod-b", "172.20.1.5", "k8s-w1", false).await;
    let slice = wait_for("two endpoints", async || {
        let s = slices(store.as_ref()).await;
        (s.len() == 1 && endpoints(&s[0]).len() == 2).then(|| s[0].clone())
    })
    .await;
    assert_eq!(endpoints(&slice), [("172.20.0.5".to_string(), true), ("172.20.1.5".to_string(), false)]);
    assert_eq!(slice.body["ports"], json!([{"name": "", "port": 80, "protocol": "TCP"}]));
    assert_eq!(slice.body["endpoints"][0]["nodeName"], "k8s-ctr");
    assert_eq!(slice.body["endpoints"][0]["targetRef"]["name"], "webpod-a");

    // Readiness changes and deletions show up in the same slice.
    let b = ObjectRef::new(&kinds::POD, Some("default"), "webpod-b");
    store::update_with_retry(store.as_ref(), &b, |o| {
        o.body["status"]["conditions"][0]["status"] = "True".into();
        Ok(true)
    })
    .await
    .unwrap();
    store.delete(&ObjectRef::new(&kinds::POD, Some("default"), "webpod-a"), None).await.unwrap();
    wait_for("only webpod-b, ready", async || {
        let s = slices(store.as_ref()).await;
        (s.len() == 1 && endpoints(&s[0]) == [("172.20.1.5".to_string(), true)]).then_some(())
    })
    .await;
    assert_eq!(
        slices(store.as_ref()).await[0].metadata.name,
        slice.metadata.name,
        "the slice is updated, not replaced"
    );

    // Without a selector, no slices.
    let svc = ObjectRef::new(&kinds::SERVICE, Some("default"), "webpod");
    store::update_with_retry(store.as_ref(), &svc, |o| {
        o.body["spec"].as_object_mut().unwrap().remove("selector");
        Ok(true)
    })
    .await
    .unwrap();
    wait_for("no slices", async || slices(store.as_ref()).await.is_empty().then_some(())).await;
    store::update_with_retry(store.as_ref(), &svc, |o| {
        o.body["spec"]["selector"] = json!({"app": "webpod"});
        Ok(true)
    })
    .await
    .unwrap();
    wait_for("the slice again", async || (slices(store.as_ref()).await.len() == 1).then_some(())).await;
    store.delete(&svc, None).await.unwrap();
    wait_for("no slices after deletion", async || slices(store.as_ref()).await.is_empty().then_some(())).await;

    stop.cancel();
    task.await.unwrap().unwrap();
}
