//! The contract of `Store`, run against both backends: every test function below runs once with
//! `MemoryStore` and once with `EtcdStore` on a fresh etcd.

mod common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use api::{
    Object, ObjectRef, Selector,
    kinds::{NODE, POD, SERVICE},
};
use common::{DEADLINE, rv, svc, svc_ref};
use futures::StreamExt;
use serde_json::json;
use store::{
    Change, Error, Fence, Informer, LeaseKeeper, Store, WatchEvent, WatchEventType, WatchStream, testing::wait_until,
    update_with_retry,
};

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = crate::common::memory();
                    super::$test(std::sync::Arc::clone(&backend.store)).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = crate::common::etcd().await;
                    super::$test(std::sync::Arc::clone(&backend.store)).await;
                    drop(backend);
                }
            )*
        }
    };
}

conformance!(
    create_stamps_metadata_and_get_returns_it,
    create_of_existing_object_fails_and_keeps_it,
    update_keeps_identity_and_counts_generations,
    update_of_missing_object_is_not_found,
    stale_resource_version_conflicts_and_keeps_stored_object,
    delete_returns_the_object_and_honours_preconditions,
    list_is_sorted_and_filtered,
    revisions_increase_across_kinds,
    invalid_requests_write_nothing,
    watch_replays_from_a_revision_then_follows,
    watch_from_compacted_revision_fails,
    lease_expiry_deletes_objects,
    keep_alive_keeps_objects,
    revoke_deletes_all_objects_of_a_lease_at_one_revision,
    update_keeps_or_moves_the_lease,
    lease_keeper_reports_a_lost_lease,
    concurrent_writers_lose_no_update,
    update_with_retry_without_change_does_not_write,
    informer_follows_changes,
    fenced_writes_stop_when_the_fence_is_taken_over,
);

async fn create_stamps_metadata_and_get_returns_it(store: Arc<dyn Store>) {
    let mut input = svc("default", "webpod");
    input.metadata.labels.insert("app".into(), "webpod".into());
    let created = store.create(input).await.expect("create");
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36), "uid: {:?}", meta.uid);
    let ts = meta.creation_timestamp.as_deref().expect("creationTimestamp");
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'), "{ts}");
    assert_eq!(meta.generation, Some(1));
    assert!(rv(&created) > 0);
    let got = store.get(&svc_ref("default", "webpod")).await.expect("get").expect("exists");
    assert_eq!(got, created);
    assert_eq!(got.field("spec"), Some(&json!({"type": "ClusterIP", "ports": [{"port": 80}]})));
    assert_eq!(store.get(&svc_ref("default", "other")).await.expect("get"), None);
    assert_eq!(store.get(&svc_ref("kube-system", "webpod")).await.expect("get"), None);
}

async fn create_of_existing_object_fails_and_keeps_it(store: Arc<dyn Store>) {
    let created = store.create(svc("default", "webpod")).await.expect("create");
    let mut again = svc("default", "webpod");
    again.body.insert("spec".into(), json!({"type": "LoadBalancer"}));
    let err = store.create(again).await.expect_err("second create fails");
    assert_eq!(err, Error::AlreadyExists(svc_ref("default", "webpod")));
    assert_eq!(err.to_string(), "Service default/webpod already exists");
    assert_eq!(store.get(&svc_ref("default", "webpod")).await.expect("get"), Some(created));
}

async fn update_keeps_identity_and_counts_generations(store: Arc<dyn Store>) {
    let created = store.create(svc("default", "webpod")).await.expect("create");

    // Status only: generation stays. Identity fields sent by the caller are ignored.
    let mut next = created.clone();
    next.body.insert("status".into(), json!({"loadBalancer": {"ingress": [{"ip": "192.168.10.211"}]}}));
    next.metadata.uid = Some("forged".into());
    next.metadata.creation_timestamp = Some("2000-01-01T00:00:00Z".into());
    let updated = store.update(next).await.expect("update");
    assert!(rv(&updated) > rv(&created));
    assert_eq!(updated.metadata.generation, Some(1));
    assert_eq!(updated.metadata.uid, created.metadata.uid);
    assert_eq!(updated.metadata.creation_timestamp, created.metadata.creation_timestamp);

    // Spec change: generation + 1.
    let mut next = updated.clone();
    next.body.insert("spec".into(), json!({"type": "LoadBalancer"}));
    let updated = store.update(next).await.expect("update");
    assert_eq!(updated.metadata.generation, Some(2));

    // No resourceVersion: unconditional.
    let mut blind = svc("default", "webpod");
    blind.metadata.labels.insert("blind".into(), "yes".into());
    let blind = store.update(blind).await.expect("unconditional update");
    assert_eq!(blind.metadata.generation, Some(3), "spec went back to ClusterIP");
    assert_eq!(store.get(&svc_ref("default", "webpod")).await.expect("get"), Some(blind));
}

async fn update_of_missing_object_is_not_found(store: Arc<dyn Store>) {
    let before = store.revision().await.expect("revision");
    let err = store.update(svc("default", "ghost")).await.expect_err("missing");
    assert_eq!(err, Error::NotFound(svc_ref("default", "ghost")));
    assert_eq!(err.to_string(), "Service default/ghost not found");
    let mut with_rv = svc("default", "ghost");
    with_rv.metadata.resource_version = Some("5".into());
    assert!(matches!(store.update(with_rv).await, Err(Error::NotFound(_))));
    assert_eq!(store.get(&svc_ref("default", "ghost")).await.expect("get"), None);
    assert_eq!(store.revision().await.expect("revision"), before, "nothing was written");
}

async fn stale_resource_version_conflicts_and_keeps_stored_object(store: Arc<dyn Store>) {
    let first = store.create(svc("default", "webpod")).await.expect("create");
    let mut second = first.clone();
    second.metadata.labels.insert("v".into(), "2".into());
    let second = store.update(second).await.expect("update");

    let mut stale = first.clone();
    stale.metadata.labels.insert("v".into(), "stale".into());
    let err = store.update(stale).await.expect_err("stale write");
    assert_eq!(
        err,
        Error::Conflict {
            object: svc_ref("default", "webpod"),
            expected: rv(&first).to_string(),
            actual: rv(&second).to_string(),
        }
    );
    assert!(err.is_retryable());
    assert!(err.to_string().starts_with("Service default/webpod has been modified"), "{err}");
    assert_eq!(store.get(&svc_ref("default", "webpod")).await.expect("get"), Some(second));
}

async fn delete_returns_the_object_and_honours_preconditions(store: Arc<dyn Store>) {
    let created = store.create(svc("default", "webpod")).await.expect("create");
    let r = svc_ref("default", "webpod");

    let stale = (rv(&created) - 1).to_string();
    let err = store.delete(&r, Some(&stale)).await.expect_err("stale precondition");
    assert!(matches!(&err, Error::Conflict { actual, .. } if *actual == rv(&created).to_string()), "{err}");
    assert_eq!(store.get(&r).await.expect("get"), Some(created.clone()));

    let deleted = store.delete(&r, Some(&rv(&created).to_string())).await.expect("delete");
    assert_eq!(deleted, Some(created));
    assert_eq!(store.get(&r).await.expect("get"), None);
    assert_eq!(store.delete(&r, None).await.expect("delete of absent"), None);
    assert_eq!(store.delete(&r, Some("3")).await.expect("delete of absent"), None);

    let created = store.create(svc("default", "webpod")).await.expect("create again");
    assert_eq!(store.delete(&r, None).await.expect("unconditional delete"), Some(created));
}

async fn list_is_sorted_and_filtered(store: Arc<dyn Store>) {
    for (ns, name, app) in [("b", "z", "x"), ("a-b", "m", "y"), ("a", "q", "x"), ("a", "c", "y")] {
        let mut o = svc(ns, name);
        o.metadata.labels.insert("app".into(), app.into());
        store.create(o).await.expect("create");
    }
    // Other kinds and scopes must not leak into the list.
    store.create(Object::new(&POD, Some("a"), "pod")).await.expect("create pod");
    let last = store.create(Object::new(&NODE, None, "k8s-w1")).await.expect("create node");

    let everything = Selector::everything();
    let all = store.list(&SERVICE, None, &everything).await.expect("list");
    let names: Vec<_> = all.items.iter().map(|o| format!("{}/{}", o.namespace().unwrap_or("-"), o.name())).collect();
    assert_eq!(names, ["a/c", "a/q", "a-b/m", "b/z"]);
    assert!(all.revision >= rv(&last), "list revision {} before last write {}", all.revision, rv(&last));
    for item in &all.items {
        assert_eq!(store.get(&item.object_ref().expect("known kind")).await.expect("get").as_ref(), Some(item));
    }

    let in_a = store.list(&SERVICE, Some("a"), &everything).await.expect("list a");
    assert_eq!(in_a.items.iter().map(|o| o.name()).collect::<Vec<_>>(), ["c", "q"]);

    let selector = Selector::parse("app=x").expect("selector");
    let x = store.list(&SERVICE, None, &selector).await.expect("list app=x");
    assert_eq!(x.items.iter().map(|o| o.name()).collect::<Vec<_>>(), ["q", "z"]);

    let nodes = store.list(&NODE, Some("a"), &everything).await.expect("namespace ignored for nodes");
    assert_eq!(nodes.items.len(), 1);
    assert!(store.list(&SERVICE, Some("nope"), &everything).await.expect("list").items.is_empty());
}

async fn revisions_increase_across_kinds(store: Arc<dyn Store>) {
    let mut last = store.revision().await.expect("revision");
    for i in 0..5 {
        let s = store.create(svc("default", &format!("s{i}"))).await.expect("create");
        let n = store.create(Object::new(&NODE, None, &format!("n{i}"))).await.expect("create");
        assert!(rv(&s) > last && rv(&n) > rv(&s));
        last = rv(&n);
    }
    assert_eq!(store.revision().await.expect("revision"), last);
}

async fn invalid_requests_write_nothing(store: Arc<dyn Store>) {
    let before = store.revision().await.expect("revision");
    let mut unknown = svc("default", "x");
    unknown.kind = "Frobnicator".into();
    assert!(matches!(store.create(unknown).await, Err(Error::Invalid(_))));
    let no_namespace = Object::new(&SERVICE, None, "x");
    assert!(matches!(store.create(no_namespace).await, Err(Error::Invalid(m)) if m.contains("namespace")));
    assert!(matches!(store.create(svc("default", "")).await, Err(Error::Invalid(_))));
    assert!(matches!(store.create(svc("default", "a/b")).await, Err(Error::Invalid(_))));

    store.create(svc("default", "x")).await.expect("create");
    let before_bad_rv = store.revision().await.expect("revision");
    let mut bad_rv = svc("default", "x");
    bad_rv.metadata.resource_version = Some("abc".into());
    assert!(matches!(store.update(bad_rv).await, Err(Error::Invalid(m)) if m.contains("abc")));
    assert!(matches!(store.delete(&svc_ref("default", "x"), Some("abc")).await, Err(Error::Invalid(_))));
    assert_eq!(store.revision().await.expect("revision"), before_bad_rv);
    assert_eq!(before_bad_rv, before + 1);
}

/// Reads `n` items from a watch, failing the test after the deadline.
async fn take(stream: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    while events.len() < n {
        match tokio::time::timeout(DEADLINE, stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            other => panic!("after {} of {n} events: {other:?}", events.len()),
        }
    }
    events
}

async fn watch_replays_from_a_revision_then_follows(store: Arc<dyn Store>) {
    store.create(svc("default", "a")).await.expect("create a");
    let list = store.list(&SERVICE, Some("default"), &Selector::everything()).await.expect("list");

    let b = store.create(svc("default", "b")).await.expect("create b");
    store.create(svc("other", "elsewhere")).await.expect("other namespace");
    store.create(Object::new(&NODE, None, "node")).await.expect("other kind");
    let mut a = store.get(&svc_ref("default", "a")).await.expect("get").expect("a");
    a.metadata.labels.insert("x".into(), "y".into());
    let a = store.update(a).await.expect("update a");
    store.delete(&svc_ref("default", "b"), None).await.expect("delete b");

    let mut watch = store.watch(&SERVICE, Some("default"), list.revision).await.expect("watch");
    let replayed = take(&mut watch, 3).await;
    let seen: Vec<_> = replayed.iter().map(|e| (e.type_, e.object.name().to_string())).collect();
    use WatchEventType::*;
    assert_eq!(seen, [(Added, "b".into()), (Modified, "a".into()), (Deleted, "b".into())]);
    assert_eq!(replayed[0].object, b);
    assert_eq!(replayed[0].revision, rv(&b));
    assert_eq!(replayed[1].object, a);
    assert!(replayed[2].revision > replayed[1].revision);
    assert_eq!(rv(&replayed[2].object), replayed[2].revision, "a deletion carries its own revision");

    let c = store.create(svc("default", "c")).await.expect("create c");
    store.create(svc("other", "c")).await.expect("other namespace");
    let live = take(&mut watch, 1).await;
    assert_eq!(live[0], WatchEvent { type_: Added, object: c.clone(), revision: rv(&c) });

    // All namespaces.
    let mut everywhere = store.watch(&SERVICE, None, rv(&c)).await.expect("watch");
    let other = take(&mut everywhere, 1).await;
    assert_eq!(other[0].object.namespace(), Some("other"));
}

/// Watches from `after`, which must be compacted: the watch starts, and its only item is the
/// `Compacted` error (etcd reports compaction on the stream, and the memory store does the same).
async fn expect_compacted(store: &Arc<dyn Store>, after: i64) -> i64 {
    let mut stream = store.watch(&SERVICE, None, after).await.expect("watch starts");
    let item = tokio::time::timeout(DEADLINE, stream.next()).await.expect("an item in time");
    let Some(Err(Error::Compacted { compact_revision })) = item else {
        panic!("watch from {after}: expected Compacted, got {item:?}");
    };
    let end = tokio::time::timeout(DEADLINE, stream.next()).await.expect("the stream ends");
    assert!(end.is_none(), "nothing follows the error: {end:?}");
    compact_revision
}

async fn watch_from_compacted_revision_fails(store: Arc<dyn Store>) {
    let start = store.revision().await.expect("revision");
    for i in 0..5 {
        store.create(svc("default", &format!("s{i}"))).await.expect("create");
    }
    let now = store.revision().await.expect("revision");
    store.compact(now - 1).await.expect("compact");
    store.compact(now - 2).await.expect("compacting an older revision again is fine");
    assert!(matches!(store.compact(now + 100).await, Err(Error::Invalid(_))));

    let compact_revision = expect_compacted(&store, start).await;
    assert_eq!(compact_revision, now - 1);

    // From the compaction revision on, history is intact.
    let mut watch = store.watch(&SERVICE, None, now - 2).await.expect("watch");
    let events = take(&mut watch, 2).await;
    assert_eq!(events.iter().map(|e| e.revision).collect::<Vec<_>>(), [now - 1, now]);
}

async fn lease_expiry_deletes_objects(store: Arc<dyn Store>) {
    let lease = store.grant_lease(Duration::from_secs(1)).await.expect("grant");
    let node =
        store.create_with_lease(Object::new(&NODE, None, "k8s-w1"), Some(lease)).await.expect("create with lease");
    let mut watch = store.watch(&NODE, None, rv(&node)).await.expect("watch");
    let r = ObjectRef::new(&NODE, None, "k8s-w1");
    assert!(
        wait_until(DEADLINE, || async { store.get(&r).await.expect("get").is_none() }).await,
        "object outlived its lease"
    );
    let deleted = take(&mut watch, 1).await;
    assert_eq!(deleted[0].type_, WatchEventType::Deleted);
    assert_eq!(deleted[0].object.name(), "k8s-w1");

    assert_eq!(store.keep_alive(lease).await, Err(Error::LeaseNotFound(lease)));
    let err = store.create_with_lease(Object::new(&NODE, None, "late"), Some(lease)).await;
    assert_eq!(err, Err(Error::LeaseNotFound(lease)));
    assert_eq!(store.get(&ObjectRef::new(&NODE, None, "late")).await.expect("get"), None);
}

async fn keep_alive_keeps_objects(store: Arc<dyn Store>) {
    let lease = store.grant_lease(Duration::from_secs(1)).await.expect("grant");
    store.create_with_lease(Object::new(&NODE, None, "k8s-ctr"), Some(lease)).await.expect("create");
    let r = ObjectRef::new(&NODE, None, "k8s-ctr");
    // Three TTLs with renewals every quarter TTL: the object must be there at every check.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        let ttl = store.keep_alive(lease).await.expect("keep alive");
        assert_eq!(ttl, Duration::from_secs(1));
        assert!(store.get(&r).await.expect("get").is_some(), "object expired despite keep-alives");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        wait_until(DEADLINE, || async { store.get(&r).await.expect("get").is_none() }).await,
        "object outlived its lease once renewals stopped"
    );
}

async fn revoke_deletes_all_objects_of_a_lease_at_one_revision(store: Arc<dyn Store>) {
    let lease = store.grant_lease(Duration::from_secs(60)).await.expect("grant");
    let start = store.revision().await.expect("revision");
    for name in ["a", "b"] {
        store.create_with_lease(svc("default", name), Some(lease)).await.expect("create");
    }
    store.create(svc("default", "unleased")).await.expect("create");
    store.revoke_lease(lease).await.expect("revoke");
    store.revoke_lease(lease).await.expect("revoking again is fine");

    let mut watch = store.watch(&SERVICE, None, start).await.expect("watch");
    let events = take(&mut watch, 5).await;
    let deletions: Vec<_> = events.iter().filter(|e| e.type_ == WatchEventType::Deleted).collect();
    assert_eq!(deletions.len(), 2);
    assert_eq!(deletions[0].revision, deletions[1].revision);
    let left = store.list(&SERVICE, None, &Selector::everything()).await.expect("list");
    assert_eq!(left.items.iter().map(|o| o.name()).collect::<Vec<_>>(), ["unleased"]);
}

async fn update_keeps_or_moves_the_lease(store: Arc<dyn Store>) {
    let first = store.grant_lease(Duration::from_secs(60)).await.expect("grant");
    let second = store.grant_lease(Duration::from_secs(60)).await.expect("grant");
    let a = store.create_with_lease(svc("default", "a"), Some(first)).await.expect("create a");
    let b = store.create_with_lease(svc("default", "b"), Some(first)).await.expect("create b");

    let mut a2 = a.clone();
    a2.metadata.labels.insert("touched".into(), "yes".into());
    store.update(a2).await.expect("update keeps the lease");
    store.update_with_lease(b, Some(second)).await.expect("update moves b to the second lease");
    let unknown = store::LeaseId(12345);
    let mut a3 = svc("default", "a");
    a3.metadata.labels.insert("x".into(), "y".into());
    assert_eq!(store.update_with_lease(a3, Some(unknown)).await, Err(Error::LeaseNotFound(unknown)));

    store.revoke_lease(first).await.expect("revoke");
    assert_eq!(store.get(&svc_ref("default", "a")).await.expect("get"), None, "a kept the first lease");
    assert!(store.get(&svc_ref("default", "b")).await.expect("get").is_some(), "b moved to the second");
    store.revoke_lease(second).await.expect("revoke");
    assert_eq!(store.get(&svc_ref("default", "b")).await.expect("get"), None);
}

async fn lease_keeper_reports_a_lost_lease(store: Arc<dyn Store>) {
    let lease = store.grant_lease(Duration::from_secs(1)).await.expect("grant");
    store.create_with_lease(Object::new(&NODE, None, "n"), Some(lease)).await.expect("create");
    let keeper = LeaseKeeper::start(Arc::clone(&store), lease, Duration::from_millis(250));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!keeper.is_lost());
    assert!(store.get(&ObjectRef::new(&NODE, None, "n")).await.expect("get").is_some());
    store.revoke_lease(lease).await.expect("revoke");
    tokio::time::timeout(DEADLINE, keeper.lost()).await.expect("loss reported");
}

async fn concurrent_writers_lose_no_update(store: Arc<dyn Store>) {
    const N: i64 = 200;
    store.create(svc("default", "counter")).await.expect("create");
    let writer = |field: &'static str| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for _ in 0..N {
                update_with_retry(&*store, &svc_ref("default", "counter"), |o| {
                    let status = o.body.entry("status").or_insert_with(|| json!({}));
                    let count = status.get(field).and_then(|v| v.as_i64()).unwrap_or(0);
                    status[field] = json!(count + 1);
                    Ok(true)
                })
                .await
                .expect("update_with_retry");
            }
        })
    };
    let (a, b) = (writer("a"), writer("b"));
    a.await.expect("writer a");
    b.await.expect("writer b");
    let last = store.get(&svc_ref("default", "counter")).await.expect("get").expect("exists");
    assert_eq!(last.field("status"), Some(&json!({"a": N, "b": N})));
}

async fn update_with_retry_without_change_does_not_write(store: Arc<dyn Store>) {
    let created = store.create(svc("default", "webpod")).await.expect("create");
    let calls = Arc::new(Mutex::new(0));
    let seen = Arc::clone(&calls);
    let same = update_with_retry(&*store, &svc_ref("default", "webpod"), move |_| {
        *seen.lock().expect("lock") += 1;
        Ok(false)
    })
    .await
    .expect("no-op");
    assert_eq!(same, created);
    assert_eq!(*calls.lock().expect("lock"), 1);

    let missing = update_with_retry(&*store, &svc_ref("default", "ghost"), |_| Ok(true)).await;
    assert_eq!(missing, Err(Error::NotFound(svc_ref("default", "ghost"))));

    let renamed = update_with_retry(&*store, &svc_ref("default", "webpod"), |o| {
        o.metadata.name = "other".into();
        Ok(true)
    })
    .await;
    assert!(matches!(renamed, Err(Error::Invalid(_))));

    let refused = update_with_retry(&*store, &svc_ref("default", "webpod"), |_| Err(Error::Invalid("no".into()))).await;
    assert_eq!(refused, Err(Error::Invalid("no".into())));
    assert_eq!(store.get(&svc_ref("default", "webpod")).await.expect("get"), Some(created));
}

async fn informer_follows_changes(store: Arc<dyn Store>) {
    store.create(svc("default", "before")).await.expect("create");
    let informer = Informer::start(Arc::clone(&store), &SERVICE, Some("default"));
    let mut subscription = informer.subscribe();
    tokio::time::timeout(DEADLINE, informer.wait_synced()).await.expect("synced");

    let mut written = Vec::new();
    written.push(store.create(svc("default", "a")).await.expect("create a"));
    store.create(svc("elsewhere", "a")).await.expect("other namespace");
    let mut a = written[0].clone();
    a.metadata.labels.insert("v".into(), "2".into());
    written.push(store.update(a).await.expect("update a"));
    store.delete(&svc_ref("default", "before"), None).await.expect("delete");
    let last = store.revision().await.expect("revision");

    // Whatever the subscription saw first (an empty resync if it subscribed before the list),
    // replaying it must give the final state, with revisions increasing.
    let mut state: BTreeMap<String, Object> = BTreeMap::new();
    let mut last_revision = 0;
    while last_revision < last {
        match tokio::time::timeout(DEADLINE, subscription.recv()).await.expect("event in time") {
            Some(Change::Resync(objects)) => {
                state = objects.into_iter().map(|o| (o.name().to_string(), o)).collect();
            }
            Some(Change::Event(event)) => {
                assert!(event.revision > last_revision, "revision went from {last_revision} to {}", event.revision);
                last_revision = event.revision;
                match event.type_ {
                    WatchEventType::Deleted => assert!(state.remove(event.object.name()).is_some()),
                    _ => {
                        state.insert(event.object.name().to_string(), event.object);
                    }
                }
            }
            None => panic!("informer stopped"),
        }
    }
    assert_eq!(state.into_values().collect::<Vec<_>>(), informer.snapshot());
    let list = store.list(&SERVICE, Some("default"), &Selector::everything()).await.expect("list");
    assert_eq!(informer.snapshot(), list.items);
    assert_eq!(informer.get(Some("default"), "a").as_ref(), written.last());
    assert_eq!(informer.get(Some("default"), "before"), None);
    assert_eq!(informer.revision(), last);
}

/// A leader whose lease lapsed while it was paused: once another process created the Lease anew,
/// every write through the old leader's fenced handle is refused, and nothing it wrote lands.
async fn fenced_writes_stop_when_the_fence_is_taken_over(store: Arc<dyn Store>) {
    let lease_ref = ObjectRef::new(&api::kinds::LEASE, Some("kube-system"), "leader");
    let lease = store.grant_lease(Duration::from_secs(30)).await.expect("grant");
    let held = store
        .create_with_lease(Object::new(&api::kinds::LEASE, Some("kube-system"), "leader"), Some(lease))
        .await
        .expect("take the lease");
    let fenced = store.fenced(Fence::new(lease_ref.clone(), rv(&held)));

    // While the fence holds, every kind of write goes through, and conditions still apply.
    let created = fenced.create(svc("default", "a")).await.expect("fenced create");
    let updated = fenced.update(created.clone()).await.expect("fenced update");
    assert!(matches!(fenced.update(created).await, Err(Error::Conflict { .. })), "the caller's condition still counts");
    assert!(matches!(fenced.create(svc("default", "a")).await, Err(Error::AlreadyExists(_))));
    fenced.create(svc("default", "b")).await.expect("fenced create");
    fenced.delete(&svc_ref("default", "b"), None).await.expect("fenced delete");

    // Another leader takes over: the Lease is gone and created anew (a new create revision).
    store.revoke_lease(lease).await.expect("revoke");
    let standby = store.grant_lease(Duration::from_secs(30)).await.expect("grant");
    store
        .create_with_lease(Object::new(&api::kinds::LEASE, Some("kube-system"), "leader"), Some(standby))
        .await
        .expect("the standby takes the lease");

    let fenced_out = |r: store::Result<Option<Object>>| matches!(r, Err(Error::Fenced(ref o)) if *o == lease_ref);
    assert!(fenced_out(fenced.create(svc("default", "c")).await.map(Some)), "create after take-over");
    assert!(fenced_out(fenced.update(updated.clone()).await.map(Some)), "update after take-over");
    assert!(fenced_out(fenced.delete(&svc_ref("default", "a"), None).await), "delete after take-over");
    let rv_a = updated.metadata.resource_version.clone();
    assert!(fenced_out(fenced.delete(&svc_ref("default", "a"), rv_a.as_deref()).await), "conditional delete");
    assert!(update_with_retry(fenced.as_ref(), &svc_ref("default", "a"), |_| Ok(true)).await.is_err());
    assert!(store.get(&svc_ref("default", "c")).await.expect("get").is_none(), "a refused create landed");
    assert!(store.get(&svc_ref("default", "a")).await.expect("get").is_some(), "a refused delete landed");
    // The unfenced store (the new leader's) is unaffected.
    store.delete(&svc_ref("default", "a"), None).await.expect("delete");
}
