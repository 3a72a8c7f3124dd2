//! What only the etcd backend has: connections (unix socket, TCP), etcd going away and coming
//! back under running watches, paging, key layout.

mod common;

use std::sync::{Arc, Mutex};

use api::{Selector, kinds::SERVICE};
use common::{DEADLINE, rv, svc, svc_ref};
use futures::StreamExt;
use store::{
    Change, Error, EtcdStore, Informer, Store, WatchEvent, WatchEventType,
    testing::{EtcdGuard, wait_until},
};

#[tokio::test]
async fn connects_over_tcp_loopback() {
    let (_guard, url) = EtcdGuard::start_tcp().await.expect("etcd starts");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let store = EtcdStore::connect(&url).await.expect("connect");
    let created = store.create(svc("default", "webpod")).await.expect("create");
    assert_eq!(store.get(&svc_ref("default", "webpod")).await.expect("get"), Some(created));
}

#[tokio::test]
async fn connects_over_a_unix_socket_and_lays_out_keys() {
    let (guard, url) = EtcdGuard::start().await.expect("etcd starts");
    assert!(url.starts_with("unix:///") && url.ends_with("/localhost:2379"), "{url}");
    let store = EtcdStore::connect(&url).await.expect("connect");
    store.create(svc("default", "webpod")).await.expect("create");
    store.create(api::Object::new(&api::kinds::LB_IP_POOL, None, "pool")).await.expect("create pool");

    // Read the raw keys with a plain etcd client on the same socket: the layout is a contract
    // with anyone inspecting etcd directly.
    let channel = tonic::transport::Endpoint::from_shared(url.clone()).expect("endpoint").connect_lazy();
    let mut raw =
        etcd_client::Client::from_channel(etcd_client::Channel::Tonic(channel), None).await.expect("raw client");
    let options = etcd_client::GetOptions::new().with_prefix().with_keys_only();
    let response = raw.get("/cilia/registry/", Some(options)).await.expect("get");
    let keys: Vec<_> = response.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()).collect();
    assert_eq!(
        keys,
        ["/cilia/registry/ciliumloadbalancerippools.cilium.io/pool", "/cilia/registry/services/default/webpod"]
    );
    let value = raw.get("/cilia/registry/services/default/webpod", None).await.expect("get");
    let json: serde_json::Value = serde_json::from_slice(value.kvs()[0].value()).expect("JSON value");
    assert_eq!(json["kind"], "Service");
    assert!(json["metadata"].get("resourceVersion").is_none(), "the revision is not stored in the value");
    drop(guard);
}

#[tokio::test]
async fn unreachable_etcd_is_unavailable_and_retryable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("unix://{}/missing.sock", dir.path().display());
    // Connecting is lazy so that agents can start before etcd.
    let store = EtcdStore::connect(&url).await.expect("connect is lazy");
    let err = store.get(&svc_ref("default", "x")).await.expect_err("nothing listens");
    assert!(matches!(err, Error::Unavailable(_)) && err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains(&url), "the error names the endpoint: {err}");
    assert!(matches!(EtcdStore::connect("127.0.0.1:2379").await, Err(Error::Invalid(_))));
}

#[tokio::test]
async fn stores_with_different_roots_do_not_see_each_other() {
    let (_guard, url) = EtcdGuard::start().await.expect("etcd starts");
    let one = EtcdStore::connect(&url).await.expect("connect").with_root("/one");
    let two = EtcdStore::connect(&url).await.expect("connect").with_root("/two/");
    one.create(svc("default", "a")).await.expect("create");
    assert_eq!(two.get(&svc_ref("default", "a")).await.expect("get"), None);
    assert!(two.list(&SERVICE, None, &Selector::everything()).await.expect("list").items.is_empty());
    two.create(svc("default", "a")).await.expect("same name under another root");
}

#[tokio::test]
async fn list_pages_through_many_objects_at_one_revision() {
    let (_guard, url) = EtcdGuard::start().await.expect("etcd starts");
    let store = EtcdStore::connect(&url).await.expect("connect").with_list_page_size(7);
    for i in 0..40 {
        store.create(svc(&format!("ns{}", i % 3), &format!("s{i:02}"))).await.expect("create");
    }
    let list = store.list(&SERVICE, None, &Selector::everything()).await.expect("list");
    assert_eq!(list.items.len(), 40);
    let mut sorted = list.items.clone();
    sorted.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
    assert_eq!(list.items, sorted);
    assert_eq!(list.revision, store.revision().await.expect("revision"));
}

#[tokio::test]
async fn watch_ends_with_an_error_when_etcd_dies_and_store_recovers_after_restart() {
    let (mut guard, url) = EtcdGuard::start().await.expect("etcd starts");
    let store = EtcdStore::connect(&url).await.expect("connect");
    let created = store.create(svc("default", "a")).await.expect("create");
    let mut watch = store.watch(&SERVICE, None, rv(&created)).await.expect("watch");

    guard.kill().expect("kill etcd");
    let ended = tokio::time::timeout(DEADLINE, watch.next()).await.expect("the watch notices");
    assert!(matches!(ended, Some(Err(Error::Unavailable(_)))), "{ended:?}");
    let err = store.get(&svc_ref("default", "a")).await.expect_err("etcd is down");
    assert!(err.is_retryable(), "{err:?}");

    guard.restart().await.expect("restart etcd");
    let got = store.get(&svc_ref("default", "a")).await.expect("the same client reconnects");
    assert_eq!(got, Some(created));
}

/// An informer runs while etcd is SIGKILLed and restarted on the same data directory; the
/// subscriber must see every change exactly once, in revision order, and end with the state a
/// fresh list returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informer_sees_every_change_once_across_an_etcd_restart() {
    let (mut guard, url) = EtcdGuard::start().await.expect("etcd starts");
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&url).await.expect("connect"));
    let informer = Informer::start(Arc::clone(&store), &SERVICE, None);
    let mut subscription = informer.subscribe();
    let seen: Arc<Mutex<Vec<WatchEvent>>> = Arc::default();
    let collector = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(change) = subscription.recv().await {
                match change {
                    Change::Event(event) => seen.lock().expect("lock").push(event),
                    // Only the initial, empty resync is expected: a later one would mean the
                    // subscriber lost events.
                    Change::Resync(objects) => assert!(objects.is_empty(), "unexpected resync"),
                }
            }
        })
    };
    tokio::time::timeout(DEADLINE, informer.wait_synced()).await.expect("synced");

    // Every write's revision, and what kind of event it must produce.
    let mut expected: Vec<(i64, WatchEventType, String)> = Vec::new();
    let write_round = |round: &str| {
        let store = Arc::clone(&store);
        let round = round.to_string();
        async move {
            let mut writes = Vec::new();
            for i in 0..10 {
                let o = store.create(svc("default", &format!("{round}-{i}"))).await.expect("create");
                writes.push((rv(&o), WatchEventType::Added, o.name().to_string()));
            }
            for i in 0..10 {
                let r = svc_ref("default", &format!("{round}-{i}"));
                let mut o = store.get(&r).await.expect("get").expect("exists");
                o.metadata.labels.insert("round".into(), round.clone());
                let o = store.update(o).await.expect("update");
                writes.push((rv(&o), WatchEventType::Modified, o.name().to_string()));
            }
            for i in (0..10).step_by(3) {
                let r = svc_ref("default", &format!("{round}-{i}"));
                store.delete(&r, None).await.expect("delete");
                let at = store.revision().await.expect("revision");
                writes.push((at, WatchEventType::Deleted, r.name));
            }
            writes
        }
    };
    expected.extend(write_round("before").await);
    let before = expected.last().map(|w| w.0).unwrap_or_default();
    assert!(wait_until(DEADLINE, || async { informer.revision() >= before }).await, "informer caught up");

    guard.kill().expect("SIGKILL etcd");
    // Let the informer notice and back off at least once against the dead socket.
    assert!(
        wait_until(DEADLINE, || async { store.get(&svc_ref("default", "x")).await.is_err() }).await,
        "etcd is down"
    );
    guard.restart().await.expect("restart etcd on the same data");

    expected.extend(write_round("after").await);
    let last = expected.last().map(|w| w.0).unwrap_or_default();
    assert!(
        wait_until(DEADLINE, || async {
            informer.revision() >= last && seen.lock().expect("lock").len() >= expected.len()
        })
        .await,
        "informer caught up after the restart: at {} of {last}, {} of {} events",
        informer.revision(),
        seen.lock().expect("lock").len(),
        expected.len()
    );

    let seen = seen.lock().expect("lock").clone();
    let got: Vec<_> = seen.iter().map(|e| (e.revision, e.type_, e.object.name().to_string())).collect();
    assert_eq!(got, expected, "every change exactly once, in order");
    assert!(seen.windows(2).all(|w| w[0].revision < w[1].revision), "strictly increasing revisions");

    let fresh = store.list(&SERVICE, None, &Selector::everything()).await.expect("list");
    assert_eq!(informer.snapshot(), fresh.items);
    collector.abort();
}

/// A value written around cilia that is not an object (a corrupt key) does not freeze its kind:
/// lists report it and go on, the watch goes on, and an informer keeps the object's last readable
/// version instead of treating it as deleted (which would, for example, free its LB IP). A relist
/// does the same (the informer's unit tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_value_is_skipped_per_key_and_never_taken_for_a_deletion() {
    let (_guard, url) = EtcdGuard::start().await.expect("etcd starts");
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&url).await.expect("connect"));
    let channel = tonic::transport::Endpoint::from_shared(url.clone()).expect("endpoint").connect_lazy();
    let mut raw =
        etcd_client::Client::from_channel(etcd_client::Channel::Tonic(channel), None).await.expect("raw client");
    store.create(svc("default", "a")).await.expect("create a");
    let informer = Informer::start(store.clone(), &SERVICE, None);
    informer.wait_synced().await;

    // `a` is corrupted in place, and a value that never was an object appears beside it.
    raw.put("/cilia/registry/services/default/a", "{not json", None).await.expect("corrupt a");
    raw.put("/cilia/registry/services/default/junk", vec![0xff, 0x00, 0x13], None).await.expect("junk");
    store.create(svc("default", "b")).await.expect("create b");
    assert!(
        wait_until(DEADLINE, || async { informer.get(Some("default"), "b").is_some() }).await,
        "the watch stopped at the unreadable values"
    );
    assert!(informer.get(Some("default"), "a").is_some(), "the watch took the corrupt value for a deletion");

    // A list reports the unreadable keys and returns the rest.
    let list = store.list(&SERVICE, None, &Selector::everything()).await.expect("list");
    let names: Vec<&str> = list.items.iter().map(|o| o.name()).collect();
    assert_eq!(names, ["b"]);
    let unreadable: Vec<&str> = list.unreadable.iter().map(|(o, _)| o.name.as_str()).collect();
    assert_eq!(unreadable, ["a", "junk"]);
    assert!(store::etcd::unreadable_values_seen() >= 2);
}
