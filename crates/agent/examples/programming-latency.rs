//! Service programming latency on a running lab node (Kubernetes' network programming SLI): the time
//! from an EndpointSlice change in the datastore to the node's BPF maps holding it, read straight
//! from the pinned maps; then a burst of COLD new Services (each with a slice) and the time until
//! the node's maps hold all of them.
//!
//! `programming-latency DATASTORE_URL PIN_DIR [CHANGES] [COLD]`, e.g. with the lab up:
//! `programming-latency unix:///run/cilia/lab/cilia/etcd.sock /sys/fs/bpf/cilia/cilia/k8s-ctr 200 10000`
//! Objects it creates are named `bench-*` in namespace `bench` and removed at the end.

use std::{
    collections::HashSet,
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use api::{Object, ObjectRef, Selector, kinds};
use datapath::maps::PinnedMaps;
use serde_json::json;
use store::{EtcdStore, Store};

const NS: &str = "bench";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(pins)) = (args.first(), args.get(1)) else {
        return Err("usage: programming-latency DATASTORE_URL PIN_DIR [CHANGES] [COLD]".into());
    };
    let changes: u32 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(200);
    let cold: u32 = args.get(3).map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let store = EtcdStore::connect(url).await?;
    let pins = Path::new(pins);
    cleanup(&store).await?;
    let result = run(&store, pins, changes, cold).await;
    cleanup(&store).await?;
    result
}

async fn run(store: &EtcdStore, pins: &Path, changes: u32, cold: u32) -> Result<(), Box<dyn std::error::Error>> {
    // One Service whose only endpoint moves to a new address on every change.
    store.create(service("bench-lat", Ipv4Addr::new(10, 96, 255, 254))).await?;
    store.create(slice("bench-lat", endpoint_ip(0))).await?;
    wait_for_backend(pins, endpoint_ip(0), Duration::from_secs(30))?;
    let slice_ref = ObjectRef::new(&kinds::ENDPOINT_SLICE, Some(NS), "bench-lat-1");
    let mut samples = Vec::new();
    for i in 1..=changes {
        let ip = endpoint_ip(i);
        let start = Instant::now();
        store::update_with_retry(store, &slice_ref, |o| {
            o.body["endpoints"] = json!([{"addresses": [ip.to_string()], "conditions": {"ready": true}}]);
            Ok(true)
        })
        .await?;
        wait_for_backend(pins, ip, Duration::from_secs(10))?;
        samples.push(start.elapsed());
    }
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "EndpointSlice change -> BPF map updated ({changes} changes): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(50)),
        ms(pct(99)),
        ms(*samples.last().unwrap_or(&Duration::ZERO))
    );

    // A burst of new Services, each with its own cluster IP and one endpoint.
    let before = frontends(pins)?;
    let start = Instant::now();
    for i in 0..cold {
        let name = format!("bench-{i}");
        store.create(service(&name, Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 128, 0)) + i))).await?;
        store.create(slice(&name, Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 254, 0, 1)) + i))).await?;
    }
    let written = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while frontends(pins)? < before + cold as usize {
        if Instant::now() > deadline {
            return Err(format!("the node did not program {cold} services within 120 s").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let programmed = start.elapsed();
    println!(
        "{cold} new Services: written in {:.2} s, all in the BPF maps after {:.2} s ({:.0} ms after the last write)",
        written.as_secs_f64(),
        programmed.as_secs_f64(),
        ms(programmed - written)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn endpoint_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 253, 0, 1)) + i)
}

fn service(name: &str, cluster_ip: Ipv4Addr) -> Object {
    let mut o = Object::new(&kinds::SERVICE, Some(NS), name);
    o.body.insert(
        "spec".into(),
        json!({"clusterIP": cluster_ip.to_string(), "ports": [{"port": 80, "protocol": "TCP"}]}),
    );
    o
}

fn slice(service: &str, ip: Ipv4Addr) -> Object {
    let mut o = Object::new(&kinds::ENDPOINT_SLICE, Some(NS), &format!("{service}-1"));
    o.metadata.labels.insert(api::labels::SERVICE_NAME.into(), service.into());
    o.metadata.labels.insert(api::labels::ENDPOINT_SLICE_MANAGED_BY.into(), "programming-latency".into());
    o.body.insert("addressType".into(), "IPv4".into());
    o.body.insert("endpoints".into(), json!([{"addresses": [ip.to_string()], "conditions": {"ready": true}}]));
    o.body.insert("ports".into(), json!([{"port": 80, "protocol": "TCP"}]));
    o
}

/// Whether the node's backend map holds `ip` (read from the pins, as `cilia dbg` does).
fn wait_for_backend(pins: &Path, ip: Ipv4Addr, timeout: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let maps = PinnedMaps::open(pins)?;
    let deadline = Instant::now() + timeout;
    loop {
        let present: HashSet<[u8; 4]> = maps.backends.iter().filter_map(Result::ok).map(|(_, b)| b.address).collect();
        if present.contains(&ip.octets()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("backend {ip} never reached the maps in {pins:?}").into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Frontends in the node's service map (one master entry, slot 0, per frontend).
fn frontends(pins: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let maps = PinnedMaps::open(pins)?;
    Ok(maps.services.iter().filter_map(Result::ok).filter(|(k, _)| k.backend_slot == 0).count())
}

async fn cleanup(store: &EtcdStore) -> Result<(), Box<dyn std::error::Error>> {
    for kind in [&kinds::ENDPOINT_SLICE, &kinds::SERVICE] {
        for o in store.list(kind, Some(NS), &Selector::everything()).await?.items {
            if let Some(r) = o.object_ref() {
                store.delete(&r, None).await?;
            }
        }
    }
    Ok(())
}
