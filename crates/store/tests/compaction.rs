//! The watch cache across etcd's compaction (the lab's etcd compacts its history every five
//! minutes): an informer whose watch broke while the revisions it would resume from were
//! compacted lists again and ends with exactly what etcd holds.

mod common;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use api::{Selector, kinds::SERVICE};
use common::{DEADLINE, svc, svc_ref};
use store::{
    EtcdStore, Informer, InformerOptions, Store,
    testing::{EtcdGuard, wait_until},
};

fn names_and_versions(objects: &[api::Object]) -> BTreeMap<String, Option<String>> {
    objects.iter().map(|o| (o.name().to_string(), o.metadata.resource_version.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informer_lists_again_when_its_resume_revision_was_compacted() {
    let (mut guard, url) = EtcdGuard::start().await.expect("etcd starts");
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&url).await.expect("connect"));
    // A long pause after the watch breaks leaves room to write and compact before it resumes.
    let options = InformerOptions {
        initial_backoff: Duration::from_secs(6),
        max_backoff: Duration::from_secs(6),
        ..Default::default()
    };
    let informer = Informer::start_with(Arc::clone(&store), &SERVICE, None, options);
    tokio::time::timeout(DEADLINE, informer.wait_synced()).await.expect("synced");
    for i in 0..5 {
        store.create(svc("default", &format!("a{i}"))).await.expect("create");
    }
    let before = store.revision().await.expect("revision");
    assert!(wait_until(DEADLINE, || async { informer.revision() >= before }).await, "informer caught up");

    // The watch breaks (etcd restarts); meanwhile objects change and the history is compacted.
    guard.kill().expect("SIGKILL etcd");
    assert!(
        wait_until(DEADLINE, || async { store.get(&svc_ref("default", "x")).await.is_err() }).await,
        "etcd is down"
    );
    guard.restart().await.expect("restart etcd on the same data");
    store.delete(&svc_ref("default", "a0"), None).await.expect("delete");
    let mut a1 = store.get(&svc_ref("default", "a1")).await.expect("get").expect("a1");
    a1.metadata.labels.insert("changed".into(), "yes".into());
    store.update(a1).await.expect("update");
    for i in 0..5 {
        store.create(svc("default", &format!("b{i}"))).await.expect("create");
    }
    let now = store.revision().await.expect("revision");
    store.compact(now).await.expect("compact");
    assert!(informer.revision() < now, "the informer resumed before the compaction; the test proves nothing");
    // Resuming from `before` is impossible now: only a new list catches up.
    let mut history = store.watch(&SERVICE, None, before).await.expect("watch");
    use futures::StreamExt as _;
    assert!(matches!(history.next().await, Some(Err(store::Error::Compacted { .. }))), "history is compacted");

    let want = names_and_versions(&store.list(&SERVICE, None, &Selector::everything()).await.expect("list").items);
    assert!(
        wait_until(Duration::from_secs(30), || async { names_and_versions(&informer.snapshot()) == want }).await,
        "the informer's cache {:?} never matched etcd's {:?}",
        names_and_versions(&informer.snapshot()),
        want
    );
    assert!(informer.revision() >= now);
    assert_eq!(want.len(), 9);

    // And it keeps following after the relist.
    store.create(svc("default", "c0")).await.expect("create");
    assert!(
        wait_until(DEADLINE, || async { informer.snapshot().iter().any(|o| o.name() == "c0") }).await,
        "watching after the relist"
    );
}
