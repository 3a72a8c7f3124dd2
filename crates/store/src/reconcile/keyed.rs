//! The loop of a controller that acts per object, in the style of kube-rs's
//! `runtime::Controller`: triggers (informer changes, watch channels, timers) map to the keys of
//! the objects they concern, a [`WorkQueue`] holds each key once, and the controller's
//! [`ReconcileKey::reconcile`] brings one object in line at a time.
//!
//! - when all watched informers have synced, every key the controller knows
//!   ([`ReconcileKey::all_keys`]) is queued;
//! - a trigger queues the keys it names after the debounce window, or every key
//!   ([`Enqueue::All`]); a key already queued stays queued once, at its earlier instant;
//! - work on one key never overlaps work on another (the state is the controller's alone), so a
//!   key is never worked on twice at once; a change that arrives during its work queues it again;
//! - a key whose work asks for [`Outcome::Retry`] is queued again after its own backoff, which
//!   doubles on each of its failures in a row; other keys do not wait for it;
//! - [`Outcome::RequeueAfter`] queues the key again later even without changes.

use std::{convert::Infallible, fmt::Debug, future::Future};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Outcome, Runner, sleep_until_some, work_queue::WorkQueue};

/// A per-object controller's state and its work on one object.
pub trait ReconcileKey: Send {
    /// Names an object (namespace and name, for most).
    type Key: Ord + Clone + Debug + Send + 'static;
    /// Stops the runner when work returns it; for conditions a retry cannot fix.
    type Error: Send;

    /// Brings the object `key` names in line with its desired state (which may be: gone).
    fn reconcile(&mut self, key: &Self::Key) -> impl Future<Output = Result<Outcome, Self::Error>> + Send;

    /// Every key there may be work for: queued at the start and on [`Enqueue::All`].
    fn all_keys(&self) -> Vec<Self::Key>;
}

/// What a trigger asks of a [`KeyedRunner`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueue<K> {
    /// Nothing: the trigger only updated the state.
    Nothing,
    /// Work on these keys.
    Keys(Vec<K>),
    /// Work on every key ([`ReconcileKey::all_keys`]), as after a resync.
    All,
}

/// Runs one per-object controller: see the module documentation. Its triggers name keys; its
/// health's `consecutive_failures` is the most failures in a row of any one key still failing.
pub type KeyedRunner<S> = Runner<S, Enqueue<<S as ReconcileKey>::Key>>;

impl<S: ReconcileKey + 'static> Runner<S, Enqueue<S::Key>> {
    /// A runner of per-object work without triggers yet; `name` labels its log lines.
    /// Defaults: no debounce, a fixed one-second backoff per key.
    pub fn keyed(name: &'static str) -> Self {
        Self::named(name)
    }

    /// Works on keys until `shutdown` (returning the state) or until work returns an error.
    pub async fn run(mut self, mut state: S, shutdown: CancellationToken) -> Result<S, S::Error> {
        if !self.triggers.all_synced(&shutdown).await {
            return Ok(state);
        }
        self.health.send_modify(|h| h.synced = true);
        let mut queue = WorkQueue::new();
        let start = Instant::now();
        for key in state.all_keys() {
            queue.add(key, start);
        }
        loop {
            tokio::select! {
                // Cancellation first: a busy stream of triggers must not delay the stop. Triggers
                // before work: keys already asked for join the queue before the next one is taken.
                biased;
                () = shutdown.cancelled() => return Ok(state),
                trigger = self.triggers.next() => {
                    let keys = match trigger(&mut state) {
                        Enqueue::Nothing => Vec::new(),
                        Enqueue::Keys(keys) => keys,
                        Enqueue::All => state.all_keys(),
                    };
                    let at = Instant::now() + self.debounce;
                    for key in keys {
                        queue.add(key, at);
                    }
                }
                () = sleep_until_some(queue.next_due()) => {
                    let Some(key) = queue.pop_due(Instant::now()) else { continue };
                    let outcome = state.reconcile(&key).await?;
                    let succeeded = outcome != Outcome::Retry;
                    match outcome {
                        Outcome::Done => queue.succeeded(&key),
                        Outcome::RequeueAfter(after) => {
                            queue.succeeded(&key);
                            queue.add(key, Instant::now() + after);
                        }
                        Outcome::Retry => {
                            let (failures, pause) = queue.failed(&key, &self.backoff);
                            tracing::debug!(controller = self.name, ?key, failures, ?pause, "work failed; retrying");
                            queue.add(key, Instant::now() + pause);
                        }
                    }
                    self.health.send_modify(|h| {
                        h.consecutive_failures = queue.most_failures();
                        if succeeded {
                            h.last_success = Some(Instant::now());
                        }
                    });
                }
            }
        }
    }
}

impl<S: ReconcileKey<Error = Infallible> + 'static> Runner<S, Enqueue<S::Key>> {
    /// [`KeyedRunner::run`] for a controller whose work cannot fail fatally.
    pub async fn run_until_cancelled(self, state: S, shutdown: CancellationToken) -> S {
        match self.run(state, shutdown).await {
            Ok(state) => state,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::{BTreeMap, VecDeque},
        sync::{Arc, Mutex},
    };

    use api::{Object, kinds::SERVICE};
    use tokio::{sync::watch, time::Duration};

    use super::*;
    use crate::{
        Change, Informer, MemoryStore, Store,
        reconcile::{Backoff, Outcome},
    };

    /// Work per key that follows a script (Done once the script is out) and records when it ran.
    struct Scripted {
        keys: Vec<&'static str>,
        outcomes: BTreeMap<&'static str, VecDeque<Outcome>>,
        /// How long work on a key takes.
        work: Duration,
        log: Arc<Mutex<Vec<(&'static str, Duration)>>>,
        start: Instant,
        _informer: Option<Informer>,
    }

    impl ReconcileKey for Scripted {
        type Key = &'static str;
        type Error = Infallible;

        async fn reconcile(&mut self, key: &&'static str) -> Result<Outcome, Infallible> {
            self.log.lock().unwrap().push((key, self.start.elapsed()));
            tokio::time::sleep(self.work).await;
            Ok(self.outcomes.get_mut(key).and_then(VecDeque::pop_front).unwrap_or(Outcome::Done))
        }

        fn all_keys(&self) -> Vec<&'static str> {
            self.keys.clone()
        }
    }

    type Log = Arc<Mutex<Vec<(&'static str, Duration)>>>;

    fn scripted(keys: &[&'static str], outcomes: &[(&'static str, &[Outcome])]) -> (Scripted, Log) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = Scripted {
            keys: keys.to_vec(),
            outcomes: outcomes.iter().map(|(k, o)| (*k, o.iter().copied().collect())).collect(),
            work: Duration::ZERO,
            log: log.clone(),
            start: Instant::now(),
            _informer: None,
        };
        (state, log)
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn work(log: &Log) -> Vec<(&'static str, Duration)> {
        log.lock().unwrap().clone()
    }

    /// A trigger that asks for the keys sent on it.
    fn poker() -> (watch::Sender<Enqueue<&'static str>>, watch::Receiver<Enqueue<&'static str>>) {
        watch::channel(Enqueue::Nothing)
    }

    #[tokio::test(start_paused = true)]
    async fn every_key_is_worked_on_once_at_the_start() {
        let (state, log) = scripted(&["b", "a", "b"], &[]);
        tokio::spawn(Runner::keyed("test").run_until_cancelled(state, CancellationToken::new()));
        tokio::time::sleep(secs(1)).await;
        assert_eq!(work(&log), [("a", secs(0)), ("b", secs(0))]);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_asked_for_while_queued_are_worked_on_once() {
        let store = MemoryStore::new();
        let informer = Informer::start(Arc::new(store.clone()), &SERVICE, None);
        let (mut state, log) = scripted(&[], &[]);
        let runner = Runner::keyed("test").debounce(ms(10)).watch_changes(&informer, |_, change| match change {
            Change::Resync(_) => Enqueue::Nothing,
            Change::Event(ev) => Enqueue::Keys(vec![if ev.object.name().starts_with('a') { "a" } else { "b" }]),
        });
        state._informer = Some(informer);
        tokio::spawn(runner.run_until_cancelled(state, CancellationToken::new()));
        tokio::time::sleep(secs(1)).await;
        for name in ["a1", "b1", "a2", "a3", "b2"] {
            store.create(Object::new(&SERVICE, Some("default"), name)).await.unwrap();
        }
        tokio::time::sleep(secs(1)).await;
        assert_eq!(work(&log), [("a", secs(1) + ms(10)), ("b", secs(1) + ms(10))], "five changes, two keys");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_key_backs_off_alone() {
        use Outcome::{Done, Retry};
        let (state, log) = scripted(&["a", "b"], &[("a", &[Retry, Retry, Retry, Done])]);
        let (poke, poked) = poker();
        let runner =
            Runner::keyed("test").backoff(Backoff { first: secs(1), max: secs(3) }).on_change(poked, |_, keys| keys);
        let health = runner.health();
        tokio::spawn(runner.run_until_cancelled(state, CancellationToken::new()));
        tokio::time::sleep(ms(4500)).await;
        assert_eq!(health.borrow().consecutive_failures, 3);
        poke.send(Enqueue::Keys(vec!["b"])).unwrap();
        tokio::time::sleep(ms(5500)).await;
        // a: 1 s, 2 s, then the 3 s cap; b is not held up by a's pauses.
        assert_eq!(
            work(&log),
            [("a", secs(0)), ("b", secs(0)), ("a", secs(1)), ("a", secs(3)), ("b", ms(4500)), ("a", secs(6))]
        );
        assert_eq!(health.borrow().consecutive_failures, 0);
        assert!(health.borrow().last_success.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_the_backoff_works_on_the_key_at_once() {
        let (state, log) = scripted(&["a"], &[("a", &[Outcome::Retry])]);
        let (poke, poked) = poker();
        let runner = Runner::keyed("test").backoff(Backoff::fixed(secs(5))).on_change(poked, |_, keys| keys);
        tokio::spawn(runner.run_until_cancelled(state, CancellationToken::new()));
        tokio::time::sleep(secs(1)).await;
        poke.send(Enqueue::Keys(vec!["a"])).unwrap();
        tokio::time::sleep(secs(10)).await;
        assert_eq!(work(&log), [("a", secs(0)), ("a", secs(1))], "the change, not the pause, ran it again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_work_on_a_key_queues_it_again_after() {
        let (mut state, log) = scripted(&["a"], &[]);
        state.work = secs(2);
        let (poke, poked) = poker();
        let runner = Runner::keyed("test").on_change(poked, |_, keys| keys);
        tokio::spawn(runner.run_until_cancelled(state, CancellationToken::new()));
        tokio::time::sleep(secs(1)).await;
        poke.send(Enqueue::Keys(vec!["a"])).unwrap();
        tokio::time::sleep(secs(10)).await;
        assert_eq!(work(&log), [("a", secs(0)), ("a", secs(2))], "after the first work ended, not during it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_and_all_keys() {
        let (state, log) = scripted(&["a", "b"], &[("a", &[Outcome::RequeueAfter(secs(5))])]);
        let (poke, poked) = poker();
        let runner = Runner::keyed("test").on_change(poked, |_, keys| keys);
        tokio::spawn(runner.run_until_cancelled(state, CancellationToken::new()));
        tokio::time::sleep(secs(7)).await;
        poke.send(Enqueue::All).unwrap();
        tokio::time::sleep(secs(1)).await;
        assert_eq!(work(&log), [("a", secs(0)), ("b", secs(0)), ("a", secs(5)), ("a", secs(7)), ("b", secs(7))]);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_runs_before_the_informers_synced_or_after_cancellation() {
        let (state, log) = scripted(&["a"], &[]);
        let (synced, unsynced) = watch::channel(false);
        let mut runner = Runner::keyed("test").every(secs(1), |_| Enqueue::Keys(vec!["a"]));
        runner.triggers.synced = vec![unsynced];
        let stopped = CancellationToken::new();
        let task = tokio::spawn(runner.run_until_cancelled(state, stopped.clone()));
        tokio::time::sleep(ms(1500)).await;
        assert!(work(&log).is_empty(), "work before the informer synced");
        synced.send(true).unwrap();
        tokio::time::sleep(ms(500)).await;
        assert_eq!(work(&log), [("a", ms(1500))], "the start, and the timer's key with it once");
        stopped.cancel();
        tokio::time::timeout(secs(1), task).await.expect("stopped").unwrap();
        tokio::time::sleep(secs(10)).await;
        assert_eq!(work(&log).len(), 1, "no work after the cancellation");
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_stops_the_runner() {
        struct Fatal;
        impl ReconcileKey for Fatal {
            type Key = u32;
            type Error = &'static str;
            async fn reconcile(&mut self, _: &u32) -> Result<Outcome, &'static str> {
                Err("gone")
            }
            fn all_keys(&self) -> Vec<u32> {
                vec![1]
            }
        }
        let result = Runner::keyed("test").run(Fatal, CancellationToken::new()).await;
        assert!(matches!(result, Err("gone")));
    }
}
