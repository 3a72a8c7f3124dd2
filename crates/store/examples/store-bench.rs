//! Measures the etcd backend on this machine: `get` latency, and the latency from a write to the
//! informer event it causes. Starts its own etcd on a unix socket in a temporary directory and
//! kills it at the end.
//!
//! Usage: `cargo run --release -p store --example store-bench [writes]` (default 2000).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use api::{Object, ObjectRef, kinds::SERVICE};
use serde_json::json;
use store::{
    Change, EtcdStore, Informer, Store,
    etcd_process::{EtcdProcess, Listen},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let writes: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().with_context(|| format!("{n:?} is not a number of writes"))?,
        None => 2000,
    };
    let dir = tempfile::Builder::new().prefix("cilia-store-bench-").tempdir()?;
    let mut etcd = EtcdProcess::spawn(dir.path(), Listen::Unix)?;
    let started = Instant::now();
    etcd.wait_ready(Duration::from_secs(30)).await?;
    println!("etcd {} ready in {:?}", etcd.url(), started.elapsed());
    let result = run(&etcd.url(), writes).await;
    etcd.kill()?;
    result
}

async fn run(url: &str, writes: usize) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(url).await?);
    let r = ObjectRef::new(&SERVICE, Some("default"), "bench");
    let mut object = Object::new(&SERVICE, Some("default"), "bench");
    object.body.insert("spec".into(), json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
    store.create(object).await?;

    let mut gets = Vec::with_capacity(writes);
    for _ in 0..writes {
        let t = Instant::now();
        store.get(&r).await?.context("the object vanished")?;
        gets.push(t.elapsed());
    }
    report("get", &mut gets);

    let informer = Informer::start(Arc::clone(&store), &SERVICE, Some("default"));
    tokio::time::timeout(Duration::from_secs(10), informer.wait_synced()).await?;
    let mut subscription = informer.subscribe();
    let (mut updates, mut events) = (Vec::with_capacity(writes), Vec::with_capacity(writes));
    for i in 0..writes {
        let mut object = informer.get(Some("default"), "bench").context("not cached")?;
        object.body.insert("status".into(), json!({"i": i}));
        let t = Instant::now();
        let written = store.update(object).await?;
        updates.push(t.elapsed());
        // Wait for this very write to come out of the informer.
        loop {
            match tokio::time::timeout(Duration::from_secs(10), subscription.recv()).await? {
                Some(Change::Event(e)) if e.object.metadata.resource_version == written.metadata.resource_version => {
                    events.push(t.elapsed());
                    break;
                }
                Some(_) => {}
                None => bail!("the informer stopped"),
            }
        }
    }
    report("update (write round trip)", &mut updates);
    report("write -> informer event", &mut events);
    Ok(())
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!("{what:<28} n={:<5} p50={:>9.3?} p99={:>9.3?} max={:>9.3?}", samples.len(), at(0.50), at(0.99), at(1.0));
}
