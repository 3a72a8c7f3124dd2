//! Metrics and health endpoints of the agent (port 9962) and the operator (9963), as Cilium's:
//! `/metrics` in the OpenMetrics text format (prometheus-client), `/healthz` and `/readyz`.
//!
//! Each process serves them twice: on its node's address inside the node's network namespace,
//! for a Prometheus that scrapes the node, and on a root-only unix socket in the node's state
//! directory, which the CLI reads (`cilia status`, `cilia dbg NODE metrics`) without sending a
//! packet from the machine's own namespace.
//!
//! - [`health`]: the heartbeat and readiness checks a process keeps up to date;
//! - [`scrape`]: metric families computed at scrape time (map fill, counters kept in BPF maps);
//! - [`server`]: the HTTP endpoints (axum) on both listeners;
//! - [`client`]: one GET over a unix socket with a deadline, for the CLI;
//! - [`exposition`]: reading samples back from the text format.
#![forbid(unsafe_code)]

pub mod client;
pub mod exposition;
pub mod health;
pub mod scrape;
pub mod server;
pub mod tls;

pub use health::{Check, Health, HealthReport};
pub use scrape::{ScrapeCollector, ScrapedFamily, ScrapedKind, unreadable_families};
pub use server::{Endpoints, Listen, serve};

/// The agent's metrics port (Cilium's `prometheus-serve-addr` default).
pub const AGENT_PORT: u16 = 9962;
/// The operator's metrics port (Cilium's `operator-prometheus-serve-addr` default).
pub const OPERATOR_PORT: u16 = 9963;
/// File name of the agent's socket in its state directory.
pub const AGENT_SOCKET: &str = "metrics.sock";
/// File name of an operator's socket in its node's state directory.
pub const OPERATOR_SOCKET: &str = "operator-metrics.sock";
