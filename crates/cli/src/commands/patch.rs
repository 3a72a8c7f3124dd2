//! `cilia patch` (JSON merge patch), `cilia label` and `cilia annotate`. Each is a read-modify-write
//! with the object's resourceVersion, retried on conflict, so concurrent writers never lose updates.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use api::{Object, ObjectRef};
use serde_json::Value;

use crate::{context::Ctx, merge};

pub async fn patch(ctx: &Ctx, resource: &[String], patch: &str, patch_type: &str) -> Result<()> {
    if patch_type != "merge" && patch_type != "strategic" {
        bail!("--type {patch_type:?} is not supported; use merge");
    }
    let patch: Value = serde_json::from_str(patch)
        .or_else(|_| serde_saphyr::from_str(patch))
        .with_context(|| format!("unable to parse {patch:?} as a JSON or YAML patch"))?;
    if !patch.is_object() {
        bail!("the patch must be a JSON object, got {patch}");
    }
    let target = single_target(ctx, resource)?;
    let changed = modify(ctx, &target, |obj| {
        let mut value = obj.to_value();
        merge::merge_patch(&mut value, &patch);
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
