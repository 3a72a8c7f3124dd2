//! The policy's status conditions, Cilium's three types, written by one writer only when they change.
//!
//! Cilium has every agent patch `/status` on every policy event and bump `lastTransitionTime` each
//! time (N nodes × 3 writes per event). Here the operator alone compiles policies and computes the
//! new condition list; when nothing would change the answer is `None`, so steady state writes
//! nothing, and `lastTransitionTime` moves only when a condition's status flips.

use api::{Condition, Object};
use serde_json::Value;

use crate::policy::{Problem, ProblemKind};

/// `reason` of a condition reporting a problem, as Cilium writes it.
pub const ERROR_REASON: &str = "error";

/// The new `status.conditions` for a policy, or `None` when the stored list already says it.
///
/// For each of the three types: a problem gives `status=True, reason="error", message=<problem>`;
/// no problem turns an existing condition to `status=False` with an empty message (keeping its
/// reason, since Kubernetes requires one); a type that never existed is not written as False.
/// Conditions of other types are kept as they are. `observedGeneration` is the policy's
/// `metadata.generation`; `now` is the RFC 3339 time stamped on a status flip.
pub fn policy_conditions(
    current: &[Condition],
    problems: &[Problem],
    generation: Option<i64>,
    now: &str,
) -> Option<Vec<Condition>> {
    let mut next = current.to_vec();
    let mut changed = false;
    for kind in ProblemKind::ALL {
        let type_ = kind.condition_type();
        // Several problems of one kind (not produced by `compile`, but possible from a caller)
        // share the one condition.
        let messages: Vec<&str> = problems.iter().filter(|p| p.kind == kind).map(|p| p.message.as_str()).collect();
        let cond = if messages.is_empty() {
            let Some(existing) = Condition::find(&next, type_) else { continue };
            Condition {
                type_: type_.to_string(),
                status: "False".into(),
                observed_generation: generation,
                last_transition_time: String::new(),
                reason: if existing.reason.is_empty() { ERROR_REASON.into() } else { existing.reason.clone() },
                message: String::new(),
            }
        } else {
            Condition {
                type_: type_.to_string(),
                status: "True".into(),
                observed_generation: generation,
                last_transition_time: String::new(),
                reason: ERROR_REASON.into(),
                message: messages.join("; "),
            }
        };
        changed |= Condition::set(&mut next, cond, now);
    }
    changed.then_some(next)
}

/// [`policy_conditions`] for a stored policy object: reads its `status.conditions` (an unreadable
/// list counts as empty, so it is rewritten) and `metadata.generation`.
pub fn policy_status_update(policy: &Object, problems: &[Problem], now: &str) -> Option<Vec<Condition>> {
    let current: Vec<Condition> = policy
        .field("status")
        .and_then(|s| s.get("conditions"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    policy_conditions(&current, problems, policy.metadata.generation, now)
}

/// Writes `conditions` into the object's `status.conditions`, keeping the rest of `status`.
pub fn set_status_conditions(policy: &mut Object, conditions: &[Condition]) {
    let status = policy.body.entry("status").or_insert_with(|| Value::Object(Default::default()));
    if !status.is_object() {
        *status = Value::Object(Default::default());
    }
    let list = serde_json::to_value(conditions).expect("conditions always serialize");
    if let Value::Object(map) = status {
        map.insert("conditions".into(), list);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::CompiledPolicy;

    fn problems_of(spec: Value) -> Vec<Problem> {
        let mut obj = Object::new(&api::kinds::L2_ANNOUNCEMENT_POLICY, None, "p");
        obj.body.insert("spec".into(), spec);
        CompiledPolicy::compile(&obj).err().unwrap_or_default()
    }

    #[test]
    fn a_clean_policy_writes_nothing() {
        assert_eq!(policy_conditions(&[], &problems_of(json!({"interfaces": ["^eth0$"]})), Some(1), "t0"), None);
    }

    #[test]
    fn bad_regex_goes_true_then_false_and_stays_quiet() {
        // C16: an invalid regex gives the condition True...
        let bad = problems_of(json!({"interfaces": ["eth["]}));
        let after_bad = policy_conditions(&[], &bad, Some(1), "t0").expect("a write");
        assert_eq!(after_bad.len(), 1, "only the type with a problem is written");
        let c = &after_bad[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("io.cilium/bad-interface-regex", "True", "error")
        );
        assert!(c.message.contains("eth["));
        assert_eq!((c.last_transition_time.as_str(), c.observed_generation), ("t0", Some(1)));

        // ... the same problem again is no write at all ...
        assert_eq!(policy_conditions(&after_bad, &bad, Some(1), "t1"), None);

        // ... and fixing it flips it to False with an empty message and a new transition time.
        let fixed = policy_conditions(&after_bad, &[], Some(2), "t2").expect("a write");
        assert_eq!(fixed.len(), 1);
        assert_eq!((fixed[0].status.as_str(), fixed[0].message.as_str()), ("False", ""));
        assert_eq!((fixed[0].last_transition_time.as_str(), fixed[0].observed_generation), ("t2", Some(2)));
        assert!(!fixed[0].reason.is_empty());
        assert_eq!(policy_conditions(&fixed, &[], Some(2), "t3"), None);
    }

    #[test]
    fn a_changed_message_keeps_the_transition_time() {
        let first = policy_conditions(&[], &problems_of(json!({"interfaces": ["a["]})), Some(1), "t0").unwrap();
        let second = policy_conditions(&first, &problems_of(json!({"interfaces": ["b["]})), Some(2), "t1").unwrap();
        assert_eq!(second[0].last_transition_time, "t0", "status stayed True");
        assert!(second[0].message.contains("b["));
    }

    #[test]
    fn each_selector_has_its_own_condition_and_others_are_kept() {
        let foreign = Condition {
            type_: "example.com/other".into(),
            status: "True".into(),
            reason: "x".into(),
            last_transition_time: "t-1".into(),
            ..Default::default()
        };
        let bad = problems_of(json!({
            "serviceSelector": {"matchLabels": {"-x": "y"}},
            "nodeSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]}
        }));
        let conds = policy_conditions(std::slice::from_ref(&foreign), &bad, None, "t0").unwrap();
        let status = |t: &str| Condition::find(&conds, t).map(|c| c.status.clone());
        assert_eq!(status("io.cilium/bad-service-selector").as_deref(), Some("True"));
        assert_eq!(status("io.cilium/bad-node-selector").as_deref(), Some("True"));
        assert_eq!(status("io.cilium/bad-interface-regex"), None);
        assert_eq!(Condition::find(&conds, "example.com/other"), Some(&foreign));

        // Fixing only the node selector flips only its condition.
        let only_service = problems_of(json!({"serviceSelector": {"matchLabels": {"-x": "y"}}}));
        let conds = policy_conditions(&conds, &only_service, None, "t1").unwrap();
        assert_eq!(Condition::find(&conds, "io.cilium/bad-node-selector").unwrap().status, "False");
        assert_eq!(Condition::find(&conds, "io.cilium/bad-service-selector").unwrap().last_transition_time, "t0");
    }

    #[test]
    fn reads_and_writes_the_object_status() {
        let mut obj = Object::new(&api::kinds::L2_ANNOUNCEMENT_POLICY, None, "p");
        obj.metadata.generation = Some(3);
        obj.body.insert("spec".into(), json!({"interfaces": ["("]}));
        let problems = CompiledPolicy::compile(&obj).unwrap_err();
        let conds = policy_status_update(&obj, &problems, "t0").unwrap();
        assert_eq!(conds[0].observed_generation, Some(3));
        set_status_conditions(&mut obj, &conds);
        assert_eq!(obj.field("status").unwrap()["conditions"][0]["status"], "True");
        assert_eq!(policy_status_update(&obj, &problems, "t1"), None);
        obj.body.insert("status".into(), json!("garbage"));
        set_status_conditions(&mut obj, &conds);
        assert_eq!(policy_status_update(&obj, &problems, "t1"), None);
    }
}
