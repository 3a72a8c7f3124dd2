//! An in-memory [`Store`] with etcd's semantics: one revision counter for all writes, a bounded
//! watch history with compaction, and leases that expire on their own. Controllers are unit-tested
//! against it; it follows `tokio::time`, so tests with a paused clock expire leases instantly.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use api::{Object, ObjectRef, ResourceKind, Selector};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::{
    error::{Error, Result},
    fence::Fence,
    keys::{self, DEFAULT_ROOT},
    lease::{LeaseId, ttl_seconds},
    prepare,
    store::{ObjectList, Store, WatchEvent, WatchEventType, WatchStream},
};

/// How many events the history keeps by default before the oldest are compacted away.
pub const DEFAULT_HISTORY_LIMIT: usize = 10_000;

/// The in-memory backend. Cheap to clone; clones share the same data.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    /// Set on a [`Store::fenced`] handle: every write checks it under the lock.
    fence: Option<Fence>,
}

struct State {
    /// The revision of the last write. Starts at 1 as etcd's does, so the first write is 2.
    revision: i64,
    /// Watches must start at or after this revision.
    compacted: i64,
    objects: BTreeMap<String, Entry>,
    history: VecDeque<Recorded>,
    history_limit: usize,
    leases: HashMap<i64, LeaseState>,
    next_lease: i64,
    watchers: Vec<Watcher>,
    refuse_watches: bool,
}

struct Entry {
    /// With its resourceVersion set to `mod_revision`.
    object: Object,
    create_revision: i64,
    mod_revision: i64,
    lease: Option<i64>,
}

struct Recorded {
    key: String,
    event: WatchEvent,
}

struct Watcher {
    prefix: String,
    tx: mpsc::UnboundedSender<Result<WatchEvent>>,
}

struct LeaseState {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_history_limit(DEFAULT_HISTORY_LIMIT)
    }

    /// A store that keeps at most `limit` events of watch history; older ones are compacted, as
    /// an etcd with auto-compaction would.
    pub fn with_history_limit(limit: usize) -> Self {
        MemoryStore {
            state: Arc::new(Mutex::new(State {
                revision: 1,
                compacted: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_limit: limit.max(1),
                leases: HashMap::new(),
                next_lease: 0x1000,
                watchers: Vec::new(),
                refuse_watches: false,
            })),
            fence: None,
        }
    }

    /// Ends every open watch with `Unavailable`, as a dropped connection would.
    pub fn disconnect_watches(&self) {
        let mut state = self.lock();
        for watcher in state.watchers.drain(..) {
            let _ = watcher.tx.send(Err(Error::Unavailable("watch connection lost".into())));
        }
    }

    /// While `refuse` is true, new watches fail with `Unavailable` (writes still succeed), so that
    /// tests can make history disappear before a watcher comes back.
    pub fn refuse_watches(&self, refuse: bool) {
        self.lock().refuse_watches = refuse;
    }

    /// Locks the state after expiring due leases, so that every operation sees expiry as of now
    /// even if the expiry task has not run yet.
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent (every mutation is a single
        // step), so a poisoned lock is still usable.
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.expire_leases(Instant::now());
        state
    }
}

impl State {
    /// Appends to the history and tells matching watchers.
    fn emit(&mut self, key: String, event: WatchEvent) {
        self.watchers.retain(|w| !key.starts_with(&w.prefix) || w.tx.send(Ok(event.clone())).is_ok());
        self.history.push_back(Recorded { key, event });
        if self.history.len() > self.history_limit {
            let oldest = self.history.front().map_or(0, |r| r.event.revision);
            self.compact(oldest + 1);
        }
    }

    fn compact(&mut self, revision: i64) {
        self.compacted = self.compacted.max(revision);
        while self.history.front().is_some_and(|r| r.event.revision < self.compacted) {
            self.history.pop_front();
        }
    }

    /// Writes `object` at a new revision.
    fn put(&mut self, key: String, mut object: Object, create_revision: Option<i64>, lease: Option<i64>) -> Object {
        self.revision += 1;
        let revision = self.revision;
        object.metadata.resource_version = Some(revision.to_string());
        let previous = self.objects.remove(&key);
        if let Some(old) = previous.as_ref().and_then(|e| e.lease) {
            self.detach(old, &key);
        }
        if let Some(id) = lease
            && let Some(lease) = self.leases.get_mut(&id)
        {
            lease.keys.insert(key.clone());
        }
        let type_ = if previous.is_some() { WatchEventType::Modified } else { WatchEventType::Added };
        self.objects.insert(
            key.clone(),
            Entry {
                object: object.clone(),
                create_revision: create_revision.unwrap_or(revision),
                mod_revision: revision,
                lease,
            },
        );
        self.emit(key, WatchEvent { type_, object: object.clone(), revision });
        object
    }

    /// Deletes `key` at `revision` (already allocated by the caller, so that one lease expiry
    /// deletes all its keys at one revision, as etcd does).
    fn remove(&mut self, key: &str, revision: i64) -> Option<Entry> {
        let entry = self.objects.remove(key)?;
        if let Some(id) = entry.lease {
            self.detach(id, key);
        }
        let mut object = entry.object.clone();
        object.metadata.resource_version = Some(revision.to_string());
        self.emit(key.to_string(), WatchEvent { type_: WatchEventType::Deleted, object, revision });
        Some(entry)
    }

    fn detach(&mut self, lease: i64, key: &str) {
        if let Some(lease) = self.leases.get_mut(&lease) {
            lease.keys.remove(key);
        }
    }

    fn revoke(&mut self, lease: i64) {
        let Some(lease) = self.leases.remove(&lease) else { return };
        if lease.keys.is_empty() {
            return;
        }
        self.revision += 1;
        let revision = self.revision;
        for key in &lease.keys {
            self.remove(key, revision);
        }
    }

    fn expire_leases(&mut self, now: Instant) {
        let due: Vec<i64> = self.leases.iter().filter(|(_, l)| l.deadline <= now).map(|(id, _)| *id).collect();
        for id in due {
            self.revoke(id);
        }
    }

    /// The fence object still has the create revision the writer took it with.
    fn check_fence(&self, fence: Option<&Fence>) -> Result<()> {
        let Some(fence) = fence else { return Ok(()) };
        let key = keys::object_key(DEFAULT_ROOT, &fence.object);
        match self.objects.get(&key) {
            Some(entry) if entry.create_revision == fence.create_revision => Ok(()),
            _ => Err(Error::Fenced(fence.object.clone())),
        }
    }

    fn check_lease(&self, lease: Option<LeaseId>) -> Result<()> {
        match lease {
            Some(id) if !self.leases.contains_key(&id.0) => Err(Error::LeaseNotFound(id)),
            _ => Ok(()),
        }
    }
}

/// Sleeps until the lease's deadline and expires it, following keep-alives that move the deadline.
/// Holds only a weak reference, so a dropped store stops its timers.
async fn expire_when_due(state: Weak<Mutex<State>>, lease: i64) {
    loop {
        let deadline = {
            let Some(state) = state.upgrade() else { return };
            let state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match state.leases.get(&lease) {
                Some(l) => l.deadline,
                None => return,
            }
        };
        tokio::time::sleep_until(deadline).await;
        let Some(state) = state.upgrade() else { return };
        let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.expire_leases(Instant::now());
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, object: &ObjectRef) -> Result<Option<Object>> {
        let state = self.lock();
        let key = keys::object_key(DEFAULT_ROOT, object);
        Ok(state.objects.get(&key).map(|e| e.object.clone()))
    }

    async fn list(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Result<ObjectList> {
        let state = self.lock();
        let prefix = keys::prefix(DEFAULT_ROOT, kind, namespace);
        let mut items: Vec<Object> = state
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, e)| selector.matches(&e.object.metadata.labels))
            .map(|(_, e)| e.object.clone())
            .collect();
        prepare::sort(&mut items);
        Ok(ObjectList { items, revision: state.revision, unreadable: Vec::new() })
    }

    async fn create_with_lease(&self, object: Object, lease: Option<LeaseId>) -> Result<Object> {
        let (object_ref, object) = prepare::for_create(object)?;
        let key = keys::object_key(DEFAULT_ROOT, &object_ref);
        let mut state = self.lock();
        state.check_fence(self.fence.as_ref())?;
        if state.objects.contains_key(&key) {
            return Err(Error::AlreadyExists(object_ref));
        }
        state.check_lease(lease)?;
        Ok(state.put(key, object, None, lease.map(|l| l.0)))
    }

    async fn update_with_lease(&self, mut object: Object, lease: Option<LeaseId>) -> Result<Object> {
        let object_ref = prepare::normalize(&mut object)?;
        let expected = match object.metadata.resource_version.as_deref() {
            Some(rv) => Some((rv.to_string(), prepare::parse_resource_version(&object_ref, rv)?)),
            None => None,
        };
        let key = keys::object_key(DEFAULT_ROOT, &object_ref);
        let mut state = self.lock();
        state.check_fence(self.fence.as_ref())?;
        let Some(stored) = state.objects.get(&key) else {
            return Err(Error::NotFound(object_ref));
        };
        if let Some((given, revision)) = expected
            && revision != stored.mod_revision
        {
            return Err(Error::Conflict {
                object: object_ref,
                expected: given,
                actual: stored.mod_revision.to_string(),
            });
        }
        state.check_lease(lease)?;
        let object = prepare::for_update(object, &stored.object);
        let (create_revision, kept_lease) = (stored.create_revision, stored.lease);
        Ok(state.put(key, object, Some(create_revision), lease.map(|l| l.0).or(kept_lease)))
    }

    async fn delete(&self, object: &ObjectRef, precondition_resource_version: Option<&str>) -> Result<Option<Object>> {
        let precondition = precondition_resource_version
            .map(|rv| prepare::parse_resource_version(object, rv).map(|r| (rv, r)))
            .transpose()?;
        let key = keys::object_key(DEFAULT_ROOT, object);
        let mut state = self.lock();
        state.check_fence(self.fence.as_ref())?;
        let Some(stored) = state.objects.get(&key) else { return Ok(None) };
        if let Some((given, revision)) = precondition
            && revision != stored.mod_revision
        {
            return Err(Error::Conflict {
                object: object.clone(),
                expected: given.to_string(),
                actual: stored.mod_revision.to_string(),
            });
        }
        state.revision += 1;
        let revision = state.revision;
        Ok(state.remove(&key, revision).map(|e| e.object))
    }

    async fn watch(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        after_revision: i64,
    ) -> Result<WatchStream> {
        let mut state = self.lock();
        if state.refuse_watches {
            return Err(Error::Unavailable("watches are refused".into()));
        }
        if after_revision + 1 < state.compacted {
            // etcd accepts the watch and then cancels it with the compaction revision; do the same
            // so that consumers see one behaviour.
            let compacted = Err(Error::Compacted { compact_revision: state.compacted });
            return Ok(futures::stream::iter([compacted]).boxed());
        }
        let prefix = keys::prefix(DEFAULT_ROOT, kind, namespace);
        let (tx, rx) = mpsc::unbounded_channel();
        // Replay and registration happen under one lock, so no write falls between them.
        for recorded in &state.history {
            if recorded.event.revision > after_revision && recorded.key.starts_with(&prefix) {
                let _ = tx.send(Ok(recorded.event.clone()));
            }
        }
        state.watchers.push(Watcher { prefix, tx });
        Ok(UnboundedReceiverStream::new(rx).boxed())
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let ttl = Duration::from_secs(ttl_seconds(ttl).unsigned_abs());
        let id = {
            let mut state = self.lock();
            state.next_lease += 1;
            let id = state.next_lease;
            state.leases.insert(id, LeaseState { ttl, deadline: Instant::now() + ttl, keys: BTreeSet::new() });
            id
        };
        tokio::spawn(expire_when_due(Arc::downgrade(&self.state), id));
        Ok(LeaseId(id))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        let mut state = self.lock();
        let l = state.leases.get_mut(&lease.0).ok_or(Error::LeaseNotFound(lease))?;
        l.deadline = Instant::now() + l.ttl;
        Ok(l.ttl)
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.lock().revoke(lease.0);
        Ok(())
    }

    async fn revision(&self) -> Result<i64> {
        Ok(self.lock().revision)
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let mut state = self.lock();
        if revision > state.revision {
            return Err(Error::Invalid(format!(
                "cannot compact at revision {revision}: the store is at {}",
                state.revision
            )));
        }
        state.compact(revision);
        Ok(())
    }

    fn fenced(&self, fence: Fence) -> Arc<dyn Store> {
        Arc::new(MemoryStore { state: self.state.clone(), fence: Some(fence) })
    }
}
