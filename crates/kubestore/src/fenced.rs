//! Fenced writes on the Kubernetes API: refused.
//!
//! On etcd, a fenced write is one transaction that also checks the leader key's create revision.
//! The Kubernetes API has no transaction across two objects, so a check before each write would
//! still let a paused leader write after losing its Lease. Rather than a fence that does not hold,
//! writes through it fail, saying why; reads go through.

use std::time::Duration;

use api::{Object, ObjectRef, ResourceKind, Selector};
use async_trait::async_trait;
use store::{Fence, LeaseId, ObjectList, Result, Store, WatchStream};

use crate::{KubeStore, refused};

pub(crate) struct Unfenceable {
    pub(crate) inner: KubeStore,
    pub(crate) fence: Fence,
}

impl Unfenceable {
    fn refuse<T>(&self) -> Result<T> {
        Err(refused(&format!("a write fenced by {}", self.fence.object)))
    }
}

#[async_trait]
impl Store for Unfenceable {
    async fn get(&self, object: &ObjectRef) -> Result<Option<Object>> {
        self.inner.get(object).await
    }

    async fn list(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Result<ObjectList> {
        self.inner.list(kind, namespace, selector).await
    }

    async fn create_with_lease(&self, _object: Object, _lease: Option<LeaseId>) -> Result<Object> {
        self.refuse()
    }

    async fn update_with_lease(&self, _object: Object, _lease: Option<LeaseId>) -> Result<Object> {
        self.refuse()
    }

    async fn delete(&self, _object: &ObjectRef, _precondition: Option<&str>) -> Result<Option<Object>> {
        self.refuse()
    }

    async fn watch(&self, kind: &'static ResourceKind, namespace: Option<&str>, after: i64) -> Result<WatchStream> {
        self.inner.watch(kind, namespace, after).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        self.inner.grant_lease(ttl).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        self.inner.keep_alive(lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.inner.revoke_lease(lease).await
    }

    async fn revision(&self) -> Result<i64> {
        self.inner.revision().await
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.inner.compact(revision).await
    }

    fn fenced(&self, fence: Fence) -> std::sync::Arc<dyn Store> {
        self.inner.fenced(fence)
    }
}
