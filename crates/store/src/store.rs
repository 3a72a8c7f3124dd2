//! The datastore contract every backend implements, and the values it returns.

use std::{fmt, time::Duration};

use api::{Object, ObjectRef, ResourceKind, Selector};
use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{error::Result, fence::Fence, lease::LeaseId};

/// The objects of one kind, and the store revision they were read at: watching from that revision
/// continues exactly where the list left off.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectList {
    /// Sorted by namespace, then name.
    pub items: Vec<Object>,
    pub revision: i64,
    /// Keys whose stored value is not an object (written around cilia, or corrupted), with why.
    /// They are not in `items`, and they do not stop the list: one bad value must not hide the
    /// rest of its kind. Callers keep what they knew of these objects rather than treating them
    /// as deleted.
    pub unreadable: Vec<(ObjectRef, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
}

impl fmt::Display for WatchEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WatchEventType::Added => "ADDED",
            WatchEventType::Modified => "MODIFIED",
            WatchEventType::Deleted => "DELETED",
        })
    }
}

/// One change of one object.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchEvent {
    pub type_: WatchEventType,
    /// The object after the change; for `Deleted`, its last state with the resourceVersion of the
    /// deletion (as Kubernetes reports it).
    pub object: Object,
    /// The store revision of the change. Events of one lease expiry share a revision.
    pub revision: i64,
}

/// Changes in revision order. The stream never ends quietly: it ends with an error item,
/// [`crate::Error::Compacted`] when the requested history is gone, or
/// [`crate::Error::Unavailable`] when the connection broke.
pub type WatchStream = BoxStream<'static, Result<WatchEvent>>;

/// A datastore of [`Object`]s. Backends: [`crate::EtcdStore`], [`crate::MemoryStore`].
///
/// Writes stamp `metadata.resourceVersion` with the revision of the write; create also sets `uid`,
/// `creationTimestamp` and `generation` = 1; update keeps `uid` and `creationTimestamp` and bumps
/// `generation` when `spec` changed. Cluster-scoped objects lose any namespace they carry, and
/// `apiVersion` is rewritten to the kind's storage version.
#[async_trait]
pub trait Store: Send + Sync {
    /// The object, or `None` if it does not exist.
    async fn get(&self, object: &ObjectRef) -> Result<Option<Object>>;

    /// Objects of `kind` in `namespace` (all namespaces if `None`; ignored for cluster-scoped kinds)
    /// whose labels match `selector`.
    async fn list(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Result<ObjectList>;

    /// Creates the object. Fails with `AlreadyExists` if it exists. An empty name with
    /// `metadata.generateName` gets a random suffix, as in Kubernetes.
    async fn create(&self, object: Object) -> Result<Object> {
        self.create_with_lease(object, None).await
    }

    /// Creates the object attached to `lease`: it is deleted when the lease expires or is revoked.
    async fn create_with_lease(&self, object: Object, lease: Option<LeaseId>) -> Result<Object>;

    /// Replaces the stored object. If `metadata.resourceVersion` is set and differs from the
    /// stored one, fails with `Conflict`; if it is unset, the write is unconditional. The object
    /// stays attached to the lease it had.
    async fn update(&self, object: Object) -> Result<Object> {
        self.update_with_lease(object, None).await
    }

    /// As [`Store::update`]; `Some(lease)` moves the object to `lease`, `None` keeps its lease.
    async fn update_with_lease(&self, object: Object, lease: Option<LeaseId>) -> Result<Object>;

    /// Writes the object's `status` only, as Kubernetes' status subresource does, conditional on
    /// its resourceVersion like [`Store::update`]. Backends that keep status with the object (etcd,
    /// memory) write the whole object, so callers change nothing but `status` before calling it.
    async fn update_status(&self, object: Object) -> Result<Object> {
        self.update(object).await
    }

    /// Deletes the object and returns its last state, or `None` if it did not exist. With a
    /// precondition, fails with `Conflict` unless the stored resourceVersion equals it.
    async fn delete(&self, object: &ObjectRef, precondition_resource_version: Option<&str>) -> Result<Option<Object>>;

    /// Changes to objects of `kind` (in `namespace`, if given) with a revision greater than
    /// `after_revision`, in revision order. Pass the revision of a [`Store::list`] to continue
    /// from it.
    async fn watch(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        after_revision: i64,
    ) -> Result<WatchStream>;

    /// Grants a lease that expires `ttl` after its last keep-alive. TTLs are whole seconds,
    /// rounded up; etcd also enforces a minimum (about 1.5 × its election timeout).
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;

    /// Renews the lease for another full TTL and returns that TTL. Fails with `LeaseNotFound` once
    /// the lease has expired.
    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration>;

    /// Revokes the lease now, deleting its objects (watchers see `Deleted`). Revoking an unknown
    /// or expired lease succeeds.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;

    /// The current store revision.
    async fn revision(&self) -> Result<i64>;

    /// Forgets the history before `revision`: watches from earlier revisions fail with
    /// `Compacted`. Compacting an already compacted revision succeeds.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// A handle on the same datastore whose creates, updates and deletes succeed only while
    /// `fence` holds, checked in the same transaction as the write; otherwise they fail with
    /// [`crate::Error::Fenced`]. Reads and watches are unchanged.
    fn fenced(&self, fence: Fence) -> std::sync::Arc<dyn Store>;
}
