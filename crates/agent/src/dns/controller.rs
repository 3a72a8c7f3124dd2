//! Keeps the cluster DNS records in line with the cluster: informers on Services,
//! EndpointSlices, Pods and Namespaces feed [`Records::build`], and a changed result is published
//! to the servers with the next SOA serial. Changes within [`DEBOUNCE`] make one pass.

use std::{sync::Arc, time::Duration};

use api::{
    Object, kinds,
    types::{EndpointSlice, Pod, Service},
};
use store::{Informer, Store};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use super::records::Records;

pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// Builds the records from the informers' lists; `previous` gives the serial.
pub fn build(
    services: &[Object],
    slices: &[Object],
    pods: &[Object],
    namespaces: &[Object],
    previous: &Records,
) -> Records {
    let services: Vec<Service> = Object::typed_all(services);
    let slices: Vec<EndpointSlice> = Object::typed_all(slices);
    let pods: Vec<Pod> = Object::typed_all(pods);
    let mut r = Records::build(&services, &slices, &pods);
    r.namespaces.extend(namespaces.iter().map(|n| n.metadata.name.to_ascii_lowercase()));
    r.serial = if r.same_content(previous) { previous.serial } else { previous.serial.wrapping_add(1) };
    r
}

/// Runs until `shutdown`, publishing to `records`.
pub async fn run(store: Arc<dyn Store>, records: watch::Sender<Arc<Records>>, shutdown: CancellationToken) {
    let services = Informer::start(store.clone(), &kinds::SERVICE, None);
    let slices = Informer::start(store.clone(), &kinds::ENDPOINT_SLICE, None);
    let pods = Informer::start(store.clone(), &kinds::POD, None);
    let namespaces = Informer::start(store, &kinds::NAMESPACE, None);
    let mut subs = [services.subscribe(), slices.subscribe(), pods.subscribe(), namespaces.subscribe()];
    tokio::select! {
        () = async {
            services.wait_synced().await;
            slices.wait_synced().await;
            pods.wait_synced().await;
            namespaces.wait_synced().await;
        } => {}
        () = shutdown.cancelled() => return,
    }
    let mut due = Some(Instant::now());
    loop {
        let [a, b, c, d] = &mut subs;
        tokio::select! {
            () = shutdown.cancelled() => return,
            x = a.recv() => if x.is_none() { return } else { due.get_or_insert_with(|| Instant::now() + DEBOUNCE); },
            x = b.recv() => if x.is_none() { return } else { due.get_or_insert_with(|| Instant::now() + DEBOUNCE); },
            x = c.recv() => if x.is_none() { return } else { due.get_or_insert_with(|| Instant::now() + DEBOUNCE); },
            x = d.recv() => if x.is_none() { return } else { due.get_or_insert_with(|| Instant::now() + DEBOUNCE); },
            () = sleep_until_some(due) => {
                due = None;
                let previous = records.borrow().clone();
                let next = build(&services.snapshot(), &slices.snapshot(), &pods.snapshot(), &namespaces.snapshot(), &previous);
                if next.serial != previous.serial || !previous.built {
                    tracing::debug!(services = next.len(), serial = next.serial, "cluster DNS records updated");
                    records.send_replace(Arc::new(next));
                }
            }
        }
    }
}

async fn sleep_until_some(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
