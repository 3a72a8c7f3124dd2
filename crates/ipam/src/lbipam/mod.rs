//! LB-IPAM: assigns LoadBalancer IPs to Services from `CiliumLoadBalancerIPPool`s, with Cilium's
//! semantics (the behaviour described in `docs/lbipam.md`).
//!
//! [`LbIpam`] is a reconciler with no I/O. The caller feeds it the pools and Services it sees (the
//! whole object each time) and writes back the statuses it returns; each call returns only statuses
//! that changed, at most one per object.
//!
//! # Feeding it
//!
//! - **Start-up:** list every pool and Service and hand them over in one
//!   [`initial_sync`](LbIpam::initial_sync). Every Service first re-claims the addresses its status
//!   already shows, and only then do unsatisfied Services get new ones, so a restart never moves an
//!   address. (Fed one by one, an early Service without an address could take one that a later
//!   Service already holds: Cilium's issues #39033 and #43131.)
//! - **Afterwards:** every add or update of a pool or Service goes to `upsert_*`, every removal to
//!   `delete_*`. Writing a returned status produces another update event; feeding it back is cheap
//!   and changes nothing.
//!
//! Until the first pool exists the controller is dormant, as Cilium's: Services are remembered but
//! get no condition, so a cluster that does not use LB-IPAM sees no trace of it.
//!
//! # Where things are
//!
//! - `config`: which Services are ours (load-balancer classes).
//! - `annotations`, `families`, `service`: what a Service asks for.
//! - `pool`, `lbrange`: pools and their ranges; `conflicts`: overlapping pools.
//! - `reconcile`: the per-Service pipeline (strip, import, satisfy, publish) and when it runs.
//! - `holdings`: who holds which address; `allocate`: specific and generic requests.
//! - `sharing`: when two Services may share an address.
//! - `counts`, `conditions`, `updates`: what is written back.

mod allocate;
pub mod annotations;
pub mod conditions;
pub mod config;
mod conflicts;
mod consistency;
mod counts;
pub mod families;
mod holdings;
mod lbrange;
mod pool;
mod pool_ranges;
mod reconcile;
pub mod service;
pub mod sharing;
mod updates;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use api::types::{LbIpPool, Service};

pub use config::{BGP_CONTROL_PLANE_CLASS, Clock, DefaultLbServiceIpam, L2_ANNOUNCER_CLASS, LbIpamConfig};
pub use consistency::Inconsistency;
pub use counts::PoolCounts;
pub use updates::StatusUpdate;

use lbrange::{LbRange, RangeId};
use pool::Pool;
use service::{ServiceKey, ServiceView};
use sharing::SharingIndex;
use updates::Touched;

#[derive(Debug)]
pub struct LbIpam {
    config: LbIpamConfig,
    pools: BTreeMap<String, Pool>,
    ranges: BTreeMap<RangeId, LbRange>,
    /// Every range, in the order generic requests try them: pools oldest first, blocks as written.
    range_order: Vec<RangeId>,
    next_range: RangeId,
    /// Boxed so that moving a view in and out of the map stays cheap. A hash map: the per-event
    /// lookups do not grow with the number of Services; passes over all Services sort the keys.
    services: HashMap<ServiceKey, Box<ServiceView>>,
    /// Unsatisfied Services by queue position: the longest-waiting gets a freed address first.
    waiting: BTreeMap<u64, ServiceKey>,
    next_wait: u64,
    sharing: SharingIndex,
    /// Bumped whenever an address may have become available to a waiting Service (one was freed, a
    /// sharing group changed, pools changed). Waiting Services are retried only when it moved, so a
    /// Service event costs the same with 10 or 100 000 Services.
    epoch: u64,
    retried_at: u64,
    // The event being handled.
    now: String,
    touched: Touched,
    dirty_pools: BTreeSet<String>,
}

impl LbIpam {
    pub fn new(config: LbIpamConfig) -> Self {
        LbIpam {
            config,
            pools: BTreeMap::new(),
            ranges: BTreeMap::new(),
            range_order: Vec::new(),
            next_range: 0,
            services: HashMap::new(),
            waiting: BTreeMap::new(),
            next_wait: 0,
            sharing: SharingIndex::default(),
            epoch: 0,
            retried_at: 0,
            now: String::new(),
            touched: Touched::default(),
            dirty_pools: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &LbIpamConfig {
        &self.config
    }

    /// Start-up (spec §5.10, with the restart fixes of Cilium main): takes the current pools and
    /// Services at once. Conflicts are settled on the full set of pools, then every Service keeps
    /// the addresses its status shows that are still valid (including addresses of disabled and
    /// conflicting pools: existing allocations survive restarts), and only then are the unsatisfied
    /// Services served, longest-listed first.
    pub fn initial_sync(&mut self, pools: &[LbIpPool], services: &[Service]) -> Vec<StatusUpdate> {
        self.begin();
        for pool in pools {
            self.apply_pool(pool);
        }
        self.settle_conflicts();
        for svc in services {
            self.apply_service(svc, false);
        }
        if !self.pools.is_empty() {
            self.revalidate_all();
        }
        self.finish()
    }

    /// A pool was added or changed (§5.7). Status-only changes (our own writes coming back) only
    /// refresh the pool's conditions. A spec change settles conflicts first, so an older pool widened
    /// over a newer pool's addresses cannot hand them out twice, then revalidates every Service.
    pub fn upsert_pool(&mut self, pool: &LbIpPool) -> Vec<StatusUpdate> {
        self.begin();
        if self.apply_pool(pool) {
            self.settle_conflicts();
            self.revalidate_all();
        }
        self.finish()
    }

    /// A pool was deleted: its Services lose its addresses and are served from other pools. After
    /// the last pool, they keep a `no_pool` condition and the controller goes dormant.
    pub fn delete_pool(&mut self, name: &str) -> Vec<StatusUpdate> {
        self.begin();
        if let Some(pool) = self.pools.remove(name) {
            for range in pool.ranges {
                self.remove_range(range);
            }
            self.rebuild_range_order();
            self.settle_conflicts();
            self.revalidate_all();
        }
        self.finish()
    }

    /// A Service was added or changed (§5.1).
    pub fn upsert_service(&mut self, svc: &Service) -> Vec<StatusUpdate> {
        self.begin();
        self.apply_service(svc, true);
        self.finish()
    }

    /// A Service was deleted: its addresses are freed once no other Service shares them, and waiting
    /// Services may take them.
    pub fn delete_service(&mut self, namespace: &str, name: &str) -> Vec<StatusUpdate> {
        self.begin();
        if let Some(view) = self.services.remove(&ServiceKey::new(namespace, name)) {
            self.forget(*view);
        }
        self.finish()
    }

    /// The addresses a Service holds, in the order it got them.
    pub fn service_ips(&self, namespace: &str, name: &str) -> Vec<IpAddr> {
        self.services
            .get(&ServiceKey::new(namespace, name))
            .map(|v| v.allocated.iter().map(|a| a.ip).collect())
            .unwrap_or_default()
    }

    /// Services (namespace, name) that wait for an address, longest-waiting first.
    pub fn unsatisfied_services(&self) -> Vec<(String, String)> {
        self.waiting.values().map(|k| (k.namespace.clone(), k.name.clone())).collect()
    }

    /// Whether the pool is marked conflicting; `None` if there is no such pool.
    pub fn is_conflicting(&self, pool: &str) -> Option<bool> {
        self.pools.get(pool).map(|p| p.conflict.is_some())
    }

    fn begin(&mut self) {
        self.now = (self.config.clock)();
        self.touched = Touched::default();
        self.dirty_pools.clear();
    }

    /// Ends an event: waiting Services get a chance at freed addresses, pool counts are brought up to
    /// date, and the changed statuses are returned.
    fn finish(&mut self) -> Vec<StatusUpdate> {
        self.retry_waiting();
        for name in std::mem::take(&mut self.dirty_pools) {
            self.refresh_pool_status(&name);
        }
        let touched = std::mem::take(&mut self.touched);
        touched.finish(|k| self.services.get(k).map(|v| &v.status), |n| self.pools.get(n).map(|p| &p.status))
    }
}
