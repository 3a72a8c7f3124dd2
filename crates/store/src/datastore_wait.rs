//! Waiting for the datastore at start. In the lab every process starts together with etcd, so
//! the first probes find no socket: that is expected and said at INFO, once and then every 15 s,
//! not as an error.

use std::time::{Duration, Instant};

use crate::Store;
use tokio_util::sync::CancellationToken;

/// How often a wait that goes on is reported.
pub const REPORT_EVERY: Duration = Duration::from_secs(15);

/// Probes the datastore until it answers; `false` if `shutdown` comes first. `who` names the
/// process in the log lines.
pub async fn wait_ready(store: &dyn Store, who: &str, shutdown: &CancellationToken) -> bool {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut next_report = started;
    let mut waited = false;
    loop {
        let probe = tokio::select! {
            r = store.revision() => r,
            () = shutdown.cancelled() => return false,
        };
        match probe {
            Ok(_) => {
                if waited {
                    tracing::info!(who, waited = ?started.elapsed(), "the datastore answers");
                }
                return true;
            }
            Err(e) if e.is_retryable() => {
                if Instant::now() >= next_report {
                    tracing::info!(who, waited = ?started.elapsed(), reason = %e, "waiting for the datastore");
                    next_report = Instant::now() + REPORT_EVERY;
                }
                waited = true;
            }
            Err(e) => {
                // Not a matter of waiting (bad URL, refused credentials): said as it is, and retried.
                tracing::warn!(who, error = %e, "the datastore refuses; retrying");
                waited = true;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return false,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn returns_once_the_datastore_answers_or_on_shutdown() {
        let store: Arc<dyn Store> = Arc::new(crate::MemoryStore::new());
        assert!(wait_ready(store.as_ref(), "test", &CancellationToken::new()).await);
        let url = format!("unix:///run/cilia-no-such-dir-{}/none.sock", std::process::id());
        let absent = crate::EtcdStore::connect(&url).await.unwrap();
        let shutdown = CancellationToken::new();
        let cancel = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel();
        });
        assert!(!wait_ready(&absent, "test", &shutdown).await);
    }
}
