//! Leases: an object written with a lease disappears when the lease is not renewed in time. Node
//! membership and heartbeats build on this: a node that stops renewing drops out.

use std::{fmt, sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinHandle};

use crate::{error::Error, store::Store};

/// A lease granted by [`Store::grant_lease`] (the etcd lease ID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    /// Hexadecimal, as `etcdctl lease list` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// Renews a lease in the background until dropped, and reports when the lease is lost.
///
/// Renewal failures from an unreachable datastore are retried at the next tick: the lease is only
/// lost once the datastore says it expired, so a short outage does not count as a lost lease
/// unless it outlasts the TTL.
pub struct LeaseKeeper {
    lease: LeaseId,
    lost: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// Starts renewing `lease` every `interval` (a third of the TTL is the usual choice).
    pub fn start(store: Arc<dyn Store>, lease: LeaseId, interval: Duration) -> LeaseKeeper {
        Self::start_with_deadline(store, lease, interval, None)
    }

    /// As [`LeaseKeeper::start`], and the lease also counts as lost once no renewal has
    /// succeeded for `deadline` (shorter than the TTL): a leader steps down by its own clock
    /// before the datastore can hand the lease to someone else, even if a renewal hangs or the
    /// process was paused.
    pub fn start_with_deadline(
        store: Arc<dyn Store>,
        lease: LeaseId,
        interval: Duration,
        deadline: Option<Duration>,
    ) -> LeaseKeeper {
        let (lost_tx, lost) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut renewed = tokio::time::Instant::now();
            loop {
                ticker.tick().await;
                let left = deadline.map(|d| d.saturating_sub(renewed.elapsed()));
                if left == Some(Duration::ZERO) {
                    tracing::warn!(%lease, ?deadline, "no renewal succeeded within the deadline; giving the lease up");
                    lost_tx.send_replace(true);
                    return;
                }
                let renewal = store.keep_alive(lease);
                let outcome = match left {
                    Some(left) => tokio::time::timeout(left, renewal).await.unwrap_or_else(|_| {
                        Err(Error::Unavailable("the renewal did not finish before the deadline".into()))
                    }),
                    None => renewal.await,
                };
                match outcome {
                    Ok(_) => renewed = tokio::time::Instant::now(),
                    Err(Error::LeaseNotFound(_)) => {
                        tracing::warn!(%lease, "lease expired; its objects are gone");
                        lost_tx.send_replace(true);
                        return;
                    }
                    Err(e) => tracing::warn!(%lease, error = %e, "renewing lease failed; retrying"),
                }
            }
        });
        LeaseKeeper { lease, lost, task }
    }

    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Whether the datastore reported the lease expired.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves once the lease is lost.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        // The sender lives as long as the renewal task; if the task is gone without reporting a
        // loss it was aborted, which only happens on drop, so waiting forever is right.
        if lost.wait_for(|lost| *lost).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// TTLs are whole seconds in etcd; both backends round up so that they agree.
pub(crate) fn ttl_seconds(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_secs(2)), 2);
        assert_eq!(ttl_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn displays_as_etcdctl() {
        assert_eq!(LeaseId(0x694d7a1b2c3d4e5f).to_string(), "694d7a1b2c3d4e5f");
    }
}
