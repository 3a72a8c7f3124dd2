//! `cilia config view|set`: the stored configuration `kube-system/cilium-config`, with Cilium's
//! key names, like `cilium config view` and the guide's `helm upgrade --set ...` followed by
//! `kubectl rollout restart` of the operator and the agents.
//!
//! `set` checks every `key=value` and the resulting configuration before writing anything, then
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

/// `cilia config view`: `key  value` lines of the effective settings.
pub async fn view(store: &dyn Store) -> Result<()> {
    let data = read_cilium_config(store, false).await?.unwrap_or_default();
    print!("{}", cilium_config::view(&data));
    Ok(())
}

/// Writes `data` as the whole of cilium-config's data (creating it if missing).
async fn write(store: &dyn Store, data: &BTreeMap<String, String>) -> Result<()> {
    let value = serde_json::to_value(data).expect("a string map serializes");
    if store.get(&config_ref()).await?.is_none() {
        let mut obj = Object::new(&kinds::CONFIG_MAP, Some(cilium_config::NAMESPACE), cilium_config::NAME);
        obj.body.insert("data".into(), value.clone());
        match store.create(obj).await {
            Ok(_) => return Ok(()),
            Err(store::Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e).context("creating kube-system/cilium-config"),
        }
    }
    store::update_with_retry(store, &config_ref(), |o| {
        let changed = o.body.get("data") != Some(&value);
        o.body.insert("data".into(), value.clone());
        Ok(changed)
    })
    .await
    .context("updating kube-system/cilium-config")?;
    Ok(())
}

/// `cilia config set k=v ...`: returns whether the configuration changed.
pub async fn set(store: &dyn Store, args: &[String], lab: Option<&lab::Lab>) -> Result<bool> {
    if args.is_empty() {
        bail!("nothing to set; give key=value pairs, e.g. routing-mode=tunnel");
    }
    let assignments = cilium_config::parse_assignments(args).context("nothing was changed")?;
    let current = read_cilium_config(store, false).await?.unwrap_or_default();
    let mut merged = current.clone();
    merged.extend(assignments);
    cilium_config::check(&merged).context("nothing was changed")?;
    if merged == current {
        println!("configmap/cilium-config unchanged");
        return Ok(false);
    }
    write(store, &merged).await?;
    println!("configmap/cilium-config configured");
    if let Some(lab) = lab {
        let mode = cilium_config::CiliumConfig::from_data(&merged).routing_mode;
        rollout_restart(store, lab, &mode).await?;
    } else {
        println!("restart the operator and the agents for the change to take effect");
    }
    Ok(true)
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
            write(store, &data).await
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
