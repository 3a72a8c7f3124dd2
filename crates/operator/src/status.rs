//! Writing a controller's result back: replace one part of an object (its `status`, or a few spec
//! fields) with a conditional read-modify-write, skipping objects that vanished meanwhile.

use api::{Object, ObjectRef};
use serde::Serialize;
use store::Store;

use crate::error::{OperatorError, Result};

/// Replaces `status` of the object. A missing object is not an error: it was deleted after the
/// controller saw it, and its deletion event follows.
pub async fn write_status<T: Serialize>(store: &dyn Store, target: &ObjectRef, status: &T) -> Result<()> {
    let value =
        serde_json::to_value(status).map_err(|source| OperatorError::Encode { object: target.to_string(), source })?;
    write_with(store, target, true, |obj| {
        let empty = value.as_object().is_some_and(|m| m.is_empty());
        let changed = if empty { obj.body.remove("status").is_some() } else { obj.body.get("status") != Some(&value) };
        if changed && !empty {
            obj.body.insert("status".into(), value.clone());
        }
        Ok(changed)
    })
    .await
}

/// Applies `mutate` with conflict retries; a vanished object is skipped.
pub async fn write(
    store: &dyn Store,
    target: &ObjectRef,
    mutate: impl FnMut(&mut Object) -> store::Result<bool> + Send,
) -> Result<()> {
    write_with(store, target, false, mutate).await
}

/// [`write`] for a `mutate` that changes `status` only: written through the status subresource,
/// so that the operator needs no right to the rest of the object.
pub async fn write_status_with(
    store: &dyn Store,
    target: &ObjectRef,
    mutate: impl FnMut(&mut Object) -> store::Result<bool> + Send,
) -> Result<()> {
    write_with(store, target, true, mutate).await
}

/// [`write`]; with `status_only`, through the status subresource.
async fn write_with(
    store: &dyn Store,
    target: &ObjectRef,
    status_only: bool,
    mutate: impl FnMut(&mut Object) -> store::Result<bool> + Send,
) -> Result<()> {
    let written = if status_only {
        store::update_status_with_retry(store, target, mutate).await
    } else {
        store::update_with_retry(store, target, mutate).await
    };
    match written {
        Ok(_) => {
            crate::metrics::wrote(target.kind.kind);
            Ok(())
        }
        Err(store::Error::NotFound(_)) => Ok(()),
        Err(source) => {
            Err(OperatorError::Write { action: "writing", object: target.to_string(), source: Box::new(source) })
        }
    }
}
