//! `cilia operator`: the cluster-wide controllers. One operator is active per cluster; standbys wait
//! for the leader's lease to lapse (see [`leader`]).
//!
//! Every controller follows the same shape: informers (watch caches) feed events in, the controller
//! keeps what it needs in memory, and writes go back to the datastore through
//! [`store::update_with_retry`], so nothing it writes can overwrite a concurrent change.

pub mod cilium_pods;
pub mod config;
mod endpoints_controller;
pub mod error;
mod l2_policy_status;
mod lbipam;
pub mod leader;
pub mod lease_election;
pub mod metrics;
pub mod node_lifecycle;
mod pod_cidr_controller;
mod pod_cidrs;
mod service_address_controller;
mod service_addresses;
mod status;

use std::sync::Arc;

use api::kinds;
use store::{Informer, Store};
use tokio_util::sync::CancellationToken;

pub use config::OperatorConfig;
pub use error::{OperatorError, Result};
pub use pod_cidrs::PoolConfigError;
pub use service_addresses::AllocError;

/// Runs the operator until `shutdown` is cancelled or leadership is lost (the caller restarts it).
pub async fn run(store: Arc<dyn Store>, config: OperatorConfig, shutdown: CancellationToken) -> Result<()> {
    pod_cidr_controller::check_config(&config)?;
    if !store::datastore_wait::wait_ready(store.as_ref(), "operator", &shutdown).await {
        return Ok(());
    }
    metrics::standing_by();
    let leadership = tokio::select! {
        l = Leading::acquire(store.clone(), &config) => l?,
        () = shutdown.cancelled() => return Ok(()),
    };
    tracing::info!(identity = %config.identity, kubernetes = config.kubernetes, "leading; starting controllers");
    let store = leadership.writer(&store);

    let services = Arc::new(Informer::start(store.clone(), &kinds::SERVICE, None));
    let pools = Arc::new(Informer::start(store.clone(), &kinds::LB_IP_POOL, None));
    metrics::leading(pools.clone());

    let controllers = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(lbipam::run(store.clone(), pools.clone(), services.clone(), config.clone(), controllers.clone()));
    tasks.spawn(pod_cidr_controller::run(store.clone(), config.clone(), controllers.clone()));
    tasks.spawn(l2_policy_status::run(store.clone(), controllers.clone()));
    if !config.kubernetes {
        spawn_kubernetes_stand_ins(&mut tasks, &store, &services, &config, &controllers);
    }

    let outcome = tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        () = leadership.lost() => Err(OperatorError::LeaseLost),
        Some(done) = tasks.join_next() => match done {
            Ok(Ok(())) => Err(OperatorError::ControllerStopped),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(OperatorError::ControllerPanicked(e)),
        },
    };
    controllers.cancel();
    tasks.shutdown().await;
    let why = match &outcome {
        Ok(()) => "shutting down".to_string(),
        Err(e) => api::error::Chain(e).to_string(),
    };
    metrics::stepped_down(&why);
    leadership.release().await;
    outcome
}

/// What Kubernetes' own controllers do, for the etcd control plane that has none: cluster IPs
/// and node ports, EndpointSlices from pod readiness, node lifecycle, and the `cilium` pods'
/// mirror. On Kubernetes, kube-apiserver and kube-controller-manager do these.
fn spawn_kubernetes_stand_ins(
    tasks: &mut tokio::task::JoinSet<Result<()>>,
    store: &Arc<dyn Store>,
    services: &Arc<Informer>,
    config: &OperatorConfig,
    controllers: &CancellationToken,
) {
    tasks.spawn(service_address_controller::run(store.clone(), services.clone(), config.clone(), controllers.clone()));
    let pods = Arc::new(Informer::start(store.clone(), &kinds::POD, None));
    let slices = Arc::new(Informer::start(store.clone(), &kinds::ENDPOINT_SLICE, None));
    let nodes = Arc::new(Informer::start(store.clone(), &kinds::NODE, None));
    tasks.spawn(endpoints_controller::run(
        store.clone(),
        services.clone(),
        pods,
        slices,
        nodes.clone(),
        controllers.clone(),
    ));
    tasks.spawn(cilium_pods::run(store.clone(), nodes.clone(), config.identity.clone(), controllers.clone()));
    tasks.spawn(node_lifecycle::run(store.clone(), nodes, controllers.clone()));
}

/// The leadership this operator holds: on etcd a TTL lease with fenced writes ([`leader`]), on
/// Kubernetes a `coordination.k8s.io` Lease ([`lease_election`]).
enum Leading {
    Etcd(leader::Leadership),
    Lease(lease_election::LeaseLeadership),
}

impl Leading {
    async fn acquire(store: Arc<dyn Store>, config: &OperatorConfig) -> Result<Leading> {
        Ok(if config.kubernetes {
            Leading::Lease(lease_election::acquire(store, &config.identity, config.lease_ttl).await?)
        } else {
            Leading::Etcd(leader::acquire(store, &config.identity, config.lease_ttl).await?)
        })
    }

    /// The store the controllers write through: on etcd, fenced, so that every write is refused
    /// once another operator took the lease.
    fn writer(&self, store: &Arc<dyn Store>) -> Arc<dyn Store> {
        match self {
            Leading::Etcd(l) => store.fenced(l.fence()),
            Leading::Lease(_) => store.clone(),
        }
    }

    async fn lost(&self) {
        match self {
            Leading::Etcd(l) => l.lost().await,
            Leading::Lease(l) => l.lost().await,
        }
    }

    async fn release(self) {
        match self {
            Leading::Etcd(l) => l.release().await,
            Leading::Lease(l) => l.release().await,
        }
    }
}
