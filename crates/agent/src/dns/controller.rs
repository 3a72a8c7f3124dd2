//! Keeps the cluster DNS records in line with the cluster: informers on Services,
//! EndpointSlices, Pods and Namespaces feed [`Records::build`], and a changed result is published
//! to the servers with the next SOA serial. Changes within [`DEBOUNCE`] make one pass.

use std::{convert::Infallible, sync::Arc, time::Duration};

use api::{
    Object, kinds,
    types::{EndpointSlice, Pod, Service},
};
use store::{
    Informer, Store,
    reconcile::{Outcome, Reconcile, Runner},
};
use tokio::sync::watch;
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

/// The controller's state: the informers it builds from and where the records go.
struct DnsController {
    services: Informer,
    slices: Informer,
    pods: Informer,
    namespaces: Informer,
    records: watch::Sender<Arc<Records>>,
}

impl Reconcile for DnsController {
    type Error = Infallible;

    async fn pass(&mut self) -> Result<Outcome, Infallible> {
        let previous = self.records.borrow().clone();
        let next = build(
            &self.services.snapshot(),
            &self.slices.snapshot(),
            &self.pods.snapshot(),
            &self.namespaces.snapshot(),
            &previous,
        );
        if next.serial != previous.serial || !previous.built {
            tracing::debug!(services = next.len(), serial = next.serial, "cluster DNS records updated");
            self.records.send_replace(Arc::new(next));
        }
        Ok(Outcome::Done)
    }
}

/// Runs until `shutdown`, publishing to `records`.
pub async fn run(store: Arc<dyn Store>, records: watch::Sender<Arc<Records>>, shutdown: CancellationToken) {
    let controller = DnsController {
        services: Informer::start(store.clone(), &kinds::SERVICE, None),
        slices: Informer::start(store.clone(), &kinds::ENDPOINT_SLICE, None),
        pods: Informer::start(store.clone(), &kinds::POD, None),
        namespaces: Informer::start(store, &kinds::NAMESPACE, None),
        records,
    };
    Runner::new("dns")
        .debounce(DEBOUNCE)
        .watch(&controller.services)
        .watch(&controller.slices)
        .watch(&controller.pods)
        .watch(&controller.namespaces)
        .run_until_cancelled(controller, shutdown)
        .await;
}
