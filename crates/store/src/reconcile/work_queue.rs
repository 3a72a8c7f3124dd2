//! The queue of a per-object controller ([`super::KeyedRunner`]): each key at most once, with the
//! instant it is due, and the failures in a row of the keys whose last work failed.
//!
//! A key asked for again while queued stays queued once, at the earlier of its two instants, so a
//! burst of changes to one object costs one piece of work and a change never waits for a retry's
//! pause. Keys are taken in the order they are due, keys due together in key order.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::{Duration, Instant};

use super::Backoff;

pub(crate) struct WorkQueue<K> {
    /// When each queued key is due.
    due: BTreeMap<K, Instant>,
    /// The same entries ordered by time, to find the next one.
    by_time: BTreeSet<(Instant, K)>,
    /// Failures in a row per key whose last work failed.
    failures: BTreeMap<K, u32>,
}

impl<K: Ord + Clone> WorkQueue<K> {
    pub(crate) fn new() -> Self {
        WorkQueue { due: BTreeMap::new(), by_time: BTreeSet::new(), failures: BTreeMap::new() }
    }

    /// Queues `key` for `at`; a key already queued keeps the earlier of the two instants.
    pub(crate) fn add(&mut self, key: K, at: Instant) {
        match self.due.get(&key) {
            Some(&queued) if queued <= at => {}
            Some(&queued) => {
                self.by_time.remove(&(queued, key.clone()));
                self.by_time.insert((at, key.clone()));
                self.due.insert(key, at);
            }
            None => {
                self.by_time.insert((at, key.clone()));
                self.due.insert(key, at);
            }
        }
    }

    /// When the first queued key is due; None when the queue is empty.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Takes the first key if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (at, _) = self.by_time.first()?;
        if *at > now {
            return None;
        }
        let (_, key) = self.by_time.pop_first()?;
        self.due.remove(&key);
        Some(key)
    }

    /// Forgets the failures of `key`, whose work succeeded.
    pub(crate) fn succeeded(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Counts a failure of `key`; returns its failures in a row and the pause before its retry.
    pub(crate) fn failed(&mut self, key: &K, backoff: &Backoff) -> (u32, Duration) {
        let failures = self.failures.entry(key.clone()).or_insert(0);
        *failures = failures.saturating_add(1);
        (*failures, backoff.after(*failures))
    }

    /// The most failures in a row of any one key; zero when none is failing.
    pub(crate) fn most_failures(&self) -> u32 {
        self.failures.values().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn drain(queue: &mut WorkQueue<&'static str>, now: Instant) -> Vec<&'static str> {
        std::iter::from_fn(|| queue.pop_due(now)).collect()
    }

    #[test]
    fn a_key_is_queued_once_at_its_earliest_instant() {
        let t0 = Instant::now();
        let mut queue = WorkQueue::new();
        queue.add("b", t0 + secs(5));
        queue.add("b", t0 + secs(9));
        queue.add("a", t0 + secs(3));
        queue.add("b", t0 + secs(1));
        assert_eq!(queue.next_due(), Some(t0 + secs(1)));
        assert_eq!(drain(&mut queue, t0), Vec::<&str>::new(), "nothing is due yet");
        assert_eq!(drain(&mut queue, t0 + secs(10)), ["b", "a"], "each key once, in the order they are due");
        assert_eq!(queue.next_due(), None);
    }

    #[test]
    fn keys_due_together_come_in_key_order() {
        let t0 = Instant::now();
        let mut queue = WorkQueue::new();
        for key in ["c", "a", "b"] {
            queue.add(key, t0);
        }
        assert_eq!(drain(&mut queue, t0), ["a", "b", "c"]);
    }

    #[test]
    fn failures_count_per_key_and_a_success_starts_over() {
        let backoff = Backoff { first: secs(1), max: secs(4) };
        let mut queue = WorkQueue::new();
        assert_eq!(queue.failed(&"a", &backoff), (1, secs(1)));
        assert_eq!(queue.failed(&"a", &backoff), (2, secs(2)));
        assert_eq!(queue.failed(&"b", &backoff), (1, secs(1)), "b's pause does not follow a's");
        assert_eq!(queue.failed(&"a", &backoff), (3, secs(4)));
        assert_eq!(queue.failed(&"a", &backoff), (4, secs(4)), "capped");
        assert_eq!(queue.most_failures(), 4);
        queue.succeeded(&"a");
        assert_eq!(queue.most_failures(), 1, "b still fails");
        assert_eq!(queue.failed(&"a", &backoff), (1, secs(1)), "the first pause again after a success");
    }
}
