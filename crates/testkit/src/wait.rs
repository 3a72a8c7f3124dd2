//! Waiting for a condition: polled at [`POLL`] until it holds or the deadline passes. The
//! `wait_until*` forms return whether it held (for tests that say more on failure); `eventually`
//! and `wait_for` fail the test, naming what they waited for.

use std::time::{Duration, Instant};

/// How often a condition is polled: short next to any deadline, long next to a cheap probe.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `cond` until it holds; fails the test after `timeout`, naming `what`.
pub fn eventually(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    assert!(wait_until(timeout, cond), "timed out after {timeout:?} waiting for {what}");
}

/// [`wait_until`] for an async condition, sleeping on the tokio clock.
pub async fn wait_until_async(timeout: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `probe` until it returns `Some`, and returns that; fails the test after `timeout`,
/// naming `what`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn a_condition_that_comes_true_is_seen_and_one_that_never_does_times_out() {
        let calls = Cell::new(0);
        assert!(wait_until(Duration::from_secs(5), || {
            calls.set(calls.get() + 1);
            calls.get() == 3
        }));
        assert_eq!(calls.get(), 3);
        let started = Instant::now();
        assert!(!wait_until(Duration::from_millis(60), || false));
        assert!(started.elapsed() >= Duration::from_millis(60));
    }

    #[test]
    #[should_panic(expected = "waiting for the impossible")]
    fn eventually_names_what_it_waited_for() {
        eventually("the impossible", Duration::from_millis(30), || false);
    }

    #[tokio::test]
    async fn the_async_forms_return_the_probe_and_time_out() {
        let mut n = 0;
        let got = wait_for("the third try", Duration::from_secs(5), async || {
            n += 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(got, 3);
        assert!(!wait_until_async(Duration::from_millis(30), || async { false }).await);
    }
}
