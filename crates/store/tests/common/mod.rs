//! Shared fixtures: objects to store and the two backends.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{sync::Arc, time::Duration};

use api::{Object, ObjectRef, kinds::SERVICE};
use serde_json::json;
use store::{EtcdStore, MemoryStore, Store, testing::EtcdGuard};

/// Generous for a loaded two-core machine; conditions usually hold within milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A store under test, and the etcd process behind it if any (killed on drop).
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub etcd: Option<EtcdGuard>,
}

pub fn memory() -> Backend {
    Backend { store: Arc::new(MemoryStore::new()), etcd: None }
}

pub async fn etcd() -> Backend {
    let (guard, url) = EtcdGuard::start().await.expect("etcd starts");
    let store = EtcdStore::connect(&url).await.expect("connects");
    Backend { store: Arc::new(store), etcd: Some(guard) }
}

pub fn svc(namespace: &str, name: &str) -> Object {
    let mut o = Object::new(&SERVICE, Some(namespace), name);
    o.body.insert("spec".into(), json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
    o
}

pub fn svc_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new(&SERVICE, Some(namespace), name)
}

pub fn rv(object: &Object) -> i64 {
    object.metadata.resource_version.as_deref().expect("resourceVersion set").parse().expect("numeric")
}
