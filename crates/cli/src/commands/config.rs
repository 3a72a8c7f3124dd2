//! `cilia config view|set`: the stored configuration `kube-system/cilium-config`, with Cilium's
//! key names, like `cilium config view` and the guide's `helm upgrade --set ...` followed by
//! `kubectl rollout restart` of the operator and the agents.
//!
//! `set` takes Cilium's ConfigMap keys and the guide's Helm names (`--set l2announcements.enabled=true`),
//! checks every `key=value` and the resulting configuration before writing anything, then
//! (in a running lab) restarts the operator and then each agent in turn, waiting until each is
//! back: the operator holds its leader lease again, an agent has marked its Node Ready with the
//! new routing mode.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use api::{Condition, Object, ObjectRef, cilium_config, kinds};
use store::Store;

fn config_ref() -> ObjectRef {
    ObjectRef::new(&kinds::CONFIG_MAP, Some(cilium_config::NAMESPACE), cilium_config::NAME)
}

fn data_of(obj: &Object) -> BTreeMap<String, String> {
    obj.lookup_path("data").and_then(|d| serde_json::from_value::<BTreeMap<String, String>>(d).ok()).unwrap_or_default()
}

/// The stored `data` of cilium-config; with `wait`, polls until it exists (logging every 15 s).
pub async fn read_cilium_config(store: &dyn Store, wait: bool) -> Result<Option<BTreeMap<String, String>>> {
    let mut next_log = Instant::now();
    loop {
        match store.get(&config_ref()).await {
            Ok(Some(obj)) => return Ok(Some(data_of(&obj))),
            Ok(None) if !wait => return Ok(None),
            Ok(None) => {
                if Instant::now() >= next_log {
                    tracing::info!("waiting for kube-system/cilium-config");
                    next_log = Instant::now() + Duration::from_secs(15);
                }
            }
            Err(e) if wait && e.is_retryable() => tracing::warn!(error = %e, "reading kube-system/cilium-config"),
            Err(e) => return Err(e).context("reading kube-system/cilium-config"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `cilia config view`: `key  value` lines of the effective settings; with `helm`, the Helm name
/// of each key in a third column.
pub async fn view(store: &dyn Store, helm: bool) -> Result<()> {
    let data = read_cilium_config(store, false).await?.unwrap_or_default();
    if helm {
        print!("{}", cilium_config::view_with_helm_names(&data));
    } else {
        print!("{}", cilium_config::view(&data));
    }
    Ok(())
}

/// Creates cilium-config with `data` unless it exists.
async fn create_if_missing(store: &dyn Store, data: &BTreeMap<String, String>) -> Result<()> {
    let mut obj = Object::new(&kinds::CONFIG_MAP, Some(cilium_config::NAMESPACE), cilium_config::NAME);
    obj.body.insert("data".into(), serde_json::to_value(data).expect("a string map serializes"));
    match store.create(obj).await {
        Ok(_) | Err(store::Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e).context("creating kube-system/cilium-config"),
    }
}

/// Merges `assignments` into the stored data, checks the result and writes it conditionally on
/// the resourceVersion it was merged from; on a conflict (someone else wrote in between) it reads
/// and merges again, so concurrent `config set`s never lose each other's keys. Returns the new
/// data, or None when nothing changed. Nothing is written when the merged data is invalid.
pub async fn merge_into_stored(
    store: &dyn Store,
    assignments: &BTreeMap<String, String>,
) -> Result<Option<BTreeMap<String, String>>> {
    loop {
        if store.get(&config_ref()).await?.is_none() {
            cilium_config::check(assignments).context("nothing was changed")?;
            let mut obj = Object::new(&kinds::CONFIG_MAP, Some(cilium_config::NAMESPACE), cilium_config::NAME);
            obj.body.insert("data".into(), serde_json::to_value(assignments).expect("a string map serializes"));
            match store.create(obj).await {
                Ok(_) => return Ok(Some(assignments.clone())),
                // Created meanwhile: merge into what is there.
                Err(store::Error::AlreadyExists(_)) => continue,
                Err(e) => return Err(e).context("creating kube-system/cilium-config"),
            }
        }
        let mut invalid = None;
        let mut merged = None;
        let result = store::update_with_retry(store, &config_ref(), |o| {
            let current = data_of(o);
            let mut next = current.clone();
            next.extend(assignments.clone());
            if let Err(e) = cilium_config::check(&next) {
                invalid = Some(e);
                return Ok(false);
            }
            invalid = None;
            if next == current {
                merged = None;
                return Ok(false);
            }
            o.body.insert("data".into(), serde_json::to_value(&next).expect("a string map serializes"));
            merged = Some(next);
            Ok(true)
        })
        .await;
        match result {
            // Deleted between the read above and the update: start over.
            Err(store::Error::NotFound(_)) => continue,
            other => {
                other.context("updating kube-system/cilium-config")?;
            }
        }
        if let Some(e) = invalid {
            return Err(anyhow::Error::new(e).context("nothing was changed"));
        }
        return Ok(merged);
    }
}

/// `cilia config set k=v ...`: returns whether the configuration changed. Names are ConfigMap
/// keys or Helm names (`l2announcements.enabled=true`), mixed freely.
pub async fn set(store: &dyn Store, args: &[String], lab: Option<&lab::Lab>) -> Result<bool> {
    if args.is_empty() {
        bail!("nothing to set; give key=value pairs, e.g. routing-mode=tunnel or --set l2announcements.enabled=true");
    }
    let assignments = cilium_config::parse_assignments(args).context("nothing was changed")?;
    let Some(merged) = merge_into_stored(store, &assignments).await? else {
        println!("configmap/cilium-config unchanged");
        return Ok(false);
    };
    println!("configmap/cilium-config configured");
    if let Some(lab) = lab {
        let mode = cilium_config::CiliumConfig::from_data(&merged).routing_mode;
        rollout_restart(store, lab, &mode).await?;
    } else {
        println!("restart the operator and the agents for the change to take effect");
    }
    Ok(true)
}

/// The arguments of `config set`: bare `name=value` words, then each `--set` value split at
/// commas as Helm does (`--set a=1,b=2`).
pub fn assignment_args(pairs: &[String], set: &[String]) -> Vec<String> {
    let mut out = pairs.to_vec();
    for s in set {
        out.extend(s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string));
    }
    out
}

/// The lab's configuration at `lab up`: created with the guide's settings (native routing with
/// auto direct node routes) unless it exists; `routing_mode` switches an existing lab.
pub async fn ensure_lab_config(store: &dyn Store, lab: &lab::Lab, routing_mode: Option<&str>) -> Result<()> {
    let mode = routing_mode.unwrap_or("native");
    cilium_config::check_value("routing-mode", mode).context("--routing-mode")?;
    let adr = if mode == "tunnel" { "false" } else { "true" };
    match read_cilium_config(store, false).await? {
        None => {
            let data: BTreeMap<String, String> = [
                ("routing-mode", mode),
                ("tunnel-protocol", "vxlan"),
                ("auto-direct-node-routes", adr),
                ("ipv4-native-routing-cidr", "172.20.0.0/16"),
                ("kube-proxy-replacement", "true"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            create_if_missing(store, &data).await
        }
        Some(current) if routing_mode.is_some() && current.get("routing-mode").map(String::as_str) != Some(mode) => {
            let args = [format!("routing-mode={mode}"), format!("auto-direct-node-routes={adr}")];
            set(store, &args, Some(lab)).await.map(drop)
        }
        Some(_) => Ok(()),
    }
}

/// The guide's `kubectl rollout restart deploy cilium-operator` then `ds cilium`: one process
/// at a time, each waited for.
pub async fn rollout_restart(store: &dyn Store, lab: &lab::Lab, mode: &str) -> Result<()> {
    let started = Instant::now();
    restart(lab, "operator").await?;
    wait_for(Duration::from_secs(30), "the operator to lead again", || async {
        let lease = ObjectRef::new(&kinds::LEASE, Some("kube-system"), "cilia-operator");
        Ok(store.get(&lease).await?.is_some_and(|l| l.lookup_path("spec.holderIdentity").is_some()))
    })
    .await?;
    println!("operator restarted");
    for node in lab::nodes(lab.topology()) {
        restart(lab, &format!("agent-{}", node.name)).await?;
        let want = format!("{mode} routing");
        wait_for(Duration::from_secs(60), &format!("the agent of {} to be ready with {want}", node.name), || async {
            let node_ref = ObjectRef::new(&kinds::NODE, None, &node.name);
            let Some(obj) = store.get(&node_ref).await? else { return Ok(false) };
            let conditions: Vec<Condition> =
                obj.lookup_path("status.conditions").and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
            Ok(Condition::find(&conditions, "Ready").is_some_and(|c| c.status == "True" && c.message.contains(&want)))
        })
        .await?;
        println!("agent on {} restarted ({mode} routing)", node.name);
    }
    println!("rollout finished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn restart(lab: &lab::Lab, process: &str) -> Result<()> {
    let lab = lab.clone();
    let name = process.to_string();
    tokio::task::spawn_blocking(move || lab.restart_process(&name, Duration::from_secs(30)))
        .await?
        .with_context(|| format!("restarting {process}"))?;
    Ok(())
}

async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "probe while waiting for {what}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn pairs(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    async fn stored(store: &dyn Store) -> BTreeMap<String, String> {
        read_cilium_config(store, false).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn set_creates_merges_and_reports_unchanged() {
        let store = store::MemoryStore::new();
        assert!(set(&store, &pairs(&["routingMode=tunnel"]), None).await.unwrap());
        assert!(
            set(&store, &pairs(&["l2announcements.enabled=true", "kube-proxy-replacement=true"]), None).await.unwrap()
        );
        assert!(!set(&store, &pairs(&["enable-l2-announcements=true"]), None).await.unwrap());
        let data = stored(&store).await;
        assert_eq!(data.get("routing-mode").map(String::as_str), Some("tunnel"));
        assert_eq!(data.get("enable-l2-announcements").map(String::as_str), Some("true"));
    }

    #[tokio::test]
    async fn an_invalid_result_writes_nothing() {
        let store = store::MemoryStore::new();
        set(&store, &pairs(&["kube-proxy-replacement=false"]), None).await.unwrap();
        let before = store.get(&config_ref()).await.unwrap().unwrap();
        let e = set(&store, &pairs(&["l2announcements.enabled=true"]), None).await.unwrap_err();
        assert!(format!("{e:#}").contains("requires kube-proxy-replacement=true"), "{e:#}");
        let e = set(&store, &pairs(&["l2anouncements.enabled=true", "mtu=1400"]), None).await.unwrap_err();
        assert!(format!("{e:#}").contains("did you mean l2announcements.enabled?"), "{e:#}");
        let after = store.get(&config_ref()).await.unwrap().unwrap();
        assert_eq!(before.metadata.resource_version, after.metadata.resource_version);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_sets_keep_every_key() {
        let store: Arc<dyn Store> = Arc::new(store::MemoryStore::new());
        set(store.as_ref(), &pairs(&["routing-mode=native"]), None).await.unwrap();
        let settings = [
            "tunnel-port=8473",
            "mtu=1400",
            "autoDirectNodeRoutes=true",
            "loadBalancer.algorithm=maglev",
            "l2NeighDiscovery.enabled=false",
            "l2announcements.heartbeatInterval=150ms",
            "l2announcements.deadAfter=1s",
            "ipv4NativeRoutingCIDR=172.20.0.0/16",
        ];
        let tasks: Vec<_> = settings
            .iter()
            .map(|s| {
                let store = store.clone();
                let args = pairs(&[s]);
                tokio::spawn(async move { set(store.as_ref(), &args, None).await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().unwrap());
        }
        let data = stored(store.as_ref()).await;
        let want = cilium_config::parse_assignments(&pairs(&settings)).unwrap();
        for (k, v) in &want {
            assert_eq!(data.get(k), Some(v), "{k} lost: {data:?}");
        }
        assert_eq!(data.get("routing-mode").map(String::as_str), Some("native"));
    }

    #[test]
    fn set_flags_split_at_commas_like_helm() {
        let args =
            assignment_args(&pairs(&["mtu=1400"]), &pairs(&["kubeProxyReplacement=true,l2announcements.enabled=true"]));
        assert_eq!(args, ["mtu=1400", "kubeProxyReplacement=true", "l2announcements.enabled=true"]);
    }
}
