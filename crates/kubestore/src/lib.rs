//! The store seam on a real kube-apiserver: [`KubeStore`] implements [`store::Store`]'s object
//! operations (get, list, create, update, delete, watch) through the Kubernetes API with kube-rs,
//! so that cilia's informers and controllers can run on a Kubernetes cluster's objects.
//!
//! How the API's rules map onto the seam:
//! - **Status** lives behind the status subresource for most kinds: an update writes the object,
//!   then its status through `/status` when the server kept a different one.
//! - **Watches** ask for bookmarks. The server ends a watch every few minutes; the stream here
//!   resumes by itself from the newest event or bookmark, so a quiet kind is not listed again.
//!   410 Gone ends the stream with [`store::Error::Compacted`]: the informer lists again.
//! - **resourceVersion** is passed back to the server as it came. The seam orders events by an
//!   integer revision, which kube-apiserver's versions are (etcd revisions); one that is not is an
//!   error naming it, never a guess ([`revision`]).
//! - **Coordination** is not here: Kubernetes has no TTL leases and no multi-object transactions,
//!   so `grant_lease`, `keep_alive`, `revoke_lease`, `compact` and fenced writes are refused with
//!   an error that says so. Leader election and node heartbeats on Kubernetes use
//!   `coordination.k8s.io` Lease objects instead.

mod errors;
mod fenced;
mod paths;
pub mod revision;
mod watch;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use api::{Object, ObjectRef, ResourceKind, Selector};
use async_trait::async_trait;
use kube::core::Request;
use kube::core::params::{DeleteParams, GetParams, ListParams, PostParams, Preconditions};
use serde_json::Value;
use store::{Error, Fence, LeaseId, ObjectList, Result, Store, WatchStream};

use crate::errors::{from_kube, invalid_object};
use crate::paths::collection_path;
use crate::revision::parse_revision;

/// A kube-apiserver as cilia's store.
#[derive(Clone)]
pub struct KubeStore {
    client: kube::Client,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore").finish_non_exhaustive()
    }
}

impl KubeStore {
    pub fn new(client: kube::Client) -> Self {
        KubeStore { client }
    }

    /// Connects with a kubeconfig file (its current context).
    pub async fn from_kubeconfig(path: &Path) -> Result<Self> {
        let unavailable = |what: String| Error::Unavailable(format!("kubeconfig {}: {what}", path.display()));
        let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| unavailable(e.to_string()))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let client = kube::Client::try_from(config).map_err(|e| unavailable(e.to_string()))?;
        Ok(KubeStore { client })
    }

    /// Connects as the pod's service account, from inside a cluster (the token and CA that
    /// Kubernetes mounts, and `KUBERNETES_SERVICE_HOST`).
    pub async fn in_cluster() -> Result<Self> {
        let unavailable = |what: String| Error::Unavailable(format!("in-cluster configuration: {what}"));
        let config = kube::Config::incluster().map_err(|e| unavailable(e.to_string()))?;
        let client = kube::Client::try_from(config).map_err(|e| unavailable(e.to_string()))?;
        Ok(KubeStore { client })
    }

    fn request(kind: &'static ResourceKind, namespace: Option<&str>) -> Request {
        Request::new(collection_path(kind, namespace))
    }

    async fn send(&self, req: http::Request<Vec<u8>>, what: &ObjectRef) -> Result<Value> {
        self.client.request::<Value>(req).await.map_err(|e| from_kube(e, what))
    }

    /// The API's current resourceVersion: a consistent one-item list of Services, which every
    /// cilia component may read (it needs no other right, such as listing namespaces).
    async fn current_revision(&self) -> Result<i64> {
        let req = Self::request(&api::kinds::SERVICE, None)
            .list(&ListParams::default().limit(1))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let list: Value =
            self.client.request(req).await.map_err(|e| from_kube(e, &object_ref(&api::kinds::SERVICE, None, "")))?;
        parse_revision(list["metadata"]["resourceVersion"].as_str())
    }

    /// Writes `status` through the status subresource when the server kept another one (for the
    /// kinds that have the subresource, the main resource ignores status).
    async fn write_status(&self, written: Object, status: Option<Value>, what: &ObjectRef) -> Result<Object> {
        let Some(status) = status else { return Ok(written) };
        if written.body.get("status") == Some(&status) {
            return Ok(written);
        }
        let mut next = written.clone();
        next.body.insert("status".into(), status);
        match self.put_status(&next, what).await {
            // A kind without the subresource stored the status with the object already.
            Err(Error::NotFound(_)) => Ok(written),
            other => other,
        }
    }

    /// PUT of `/status`.
    async fn put_status(&self, object: &Object, what: &ObjectRef) -> Result<Object> {
        let body = serde_json::to_vec(object).map_err(|e| Error::Invalid(e.to_string()))?;
        let req = Self::request(what.kind, what.namespace.as_deref())
            .replace_subresource("status", &what.name, &PostParams::default(), body)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        match self.send(req, what).await {
            Err(Error::Conflict { .. }) => Err(self.conflict(what, object.metadata.resource_version.clone()).await),
            other => to_object(other?, what.kind),
        }
    }

    /// The seam's conflict error: the version the caller wrote against, and the stored one.
    async fn conflict(&self, what: &ObjectRef, expected: Option<String>) -> Error {
        let actual = match self.get(what).await {
            Ok(Some(stored)) => stored.metadata.resource_version.unwrap_or_default(),
            Ok(None) => "none (deleted)".into(),
            Err(e) => format!("unknown ({e})"),
        };
        Error::Conflict { object: what.clone(), expected: expected.unwrap_or_default(), actual }
    }
}

pub(crate) fn object_ref(kind: &'static ResourceKind, namespace: Option<&str>, name: &str) -> ObjectRef {
    ObjectRef { kind, namespace: namespace.map(str::to_string), name: name.to_string() }
}

/// An object the server returned, with the apiVersion and kind a list's items leave out.
pub(crate) fn to_object(mut value: Value, kind: &'static ResourceKind) -> Result<Object> {
    if let Some(map) = value.as_object_mut() {
        map.entry("apiVersion").or_insert_with(|| Value::String(kind.api_version()));
        map.entry("kind").or_insert_with(|| Value::String(kind.kind.to_string()));
    }
    serde_json::from_value(value).map_err(|e| invalid_object(kind, &e))
}

/// The object's reference, or why it has none.
fn target(object: &Object) -> Result<ObjectRef> {
    let what = object
        .object_ref()
        .ok_or_else(|| Error::Invalid(format!("unknown kind {:?} (apiVersion {})", object.kind, object.api_version)))?;
    if what.name.is_empty() {
        return Err(Error::Invalid(format!("a {} without metadata.name", object.kind)));
    }
    Ok(what)
}

pub(crate) fn refused(what: &str) -> Error {
    Error::Invalid(format!(
        "{what} is not available on the Kubernetes API (no TTL leases, no multi-object transactions); \
         Kubernetes mode coordinates through coordination.k8s.io Leases"
    ))
}

#[async_trait]
impl Store for KubeStore {
    async fn get(&self, object: &ObjectRef) -> Result<Option<Object>> {
        let req = Self::request(object.kind, object.namespace.as_deref())
            .get(&object.name, &GetParams::default())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        match self.send(req, object).await {
            Ok(value) => to_object(value, object.kind).map(Some),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Result<ObjectList> {
        let mut params = ListParams::default();
        if !selector.is_empty() {
            params = params.labels(&selector.to_string());
        }
        let req = Self::request(kind, namespace).list(&params).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut list = self.send(req, &object_ref(kind, namespace, "")).await?;
        let revision = parse_revision(list["metadata"]["resourceVersion"].as_str())?;
        let mut items = Vec::new();
        let mut unreadable = Vec::new();
        for item in list["items"].as_array_mut().map(std::mem::take).unwrap_or_default() {
            let name = item["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let ns = item["metadata"]["namespace"].as_str().map(str::to_string);
            // One object that does not read is reported by itself, never taken for a deletion.
            match to_object(item, kind) {
                Ok(object) => items.push(object),
                Err(e) => unreadable.push((ObjectRef { kind, namespace: ns, name }, e.to_string())),
            }
        }
        items.sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
        Ok(ObjectList { items, revision, unreadable })
    }

    async fn create_with_lease(&self, mut object: Object, lease: Option<LeaseId>) -> Result<Object> {
        if lease.is_some() {
            return Err(refused("an object bound to a lease"));
        }
        let what = target(&object)?;
        let kind = what.kind;
        // The server sets these; it refuses a create that carries a resourceVersion.
        object.metadata.resource_version = None;
        object.metadata.uid = None;
        object.metadata.creation_timestamp = None;
        let status = object.body.get("status").cloned();
        let body = serde_json::to_vec(&object).map_err(|e| Error::Invalid(e.to_string()))?;
        let req = Self::request(kind, what.namespace.as_deref())
            .create(&PostParams::default(), body)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let created = to_object(self.send(req, &what).await?, kind)?;
        self.write_status(created, status, &what).await
    }

    async fn update_with_lease(&self, object: Object, lease: Option<LeaseId>) -> Result<Object> {
        if lease.is_some() {
            return Err(refused("an object bound to a lease"));
        }
        let what = target(&object)?;
        let kind = what.kind;
        let status = object.body.get("status").cloned();
        let body = serde_json::to_vec(&object).map_err(|e| Error::Invalid(e.to_string()))?;
        let req = Self::request(kind, what.namespace.as_deref())
            .replace(&what.name, &PostParams::default(), body)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let written = match self.send(req, &what).await {
            Err(Error::Conflict { .. }) => return Err(self.conflict(&what, object.metadata.resource_version).await),
            other => to_object(other?, kind)?,
        };
        self.write_status(written, status, &what).await
    }

    async fn update_status(&self, object: Object) -> Result<Object> {
        let what = target(&object)?;
        match self.put_status(&object, &what).await {
            // A kind without the subresource keeps status with the object.
            Err(Error::NotFound(_)) if self.get(&what).await?.is_some() => self.update(object).await,
            other => other,
        }
    }

    async fn delete(&self, object: &ObjectRef, precondition_resource_version: Option<&str>) -> Result<Option<Object>> {
        let params = DeleteParams {
            preconditions: precondition_resource_version
                .map(|rv| Preconditions { resource_version: Some(rv.to_string()), uid: None }),
            ..DeleteParams::default()
        };
        let req = Self::request(object.kind, object.namespace.as_deref())
            .delete(&object.name, &params)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        match self.send(req, object).await {
            // The server answers with the object (possibly still finalizing), or with a Status.
            Ok(value) if value["kind"].as_str() == Some("Status") => Ok(None),
            Ok(value) => to_object(value, object.kind).map(Some),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn watch(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        after_revision: i64,
    ) -> Result<WatchStream> {
        let resume = watch::Resume {
            client: self.client.clone(),
            kind,
            namespace: namespace.map(str::to_string),
            from: after_revision.to_string(),
            events: None,
        };
        Ok(watch::stream(resume))
    }

    async fn grant_lease(&self, _ttl: Duration) -> Result<LeaseId> {
        Err(refused("a TTL lease"))
    }

    async fn keep_alive(&self, _lease: LeaseId) -> Result<Duration> {
        Err(refused("a TTL lease"))
    }

    async fn revoke_lease(&self, _lease: LeaseId) -> Result<()> {
        Err(refused("a TTL lease"))
    }

    async fn revision(&self) -> Result<i64> {
        self.current_revision().await
    }

    async fn compact(&self, _revision: i64) -> Result<()> {
        Err(refused("compaction (kube-apiserver compacts etcd itself)"))
    }

    fn fenced(&self, fence: Fence) -> Arc<dyn Store> {
        Arc::new(fenced::Unfenceable { inner: self.clone(), fence })
    }
}
