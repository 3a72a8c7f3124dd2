//! A watch cache for one kind, the base of every controller: list, then watch from the list's
//! revision; keep the current objects; fan changes out to subscribers.
//!
//! It hides datastore trouble from its consumers. A broken watch (etcd restarted, connection lost)
//! is resumed from the last revision seen, with bounded backoff, so no change is missed or
//! repeated. When the history needed to resume is gone (compaction), it lists again and emits the
//! difference between its cache and the list as Added/Modified/Deleted events.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak},
    time::Duration,
};

use api::{Object, ResourceKind, Selector};
use futures::StreamExt;
use tokio::{
    sync::{broadcast, watch},
    task::JoinHandle,
};

use crate::{
    error::Error,
    store::{ObjectList, Store, WatchEvent, WatchEventType},
};

#[derive(Clone, Debug)]
pub struct InformerOptions {
    /// Events buffered per subscriber. A subscriber that falls further behind gets a
    /// [`Change::Resync`] instead of the events it missed.
    pub channel_capacity: usize,
    /// First pause after a failed list or watch; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for InformerOptions {
    fn default() -> Self {
        InformerOptions {
            channel_capacity: 4096,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What a [`Subscription`] delivers.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "events are the common case and are consumed at once; boxing them costs an allocation each"
)]
pub enum Change {
    /// The complete current state; forget anything known before. The first item of every
    /// subscription, and the recovery after falling behind.
    Resync(Vec<Object>),
    /// One change, after the state of the last `Resync` and the events since.
    Event(WatchEvent),
}

/// The cache of one kind. Dropping it stops the background task.
pub struct Informer {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    kind: &'static ResourceKind,
    state: RwLock<State>,
    /// Sent to under the state's write lock, so that subscribing under the read lock yields a
    /// snapshot and a receiver that fit together exactly.
    events: broadcast::Sender<WatchEvent>,
    synced: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<(Option<String>, String), Object>,
    /// The store revision the cache reflects.
    revision: i64,
    /// Objects whose stored value was unreadable at the last list.
    unreadable: Vec<api::ObjectRef>,
}

impl Informer {
    /// Starts caching `kind` (in `namespace`, or everywhere). Must run inside a tokio runtime.
    pub fn start(store: Arc<dyn Store>, kind: &'static ResourceKind, namespace: Option<&str>) -> Informer {
        Self::start_with(store, kind, namespace, InformerOptions::default())
    }

    pub fn start_with(
        store: Arc<dyn Store>,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        options: InformerOptions,
    ) -> Informer {
        let (events, _) = broadcast::channel(options.channel_capacity.max(1));
        let shared =
            Arc::new(Shared { kind, state: RwLock::new(State::default()), events, synced: watch::Sender::new(false) });
        let namespace = namespace.map(str::to_string);
        let task = tokio::spawn(run(store, Arc::clone(&shared), namespace, options));
        Informer { shared, task }
    }

    /// Objects whose stored value could not be read at the last list (their last readable
    /// version, if any, stays in the cache), for `cilia status` and metrics.
    pub fn unreadable(&self) -> Vec<api::ObjectRef> {
        self.shared.read().unreadable.clone()
    }

    pub fn kind(&self) -> &'static ResourceKind {
        self.shared.kind
    }

    /// Resolves once the first list is in the cache.
    pub async fn wait_synced(&self) {
        let mut synced = self.shared.synced.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close while we wait.
        let _ = synced.wait_for(|s| *s).await;
    }

    /// Turns true once the first list is in the cache, for waiting without borrowing the
    /// informer.
    pub(crate) fn synced_receiver(&self) -> watch::Receiver<bool> {
        self.shared.synced.subscribe()
    }

    pub fn is_synced(&self) -> bool {
        *self.shared.synced.borrow()
    }

    /// The cached objects, sorted by namespace and name.
    pub fn snapshot(&self) -> Vec<Object> {
        self.shared.read().objects.values().cloned().collect()
    }

    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Object> {
        let namespace = if self.shared.kind.namespaced { namespace.map(str::to_string) } else { None };
        self.shared.read().objects.get(&(namespace, name.to_string())).cloned()
    }

    /// The store revision the cache reflects.
    pub fn revision(&self) -> i64 {
        self.shared.read().revision
    }

    /// Changes from now on, starting with a [`Change::Resync`] of the current cache (empty before
    /// the first list; the first list then arrives as Added events).
    pub fn subscribe(&self) -> Subscription {
        let (initial, events) = self.shared.snapshot_and_subscribe();
        Subscription { shared: Arc::downgrade(&self.shared), events, initial: Some(initial) }
    }
}

impl Drop for Informer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A consumer's view of an [`Informer`]'s changes.
pub struct Subscription {
    shared: Weak<Shared>,
    events: broadcast::Receiver<WatchEvent>,
    initial: Option<Vec<Object>>,
}

impl Subscription {
    /// The next change; `None` once the informer is dropped.
    pub async fn recv(&mut self) -> Option<Change> {
        if let Some(initial) = self.initial.take() {
            return Some(Change::Resync(initial));
        }
        match self.events.recv().await {
            Ok(event) => Some(Change::Event(event)),
            Err(broadcast::error::RecvError::Closed) => None,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                let shared = self.shared.upgrade()?;
                tracing::warn!(kind = %shared.kind, missed, "subscriber fell behind; resyncing it");
                let (objects, events) = shared.snapshot_and_subscribe();
                self.events = events;
                Some(Change::Resync(objects))
            }
        }
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Every mutation of the state is a single assignment or map operation, so a lock
        // poisoned by a panicking reader still guards consistent data.
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot_and_subscribe(&self) -> (Vec<Object>, broadcast::Receiver<WatchEvent>) {
        let state = self.read();
        (state.objects.values().cloned().collect(), self.events.subscribe())
    }

    /// Applies one watch event, dropping it if the cache already reflects it.
    fn apply(&self, event: WatchEvent) {
        let mut state = self.write();
        if event.revision < state.revision {
            return;
        }
        let key = cache_key(&event.object);
        let fresh = match event.type_ {
            WatchEventType::Added | WatchEventType::Modified => {
                let newer = state.objects.get(&key).is_none_or(|cached| version(cached) < event.revision);
                if newer {
                    state.objects.insert(key, event.object.clone());
                }
                newer
            }
            WatchEventType::Deleted => state.objects.remove(&key).is_some(),
        };
        state.revision = event.revision;
        if fresh {
            // No receiver is fine: subscribers come and go.
            let _ = self.events.send(event);
        }
    }

    /// Replaces the cache with a list, emitting the difference as events. An object whose stored
    /// value became unreadable keeps its last readable version: it was not deleted.
    fn replace(&self, list: ObjectList) {
        let mut state = self.write();
        let mut listed: BTreeMap<_, _> = list.items.into_iter().map(|o| (cache_key(&o), o)).collect();
        for (object, why) in &list.unreadable {
            tracing::warn!(kind = %self.kind, %object, error = %why, "stored value unreadable; keeping its last known version");
            let key = (object.namespace.clone(), object.name.clone());
            if let Some(known) = state.objects.get(&key) {
                listed.insert(key, known.clone());
            }
        }
        state.unreadable = list.unreadable.into_iter().map(|(o, _)| o).collect();
        let mut events = Vec::new();
        for (key, object) in &listed {
            let type_ = match state.objects.get(key) {
                None => WatchEventType::Added,
                Some(cached) if version(cached) != version(object) => WatchEventType::Modified,
                Some(_) => continue,
            };
            events.push(WatchEvent { type_, object: object.clone(), revision: version(object) });
        }
        for (key, cached) in &state.objects {
            if !listed.contains_key(key) {
                // The deletion's own revision is unknown; it happened by the list's revision.
                let mut object = cached.clone();
                object.metadata.resource_version = Some(list.revision.to_string());
                events.push(WatchEvent { type_: WatchEventType::Deleted, object, revision: list.revision });
            }
        }
        events.sort_by_key(|e| e.revision);
        state.objects = listed;
        state.revision = list.revision;
        for event in events {
            let _ = self.events.send(event);
        }
        drop(state);
        self.synced.send_replace(true);
    }
}

fn cache_key(object: &Object) -> (Option<String>, String) {
    (object.metadata.namespace.clone(), object.metadata.name.clone())
}

/// The revision an object was last written at (its resourceVersion).
fn version(object: &Object) -> i64 {
    object.metadata.resource_version.as_deref().and_then(|rv| rv.parse().ok()).unwrap_or(0)
}

struct Backoff {
    next: Duration,
    options: InformerOptions,
}

impl Backoff {
    fn new(options: InformerOptions) -> Self {
        Backoff { next: options.initial_backoff, options }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.options.max_backoff);
    }

    fn reset(&mut self) {
        self.next = self.options.initial_backoff;
    }
}

async fn run(store: Arc<dyn Store>, shared: Arc<Shared>, namespace: Option<String>, options: InformerOptions) {
    let kind = shared.kind;
    let ns = namespace.as_deref();
    let mut backoff = Backoff::new(options);
    let mut need_list = true;
    loop {
        if need_list {
            match store.list(kind, ns, &Selector::everything()).await {
                Ok(list) => {
                    shared.replace(list);
                    need_list = false;
                }
                Err(e) => {
                    tracing::warn!(%kind, error = %e, "listing failed; retrying");
                    backoff.wait().await;
                    continue;
                }
            }
        }
        let from = shared.read().revision;
        let mut stream = match store.watch(kind, ns, from).await {
            Ok(stream) => stream,
            Err(Error::Compacted { compact_revision }) => {
                tracing::info!(%kind, from, compact_revision, "history compacted; listing again");
                need_list = true;
                continue;
            }
            Err(e) => {
                tracing::warn!(%kind, error = %e, "watching failed; retrying");
                backoff.wait().await;
                continue;
            }
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    backoff.reset();
                    shared.apply(event);
                }
                Err(Error::Compacted { compact_revision }) => {
                    tracing::info!(%kind, compact_revision, "history compacted; listing again");
                    need_list = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(%kind, error = %e, "watch ended; resuming");
                    backoff.wait().await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use api::kinds::SERVICE;

    use super::*;

    fn svc(name: &str, rv: i64) -> Object {
        let mut o = Object::new(&SERVICE, Some("default"), name);
        o.metadata.resource_version = Some(rv.to_string());
        o
    }

    fn shared() -> (Shared, broadcast::Receiver<WatchEvent>) {
        let (events, rx) = broadcast::channel(64);
        let shared = Shared { kind: &SERVICE, state: RwLock::default(), events, synced: watch::Sender::new(false) };
        (shared, rx)
    }

    fn drain(rx: &mut broadcast::Receiver<WatchEvent>) -> Vec<(WatchEventType, String, i64)> {
        std::iter::from_fn(|| rx.try_recv().ok()).map(|e| (e.type_, e.object.metadata.name, e.revision)).collect()
    }

    #[test]
    fn relist_emits_the_difference() {
        let (shared, mut rx) = shared();
        shared.replace(ObjectList {
            items: vec![svc("a", 2), svc("b", 3), svc("c", 4)],
            revision: 4,
            unreadable: vec![],
        });
        assert_eq!(drain(&mut rx).len(), 3);
        // Since revision 4: b modified at 6, c deleted, d added at 5; the list is at 8.
        shared.replace(ObjectList {
            items: vec![svc("a", 2), svc("b", 6), svc("d", 5)],
            revision: 8,
            unreadable: vec![],
        });
        use WatchEventType::*;
        assert_eq!(
            drain(&mut rx),
            vec![(Added, "d".to_string(), 5), (Modified, "b".to_string(), 6), (Deleted, "c".to_string(), 8)]
        );
        assert_eq!(shared.read().revision, 8);
    }

    #[test]
    fn a_relist_keeps_the_last_readable_version_of_an_unreadable_object() {
        let (shared, mut rx) = shared();
        shared.replace(ObjectList { items: vec![svc("a", 2), svc("b", 3)], revision: 3, unreadable: vec![] });
        drain(&mut rx);
        let a = api::ObjectRef::new(&SERVICE, Some("default"), "a");
        let never = api::ObjectRef::new(&SERVICE, Some("default"), "never-read");
        let unreadable = vec![(a.clone(), "not JSON".to_string()), (never.clone(), "not JSON".to_string())];
        shared.replace(ObjectList { items: vec![svc("b", 3)], revision: 9, unreadable });
        assert!(drain(&mut rx).is_empty(), "an unreadable object was reported deleted");
        let state = shared.read();
        assert_eq!(state.objects.keys().map(|(_, n)| n.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(state.unreadable, [a, never]);
    }

    #[test]
    fn duplicate_events_are_dropped() {
        let (shared, mut rx) = shared();
        shared.replace(ObjectList { items: vec![svc("a", 2)], revision: 5, unreadable: vec![] });
        drain(&mut rx);
        let event = |type_, name: &str, rv| WatchEvent { type_, object: svc(name, rv), revision: rv };
        shared.apply(event(WatchEventType::Modified, "a", 2)); // older than the cache
        shared.apply(event(WatchEventType::Modified, "a", 6));
        shared.apply(event(WatchEventType::Modified, "a", 6)); // repeated
        shared.apply(event(WatchEventType::Deleted, "b", 7)); // never seen
        shared.apply(event(WatchEventType::Deleted, "a", 8));
        shared.apply(event(WatchEventType::Deleted, "a", 8));
        let seen: Vec<_> = drain(&mut rx).into_iter().map(|(t, _, r)| (t, r)).collect();
        assert_eq!(seen, vec![(WatchEventType::Modified, 6), (WatchEventType::Deleted, 8)]);
        assert_eq!(shared.read().revision, 8);
    }
}
