//! What a Deployment needs next, as a pure function of the Deployment and its pods: pods to
//! create, pods to delete, and the status to publish. cilia's Deployments own their pods
//! directly (no ReplicaSet in between), but pods are named, labelled and replaced the way a
//! ReplicaSet does it, and rolling updates follow `maxSurge`/`maxUnavailable`.

use std::cmp::Ordering;

use api::{
    Object, OwnerReference,
    types::{Deployment, DeploymentStatus, Pod},
};
use serde_json::Value;

use crate::naming::{self, POD_TEMPLATE_HASH};

/// The changes one reconciliation of a Deployment asks for.
#[derive(Debug, Default)]
pub struct Plan {
    /// New pods, complete objects ready for `Store::create`.
    pub create: Vec<Object>,
    /// Names of pods to delete (in the Deployment's namespace).
    pub delete: Vec<String>,
    pub status: DeploymentStatus,
}

/// The pod-level facts the plan is computed from.
#[derive(Debug, Clone)]
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    /// Ready for at least `minReadySeconds`.
    pub available: bool,
}

/// Whether `pod` is controlled by the Deployment with `uid`.
pub fn is_owned_by(pod: &api::ObjectMeta, uid: &str) -> bool {
    pod.owner_references.iter().any(|o| o.kind == "Deployment" && o.uid == uid)
}

/// Whether the pod still counts as one of its Deployment's replicas: not being deleted and not
/// finished.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(pod.status.phase.as_deref(), Some("Succeeded") | Some("Failed"))
}

/// Computes the next step for `deployment` given its active pods (`owned`) and the number of
/// pods created for it that the cache does not show yet (`in_flight`, counted as new, unready
/// pods so that a slow cache never makes the controller create twice).
pub fn plan(deployment: &Deployment, owned: &[PodFacts<'_>], in_flight: usize) -> Plan {
    let hash = naming::pod_template_hash(&deployment.spec.template);
    let replicas = usize::try_from(deployment.replicas()).unwrap_or(0);
    let is_new = |f: &&PodFacts<'_>| f.pod.metadata.labels.get(POD_TEMPLATE_HASH) == Some(&hash);
    let mut new: Vec<&PodFacts<'_>> = owned.iter().filter(is_new).collect();
    let mut old: Vec<&PodFacts<'_>> = owned.iter().filter(|f| !is_new(f)).collect();
    let mut plan = Plan::default();
    let new_count = new.len() + in_flight;

    let recreate = strategy_type(deployment) == "Recreate";
    if old.is_empty() || recreate {
        if recreate && !old.is_empty() {
            // Recreate: every old pod goes before any new one is made.
            plan.delete.extend(old.iter().map(|f| f.pod.metadata.name.clone()));
        } else if new_count < replicas {
            plan.create.extend((new_count..replicas).map(|_| new_pod(deployment, &hash)));
        } else if new_count > replicas && in_flight == 0 {
            new.sort_by(|a, b| deletion_order(a, b));
            plan.delete.extend(new.iter().take(new_count - replicas).map(|f| f.pod.metadata.name.clone()));
        }
    } else {
        let (max_surge, max_unavailable) = rolling_limits(deployment, replicas);
        let total = new_count + old.len();
        // Scale the new pods up, within the surge.
        let room = (replicas + max_surge).saturating_sub(total);
        let wanted = replicas.saturating_sub(new_count);
        plan.create.extend((0..room.min(wanted)).map(|_| new_pod(deployment, &hash)));
        // Scale the old pods down, keeping `replicas - maxUnavailable` available throughout.
        let min_available = replicas.saturating_sub(max_unavailable);
        let new_unavailable = new_count - new.iter().filter(|f| f.available).count();
        let mut budget = total.saturating_sub(min_available).saturating_sub(new_unavailable);
        old.sort_by(|a, b| deletion_order(a, b));
        // Unavailable old pods first: removing them costs no availability.
        for f in old.iter().filter(|f| !f.available) {
            if budget == 0 {
                break;
            }
            plan.delete.push(f.pod.metadata.name.clone());
            budget -= 1;
        }
        let available = owned.iter().filter(|f| f.available).count();
        let mut can_remove_available = available.saturating_sub(min_available).min(budget);
        for f in old.iter().filter(|f| f.available) {
            if can_remove_available == 0 {
                break;
            }
            plan.delete.push(f.pod.metadata.name.clone());
            can_remove_available -= 1;
        }
    }

    let count = |n: usize| (n > 0).then(|| i64::try_from(n).unwrap_or(i64::MAX));
    plan.status = DeploymentStatus {
        replicas: count(owned.len()),
        ready_replicas: count(owned.iter().filter(|f| f.pod.is_ready()).count()),
        available_replicas: count(owned.iter().filter(|f| f.available).count()),
        updated_replicas: count(new.len()),
        observed_generation: deployment.metadata.generation,
    };
    plan
}

/// A pod from the Deployment's template, labelled with the template hash and owned by the
/// Deployment.
pub fn new_pod(deployment: &Deployment, hash: &str) -> Object {
    let template = &deployment.spec.template;
    let mut pod = Object::new(&api::kinds::POD, deployment.metadata.namespace.as_deref(), "");
    pod.metadata.name = naming::pod_name(&deployment.metadata.name, hash);
    pod.metadata.labels = template.metadata.labels.clone();
    pod.metadata.labels.insert(POD_TEMPLATE_HASH.into(), hash.into());
    pod.metadata.annotations = template.metadata.annotations.clone();
    pod.metadata.owner_references = vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: deployment.metadata.name.clone(),
        uid: deployment.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }];
    let spec = serde_json::to_value(&template.spec).expect("a pod spec always serializes");
    pod.body.insert("spec".into(), spec);
    pod
}

fn strategy_type(deployment: &Deployment) -> &str {
    deployment.spec.strategy.as_ref().and_then(|s| s.get("type")).and_then(Value::as_str).unwrap_or("RollingUpdate")
}

/// `maxSurge` (rounded up) and `maxUnavailable` (rounded down), 25% each by default; both zero
/// would never progress, so `maxUnavailable` becomes 1 then, as in Kubernetes.
fn rolling_limits(deployment: &Deployment, replicas: usize) -> (usize, usize) {
    let rolling = deployment.spec.strategy.as_ref().and_then(|s| s.get("rollingUpdate"));
    let field = |name: &str| rolling.and_then(|r| r.get(name));
    let surge = resolve(field("maxSurge"), replicas, true);
    let mut unavailable = resolve(field("maxUnavailable"), replicas, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// An int-or-percent of `replicas`; absent means 25%.
fn resolve(value: Option<&Value>, replicas: usize, round_up: bool) -> usize {
    let percent = |p: f64| {
        let exact = p * replicas as f64 / 100.0;
        (if round_up { exact.ceil() } else { exact.floor() }) as usize
    };
    match value {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0),
        Some(Value::String(s)) => s.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()).map_or(0, percent),
        _ => percent(25.0),
    }
}

/// Which pod goes first when scaling down, as a ReplicaSet picks: unscheduled before scheduled,
/// pending before running, unready before ready, newer before older.
fn deletion_order(a: &PodFacts<'_>, b: &PodFacts<'_>) -> Ordering {
    let scheduled = |f: &PodFacts<'_>| f.pod.spec.node_name.is_some();
    let running = |f: &PodFacts<'_>| f.pod.status.phase.as_deref() == Some("Running");
    let ready = |f: &PodFacts<'_>| f.pod.is_ready();
    let created = |f: &PodFacts<'_>| f.pod.metadata.creation_timestamp.clone().unwrap_or_default();
    scheduled(a)
        .cmp(&scheduled(b))
        .then(running(a).cmp(&running(b)))
        .then(ready(a).cmp(&ready(b)))
        .then_with(|| created(b).cmp(&created(a)))
        .then_with(|| a.pod.metadata.name.cmp(&b.pod.metadata.name))
}

#[cfg(test)]
mod tests {
    use api::types::PodCondition;

    use super::*;

    fn deployment(replicas: i64, image: &str, strategy: Option<Value>) -> Deployment {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "webpod", "namespace": "default", "uid": "d-1", "generation": 2},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "webpod"}},
                "template": {
                    "metadata": {"labels": {"app": "webpod"}},
                    "spec": {"containers": [{"name": "webpod", "image": image, "ports": [{"containerPort": 80}]}]}
                }
            }
        }))
        .unwrap();
        d.spec.strategy = strategy;
        d
    }

    fn pod_of(d: &Deployment, ready: bool, node: Option<&str>, created: &str) -> Pod {
        let hash = naming::pod_template_hash(&d.spec.template);
        let mut pod: Pod = new_pod(d, &hash).to_typed().unwrap();
        pod.metadata.creation_timestamp = Some(created.into());
        pod.spec.node_name = node.map(str::to_string);
        if ready {
            pod.status.phase = Some("Running".into());
            pod.status.conditions.push(PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            });
        }
        pod
    }

    fn facts(pods: &[Pod]) -> Vec<PodFacts<'_>> {
        pods.iter().map(|p| PodFacts { pod: p, available: p.is_ready() }).collect()
    }

    #[test]
    fn new_pods_are_named_labelled_and_owned() {
        let d = deployment(3, "traefik/whoami", None);
        let plan = plan(&d, &[], 0);
        assert_eq!(plan.create.len(), 3);
        assert!(plan.delete.is_empty());
        let hash = naming::pod_template_hash(&d.spec.template);
        for pod in &plan.create {
            assert!(pod.metadata.name.starts_with(&format!("webpod-{hash}-")), "{}", pod.metadata.name);
            assert_eq!(pod.metadata.labels["app"], "webpod");
            assert_eq!(pod.metadata.labels[POD_TEMPLATE_HASH], hash);
            assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
            let owner = &pod.metadata.owner_references[0];
            assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Deployment", "d-1", Some(true)));
            let typed: Pod = pod.to_typed().unwrap();
            assert_eq!(typed.spec.containers[0].image, "traefik/whoami");
            assert!(typed.spec.node_name.is_none());
        }
        let names: std::collections::BTreeSet<_> = plan.create.iter().map(|p| p.metadata.name.clone()).collect();
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn in_flight_creations_are_not_repeated() {
        let d = deployment(3, "traefik/whoami", None);
        let pods = [pod_of(&d, false, None, "2026-01-01T00:00:00Z")];
        assert_eq!(plan(&d, &facts(&pods), 2).create.len(), 0);
        assert_eq!(plan(&d, &facts(&pods), 1).create.len(), 1);
    }

    #[test]
    fn scale_down_removes_unscheduled_then_unready_then_newest() {
        let d = deployment(5, "traefik/whoami", None);
        let pods = vec![
            pod_of(&d, true, Some("a"), "2026-01-01T00:00:01Z"),
            pod_of(&d, true, Some("b"), "2026-01-01T00:00:02Z"),
            pod_of(&d, false, Some("c"), "2026-01-01T00:00:03Z"),
            pod_of(&d, false, None, "2026-01-01T00:00:04Z"),
            pod_of(&d, true, Some("c"), "2026-01-01T00:00:05Z"),
        ];
        let status = plan(&d, &facts(&pods), 0).status;
        assert_eq!((status.replicas, status.ready_replicas, status.updated_replicas), (Some(5), Some(3), Some(5)));
        assert_eq!(status.observed_generation, Some(2));
        let d2 = deployment(2, "traefik/whoami", None);
        let plan = plan(&d2, &facts(&pods), 0);
        assert!(plan.create.is_empty());
        let expect = [&pods[3], &pods[2], &pods[4]].map(|p| p.metadata.name.clone());
        assert_eq!(plan.delete, expect);
    }

    #[test]
    fn template_change_rolls_within_surge_and_availability() {
        let v1 = deployment(3, "traefik/whoami:v1", None);
        let old: Vec<Pod> = (0..3).map(|i| pod_of(&v1, true, Some("n"), &format!("2026-01-01T00:00:0{i}Z"))).collect();
        let v2 = deployment(3, "traefik/whoami:v2", None);
        // 25%: surge 1, unavailable 0. One new pod, no old one removed yet.
        let p = plan(&v2, &facts(&old), 0);
        assert_eq!((p.create.len(), p.delete.len()), (1, 0));
        let mut pods = old.clone();
        pods.push(pod_of(&v2, false, Some("n"), "2026-01-01T00:01:00Z"));
        let p = plan(&v2, &facts(&pods), 0);
        assert_eq!((p.create.len(), p.delete.len()), (0, 0), "waits for the new pod to be ready");
        pods[3] = pod_of(&v2, true, Some("n"), "2026-01-01T00:01:00Z");
        let p = plan(&v2, &facts(&pods), 0);
        assert_eq!((p.create.len(), p.delete.len()), (0, 1), "then one old pod goes");
        assert_eq!(p.status.updated_replicas, Some(1));
        // Recreate: all old pods first, nothing new meanwhile.
        let recreate = deployment(3, "traefik/whoami:v2", Some(serde_json::json!({"type": "Recreate"})));
        let p = plan(&recreate, &facts(&old), 0);
        assert_eq!((p.create.len(), p.delete.len()), (0, 3));
        let p = plan(&recreate, &[], 0);
        assert_eq!(p.create.len(), 3);
    }

    #[test]
    fn limits() {
        let d = deployment(3, "x", None);
        assert_eq!(rolling_limits(&d, 3), (1, 0));
        let d =
            deployment(4, "x", Some(serde_json::json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "50%"}})));
        assert_eq!(rolling_limits(&d, 4), (0, 2));
        let d = deployment(1, "x", Some(serde_json::json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})));
        assert_eq!(rolling_limits(&d, 1), (0, 1));
    }
}
