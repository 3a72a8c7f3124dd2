//! How `apply` and `patch` combine what the user wrote with what is stored.
//!
//! `patch -p JSON` is a JSON merge patch (RFC 7386). `apply` is a three-way merge like kubectl's:
//! fields the user removed since the last apply (recorded in the `last-applied-configuration`
//! annotation) are removed, fields the user sets are set, and fields only the system set (a Service's
//! allocated `clusterIP` and `nodePort`, `status`) are kept. Lists whose items carry a merge key
//! (`port` for Service ports, `name` for containers) are merged item by item, so a re-applied Service
//! keeps the node port it was given, as with kubectl's strategic merge.

use serde_json::{Map, Value};

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// RFC 7386: `null` deletes, objects merge recursively, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => {
            *t = strip_nulls(p);
        }
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip_nulls(v))).collect())
        }
        other => other.clone(),
    }
}

/// Three-way merge of `desired` (the manifest) into `live`, given the previous manifest `last`.
pub fn three_way(live: &Value, desired: &Value, last: Option<&Value>) -> Value {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => {
            let empty = Map::new();
            let last_map = last.and_then(Value::as_object).unwrap_or(&empty);
            let mut out = l.clone();
            for key in last_map.keys() {
                if !d.contains_key(key) {
                    out.remove(key);
                }
            }
            for (k, dv) in d {
                let merged = match l.get(k) {
                    Some(lv) => three_way(lv, dv, last_map.get(k)),
                    None => dv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(d)) => match merge_key(d) {
            Some(key) => {
                let last_items = last.and_then(Value::as_array);
                Value::Array(
                    d.iter()
                        .map(|item| {
                            let id = item.get(key);
                            let live_item = l.iter().find(|x| x.get(key) == id);
                            let last_item = last_items.and_then(|items| items.iter().find(|x| x.get(key) == id));
                            match live_item {
                                Some(li) => three_way(li, item, last_item),
                                None => item.clone(),
                            }
                        })
                        .collect(),
                )
            }
            None => desired.clone(),
        },
        _ => desired.clone(),
    }
}

/// The key that identifies items of a list, if every item has it (Kubernetes' patchMergeKey values
/// for the lists cilia's kinds have).
fn merge_key(items: &[Value]) -> Option<&'static str> {
    ["port", "containerPort", "name", "type", "ip"]
        .into_iter()
        .find(|key| !items.is_empty() && items.iter().all(|i| i.get(*key).is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut v = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}, "a": 1});
        merge_patch(&mut v, &json!({"spec": {"type": "LoadBalancer"}, "a": null}));
        assert_eq!(v, json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}));
    }

    #[test]
    fn apply_keeps_system_fields_and_removes_dropped_ones() {
        let live = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.41.64", "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP", "nodePort": 32353}]},
            "status": {"x": 1}});
        let last = json!({"spec": {"type": "ClusterIP", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 80}]}});
        let desired = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 80}]}});
        let merged = three_way(&live, &desired, Some(&last));
        assert_eq!(
            merged,
            json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.41.64",
                "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP", "nodePort": 32353}]},
                "status": {"x": 1}})
        );
    }

    #[test]
    fn apply_replaces_lists_without_merge_key() {
        let live = json!({"spec": {"interfaces": ["^eth0"]}});
        let merged = three_way(&live, &json!({"spec": {"interfaces": ["^eth[1-9]+"]}}), None);
        assert_eq!(merged, json!({"spec": {"interfaces": ["^eth[1-9]+"]}}));
    }
}
