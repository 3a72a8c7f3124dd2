//! `cilia patch` (JSON merge patch or JSON patch), `cilia label` and `cilia annotate`. Each is a
//! read-modify-write with the object's resourceVersion, retried on conflict, so concurrent writers
//! never lose updates.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use api::{Object, ObjectRef};
use serde_json::Value;

use crate::{context::Ctx, merge};

/// How `patch -p` is read (`--type`), as kubectl names the kinds of patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// A JSON merge patch (RFC 7386): objects merge, `null` removes, anything else replaces.
    Merge,
    /// A JSON patch (RFC 6902): a list of operations (add, remove, replace, move, copy, test).
    Json,
}

impl PatchType {
    /// `--type`'s parser. It knows kubectl's `strategic` in order to refuse it: a strategic merge
    /// patch merges lists by keys that Kubernetes declares per field of each kind, and without
    /// those schemas it would replace lists that kubectl merges.
    pub fn value_parser() -> impl clap::builder::TypedValueParser<Value = PatchType> {
        use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
        let values =
            [PossibleValue::new("merge"), PossibleValue::new("json"), PossibleValue::new("strategic").hide(true)];
        PossibleValuesParser::new(values).try_map(|s| match s.as_str() {
            "merge" => Ok(PatchType::Merge),
            "json" => Ok(PatchType::Json),
            _ => Err(STRATEGIC_REFUSED),
        })
    }
}

const STRATEGIC_REFUSED: &str =
    "cilia has no strategic-merge schemas for its kinds; use --type merge (RFC 7386) or --type json (RFC 6902)";

/// A parsed `-p`.
#[derive(Debug)]
enum Document {
    Merge(Value),
    Json(json_patch::Patch),
}

impl Document {
    /// `-p` as JSON, or as YAML, which is easier to type.
    fn parse(patch: &str, patch_type: PatchType) -> Result<Document> {
        let value: Value = serde_json::from_str(patch)
            .or_else(|_| serde_saphyr::from_str(patch))
            .with_context(|| format!("unable to parse {patch:?} as a JSON or YAML patch"))?;
        match patch_type {
            PatchType::Json => {
                if !value.is_array() {
                    bail!("a JSON patch must be a list of operations, got {value}");
                }
                Ok(Document::Json(serde_json::from_value(value).context("invalid JSON patch")?))
            }
            PatchType::Merge => {
                if !value.is_object() {
                    bail!("the patch must be a JSON object, got {value}");
                }
                Ok(Document::Merge(value))
            }
        }
    }

    fn apply(&self, value: &mut Value) -> Result<()> {
        match self {
            Document::Merge(patch) => merge::merge_patch(value, patch),
            // All operations or none: json_patch undoes the applied ones when one fails.
            Document::Json(ops) => json_patch::patch(value, ops).context("the JSON patch does not apply")?,
        }
        Ok(())
    }
}

pub async fn patch(ctx: &Ctx, resource: &[String], patch: &str, patch_type: PatchType) -> Result<()> {
    let patch = Document::parse(patch, patch_type)?;
    let target = single_target(ctx, resource)?;
    let changed = modify(ctx, &target, |obj| {
        let mut value = obj.to_value();
        patch.apply(&mut value)?;
        let mut patched = Object::from_value(value).context("patched object is not an object")?;
        // A patch must not change identity or system-owned metadata.
        patched.metadata.name = obj.metadata.name.clone();
        patched.metadata.namespace = obj.metadata.namespace.clone();
        patched.metadata.uid = obj.metadata.uid.clone();
        patched.metadata.resource_version = obj.metadata.resource_version.clone();
        patched.metadata.creation_timestamp = obj.metadata.creation_timestamp.clone();
        patched.api_version = obj.api_version.clone();
        patched.kind = obj.kind.clone();
        let kind = target.kind;
        api::validate::check(kind, &patched).map_err(|e| e.with_object(target.to_string()))?;
        // Only addresses the patch changes: a stored Service is not refused for what it had.
        let cluster_ips = |o: &Object| (o.lookup_path("spec.clusterIP"), o.lookup_path("spec.clusterIPs"));
        if cluster_ips(&patched) != cluster_ips(obj) {
            super::apply::in_service_cidr(&patched, ctx.service_cidr)?;
        }
        let changed = patched != *obj;
        *obj = patched;
        Ok(changed)
    })
    .await?;
    let name = format!("{}/{}", target.kind.name_prefix(), target.name);
    println!("{name} {}", if changed { "patched" } else { "patched (no change)" });
    Ok(())
}

/// `label` and `annotate`: `k=v` sets, `k-` removes; changing an existing value needs `--overwrite`.
pub async fn set_metadata_map(ctx: &Ctx, args: &[String], overwrite: bool, annotations: bool) -> Result<()> {
    let (resource, changes) = split_changes(args)?;
    let target = single_target(ctx, &resource)?;
    let what = if annotations { "annotation" } else { "label" };
    for (k, v) in &changes {
        api::validate::label_key(k).map_err(|e| e.under(what))?;
        if let Some(v) = v
            && !annotations
        {
            api::validate::label_value(v)?;
        }
    }
    modify(ctx, &target, |obj| {
        let map: &mut BTreeMap<String, String> =
            if annotations { &mut obj.metadata.annotations } else { &mut obj.metadata.labels };
        let mut changed = false;
        for (k, v) in &changes {
            match v {
                Some(v) => {
                    if let Some(old) = map.get(k) {
                        if old == v {
                            continue;
                        }
                        if !overwrite {
                            bail!("'{k}' already has a value ({old}), and --overwrite is false");
                        }
                    }
                    map.insert(k.clone(), v.clone());
                    changed = true;
                }
                None => changed |= map.remove(k).is_some(),
            }
        }
        Ok(changed)
    })
    .await?;
    println!("{}/{} {}", target.kind.name_prefix(), target.name, if annotations { "annotated" } else { "labeled" });
    Ok(())
}

/// A `key=value` (set) or `key-` (remove) argument.
type Change = (String, Option<String>);

/// Splits `label`/`annotate` arguments into the resource arguments and the changes.
fn split_changes(args: &[String]) -> Result<(Vec<String>, Vec<Change>)> {
    let mut resource = Vec::new();
    let mut changes = Vec::new();
    for arg in args {
        if let Some((k, v)) = arg.split_once('=') {
            changes.push((k.to_string(), Some(v.to_string())));
        } else if let Some(k) = arg.strip_suffix('-').filter(|k| !k.is_empty()) {
            // Names and kinds never end in '-', so `key-` is always a removal.
            changes.push((k.to_string(), None));
        } else {
            resource.push(arg.clone());
        }
    }
    if changes.is_empty() {
        bail!("at least one change (key=value or key-) is required");
    }
    Ok((resource, changes))
}

fn single_target(ctx: &Ctx, resource: &[String]) -> Result<ObjectRef> {
    let (kind, names) = crate::context::parse_kind_and_names(resource)?;
    match names.as_slice() {
        [name] => Ok(ObjectRef::new(kind, Some(&ctx.namespace), name)),
        [] => bail!("resource name may not be empty"),
        _ => bail!("exactly one resource name is required, got {}", names.len()),
    }
}

/// Read-modify-write with optimistic concurrency. Returns whether anything changed.
async fn modify(
    ctx: &Ctx,
    target: &ObjectRef,
    mut mutate: impl FnMut(&mut Object) -> Result<bool> + Send,
) -> Result<bool> {
    let mut changed_any = false;
    let result = store::update_with_retry(ctx.store.as_ref(), target, |obj| {
        let changed = mutate(obj).map_err(|e| store::Error::Invalid(format!("{e:#}")))?;
        changed_any = changed;
        Ok(changed)
    })
    .await;
    match result {
        Ok(_) => Ok(changed_any),
        Err(store::Error::NotFound(_)) => {
            bail!("Error from server (NotFound): {} \"{}\" not found", target.kind.qualified_plural(), target.name)
        }
        Err(store::Error::Invalid(msg)) => bail!("{msg}"),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(patch: &str, patch_type: PatchType) -> Result<Value> {
        let mut svc = json!({"metadata": {"name": "webpod", "labels": {"app": "webpod"}},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80}, {"port": 443}]}});
        Document::parse(patch, patch_type)?.apply(&mut svc)?;
        Ok(svc)
    }

    #[test]
    fn json_patch_operations_apply_in_order() {
        let svc = patched(
            r#"[{"op": "replace", "path": "/spec/type", "value": "LoadBalancer"},
                {"op": "remove", "path": "/spec/ports/0"},
                {"op": "add", "path": "/metadata/labels/tier", "value": "web"}]"#,
            PatchType::Json,
        )
        .expect("the patch applies");
        assert_eq!(svc["spec"]["type"], "LoadBalancer");
        assert_eq!(svc["spec"]["ports"], json!([{"port": 443}]));
        assert_eq!(svc["metadata"]["labels"], json!({"app": "webpod", "tier": "web"}));
    }

    #[test]
    fn a_failing_json_patch_operation_says_which() {
        let err = patched(
            r#"[{"op": "test", "path": "/spec/type", "value": "NodePort"},
                {"op": "replace", "path": "/spec/type", "value": "LoadBalancer"}]"#,
            PatchType::Json,
        )
        .expect_err("the test operation fails");
        assert!(format!("{err:#}").contains("operation '/0' failed at path '/spec/type'"), "{err:#}");
        let err = Document::parse(r#"{"spec": {}}"#, PatchType::Json).expect_err("an object is no JSON patch");
        assert!(err.to_string().contains("list of operations"), "{err}");
        let err = Document::parse(r#"[{"op": "frob", "path": "/a"}]"#, PatchType::Json).expect_err("unknown op");
        assert!(format!("{err:#}").contains("invalid JSON patch"), "{err:#}");
    }

    #[test]
    fn merge_patch_is_the_default_kind() {
        let svc = patched(r#"{"spec": {"type": "LoadBalancer"}}"#, PatchType::Merge).expect("the patch applies");
        assert_eq!(svc["spec"]["type"], "LoadBalancer");
        assert_eq!(svc["spec"]["ports"], json!([{"port": 80}, {"port": 443}]));
    }

    #[test]
    fn strategic_merge_is_refused_not_treated_as_merge() {
        let cmd = clap::Command::new("patch")
            .arg(clap::Arg::new("type").long("type").value_parser(PatchType::value_parser()));
        let parse = |t: &str| cmd.clone().try_get_matches_from(["patch", "--type", t]);
        let err = parse("strategic").expect_err("refused").to_string();
        assert!(err.contains("no strategic-merge schemas") && err.contains("--type merge"), "{err}");
        for (name, want) in [("merge", PatchType::Merge), ("json", PatchType::Json)] {
            let matches = parse(name).expect("accepted");
            assert_eq!(matches.get_one::<PatchType>("type"), Some(&want));
        }
        assert!(parse("frob").is_err());
    }
}
