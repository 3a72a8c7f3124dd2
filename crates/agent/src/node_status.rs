//! The agent's word on its Node: the `Ready` condition in `status.conditions`.
//!
//! True (reason `AgentReady`) once pod networking is up; False (reason `AgentStopped`) when the
//! agent shuts down cleanly. An agent that dies without shutting down leaves True behind: the
//! membership Lease ([`crate::membership`]), which expires with the agent, is what tells a live
//! node from a dead one.

use api::{Condition, Object, ObjectRef, kinds, meta::now_rfc3339};
use serde_json::json;
use store::Store;

pub const READY: &str = "Ready";
pub const REASON_READY: &str = "AgentReady";
pub const REASON_STOPPED: &str = "AgentStopped";

/// The Ready condition the agent wants on its Node.
pub fn ready(status: bool, reason: &str, message: impl Into<String>) -> Condition {
    Condition {
        type_: READY.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        ..Condition::default()
    }
}

/// Whether `obj` already carries `wanted` (type, status, reason and message).
pub fn has_condition(obj: &Object, wanted: &Condition) -> bool {
    let Some(conditions) = obj.lookup_path("status.conditions") else {
        return false;
    };
    let Ok(conditions) = serde_json::from_value::<Vec<Condition>>(conditions) else {
        return false;
    };
    Condition::find(&conditions, &wanted.type_)
        .is_some_and(|c| c.status == wanted.status && c.reason == wanted.reason && c.message == wanted.message)
}

/// Sets `condition` on the Node; `Ok(false)` if it was already there or the Node does not
/// exist (its re-creation is seen by the caller's informer, which writes again).
pub async fn write(store: &dyn Store, node: &str, condition: &Condition) -> store::Result<bool> {
    let target = ObjectRef::new(&kinds::NODE, None, node);
    let mut changed = false;
    let result = store::update_with_retry(store, &target, |obj| {
        changed = set(obj, condition.clone())?;
        Ok(changed)
    })
    .await;
    match result {
        Ok(_) => Ok(changed),
        Err(store::Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn set(obj: &mut Object, condition: Condition) -> store::Result<bool> {
    let status = obj.body.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let mut conditions: Vec<Condition> = match status.get("conditions") {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            store::Error::Invalid(format!("status.conditions of Node {} is not a list of conditions: {e}", obj.name()))
        })?,
    };
    if !Condition::set(&mut conditions, condition, &now_rfc3339()) {
        return Ok(false);
    }
    let value = serde_json::to_value(conditions).map_err(|e| store::Error::Invalid(e.to_string()))?;
    obj.body.get_mut("status").expect("inserted above")["conditions"] = value;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use store::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn ready_is_set_once_and_keeps_other_conditions() {
        let store = Arc::new(MemoryStore::new());
        let mut node = Object::new(&kinds::NODE, None, "k8s-w1");
        node.body.insert(
            "status".into(),
            json!({"conditions": [{"type": "cilia.io/PodCIDRAllocated", "status": "True", "reason": "CIDRAssigned"}]}),
        );
        store.create(node).await.unwrap();
        let up = ready(true, REASON_READY, "pod network ready");
        assert!(write(store.as_ref(), "k8s-w1", &up).await.unwrap());
        assert!(!write(store.as_ref(), "k8s-w1", &up).await.unwrap(), "an unchanged condition is not rewritten");
        let obj = store.get(&ObjectRef::new(&kinds::NODE, None, "k8s-w1")).await.unwrap().unwrap();
        assert!(has_condition(&obj, &up));
        assert_eq!(obj.lookup_path("status.conditions").unwrap().as_array().unwrap().len(), 2);
        assert!(!write(store.as_ref(), "gone", &up).await.unwrap());
    }
}
