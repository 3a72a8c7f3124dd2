//! Ownership published as Lease objects, named as Cilium names them, so `kubectl get lease -n
//! kube-system` shows who announces each Service.
//!
//! Here a Lease is a record, not a lock: ownership is decided by the assignment and kept alive by
//! heartbeats, so nobody renews it. The new owner writes it once when the holder changes; steady
//! state writes nothing. `leaseDurationSeconds` tells a reader how long a holder may be dead before
//! the others move its IPs (`dead_after`, rounded up to whole seconds), and `renewTime` is the time
//! of the last holder change.

use std::collections::{BTreeMap, BTreeSet};

use api::Object;
use serde_json::{Map, Value, json};

use crate::service::ServiceKey;

/// The name prefix of announcement Leases, as in Cilium.
pub const PREFIX: &str = "cilium-l2announce";
/// The namespace announcement Leases live in.
pub const NAMESPACE: &str = "kube-system";

/// `cilium-l2announce-<namespace>-<name>`. As in Cilium the name is ambiguous (`a-b`/`c` and
/// `a`/`b-c` give the same); [`plan`] resolves a collision deterministically so that two nodes
/// never fight over one Lease.
pub fn lease_name(key: &ServiceKey) -> String {
    format!("{PREFIX}-{}-{}", key.namespace, key.name)
}

/// Whether a stored object is an announcement Lease (kind, namespace and name prefix).
pub fn is_announcement_lease(object: &Object) -> bool {
    object.kind == api::kinds::LEASE.kind
        && object.namespace() == Some(NAMESPACE)
        && object.name().strip_prefix(PREFIX).is_some_and(|rest| rest.starts_with('-'))
}

/// `spec.holderIdentity` of a stored Lease; an empty holder (a Cilium release) counts as none.
pub fn holder_of(lease: &Object) -> Option<&str> {
    lease.field("spec")?.get("holderIdentity")?.as_str().filter(|h| !h.is_empty())
}

/// A Lease naming `holder` for `key`'s announcement, at time `now` (RFC 3339).
///
/// Built on `previous` when given (keeping its metadata, including `resourceVersion` so the update
/// is conditional): `acquireTime` and `leaseTransitions` + 1 only when the holder changes, as
/// client-go does. A new Lease starts at 0 transitions.
pub fn build_lease(
    key: &ServiceKey,
    holder: &str,
    duration_seconds: i64,
    now: &str,
    previous: Option<&Object>,
) -> Object {
    let mut lease =
        previous.cloned().unwrap_or_else(|| Object::new(&api::kinds::LEASE, Some(NAMESPACE), &lease_name(key)));
    let spec_before = lease.field("spec").and_then(Value::as_object).cloned().unwrap_or_default();
    let same_holder = previous.and_then(holder_of) == Some(holder);
    let transitions = spec_before.get("leaseTransitions").and_then(Value::as_i64);
    let (acquire, transitions) = match (previous, same_holder) {
        (None, _) => (json!(now), 0),
        (Some(_), true) => (spec_before.get("acquireTime").cloned().unwrap_or(json!(now)), transitions.unwrap_or(0)),
        (Some(_), false) => (json!(now), transitions.unwrap_or(0) + 1),
    };
    let mut spec = Map::new();
    spec.insert("holderIdentity".into(), json!(holder));
    spec.insert("leaseDurationSeconds".into(), json!(duration_seconds));
    spec.insert("acquireTime".into(), acquire);
    spec.insert("renewTime".into(), json!(now));
    spec.insert("leaseTransitions".into(), json!(transitions));
    lease.body.insert("spec".into(), Value::Object(spec));
    lease
}

/// One datastore write the planner asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum LeaseOp {
    /// Create this Lease (it does not exist).
    Create(Object),
    /// Replace the stored Lease; `metadata.resourceVersion` is the one read, so a concurrent write
    /// makes it fail with a conflict instead of being overwritten.
    Update(Object),
    /// Delete the Lease, if its resourceVersion is still this one.
    Delete {
        /// The Lease's name (in [`NAMESPACE`]).
        name: String,
        /// The resourceVersion read, as a delete precondition.
        resource_version: Option<String>,
    },
}

impl LeaseOp {
    /// The name of the Lease the operation concerns.
    pub fn name(&self) -> &str {
        match self {
            LeaseOp::Create(o) | LeaseOp::Update(o) => o.name(),
            LeaseOp::Delete { name, .. } => name,
        }
    }
}

/// Desired holders by Lease name. On a name collision the smallest ServiceKey's holder wins, the
/// same on every node.
fn desired_by_name(desired: &BTreeMap<ServiceKey, String>) -> BTreeMap<String, (&ServiceKey, &str)> {
    let mut out = BTreeMap::new();
    for (key, holder) in desired {
        out.entry(lease_name(key)).or_insert((key, holder.as_str()));
    }
    out
}

fn stored_by_name(stored: &[Object]) -> BTreeMap<&str, &Object> {
    stored.iter().filter(|o| is_announcement_lease(o)).map(|o| (o.name(), o)).collect()
}

/// [`plan_at`] now (`api::meta::now_rfc3339`) with [`DEFAULT_DURATION_SECONDS`].
pub fn plan(me: &str, desired: &BTreeMap<ServiceKey, String>, stored: &[Object]) -> Vec<LeaseOp> {
    plan_at(me, desired, stored, &api::meta::now_rfc3339(), DEFAULT_DURATION_SECONDS)
}

/// `leaseDurationSeconds` written by [`plan`]: the default `dead_after` (500 ms) rounded up.
pub const DEFAULT_DURATION_SECONDS: i64 = 1;

/// The Lease writes node `me` must make, given the desired holders (from
/// `Assignment::lease_holders`) and the stored announcement Leases (other objects are ignored),
/// stamped `now` with `duration_seconds` (`LivenessConfig::lease_duration_seconds`).
///
/// - Create or update a Lease only where the desired holder is `me` and the stored holder is not.
/// - Delete a Lease held by `me` whose Service has no holder any more.
/// - Never touch a Lease whose desired holder is another node: that node writes it, so each Lease
///   has one writer at a time and no write races another.
///
/// Steady state (stored = desired) gives no operation.
pub fn plan_at(
    me: &str,
    desired: &BTreeMap<ServiceKey, String>,
    stored: &[Object],
    now: &str,
    duration_seconds: i64,
) -> Vec<LeaseOp> {
    let desired = desired_by_name(desired);
    let stored = stored_by_name(stored);
    let mut ops = Vec::new();
    for (name, (key, holder)) in &desired {
        if *holder != me {
            continue;
        }
        match stored.get(name.as_str()) {
            None => ops.push(LeaseOp::Create(build_lease(key, me, duration_seconds, now, None))),
            Some(lease) if holder_of(lease) != Some(me) => {
                ops.push(LeaseOp::Update(build_lease(key, me, duration_seconds, now, Some(lease))))
            }
            Some(_) => {}
        }
    }
    for (name, lease) in &stored {
        if holder_of(lease) == Some(me) && !desired.contains_key(*name) {
            ops.push(LeaseOp::Delete {
                name: name.to_string(),
                resource_version: lease.metadata.resource_version.clone(),
            });
        }
    }
    ops
}

/// Lease garbage collection for one cluster-wide writer (the operator): deletes announcement Leases
/// no Service wants any more whose holder is gone (empty, or not among `live`), which [`plan`]
/// leaves behind when the holder died before its Service lost its owner. A Lease still held by a
/// live node is left for that node to delete.
pub fn orphans(desired: &BTreeMap<ServiceKey, String>, stored: &[Object], live: &BTreeSet<String>) -> Vec<LeaseOp> {
    let desired = desired_by_name(desired);
    stored_by_name(stored)
        .into_iter()
        .filter(|(name, lease)| !desired.contains_key(*name) && holder_of(lease).is_none_or(|h| !live.contains(h)))
        .map(|(name, lease)| LeaseOp::Delete {
            name: name.to_string(),
            resource_version: lease.metadata.resource_version.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> ServiceKey {
        ServiceKey::new(ns, name)
    }

    fn desired(pairs: &[(&str, &str, &str)]) -> BTreeMap<ServiceKey, String> {
        pairs.iter().map(|(ns, n, h)| (key(ns, n), h.to_string())).collect()
    }

    /// Applies ops the way a store would (resourceVersion bumped on every write).
    fn apply(stored: &mut Vec<Object>, ops: &[LeaseOp], rev: &mut i64) {
        for op in ops {
            match op {
                LeaseOp::Create(o) => {
                    assert!(stored.iter().all(|s| s.name() != o.name()), "create of an existing lease");
                    *rev += 1;
                    let mut o = o.clone();
                    o.metadata.resource_version = Some(rev.to_string());
                    stored.push(o);
                }
                LeaseOp::Update(o) => {
                    let slot = stored.iter_mut().find(|s| s.name() == o.name()).expect("update of a missing lease");
                    assert_eq!(slot.metadata.resource_version, o.metadata.resource_version, "update not conditional");
                    *rev += 1;
                    *slot = o.clone();
                    slot.metadata.resource_version = Some(rev.to_string());
                }
                LeaseOp::Delete { name, resource_version } => {
                    let at = stored.iter().position(|s| s.name() == name).expect("delete of a missing lease");
                    assert_eq!(&stored[at].metadata.resource_version, resource_version);
                    stored.remove(at);
                }
            }
        }
    }

    #[test]
    fn names_as_cilium() {
        assert_eq!(lease_name(&key("default", "deathstar")), "cilium-l2announce-default-deathstar");
        let lease = build_lease(&key("default", "deathstar"), "w0", 1, "t0", None);
        assert_eq!(lease.api_version, "coordination.k8s.io/v1");
        assert_eq!(lease.kind, "Lease");
        assert_eq!(lease.namespace(), Some("kube-system"));
        assert!(is_announcement_lease(&lease));
        let mut other = lease.clone();
        other.metadata.name = "cilium-l2announcer".into();
        assert!(!is_announcement_lease(&other));
        let spec = lease.field("spec").unwrap();
        assert_eq!(spec["holderIdentity"], "w0");
        assert_eq!(spec["leaseDurationSeconds"], 1);
        assert_eq!((spec["acquireTime"].as_str(), spec["renewTime"].as_str()), (Some("t0"), Some("t0")));
        assert_eq!(spec["leaseTransitions"], 0);
        // The typed view reads it.
        let typed: api::types::Lease = lease.to_typed().unwrap();
        assert_eq!(typed.spec.holder_identity.as_deref(), Some("w0"));
    }

    #[test]
    fn transitions_count_holder_changes() {
        let k = key("default", "web");
        let mut stored = vec![];
        let mut rev = 0;
        let ops = plan_at("w0", &desired(&[("default", "web", "w0")]), &stored, "t0", 1);
        apply(&mut stored, &ops, &mut rev);
        let ops = plan_at("w1", &desired(&[("default", "web", "w1")]), &stored, "t1", 1);
        apply(&mut stored, &ops, &mut rev);
        let spec = stored[0].field("spec").unwrap().clone();
        assert_eq!(spec["holderIdentity"], "w1");
        assert_eq!(spec["leaseTransitions"], 1);
        assert_eq!(spec["acquireTime"], "t1");
        // Rebuilding for the same holder keeps acquireTime and the count.
        let same = build_lease(&k, "w1", 1, "t2", Some(&stored[0]));
        assert_eq!(same.field("spec").unwrap()["acquireTime"], "t1");
        assert_eq!(same.field("spec").unwrap()["leaseTransitions"], 1);
        assert_eq!(same.field("spec").unwrap()["renewTime"], "t2");
    }

    #[test]
    fn each_node_writes_only_its_own_and_steady_state_is_quiet() {
        let want = desired(&[("default", "a", "w0"), ("default", "b", "w1"), ("shop", "c", "w0")]);
        let mut stored = Vec::new();
        let mut rev = 0;
        let ops0 = plan_at("w0", &want, &stored, "t0", 1);
        let ops1 = plan_at("w1", &want, &stored, "t0", 1);
        assert_eq!(
            ops0.iter().map(LeaseOp::name).collect::<Vec<_>>(),
            ["cilium-l2announce-default-a", "cilium-l2announce-shop-c"]
        );
        assert_eq!(ops1.iter().map(LeaseOp::name).collect::<Vec<_>>(), ["cilium-l2announce-default-b"]);
        assert!(ops0.iter().chain(&ops1).all(|o| matches!(o, LeaseOp::Create(_))));
        apply(&mut stored, &ops0, &mut rev);
        apply(&mut stored, &ops1, &mut rev);
        for me in ["w0", "w1", "w2"] {
            assert_eq!(plan_at(me, &want, &stored, "t1", 1), vec![], "{me} in steady state");
        }

        // w0 dies: w1 takes "a"; nobody touches "c" but its new owner w2; w0's leases are not
        // deleted by anyone else.
        let want = desired(&[("default", "a", "w1"), ("default", "b", "w1"), ("shop", "c", "w2")]);
        let ops1 = plan_at("w1", &want, &stored, "t2", 1);
        assert!(matches!(&ops1[..], [LeaseOp::Update(o)] if o.name() == "cilium-l2announce-default-a"));
        let ops2 = plan_at("w2", &want, &stored, "t2", 1);
        assert!(matches!(&ops2[..], [LeaseOp::Update(o)] if o.name() == "cilium-l2announce-shop-c"));
        apply(&mut stored, &ops1, &mut rev);
        apply(&mut stored, &ops2, &mut rev);
        assert!(["w0", "w1", "w2"].iter().all(|me| plan_at(me, &want, &stored, "t3", 1).is_empty()));

        // Service "b" loses its IPs: its holder deletes the Lease, conditionally.
        let want = desired(&[("default", "a", "w1"), ("shop", "c", "w2")]);
        let ops = plan_at("w1", &want, &stored, "t4", 1);
        assert!(
            matches!(&ops[..], [LeaseOp::Delete { name, resource_version: Some(_) }] if name == "cilium-l2announce-default-b")
        );
        assert!(plan_at("w2", &want, &stored, "t4", 1).is_empty());
    }

    #[test]
    fn plan_stamps_the_current_time() {
        let want = desired(&[("default", "a", "w0")]);
        let ops = plan("w0", &want, &[]);
        let [LeaseOp::Create(o)] = &ops[..] else { panic!("{ops:?}") };
        let spec = o.field("spec").unwrap();
        assert_eq!(spec["leaseDurationSeconds"], DEFAULT_DURATION_SECONDS);
        assert!(spec["renewTime"].as_str().unwrap().ends_with('Z'));
        assert!(plan("w0", &want, std::slice::from_ref(o)).is_empty());
    }

    #[test]
    fn unrelated_objects_are_ignored() {
        let mut foreign = Object::new(&api::kinds::LEASE, Some("kube-system"), "cilia-operator");
        foreign.body.insert("spec".into(), json!({"holderIdentity": "w0"}));
        let mut elsewhere = build_lease(&key("default", "x"), "w0", 1, "t0", None);
        elsewhere.metadata.namespace = Some("default".into());
        assert!(plan_at("w0", &BTreeMap::new(), &[foreign, elsewhere], "t1", 1).is_empty());
    }

    #[test]
    fn colliding_names_have_one_writer() {
        // "a-b"/"c" and "a"/"b-c" share a Lease name; their owners differ.
        let want = desired(&[("a-b", "c", "w0"), ("a", "b-c", "w1")]);
        let ops0 = plan_at("w0", &want, &[], "t0", 1);
        let ops1 = plan_at("w1", &want, &[], "t0", 1);
        // The smaller key ("a"/"b-c") decides: only w1 writes.
        assert!(ops0.is_empty());
        assert_eq!(ops1.len(), 1);
        let mut stored = vec![];
        apply(&mut stored, &ops1, &mut 0);
        assert!(plan_at("w0", &want, &stored, "t1", 1).is_empty());
        assert!(plan_at("w1", &want, &stored, "t1", 1).is_empty());
    }

    #[test]
    fn a_released_lease_is_taken_over() {
        let mut released = build_lease(&key("default", "web"), "w0", 1, "t0", None);
        released.body.insert("spec".into(), json!({"holderIdentity": "", "leaseTransitions": 4}));
        released.metadata.resource_version = Some("7".into());
        let ops = plan_at("w1", &desired(&[("default", "web", "w1")]), &[released], "t1", 1);
        let [LeaseOp::Update(o)] = &ops[..] else { panic!("{ops:?}") };
        assert_eq!(o.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(o.field("spec").unwrap()["leaseTransitions"], 5);
    }

    #[test]
    fn orphans_of_dead_holders_are_collected() {
        let mut rev = 0;
        let mut stored = vec![];
        let want = desired(&[("default", "a", "w0"), ("default", "b", "w1"), ("default", "c", "w2")]);
        for me in ["w0", "w1", "w2"] {
            let ops = plan_at(me, &want, &stored, "t0", 1);
            apply(&mut stored, &ops, &mut rev);
        }
        let live: BTreeSet<String> = ["w1".to_string(), "w2".to_string()].into();
        assert!(orphans(&want, &stored, &live).is_empty(), "all still desired");
        // "a" and "b" lost their IPs; w0 is dead, w1 alive: only w0's lease is an orphan.
        let want = desired(&[("default", "c", "w2")]);
        let ops = orphans(&want, &stored, &live);
        assert_eq!(ops.iter().map(LeaseOp::name).collect::<Vec<_>>(), ["cilium-l2announce-default-a"]);
    }
}
