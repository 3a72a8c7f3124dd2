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
        let read = read_manifest(file, &ctx.namespace)?;
        for obj in &read {
            in_service_cidr(obj, ctx.service_cidr).map_err(|e| e.with_source(file.as_str()))?;
        }
        objects.extend(read);
    }
    for obj in objects {
        let line = apply_one(ctx.store.as_ref(), obj).await?;
        println!("{line}");
    }
    Ok(())
}

/// Refuses a Service whose cluster IPs lie outside the service CIDR, naming the object.
pub fn in_service_cidr(obj: &Object, service_cidr: ipnet::Ipv4Net) -> Result<(), api::ValidationError> {
    api::validate::cluster_ips_in_service_cidr(obj, service_cidr).map_err(|e| {
        let name = obj.object_ref().map_or_else(|| obj.name().to_string(), |r| r.to_string());
        e.with_object(name)
    })
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_service_with_a_cluster_ip_outside_the_service_cidr_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yaml");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\ndata: {a: b}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.97.0.5, ports: [{port: 80}]}\n",
        )
        .unwrap();
        let store: Arc<dyn Store> = Arc::new(store::MemoryStore::new());
        let ctx =
            Ctx { store: store.clone(), namespace: "default".into(), service_cidr: "10.96.0.0/16".parse().unwrap() };
        let file = file.to_string_lossy().into_owned();
        let err = run(&ctx, std::slice::from_ref(&file)).await.unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{file}: Service default/web: spec.clusterIP: 10.97.0.5 is not in the service CIDR 10.96.0.0/16: \
                 cluster IPs are allocated from it"
            )
        );
        let configmaps = store.list(&api::kinds::CONFIG_MAP, None, &Default::default()).await.unwrap().items;
        assert!(configmaps.is_empty(), "written before the refusal: {configmaps:?}");

        // The same Service inside the CIDR is written.
        let ctx = Ctx { service_cidr: "10.97.0.0/16".parse().unwrap(), ..ctx };
        run(&ctx, &[file]).await.unwrap();
        let services = store.list(&api::kinds::SERVICE, None, &Default::default()).await.unwrap().items;
        assert_eq!(services.len(), 1);
    }
}
