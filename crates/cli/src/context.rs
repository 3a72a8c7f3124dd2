//! What every verb needs: the datastore, the namespace, and kubectl's resource-argument parsing.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use api::{ResourceKind, kinds};
use store::Store;

pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub namespace: String,
    /// Services written must have their cluster IPs in it (`--service-cidr`).
    pub service_cidr: ipnet::Ipv4Net,
}

/// The namespace when `-n` is not given, as kubectl's.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `-n/--namespace`, taken by the root command (`cilia -n kube-system get lease`) and by each verb
/// that addresses namespaced objects (`cilia get lease -n kube-system`), so that the commands where
/// a namespace means nothing (`lab`, `status`, `version`) do not offer it. After the verb wins.
#[derive(clap::Args, Debug, Default)]
pub struct NamespaceArg {
    /// Namespace of namespaced objects [default: default].
    #[arg(short = 'n', long = "namespace", value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// The datastore URL: `--datastore`, else `CILIA_DATASTORE` (both handled by clap), else the running
/// lab's.
pub fn datastore_url(flag: Option<&str>, lab_name: &str) -> Result<String> {
    if let Some(url) = flag {
        return Ok(url.to_string());
    }
    lab::datastore_url(lab_name).with_context(|| {
        format!(
            "no datastore: pass --datastore URL, set CILIA_DATASTORE, or start the lab with `cilia lab up` (lab {lab_name:?} is not running)"
        )
    })
}

/// The TLS files for an `https://` datastore (`--datastore-ca/--datastore-cert/--datastore-key`
/// or their `CILIA_DATASTORE_*` variables).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

static TLS_FILES: std::sync::OnceLock<TlsFiles> = std::sync::OnceLock::new();

/// Set once, from the command line, before anything connects.
pub fn set_tls_files(files: TlsFiles) {
    let _ = TLS_FILES.set(files);
}

/// `kubeconfig:///path/to/kubeconfig`: the datastore is the Kubernetes API server that kubeconfig
/// names (its current context).
pub const KUBECONFIG_SCHEME: &str = "kubeconfig://";
/// `kubernetes://`: the Kubernetes API server of the cluster this runs in, as its pod's service
/// account (the deployment manifests use it).
pub const IN_CLUSTER: &str = "kubernetes://";

/// Whether `url` names a Kubernetes API server rather than etcd.
pub fn is_kubernetes(url: &str) -> bool {
    url.starts_with(KUBECONFIG_SCHEME) || url == IN_CLUSTER
}

pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    // A Kubernetes API server: the objects are the cluster's, through kube-apiserver.
    if url == IN_CLUSTER {
        let store = kubestore::KubeStore::in_cluster().await.context("connecting to the cluster's kube-apiserver")?;
        return Ok(Arc::new(store));
    }
    if let Some(path) = url.strip_prefix(KUBECONFIG_SCHEME) {
        let store = kubestore::KubeStore::from_kubeconfig(std::path::Path::new(path))
            .await
            .with_context(|| format!("connecting to kube-apiserver with {path}"))?;
        return Ok(Arc::new(store));
    }
    let tls = match TLS_FILES.get() {
        Some(TlsFiles { ca: Some(ca), cert: Some(cert), key: Some(key) }) if url.starts_with("https://") => {
            Some(store::Tls::from_files(ca, cert, key).with_context(|| format!("TLS for the datastore at {url}"))?)
        }
        Some(f) if url.starts_with("https://") && (f.ca.is_some() || f.cert.is_some() || f.key.is_some()) => {
            bail!("TLS for the datastore at {url} needs all of --datastore-ca, --datastore-cert and --datastore-key")
        }
        _ => None,
    };
    let store = store::EtcdStore::connect_tls(url, tls.as_ref())
        .await
        .with_context(|| format!("connecting to the datastore at {url}"))?;
    Ok(Arc::new(store))
}

/// Parses kubectl's resource arguments: `svc webpod`, `svc/webpod`, `lease/a lease/b`, `pods`.
pub fn parse_kind_and_names(args: &[String]) -> Result<(&'static ResourceKind, Vec<String>)> {
    let Some(first) = args.first() else {
        bail!("you must specify the type of resource to get. Valid resource types: {}", kinds::known_names());
    };
    if first.contains('/') {
        let mut kind = None;
        let mut names = Vec::new();
        for arg in args {
            let (k, n) = arg
                .split_once('/')
                .with_context(|| format!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (got {arg:?})"))?;
            let resolved = resolve(k)?;
            if kind.is_some_and(|prev| prev != resolved) {
                bail!("all resources in resource/name form must be of one kind here");
            }
            kind = Some(resolved);
            names.push(n.to_string());
        }
        return Ok((kind.context("no resource")?, names));
    }
    let kind = resolve(first)?;
    Ok((kind, args[1..].to_vec()))
}

fn resolve(name: &str) -> Result<&'static ResourceKind> {
    kinds::resolve(name)
        .with_context(|| format!("the server doesn't have a resource type {name:?} (known: {})", kinds::known_names()))
}
