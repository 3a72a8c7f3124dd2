//! `cilia delete KIND NAME... | -f FILE`. Deleting an owner also deletes its dependents (a Deployment's
//! pods), as Kubernetes' garbage collector does with background propagation. A running pod is
//! deleted gracefully ([`pod_deletion`]).

use anyhow::{Context as _, Result, bail};
use api::{ObjectRef, Selector, kinds};
use store::Store;

use crate::{
    commands::{apply::read_manifest, pod_deletion},
    context::Ctx,
};

pub async fn run(
    ctx: &Ctx,
    args: &[String],
    files: &[String],
    ignore_not_found: bool,
    grace_period: Option<i64>,
) -> Result<()> {
    let mut targets: Vec<ObjectRef> = Vec::new();
    for file in files {
        for obj in read_manifest(file, &ctx.namespace)? {
            targets.extend(obj.object_ref());
        }
    }
    targets.extend(targets_of(args, &ctx.namespace)?);
    if targets.is_empty() {
        bail!("you must provide one or more resources by argument or filename");
    }
    let mut failed = false;
    for target in targets {
        let deleted = if *target.kind == kinds::POD {
            pod_deletion::delete(ctx.store.as_ref(), &target, grace_period).await?
        } else {
            ctx.store.delete(&target, None).await?
        };
        match deleted {
            Some(deleted) => {
                println!("{} \"{}\" deleted", target.kind.name_prefix(), target.name);
                if let Some(uid) = &deleted.metadata.uid {
                    delete_dependents(ctx.store.as_ref(), &target, uid).await?;
                }
            }
            None if ignore_not_found => {}
            None => {
                eprintln!(
                    "Error from server (NotFound): {} \"{}\" not found",
                    target.kind.qualified_plural(),
                    target.name
                );
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// The objects named on the command line: `KIND NAME...`, or `KIND/NAME...` of any kinds mixed
/// (`deploy/extra svc/extra`), as kubectl takes them.
fn targets_of(args: &[String], namespace: &str) -> Result<Vec<ObjectRef>> {
    let Some(first) = args.first() else {
        return Ok(Vec::new());
    };
    if first.contains('/') {
        return args
            .iter()
            .map(|arg| {
                let Some((k, n)) = arg.split_once('/') else {
                    bail!(
                        "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (got {arg:?})"
                    );
                };
                if n.is_empty() {
                    bail!("resource(s) were provided, but no name was specified ({arg:?})");
                }
                Ok(ObjectRef::new(resolve(k)?, Some(namespace), n))
            })
            .collect();
    }
    let kind = resolve(first)?;
    if args.len() == 1 {
        bail!("resource(s) were provided, but no name was specified");
    }
    Ok(args[1..].iter().map(|n| ObjectRef::new(kind, Some(namespace), n)).collect())
}

fn resolve(name: &str) -> Result<&'static api::ResourceKind> {
    kinds::resolve(name)
        .with_context(|| format!("the server doesn't have a resource type {name:?} (known: {})", kinds::known_names()))
}

async fn delete_dependents(store: &dyn Store, owner: &ObjectRef, uid: &str) -> Result<()> {
    if owner.kind != &kinds::DEPLOYMENT {
        return Ok(());
    }
    let pods = store.list(&kinds::POD, owner.namespace.as_deref(), &Selector::everything()).await?;
    for pod in pods.items {
        if pod.metadata.owner_references.iter().any(|o| o.uid == uid)
            && let Some(r) = pod.object_ref()
        {
            store.delete(&r, None).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mixed_kinds_in_resource_name_form() {
        let got = targets_of(&args(&["deploy/extra", "svc/extra", "pod/p1"]), "default").unwrap();
        let kinds: Vec<String> = got.iter().map(|r| r.kind.name_prefix()).collect();
        assert_eq!(kinds, [kinds::DEPLOYMENT.name_prefix(), kinds::SERVICE.name_prefix(), kinds::POD.name_prefix()]);
        assert!(got.iter().all(|r| r.name == "extra" || r.name == "p1"));
        assert!(got.iter().all(|r| r.namespace.as_deref() == Some("default")));
    }

    #[test]
    fn kind_then_names_and_mistakes() {
        let got = targets_of(&args(&["svc", "a", "b"]), "ns1").unwrap();
        assert_eq!(got.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(targets_of(&args(&["svc"]), "default").is_err());
        assert!(targets_of(&args(&["svc/a", "b"]), "default").is_err());
        assert!(targets_of(&args(&["svc/"]), "default").is_err());
        assert!(targets_of(&args(&["nosuchkind/a"]), "default").is_err());
        assert!(targets_of(&[], "default").unwrap().is_empty());
    }
}
