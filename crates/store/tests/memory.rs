//! What the memory backend makes testable: lost watches, compaction while an informer is away,
//! slow subscribers, and lease expiry on a paused clock.

mod common;

use std::{sync::Arc, time::Duration};

use api::{Object, ObjectRef, Selector, kinds::NODE, kinds::SERVICE};
use common::{DEADLINE, rv, svc, svc_ref};
use futures::StreamExt;
use store::{Change, Error, Informer, InformerOptions, MemoryStore, Store, WatchEventType, testing::wait_until};

async fn next_change(subscription: &mut store::Subscription) -> Change {
    tokio::time::timeout(DEADLINE, subscription.recv()).await.expect("change in time").expect("informer runs")
}

#[tokio::test]
async fn informer_relists_after_compaction_and_emits_the_difference() {
    let memory = MemoryStore::new();
    let store: Arc<dyn Store> = Arc::new(memory.clone());
    for name in ["keep", "change", "remove"] {
        store.create(svc("default", name)).await.expect("create");
    }
    let informer = Informer::start(Arc::clone(&store), &SERVICE, None);
    tokio::time::timeout(DEADLINE, informer.wait_synced()).await.expect("synced");
    let mut subscription = informer.subscribe();
    assert!(matches!(next_change(&mut subscription).await, Change::Resync(o) if o.len() == 3));

    // The watch breaks, and while the informer cannot come back the history it needs is compacted.
    memory.refuse_watches(true);
    memory.disconnect_watches();
    let mut changed = store.get(&svc_ref("default", "change")).await.expect("get").expect("exists");
    changed.metadata.labels.insert("v".into(), "2".into());
    let changed = store.update(changed).await.expect("update");
    store.delete(&svc_ref("default", "remove"), None).await.expect("delete");
    let added = store.create(svc("default", "new")).await.expect("create");
    // An object created and deleted while away is never seen at all.
    store.create(svc("default", "flash")).await.expect("create");
    store.delete(&svc_ref("default", "flash"), None).await.expect("delete");
    let now = store.revision().await.expect("revision");
    store.compact(now).await.expect("compact");
    memory.refuse_watches(false);

    let mut events = Vec::new();
    while events.len() < 3 {
        match next_change(&mut subscription).await {
            Change::Event(e) => events.push((e.type_, e.object.name().to_string(), e.revision)),
            Change::Resync(_) => panic!("a relist reaches subscribers as events"),
        }
    }
    assert_eq!(
        events,
        [
            (WatchEventType::Modified, "change".to_string(), rv(&changed)),
            (WatchEventType::Added, "new".to_string(), rv(&added)),
            (WatchEventType::Deleted, "remove".to_string(), now),
        ]
    );
    let list = store.list(&SERVICE, None, &Selector::everything()).await.expect("list");
    assert_eq!(informer.snapshot(), list.items);
    assert_eq!(informer.revision(), now);

    // And it keeps following afterwards.
    let later = store.create(svc("default", "later")).await.expect("create");
    match next_change(&mut subscription).await {
        Change::Event(e) => assert_eq!((e.type_, e.revision), (WatchEventType::Added, rv(&later))),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn informer_resumes_a_lost_watch_without_repeating_events() {
    let memory = MemoryStore::new();
    let store: Arc<dyn Store> = Arc::new(memory.clone());
    let informer = Informer::start(Arc::clone(&store), &SERVICE, None);
    tokio::time::timeout(DEADLINE, informer.wait_synced()).await.expect("synced");
    let mut subscription = informer.subscribe();
    next_change(&mut subscription).await;
    let mut revisions = Vec::new();
    for i in 0..20 {
        if i % 5 == 0 {
            memory.disconnect_watches();
        }
        revisions.push(rv(&store.create(svc("default", &format!("s{i}"))).await.expect("create")));
    }
    let mut seen = Vec::new();
    while seen.len() < revisions.len() {
        match next_change(&mut subscription).await {
            Change::Event(e) => seen.push(e.revision),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, revisions);
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_gets_a_resync() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let options = InformerOptions { channel_capacity: 4, ..InformerOptions::default() };
    let informer = Informer::start_with(Arc::clone(&store), &SERVICE, None, options);
    tokio::time::timeout(DEADLINE, informer.wait_synced()).await.expect("synced");
    let mut subscription = informer.subscribe();
    assert_eq!(next_change(&mut subscription).await, Change::Resync(Vec::new()));
    let mut last = 0;
    for i in 0..10 {
        last = rv(&store.create(svc("default", &format!("s{i}"))).await.expect("create"));
    }
    assert!(wait_until(DEADLINE, || async { informer.revision() == last }).await);
    match next_change(&mut subscription).await {
        Change::Resync(objects) => assert_eq!(objects.len(), 10),
        other => panic!("expected a resync, got {other:?}"),
    }
    let after = store.create(svc("default", "after")).await.expect("create");
    assert!(matches!(next_change(&mut subscription).await, Change::Event(e) if e.revision == rv(&after)));
}

#[tokio::test]
async fn subscriptions_end_when_the_informer_is_dropped() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let informer = Informer::start(Arc::clone(&store), &SERVICE, None);
    let mut subscription = informer.subscribe();
    assert!(matches!(next_change(&mut subscription).await, Change::Resync(_)));
    drop(informer);
    let end = tokio::time::timeout(DEADLINE, subscription.recv()).await.expect("ends in time");
    assert_eq!(end, None);
}

#[tokio::test(start_paused = true)]
async fn leases_follow_the_tokio_clock() {
    let store = MemoryStore::new();
    let lease = store.grant_lease(Duration::from_secs(10)).await.expect("grant");
    store.create_with_lease(Object::new(&NODE, None, "n"), Some(lease)).await.expect("create");
    let mut watch = store.watch(&NODE, None, 0).await.expect("watch");
    tokio::time::advance(Duration::from_secs(9)).await;
    store.keep_alive(lease).await.expect("still alive");
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(store.get(&ObjectRef::new(&NODE, None, "n")).await.expect("get").is_some());
    tokio::time::advance(Duration::from_secs(2)).await;
    let added = watch.next().await.expect("item").expect("event");
    assert_eq!(added.type_, WatchEventType::Added);
    // The expiry task runs on its own: the watcher sees the deletion without anyone calling in.
    let deleted = watch.next().await.expect("item").expect("event");
    assert_eq!(deleted.type_, WatchEventType::Deleted);
    assert_eq!(store.keep_alive(lease).await, Err(Error::LeaseNotFound(lease)));
}

#[tokio::test]
async fn bounded_history_compacts_the_oldest_events() {
    let store = MemoryStore::with_history_limit(5);
    let start = store.revision().await.expect("revision");
    for i in 0..10 {
        store.create(svc("default", &format!("s{i}"))).await.expect("create");
    }
    let now = store.revision().await.expect("revision");
    let mut compacted = store.watch(&SERVICE, None, start).await.expect("watch");
    assert!(matches!(compacted.next().await, Some(Err(Error::Compacted { .. }))));
    assert!(store.watch(&SERVICE, None, now - 5).await.is_ok());
}
