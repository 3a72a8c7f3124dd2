//! Why the operator, or one of its controllers, stopped or could not write. Each variant says its
//! own layer; the cause is its `source()`.

use tokio::task::JoinError;

use crate::pod_cidrs::PoolConfigError;
use crate::service_addresses::AllocError;

pub type Result<T, E = OperatorError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("invalid cluster-pool IPAM configuration")]
    PoolConfig(#[source] PoolConfigError),
    /// A datastore request that needs no more context than the store's own error gives.
    #[error(transparent)]
    Store(Box<store::Error>),
    /// A datastore request on a named object: `creating pod kube-system/cilium-x`.
    #[error("{action} {object}")]
    Write {
        action: &'static str,
        object: String,
        #[source]
        source: Box<store::Error>,
    },
    #[error("status of {object} is not JSON")]
    Encode {
        object: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    ServiceAddress(#[from] AllocError),
    #[error("the datastore returned the operator lease without a resourceVersion")]
    LeaseWithoutRevision,
    #[error("lost the operator lease; another operator may take over")]
    LeaseLost,
    #[error("a controller stopped unexpectedly")]
    ControllerStopped,
    #[error("a controller panicked")]
    ControllerPanicked(#[source] JoinError),
}

// Boxed: a store error names its object, and results of every controller carry this type.
impl From<store::Error> for OperatorError {
    fn from(e: store::Error) -> Self {
        OperatorError::Store(Box::new(e))
    }
}
