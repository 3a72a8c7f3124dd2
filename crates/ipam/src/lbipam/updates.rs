//! The statuses one event changes, as the caller must write them.

use std::collections::HashMap;

use api::types::{LbIpPoolStatus, ServiceStatus};

use super::service::ServiceKey;

/// A status to write back, replacing the object's whole `status`.
#[derive(Clone, Debug, PartialEq)]
pub enum StatusUpdate {
    Service { namespace: String, name: String, status: ServiceStatus },
    Pool { name: String, status: LbIpPoolStatus },
}

/// Remembers each object's status from before the event, so that only real changes are returned,
/// once per object, in the order objects were first touched.
#[derive(Debug, Default)]
pub struct Touched {
    services: Vec<ServiceKey>,
    service_before: HashMap<ServiceKey, ServiceStatus>,
    pools: Vec<String>,
    pool_before: HashMap<String, LbIpPoolStatus>,
    /// Services that left LB-IPAM's care in this event; their final status is known already.
    released: Vec<(ServiceKey, ServiceStatus)>,
}

impl Touched {
    /// Records the status of a Service about to be changed, unless already recorded in this event.
    pub fn service(&mut self, key: &ServiceKey, before: &ServiceStatus) {
        if !self.service_before.contains_key(key) {
            self.service_before.insert(key.clone(), before.clone());
            self.services.push(key.clone());
        }
    }

    pub fn pool(&mut self, name: &str, before: &LbIpPoolStatus) {
        if !self.pool_before.contains_key(name) {
            self.pool_before.insert(name.to_string(), before.clone());
            self.pools.push(name.to_string());
        }
    }

    pub fn released(&mut self, key: ServiceKey, status: ServiceStatus) {
        self.released.push((key, status));
    }

    /// The updates: each touched object whose status now differs, looked up with the given
    /// functions (objects that no longer exist are skipped).
    pub fn finish<'a>(
        self,
        service_now: impl Fn(&ServiceKey) -> Option<&'a ServiceStatus>,
        pool_now: impl Fn(&str) -> Option<&'a LbIpPoolStatus>,
    ) -> Vec<StatusUpdate> {
        let mut out = Vec::new();
        for key in &self.services {
            if let Some(now) = service_now(key)
                && Some(now) != self.service_before.get(key)
            {
                out.push(StatusUpdate::Service {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    status: now.clone(),
                });
            }
        }
        for (key, status) in self.released {
            out.push(StatusUpdate::Service { namespace: key.namespace, name: key.name, status });
        }
        for name in &self.pools {
            if let Some(now) = pool_now(name)
                && Some(now) != self.pool_before.get(name)
            {
                out.push(StatusUpdate::Pool { name: name.clone(), status: now.clone() });
            }
        }
        out
    }
}
