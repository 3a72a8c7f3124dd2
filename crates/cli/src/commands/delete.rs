//! `cilia delete KIND NAME... | -f FILE`. Deleting an owner also deletes its dependents (a Deployment's
//! pods), as Kubernetes' garbage collector does with background propagation.

use anyhow::{Result, bail};
use api::{ObjectRef, Selector, kinds};
use store::Store;

use crate::{commands::apply::read_manifest, context::Ctx};

pub async fn run(ctx: &Ctx, args: &[String], files: &[String], ignore_not_found: bool) -> Result<()> {
    let mut targets: Vec<ObjectRef> = Vec::new();
    for file in files {
        for obj in read_manifest(file, &ctx.namespace)? {
            targets.extend(obj.object_ref());
        }
    }
    if !args.is_empty() {
        let (kind, names) = crate::context::parse_kind_and_names(args)?;
        if names.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        }
        targets.extend(names.iter().map(|n| ObjectRef::new(kind, Some(&ctx.namespace), n)));
    }
    if targets.is_empty() {
        bail!("you must provide one or more resources by argument or filename");
    }
    let mut failed = false;
    for target in targets {
        match ctx.store.delete(&target, None).await? {
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
