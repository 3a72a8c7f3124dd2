//! The task that fills the [`FlowHub`]: a thread blocked on the datapath's event ring buffer
//! (poll on its fd, so an idle node costs nothing), turning each batch into flows with the
//! current [`Directory`], and an async loop that rebuilds the directory when pods, Services or
//! nodes change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use api::error::Chain;
use api::{Object, kinds, types::Pod, types::Service};
use datapath::{EventMaps, EventReader, EventsLevel, events};
use store::{Informer, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::FlowHub;
use super::directory::Directory;
use super::enrich;
use super::interfaces::InterfaceNames;
use crate::node_view::NodeView;

/// Longest a batch waits in the poll: the datapath does not wake the reader for each event, so
/// this is the longest a flow waits before followers see it (and how soon a shutdown is seen).
const POLL: Duration = Duration::from_millis(datapath::events_abi::EVENTS_POLL_MS);
/// Records taken per batch.
const BATCH: usize = 1024;
/// How often the kernel's lost-events counter is read.
const LOST_CHECK: Duration = Duration::from_secs(1);
/// Changes to the cluster's objects within this window make one directory rebuild.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Runs until `shutdown`: reads the events of the datapath pinned in `bpf_dir` at `level` into
/// `hub`. A datapath without events (pins missing) is logged once and leaves the hub empty.
pub async fn run(
    store: Arc<dyn Store>,
    hub: Arc<FlowHub>,
    bpf_dir: PathBuf,
    level: EventsLevel,
    shutdown: CancellationToken,
) {
    let opened = EventReader::open(&bpf_dir).and_then(|r| Ok((r, EventMaps::open(&bpf_dir)?)));
    let (reader, mut maps) = match opened {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(pins = %bpf_dir.display(), error = %Chain(&e), "no flow events: the datapath's event maps cannot be opened");
            return;
        }
    };
    if let Err(e) = maps.set_level(level) {
        tracing::warn!(error = %Chain(&e), "cannot set the datapath's events level; flows may stay empty");
    }
    tracing::info!(?level, pins = %bpf_dir.display(), "flow buffer reading datapath events");
    hub.set_reading(true);

    let (dir_tx, dir_rx) = watch::channel(Arc::new(Directory::build(hub.node_name(), &[], &[], &[])));
    let thread_hub = hub.clone();
    let thread_stop = shutdown.clone();
    let thread = tokio::task::spawn_blocking(move || read_loop(reader, maps, thread_hub, dir_rx, thread_stop));
    maintain_directory(store, hub.node_name().to_string(), dir_tx, shutdown).await;
    match thread.await {
        Ok(mut maps) => {
            // Nobody reads any more: stop writing events (the counters go on).
            if let Err(e) = maps.set_level(EventsLevel::Off) {
                tracing::warn!(error = %Chain(&e), "cannot turn the datapath's events off");
            }
        }
        Err(e) => tracing::error!(error = %Chain(&e), "the flow event reader failed"),
    }
    hub.set_reading(false);
}

fn read_loop(
    mut reader: EventReader,
    maps: EventMaps,
    hub: Arc<FlowHub>,
    dir: watch::Receiver<Arc<Directory>>,
    stop: CancellationToken,
) -> EventMaps {
    let mut next_lost_check = Instant::now();
    let mut failures = 0u32;
    // This thread is in the node's network namespace, as the whole agent: the devices the
    // datapath's programs run on are named here.
    let mut interfaces = InterfaceNames::from_kernel();
    while !stop.is_cancelled() {
        match reader.read(POLL, BATCH) {
            Ok(batch) => {
                failures = 0;
                if batch.undecodable > 0 {
                    hub.add_undecodable(batch.undecodable);
                }
                if !batch.events.is_empty() {
                    let now_mono = datapath::maps::monotonic_ns();
                    let now_unix = unix_ns();
                    let now = Instant::now();
                    let directory = dir.borrow().clone();
                    // built before the ring is locked, so readers of the ring never wait for it
                    let flows: Vec<_> = batch
                        .events
                        .iter()
                        .map(|ev| {
                            let at = events::monotonic_to_unix_ns(ev.monotonic_ns, now_mono, now_unix);
                            let ifname = interfaces.name(ev.ifindex, now);
                            let mut flow = enrich::to_flow(ev, &directory, at, ifname);
                            flow.uuid = uuid_v4();
                            flow
                        })
                        .collect();
                    hub.publish_all(flows);
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(error = %Chain(&e), failures, "reading flow events failed");
                }
                std::thread::sleep(POLL);
            }
        }
        if Instant::now() >= next_lost_check {
            next_lost_check = Instant::now() + LOST_CHECK;
            match maps.events_lost() {
                Ok(total) => {
                    let grew = hub.set_events_lost(total);
                    if grew > 0 {
                        tracing::warn!(lost = grew, total, "flow events lost: the datapath's ring buffer was full");
                    }
                }
                Err(e) => tracing::debug!(error = %Chain(&e), "cannot read the lost-events counter"),
            }
        }
    }
    maps
}

/// Rebuilds the directory from pods, Services and nodes whenever they change.
async fn maintain_directory(
    store: Arc<dyn Store>,
    node_name: String,
    tx: watch::Sender<Arc<Directory>>,
    shutdown: CancellationToken,
) {
    let pods = Informer::start(store.clone(), &kinds::POD, None);
    let services = Informer::start(store.clone(), &kinds::SERVICE, None);
    let nodes = Informer::start(store, &kinds::NODE, None);
    let mut subs = [pods.subscribe(), services.subscribe(), nodes.subscribe()];
    loop {
        let node_views: Vec<NodeView> = nodes.snapshot().iter().map(NodeView::of).collect();
        let pod_list: Vec<Pod> = Object::typed_all(&pods.snapshot());
        let service_list: Vec<Service> = Object::typed_all(&services.snapshot());
        let _ = tx.send(Arc::new(Directory::build(&node_name, &pod_list, &service_list, &node_views)));
        let [a, b, c] = &mut subs;
        tokio::select! {
            _ = a.recv() => {}
            _ = b.recv() => {}
            _ = c.recv() => {}
            () = shutdown.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(DEBOUNCE) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A random (version 4) UUID, as Hubble gives each flow.
fn uuid_v4() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = rand::random::<u128>().to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uuid_v4;

    #[test]
    fn uuids_have_the_version_4_form_and_differ() {
        let a = uuid_v4();
        assert_eq!(a.len(), 36);
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{a}");
        assert_eq!(&a[14..15], "4", "{a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, uuid_v4());
    }
}
