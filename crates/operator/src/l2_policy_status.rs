//! The L2 announcement policies' status, written by the operator alone: Cilium's three condition
//! types (`io.cilium/bad-service-selector`, `io.cilium/bad-node-selector`,
//! `io.cilium/bad-interface-regex`) set True with the problem while a policy does not compile,
//! and turned False once it does. Agents compile the same policies and skip the bad ones, but
//! never write status: one writer, and only when a condition changes (Cilium has every agent
//! patch it on every event).
//!
//! The API already refuses most bad policies at apply time; this covers those that reach the
//! datastore another way (an older cilia, a direct write, a Kubernetes API server without the
//! regex check).

use std::{convert::Infallible, sync::Arc, time::Duration};

use api::{Object, kinds};
use l2::CompiledPolicy;
use store::{
    Informer, Store,
    reconcile::{Backoff, Outcome, Reconcile, Runner},
};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::status;

const RETRY: Duration = Duration::from_secs(1);

/// The new conditions for `policy`, or None when its stored status already says it.
pub fn desired_conditions(policy: &Object, now: &str) -> Option<Vec<api::Condition>> {
    let problems = CompiledPolicy::compile(policy).err().unwrap_or_default();
    l2::conditions::policy_status_update(policy, &problems, now)
}

/// The policies and the datastore their status goes to.
struct PolicyStatus {
    store: Arc<dyn Store>,
    policies: Informer,
}

impl Reconcile for PolicyStatus {
    type Error = Infallible;

    async fn pass(&mut self) -> Result<Outcome, Infallible> {
        let mut failed = false;
        for policy in self.policies.snapshot() {
            let now = api::meta::now_rfc3339();
            if desired_conditions(&policy, &now).is_none() {
                continue;
            }
            let Some(target) = policy.object_ref() else { continue };
            // Computed again on the object read inside the write, so a concurrent change wins.
            let written =
                status::write_status_with(self.store.as_ref(), &target, |obj| match desired_conditions(obj, &now) {
                    Some(conditions) => {
                        l2::conditions::set_status_conditions(obj, &conditions);
                        Ok(true)
                    }
                    None => Ok(false),
                })
                .await;
            match written {
                Ok(()) => tracing::info!(policy = %target, "L2 announcement policy status updated"),
                Err(e) => {
                    tracing::warn!(policy = %target, error = %e, "writing the policy's status failed; retrying");
                    failed = true;
                }
            }
        }
        Ok(if failed { Outcome::Retry } else { Outcome::Done })
    }
}

pub async fn run(store: Arc<dyn Store>, shutdown: CancellationToken) -> crate::Result<()> {
    let policies = Informer::start(store.clone(), &kinds::L2_ANNOUNCEMENT_POLICY, None);
    let runner = Runner::new("l2-policy-status").backoff(Backoff::fixed(RETRY)).watch(&policies);
    runner.run_until_cancelled(PolicyStatus { store, policies }, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use store::MemoryStore;

    use super::*;

    fn policy(interfaces: serde_json::Value) -> Object {
        let mut obj = Object::new(&kinds::L2_ANNOUNCEMENT_POLICY, None, "policy1");
        obj.body.insert("spec".into(), json!({"interfaces": interfaces, "loadBalancerIPs": true}));
        obj
    }

    fn condition(obj: &Object, type_: &str) -> Option<serde_json::Value> {
        obj.lookup_path("status.conditions")?.as_array()?.iter().find(|c| c["type"] == type_).cloned()
    }

    #[tokio::test]
    async fn a_bad_regex_sets_its_condition_true_and_a_fix_turns_it_false_once() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        // Stored around the API, which refuses the regex at apply time.
        store.create(policy(json!(["^eth[1-9"]))).await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(store.clone(), shutdown.clone()));
        let target = api::ObjectRef::new(&kinds::L2_ANNOUNCEMENT_POLICY, None, "policy1");

        let read = || async { store.get(&target).await.unwrap().unwrap() };
        let wait = |want: &'static str| {
            let read = &read;
            async move {
                for _ in 0..100 {
                    let obj = read().await;
                    if condition(&obj, "io.cilium/bad-interface-regex").is_some_and(|c| c["status"] == want) {
                        return obj;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("the condition never became {want}: {:?}", read().await.lookup_path("status"));
            }
        };
        let bad = wait("True").await;
        let c = condition(&bad, "io.cilium/bad-interface-regex").unwrap();
        assert_eq!(c["reason"], "error");
        assert!(c["message"].as_str().unwrap().contains("^eth[1-9"), "{c}");
        assert!(condition(&bad, "io.cilium/bad-service-selector").is_none(), "no False for a type that never was");

        let mut fixed = bad.clone();
        fixed.body.insert("spec".into(), json!({"interfaces": ["^eth[1-9]+"], "loadBalancerIPs": true}));
        store.update(fixed).await.unwrap();
        let good = wait("False").await;
        let cleared = condition(&good, "io.cilium/bad-interface-regex").unwrap();
        assert_eq!(cleared.get("message").and_then(|m| m.as_str()).unwrap_or(""), "", "{cleared}");
        // Steady state: nothing more is written.
        let rv = good.metadata.resource_version.clone();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(read().await.metadata.resource_version, rv, "the status was written again without a change");

        shutdown.cancel();
        task.await.unwrap().unwrap();
    }
}
