//! The operator's metrics (`:9963/metrics`, under `cilia_operator_`) and health (`/healthz`,
//! `/readyz`), on its node's address and on a root-only unix socket ([`telemetry`]).
//!
//! Ready means: leading, or standing by while another operator leads, and the datastore answers.
//! Metrics: whether this operator leads, the writes its controllers made by kind, and LB-IPAM's
//! pool usage as the pools' status conditions say it (`cilium.io/IPsTotal`, `IPsAvailable`,
//! `IPsUsed`), read from the leader's pool cache at scrape time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use api::{Condition, Object};
use ipam::lbipam::conditions::{IPS_AVAILABLE, IPS_TOTAL, IPS_USED};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;
use store::{Informer, Store};
use telemetry::{Endpoints, Health, Listen, ScrapeCollector, ScrapedFamily, ScrapedKind};
use tokio_util::sync::CancellationToken;

pub const CHECK_LEADERSHIP: &str = "leadership";
pub const CHECK_DATASTORE: &str = "datastore";
/// How often, and how patiently, the datastore is probed for readiness.
const PROBE: Duration = Duration::from_secs(1);

/// What the operator records. One operator per process.
pub static TELEMETRY: LazyLock<OperatorTelemetry> = LazyLock::new(|| OperatorTelemetry {
    health: Arc::new(Health::new(&[CHECK_LEADERSHIP, CHECK_DATASTORE])),
    leader: Gauge::default(),
    writes: Family::default(),
    pools: Mutex::new(None),
});

pub struct OperatorTelemetry {
    pub health: Arc<Health>,
    leader: Gauge,
    /// By `kind`: objects the controllers reconciled (statuses, allocations, slices).
    writes: Family<Vec<(String, String)>, Counter>,
    /// The leader's pool cache; None while standing by.
    pools: Mutex<Option<Arc<Informer>>>,
}

impl std::fmt::Debug for OperatorTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorTelemetry").field("health", &self.health).finish_non_exhaustive()
    }
}

/// Waiting for the leader Lease: ready as a standby.
pub fn standing_by() {
    let t = &*TELEMETRY;
    t.leader.set(0);
    *t.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    t.health.set(CHECK_LEADERSHIP, true, "standing by");
}

/// Holding the Lease, with the LB-IPAM pool cache to report from.
pub fn leading(pools: Arc<Informer>) {
    let t = &*TELEMETRY;
    t.leader.set(1);
    *t.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pools);
    t.health.set(CHECK_LEADERSHIP, true, "leading");
}

/// Leadership ended (lost or released); the process campaigns again.
pub fn stepped_down(why: &str) {
    let t = &*TELEMETRY;
    t.leader.set(0);
    *t.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    t.health.set(CHECK_LEADERSHIP, false, format!("not leading: {why}"));
}

/// A controller reconciled an object of `kind`.
pub fn wrote(kind: &str) {
    TELEMETRY.writes.get_or_create(&vec![("kind".into(), kind.into())]).inc();
}

pub fn registry() -> Registry {
    let t = &*TELEMETRY;
    let mut r = Registry::with_prefix("cilia_operator");
    r.register("is_leader", "1 when this operator holds the leader Lease, 0 when standing by", t.leader.clone());
    r.register(
        "reconciles",
        "Objects the controllers reconciled (written, or found already right), by kind",
        t.writes.clone(),
    );
    r.register_collector(Box::new(ScrapeCollector::new(|| {
        let pools = TELEMETRY.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut out = pool_families(&pools.map(|p| p.snapshot()).unwrap_or_default());
        out.extend(telemetry::unreadable_families(store::unreadable::objects(), store::unreadable::values_seen()));
        out
    })));
    r
}

/// `lbipam_ips_{total,available,used}{pool}` from the pools' count conditions.
pub fn pool_families(pools: &[Object]) -> Vec<ScrapedFamily> {
    let mut out = vec![
        ScrapedFamily::new("lbipam_ips_total", "Addresses of an LB-IPAM pool.", ScrapedKind::Gauge),
        ScrapedFamily::new("lbipam_ips_available", "Addresses an LB-IPAM pool can still hand out.", ScrapedKind::Gauge),
        ScrapedFamily::new("lbipam_ips_used", "Addresses of an LB-IPAM pool in use.", ScrapedKind::Gauge),
    ];
    for pool in pools {
        let conditions: Vec<Condition> =
            pool.lookup_path("status.conditions").and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
        for (family, type_) in out.iter_mut().zip([IPS_TOTAL, IPS_AVAILABLE, IPS_USED]) {
            // Counts are written as decimal messages; a pool not yet reconciled has none.
            if let Some(n) = Condition::find(&conditions, type_).and_then(|c| c.message.parse::<f64>().ok()) {
                family.samples.push((vec![("pool".into(), pool.name().to_string())], n));
            }
        }
    }
    out
}

/// Serves the endpoints and probes the datastore until `shutdown`. Failing to listen is
/// logged, never fatal.
pub async fn start(store: Arc<dyn Store>, tcp: Option<SocketAddr>, socket: PathBuf, shutdown: CancellationToken) {
    let health = TELEMETRY.health.clone();
    let registry = Arc::new(registry());
    let metrics = Arc::new(move || {
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, &registry) {
            Ok(()) => text,
            Err(e) => format!("# encoding failed: {e}\n# EOF\n"),
        }
    });
    let listen = Listen { tcp, unix: Some(socket.clone()), tls: telemetry::tls::TlsFiles::from_env() };
    match telemetry::serve(Endpoints { metrics, health: health.clone() }, &listen, shutdown.clone()).await {
        Ok(_) => tracing::info!(address = ?tcp, socket = %socket.display(), "metrics and health endpoints listening"),
        Err(e) => tracing::warn!(error = &e as &dyn std::error::Error, "metrics and health endpoints are not served"),
    }
    let mut tick = tokio::time::interval(PROBE);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        match tokio::time::timeout(PROBE, store.revision()).await {
            Ok(Ok(rev)) => health.set(CHECK_DATASTORE, true, format!("connected (revision {rev})")),
            Ok(Err(e)) => health.set(CHECK_DATASTORE, false, format!("not answering: {e}")),
            Err(_) => health.set(CHECK_DATASTORE, false, format!("no answer within {}ms", PROBE.as_millis())),
        }
    }
    // A socket left behind would read as a stopped operator rather than none.
    let _ = std::fs::remove_file(&socket);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pool_usage_comes_from_the_count_conditions() {
        let mut pool = Object::new(&api::kinds::LB_IP_POOL, None, "blue");
        pool.body.insert(
            "status".into(),
            json!({"conditions": [
                {"type": IPS_TOTAL, "status": "Unknown", "reason": "noreason", "message": "16"},
                {"type": IPS_AVAILABLE, "status": "Unknown", "reason": "noreason", "message": "13"},
                {"type": IPS_USED, "status": "Unknown", "reason": "noreason", "message": "3"}]}),
        );
        let fresh = Object::new(&api::kinds::LB_IP_POOL, None, "new");
        let families = pool_families(&[pool, fresh]);
        let blue = vec![("pool".to_string(), "blue".to_string())];
        assert_eq!(families[0].samples, [(blue.clone(), 16.0)]);
        assert_eq!(families[1].samples, [(blue.clone(), 13.0)]);
        assert_eq!(families[2].samples, [(blue, 3.0)]);
    }

    #[test]
    fn leadership_sets_readiness_and_the_gauge() {
        standing_by();
        assert!(TELEMETRY.health.report().checks[CHECK_LEADERSHIP].ok);
        assert_eq!(TELEMETRY.leader.get(), 0);
        stepped_down("lost the lease");
        let check = &TELEMETRY.health.report().checks[CHECK_LEADERSHIP];
        assert_eq!((check.ok, check.detail.as_str()), (false, "not leading: lost the lease"));
    }
}
