//! A tiny datastore around the controller: objects are stored, events are fed, returned statuses are
//! written back, and the write's own update event is fed back too (it must change nothing). After
//! every step the controller's bookkeeping is checked.

use std::collections::BTreeMap;
use std::net::IpAddr;

use api::Condition;
use api::types::{IpBlock, LbIpPool, Service, ServicePort};
use api::{LabelSelector, ObjectMeta};
use ipam::lbipam::conditions::REQUEST_SATISFIED;
use ipam::{LbIpam, LbIpamConfig, StatusUpdate};

pub const T0: &str = "2022-10-16T12:00:00Z";

pub fn config_v4() -> LbIpamConfig {
    LbIpamConfig { bgp_control_plane: true, l2_announcements: true, ..LbIpamConfig::default() }.with_fixed_time(T0)
}

pub fn config_dual() -> LbIpamConfig {
    LbIpamConfig { ipv6: true, ..config_v4() }
}

pub fn pool(name: &str, cidrs: &[&str]) -> LbIpPool {
    LbIpPool {
        api_version: "cilium.io/v2".into(),
        kind: "CiliumLoadBalancerIPPool".into(),
        metadata: ObjectMeta { name: name.into(), creation_timestamp: Some(T0.into()), ..Default::default() },
        spec: api::types::LbIpPoolSpec {
            blocks: cidrs.iter().map(|c| IpBlock { cidr: Some(c.to_string()), ..Default::default() }).collect(),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn selector(pairs: &[(&str, &str)]) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    })
}

/// A LoadBalancer Service in `default` with no ports.
pub fn svc(name: &str) -> Service {
    Service {
        api_version: "v1".into(),
        kind: "Service".into(),
        metadata: ObjectMeta { name: name.into(), namespace: Some("default".into()), ..Default::default() },
        spec: api::types::ServiceSpec { type_: Some("LoadBalancer".into()), ..Default::default() },
        ..Default::default()
    }
}

pub fn port(p: i64, protocol: &str) -> ServicePort {
    ServicePort { port: p, protocol: Some(protocol.into()), ..Default::default() }
}

pub fn annotate(mut s: Service, key: &str, value: &str) -> Service {
    s.metadata.annotations.insert(key.into(), value.into());
    s
}

pub fn label(mut s: Service, key: &str, value: &str) -> Service {
    s.metadata.labels.insert(key.into(), value.into());
    s
}

pub fn in_ns(mut s: Service, ns: &str) -> Service {
    s.metadata.namespace = Some(ns.into());
    s
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub struct Cluster {
    pub ipam: LbIpam,
    pub pools: BTreeMap<String, LbIpPool>,
    pub services: BTreeMap<(String, String), Service>,
    /// Every update returned, in order.
    pub log: Vec<StatusUpdate>,
    /// Feed each written status back as an update event and require it to change nothing.
    pub check_echo: bool,
}

impl Cluster {
    pub fn new(config: LbIpamConfig) -> Self {
        Cluster {
            ipam: LbIpam::new(config),
            pools: BTreeMap::new(),
            services: BTreeMap::new(),
            log: Vec::new(),
            check_echo: true,
        }
    }

    pub fn v4() -> Self {
        Cluster::new(config_v4())
    }

    pub fn dual() -> Self {
        Cluster::new(config_dual())
    }

    /// Writes updates to the stored objects; returns the objects that changed, to echo.
    fn write(&mut self, updates: Vec<StatusUpdate>) -> (Vec<LbIpPool>, Vec<Service>) {
        let (mut pools, mut services) = (Vec::new(), Vec::new());
        for update in updates {
            self.log.push(update.clone());
            match update {
                StatusUpdate::Service { namespace, name, status } => {
                    if let Some(s) = self.services.get_mut(&(namespace, name)) {
                        s.status = status;
                        services.push(s.clone());
                    }
                }
                StatusUpdate::Pool { name, status } => {
                    if let Some(p) = self.pools.get_mut(&name) {
                        p.status = status;
                        pools.push(p.clone());
                    }
                }
            }
        }
        (pools, services)
    }

    pub fn handle(&mut self, updates: Vec<StatusUpdate>) {
        let (pools, services) = self.write(updates);
        self.ipam.check_consistency().unwrap();
        if self.check_echo {
            for p in pools {
                let again = self.ipam.upsert_pool(&p);
                assert!(again.is_empty(), "echo of pool {} changed {again:#?}", p.metadata.name);
            }
            for s in services {
                let again = self.ipam.upsert_service(&s);
                assert!(again.is_empty(), "echo of service {} changed {again:#?}", s.metadata.name);
            }
            self.ipam.check_consistency().unwrap();
        }
    }

    pub fn apply_pool(&mut self, mut p: LbIpPool) {
        let name = p.metadata.name.clone();
        let old = self.pools.get(&name);
        let generation = match old {
            Some(o) if o.spec == p.spec => o.metadata.generation,
            Some(o) => Some(o.metadata.generation.unwrap_or(1) + 1),
            None => Some(1),
        };
        p.metadata.generation = generation;
        if let Some(o) = old {
            p.status = o.status.clone();
        }
        self.pools.insert(name, p.clone());
        let updates = self.ipam.upsert_pool(&p);
        self.handle(updates);
    }

    pub fn delete_pool(&mut self, name: &str) {
        self.pools.remove(name);
        let updates = self.ipam.delete_pool(name);
        self.handle(updates);
    }

    pub fn apply_svc(&mut self, mut s: Service) {
        let key = (s.metadata.namespace.clone().unwrap_or_else(|| "default".into()), s.metadata.name.clone());
        let old = self.services.get(&key);
        s.metadata.generation = match old {
            Some(o) if o.spec == s.spec => o.metadata.generation,
            Some(o) => Some(o.metadata.generation.unwrap_or(1) + 1),
            None => Some(1),
        };
        if let Some(o) = old {
            s.status = o.status.clone();
        }
        self.services.insert(key, s.clone());
        let updates = self.ipam.upsert_service(&s);
        self.handle(updates);
    }

    pub fn delete_svc(&mut self, ns: &str, name: &str) {
        self.services.remove(&(ns.into(), name.into()));
        let updates = self.ipam.delete_service(ns, name);
        self.handle(updates);
    }

    pub fn get(&self, name: &str) -> &Service {
        self.get_in("default", name)
    }

    pub fn get_in(&self, ns: &str, name: &str) -> &Service {
        &self.services[&(ns.to_string(), name.to_string())]
    }

    /// The Service as stored, for changing and re-applying.
    pub fn edit(&self, name: &str) -> Service {
        self.get(name).clone()
    }

    pub fn ingress_in(&self, ns: &str, name: &str) -> Vec<IpAddr> {
        self.get_in(ns, name)
            .status
            .load_balancer
            .ingress
            .iter()
            .map(|i| i.ip.as_deref().unwrap().parse().unwrap())
            .collect()
    }

    pub fn ingress(&self, name: &str) -> Vec<IpAddr> {
        self.ingress_in("default", name)
    }

    pub fn condition_in(&self, ns: &str, name: &str) -> Option<Condition> {
        Condition::find(&self.get_in(ns, name).status.conditions, REQUEST_SATISFIED).cloned()
    }

    pub fn condition(&self, name: &str) -> Option<Condition> {
        self.condition_in("default", name)
    }

    /// (status, reason) of the Service's condition.
    pub fn satisfied(&self, name: &str) -> (String, String) {
        let c = self.condition(name).expect("no IPAMRequestSatisfied condition");
        (c.status, c.reason)
    }

    pub fn pool_condition(&self, pool: &str, type_: &str) -> Option<Condition> {
        Condition::find(&self.pools[pool].status.conditions, type_).cloned()
    }

    /// (IPsTotal, IPsAvailable, IPsUsed) as written in the pool's status.
    pub fn counts(&self, pool: &str) -> (String, String, String) {
        let m = |t: &str| self.pool_condition(pool, t).map(|c| c.message).unwrap_or_default();
        (m("cilium.io/IPsTotal"), m("cilium.io/IPsAvailable"), m("cilium.io/IPsUsed"))
    }

    pub fn conflicting(&self, pool: &str) -> Option<String> {
        self.pool_condition(pool, "cilium.io/PoolConflict").map(|c| c.status)
    }

    /// A fresh controller given the stored objects at once, as after an operator restart.
    pub fn restart(&self, config: LbIpamConfig) -> (LbIpam, Vec<StatusUpdate>) {
        let mut fresh = LbIpam::new(config);
        let pools: Vec<LbIpPool> = self.pools.values().cloned().collect();
        let services: Vec<Service> = self.services.values().cloned().collect();
        let updates = fresh.initial_sync(&pools, &services);
        fresh.check_consistency().unwrap();
        (fresh, updates)
    }
}
