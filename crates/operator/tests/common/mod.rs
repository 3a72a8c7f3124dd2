//! Shared by the operator's tests against the in-memory datastore.

use std::time::Duration;

/// Polls `probe` until it returns `Some`, failing the test after 10 s.
pub async fn wait_for<T>(what: &str, probe: impl AsyncFnMut() -> Option<T>) -> T {
    testkit::wait_for(what, Duration::from_secs(10), probe).await
}
