//! The cluster's heartbeat key: 32 random bytes in the Secret `kube-system/cilia-l2-heartbeat`
//! (`data.key`, base64 as in every Secret). The first agent that finds none creates it; the others
//! read the same. Agents keep it in memory, so heartbeats go on while the datastore is down.

use std::time::Duration;

use api::{Object, ObjectRef, kinds};
use base64::Engine as _;
use rand::Rng as _;
use serde_json::json;
use store::Store;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "cilia-l2-heartbeat";
const KEY_BYTES: usize = 32;

fn key_ref() -> ObjectRef {
    ObjectRef::new(&kinds::SECRET, Some(NAMESPACE), NAME)
}

/// Why the stored key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("secret {NAMESPACE}/{NAME}: data.key {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] store::Error),
}

fn parse(obj: &Object) -> Result<Vec<u8>, KeyError> {
    let text = obj
        .lookup_path("data.key")
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or_else(|| KeyError::Invalid("is missing".into()))?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| KeyError::Invalid(format!("is not base64: {e}")))?;
    if key.len() < 16 {
        return Err(KeyError::Invalid(format!("has {} bytes; at least 16 are needed", key.len())));
    }
    Ok(key)
}

/// Reads the key, creating it when no agent has yet.
pub async fn get_or_create(store: &dyn Store) -> Result<Vec<u8>, KeyError> {
    for _ in 0..5 {
        if let Some(obj) = store.get(&key_ref()).await? {
            return parse(&obj);
        }
        let mut key = vec![0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        let mut obj = Object::new(&kinds::SECRET, Some(NAMESPACE), NAME);
        obj.body.insert("type".into(), json!("Opaque"));
        obj.body.insert("data".into(), json!({ "key": base64::engine::general_purpose::STANDARD.encode(&key) }));
        match store.create(obj).await {
            Ok(_) => {
                tracing::info!(secret = %key_ref(), "created the cluster's heartbeat key");
                return Ok(key);
            }
            // Another agent was first: read theirs.
            Err(store::Error::AlreadyExists(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(KeyError::Invalid("was created and deleted again while reading it".into()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use store::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn every_agent_gets_the_same_key() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (a, b) = tokio::join!(get_or_create(store.as_ref()), get_or_create(store.as_ref()));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len(), KEY_BYTES);
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn a_broken_key_is_refused_with_the_reason() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut obj = Object::new(&kinds::SECRET, Some(NAMESPACE), NAME);
        obj.body.insert("data".into(), json!({ "key": "not base64!" }));
        store.create(obj).await.unwrap();
        let err = get_or_create(store.as_ref()).await.unwrap_err().to_string();
        assert!(err.contains("data.key is not base64"), "{err}");
    }
}
