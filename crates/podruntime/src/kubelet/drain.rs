//! Draining a pod that is deleted gracefully, before its containers get SIGTERM.
//!
//! Kubernetes sends SIGTERM as soon as the deletion is seen, while the endpoints controller and
//! every node's service load balancer are still learning that the pod is terminating: a new
//! connection picked in that window goes to a process that has just exited, and fails. Users
//! work around it with a `preStop` sleep. The runtime here waits instead, only as long as it
//! needs: until no EndpointSlice lists the pod as ready (the operator has marked it terminating),
//! then [`PROPAGATION`] for the agents to apply that slice, all within the pod's grace period and
//! [`MAX_DRAIN`]. A pod no slice lists (not a Service backend) and a pod deleted with grace 0 are
//! not held up at all.

use std::time::{Duration, Instant};

use api::{
    Selector, kinds,
    types::{Endpoint, EndpointSlice, Pod},
};
use store::Store;

/// The most a drain adds to a pod's teardown.
pub const MAX_DRAIN: Duration = Duration::from_secs(2);
/// Time allowed for agents to apply a slice the operator wrote: their informers see it within
/// milliseconds and a service sync takes a few more.
pub const PROPAGATION: Duration = Duration::from_millis(250);
const POLL: Duration = Duration::from_millis(50);

/// Whether any slice still offers the pod (by uid, else by address) to new connections: listed
/// with `ready` true or unset, which Kubernetes reads as ready.
pub fn still_routed(slices: &[EndpointSlice], uid: &str, ip: Option<&str>) -> bool {
    endpoints_of(slices, uid, ip).any(|e| e.conditions.ready != Some(false))
}

/// Whether the pod appears in any slice at all: only then is there something to drain.
pub fn listed(slices: &[EndpointSlice], uid: &str, ip: Option<&str>) -> bool {
    endpoints_of(slices, uid, ip).next().is_some()
}

/// The pod's endpoints: by the uid of their target, or by address when they name no target.
fn endpoints_of<'a>(
    slices: &'a [EndpointSlice],
    uid: &'a str,
    ip: Option<&'a str>,
) -> impl Iterator<Item = &'a Endpoint> + 'a {
    slices.iter().flat_map(|s| &s.endpoints).filter(move |e| {
        match e.target_ref.as_ref().and_then(|r| r.get("uid")).and_then(|u| u.as_str()) {
            Some(ref_uid) => ref_uid == uid,
            None => ip.is_some_and(|ip| e.addresses.iter().any(|a| a == ip)),
        }
    })
}

/// Waits, within `grace`, until the Service load balancers no longer send new connections to
/// `pod`. Returns how long it waited. A store that does not answer ends the wait (the grace
/// period bounds it anyway); the teardown goes on either way.
pub async fn drain(store: &dyn Store, pod: &Pod, grace: Duration) -> Duration {
    let started = Instant::now();
    let budget = grace.min(MAX_DRAIN);
    if budget.is_zero() {
        return Duration::ZERO;
    }
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let ip = pod.status.pod_ip.as_deref();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut was_listed = false;
    loop {
        let slices: Vec<EndpointSlice> = match store
            .list(&kinds::ENDPOINT_SLICE, Some(namespace), &Selector::everything())
            .await
        {
            Ok(list) => list.items.iter().filter_map(|o| o.to_typed().ok()).collect(),
            Err(e) => {
                tracing::debug!(pod = %pod.metadata.name, error = &e as &dyn std::error::Error, "listing EndpointSlices to drain");
                return started.elapsed();
            }
        };
        was_listed |= listed(&slices, uid, ip);
        if !still_routed(&slices, uid, ip) {
            break;
        }
        if started.elapsed() + POLL >= budget {
            return started.elapsed();
        }
        tokio::time::sleep(POLL).await;
    }
    if was_listed {
        tokio::time::sleep(PROPAGATION.min(budget.saturating_sub(started.elapsed()))).await;
    }
    started.elapsed()
}

#[cfg(test)]
mod tests {
    use api::types::EndpointConditions;
    use serde_json::json;

    use super::*;

    fn slice(endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice { endpoints, ..Default::default() }
    }

    fn endpoint(uid: Option<&str>, ip: &str, ready: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            conditions: EndpointConditions { ready, ..Default::default() },
            target_ref: uid.map(|u| json!({"kind": "Pod", "uid": u})),
            ..Default::default()
        }
    }

    #[test]
    fn a_ready_or_unset_endpoint_of_the_pod_is_still_routed() {
        let s = [slice(vec![endpoint(Some("a"), "10.0.0.1", Some(true)), endpoint(Some("b"), "10.0.0.2", None)])];
        assert!(still_routed(&s, "a", None));
        assert!(still_routed(&s, "b", None));
        assert!(!still_routed(&s, "c", Some("10.0.0.3")));
    }

    #[test]
    fn terminating_endpoints_are_drained() {
        let s = [slice(vec![endpoint(Some("a"), "10.0.0.1", Some(false))])];
        assert!(!still_routed(&s, "a", Some("10.0.0.1")));
        assert!(listed(&s, "a", None));
    }

    #[test]
    fn the_uid_decides_when_there_is_one_else_the_address() {
        // A new pod reusing the address is not the one being deleted.
        let s = [slice(vec![endpoint(Some("new"), "10.0.0.1", Some(true))])];
        assert!(!still_routed(&s, "old", Some("10.0.0.1")));
        assert!(!listed(&s, "old", Some("10.0.0.1")));
        let s = [slice(vec![endpoint(None, "10.0.0.1", Some(true))])];
        assert!(still_routed(&s, "old", Some("10.0.0.1")));
        assert!(!listed(&[], "old", Some("10.0.0.1")));
    }
}
