//! `cilia apply -f FILE|-`: validate every object in every file first, then create or update each.

use std::io::Read as _;

use anyhow::{Context as _, Result, bail};
use api::{Object, manifest};
use serde_json::Value;
use store::Store;

use crate::{context::Ctx, merge};

pub async fn run(ctx: &Ctx, files: &[String]) -> Result<()> {
    if files.is_empty() {
        bail!("must specify one of -f or --filename");
    }
    // All files are parsed and validated before anything is written: a bad object anywhere leaves the
    // stored objects untouched.
    let mut objects = Vec::new();
    for file in files {
        objects.extend(read_manifest(file, &ctx.namespace)?);
    }
    for obj in objects {
        let line = apply_one(ctx.store.as_ref(), obj).await?;
        println!("{line}");
    }
    Ok(())
}

/// Reads and validates one manifest file (`-` is stdin).
pub fn read_manifest(file: &str, namespace: &str) -> Result<Vec<Object>> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .take(manifest::MAX_MANIFEST_BYTES as u64 + 1)
            .read_to_string(&mut s)
            .context("reading stdin")?;
        s
    } else {
        let meta = std::fs::metadata(file).with_context(|| format!("the path {file:?} does not exist"))?;
        if meta.len() > manifest::MAX_MANIFEST_BYTES as u64 * 4 {
            // Refuse before reading a huge file into memory; parse() gives the precise message otherwise.
            bail!(
                "{file}: manifest is {:.1} MiB; the limit is {} MiB per file",
                meta.len() as f64 / 1048576.0,
                manifest::MAX_MANIFEST_BYTES >> 20
            );
        }
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    Ok(manifest::parse(file, &text, namespace)?)
}

async fn apply_one(store: &dyn Store, mut obj: Object) -> Result<String> {
    let kind = obj.resource_kind().context("validated objects have a known kind")?;
    let oref = obj.object_ref().context("validated objects have a reference")?;
    let display = format!("{}/{}", kind.name_prefix(), obj.name());
    let mut desired = obj.to_value();
    strip_system_fields(&mut desired);
    let applied = serde_json::to_string(&desired)?;
    obj.metadata.annotations.insert(merge::LAST_APPLIED.into(), applied.clone());
    // Status belongs to controllers; apply never writes it.
    obj.body.remove("status");
    obj.metadata.resource_version = None;

    for _attempt in 0..16 {
        let Some(live) = store.get(&oref).await? else {
            match store.create(obj.clone()).await {
                Ok(_) => return Ok(format!("{display} created")),
                Err(store::Error::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let last: Option<Value> =
            live.metadata.annotations.get(merge::LAST_APPLIED).and_then(|s| serde_json::from_str(s).ok());
        let mut desired_with_note = desired.clone();
        if let Some(meta) = desired_with_note.get_mut("metadata").and_then(Value::as_object_mut) {
            let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(merge::LAST_APPLIED.into(), Value::String(applied.clone()));
            }
        }
        let merged_value = merge::three_way(&live.to_value(), &desired_with_note, last.as_ref());
        let mut merged = Object::from_value(merged_value).context("merged object")?;
        // Identity and bookkeeping always come from the stored object.
        merged.metadata.uid = live.metadata.uid.clone();
        merged.metadata.creation_timestamp = live.metadata.creation_timestamp.clone();
        merged.metadata.generation = live.metadata.generation;
        merged.metadata.resource_version = live.metadata.resource_version.clone();
        if merged == live {
            return Ok(format!("{display} unchanged"));
        }
        // The merge result must still be a valid object (e.g. a removed required field).
        api::validate::check(kind, &merged).map_err(|e| e.with_object(oref.to_string()))?;
        match store.update(merged).await {
            Ok(_) => return Ok(format!("{display} configured")),
            Err(store::Error::Conflict { .. }) | Err(store::Error::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("{oref}: too many concurrent changes, try again")
}

fn strip_system_fields(v: &mut Value) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp"] {
            meta.remove(f);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(merge::LAST_APPLIED);
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if let Some(map) = v.as_object_mut() {
        map.remove("status");
    }
}
