//! The loop every level-triggered controller runs: watch informers (and any other trigger), wait
//! until every informer holds its first list, then call the controller's pass over its state
//! whenever something changed, coalescing bursts, retrying failures after a pause, and stopping
//! at cancellation.
//!
//! A controller is a state with a [`Reconcile::pass`] that looks at the whole desired state (the
//! informers' snapshots) and makes the world match. The [`Runner`] decides when that pass runs:
//!
//! - the first pass runs at once when all watched informers have synced: a pass over a partial
//!   list would take away what the missing objects still need;
//! - an informer event schedules a pass after the debounce window; events within the window ride
//!   along, so a rollout that touches many objects costs one pass;
//! - an informer resync (the first list, or recovery after falling behind) and a [`Wake::Now`]
//!   from an extra trigger run a pass at once;
//! - a pass that reports [`Outcome::Retry`] runs again after the backoff, which doubles on every
//!   failure in a row up to its cap and starts over after a success;
//! - [`Outcome::RequeueAfter`] asks for another pass later even without changes.
//!
//! Passes never overlap: triggers that fire during a pass are seen after it.
//!
//! A controller that acts per object (its work on one object does not depend on the others) runs
//! on [`KeyedRunner`] instead: the same triggers and informer sync, a work queue of object keys
//! with a backoff per key.

use std::{convert::Infallible, future::Future, time::Duration};

use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::informer::{Change, Informer};

mod keyed;
mod triggers;
mod work_queue;

pub use keyed::{Enqueue, KeyedRunner, ReconcileKey};
use triggers::Triggers;

/// A controller's state and its pass.
pub trait Reconcile: Send {
    /// Stops the runner when a pass returns it; for conditions a retry cannot fix.
    type Error: Send;

    /// Brings the world in line with the desired state once.
    fn pass(&mut self) -> impl Future<Output = Result<Outcome, Self::Error>> + Send;
}

/// How a pass went, and so when the next one runs without a trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything is in line; wait for a change.
    Done,
    /// In line for now, but time alone will change the answer: run again after this long (or
    /// earlier, on a change).
    RequeueAfter(Duration),
    /// Something failed: run again after the backoff.
    Retry,
}

/// What an extra trigger asks of the runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Nothing: the trigger only updated the state, or did work of its own.
    No,
    /// A pass after the debounce window, like an informer event.
    Debounced,
    /// A pass at once, even during a retry's backoff.
    Now,
}

/// Pauses between failed passes: `first`, doubling on each failure in a row up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The same pause after every failure.
    pub const fn fixed(pause: Duration) -> Backoff {
        Backoff { first: pause, max: pause }
    }

    /// The pause after `failures` failed passes in a row (at least one).
    pub(crate) fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// The runner's view of its controller, for status reports and readiness.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// All watched informers hold their first list.
    pub synced: bool,
    /// When the last pass that did not ask for a retry ended.
    pub last_success: Option<Instant>,
    /// Passes in a row that asked for a retry; zero after a success.
    pub consecutive_failures: u32,
}

/// Runs one controller: see the module documentation. `W` is what its triggers ask for: a pass
/// ([`Wake`], the default), or work on keys ([`Enqueue`], a [`KeyedRunner`]).
pub struct Runner<S, W = Wake> {
    name: &'static str,
    debounce: Duration,
    backoff: Backoff,
    hold_changes_while_retrying: bool,
    triggers: Triggers<S, W>,
    health: watch::Sender<Health>,
}

impl<S: Send + 'static, W: 'static> Runner<S, W> {
    /// A runner without triggers yet; `name` labels its log lines. Defaults: no debounce, a
    /// fixed one-second backoff. Built by [`Runner::new`] or [`Runner::keyed`], which say the
    /// kind of work.
    fn named(name: &'static str) -> Self {
        Runner {
            name,
            debounce: Duration::ZERO,
            backoff: Backoff::fixed(Duration::from_secs(1)),
            hold_changes_while_retrying: false,
            triggers: Triggers::new(),
            health: watch::Sender::new(Health::default()),
        }
    }

    /// Changes arriving within `window` of the first one make one pass (or one piece of work on
    /// each key they name).
    pub fn debounce(mut self, window: Duration) -> Self {
        self.debounce = window;
        self
    }

    /// The pauses after failures (of passes in a row, or of one key's work in a row).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// `on_change` gets each of `informer`'s changes, in the informer's order, and says what work
    /// it asks for; the first work waits for the informer's first list. Subscribes now, so
    /// nothing that happens between now and the start is missed.
    pub fn watch_changes<F>(mut self, informer: &Informer, on_change: F) -> Self
    where
        F: Fn(&mut S, Change) -> W + Clone + Send + Sync + 'static,
    {
        self.triggers.watch(informer, on_change);
        self
    }

    /// Calls `on_change` with each new value of `values` (not the current one). Once its sender
    /// is gone, the receiver is no longer looked at.
    pub fn on_change<T, F>(mut self, values: watch::Receiver<T>, on_change: F) -> Self
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(&mut S, T) -> W + Clone + Send + Sync + 'static,
    {
        self.triggers.on_change(values, on_change);
        self
    }

    /// Calls `on_tick` every `period`, the first time one period after the start.
    pub fn every<F>(mut self, period: Duration, on_tick: F) -> Self
    where
        F: Fn(&mut S) -> W + Clone + Send + Sync + 'static,
    {
        self.triggers.every(period, on_tick);
        self
    }

    /// Follows the runner's health from now on.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }
}

impl<S: Reconcile + 'static> Runner<S> {
    /// A runner of passes without triggers yet; `name` labels its log lines. Defaults: no
    /// debounce, a fixed one-second backoff.
    pub fn new(name: &'static str) -> Self {
        Self::named(name)
    }

    /// After a failed pass, informer events and [`Wake::Debounced`] wait for the backoff instead
    /// of running a pass sooner: for passes whose failures are costly to repeat.
    pub fn hold_changes_while_retrying(mut self) -> Self {
        self.hold_changes_while_retrying = true;
        self
    }

    /// Passes follow `informer`'s changes, and the first waits for its first list. Subscribes
    /// now, so nothing that happens between now and the first pass is missed.
    pub fn watch(self, informer: &Informer) -> Self {
        self.watch_changes(informer, |_, change| match change {
            Change::Resync(_) => Wake::Now,
            Change::Event(_) => Wake::Debounced,
        })
    }

    /// Runs passes over `state` until `shutdown` (returning the state, for whatever the
    /// controller does on the way out) or until a pass returns an error.
    pub async fn run(mut self, mut state: S, shutdown: CancellationToken) -> Result<S, S::Error> {
        if !self.triggers.all_synced(&shutdown).await {
            return Ok(state);
        }
        self.health.send_modify(|h| h.synced = true);
        let mut due = Some(Instant::now());
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                // Cancellation first: a busy stream of triggers must not delay the stop. Triggers
                // before the pass: whatever is already queued rides along with a pass that is due.
                biased;
                () = shutdown.cancelled() => return Ok(state),
                trigger = self.triggers.next() => {
                    let wanted = match trigger(&mut state) {
                        Wake::No => None,
                        Wake::Now => Some(Instant::now()),
                        Wake::Debounced if failures > 0 && self.hold_changes_while_retrying => None,
                        Wake::Debounced => Some(Instant::now() + self.debounce),
                    };
                    // A pass already due sooner stays; changes only bring it forward.
                    due = match (due, wanted) {
                        (Some(d), Some(w)) => Some(d.min(w)),
                        (d, w) => d.or(w),
                    };
                }
                () = sleep_until_some(due) => {
                    due = None;
                    match state.pass().await? {
                        Outcome::Done => failures = 0,
                        Outcome::RequeueAfter(after) => {
                            failures = 0;
                            due = Some(Instant::now() + after);
                        }
                        Outcome::Retry => {
                            failures = failures.saturating_add(1);
                            let pause = self.backoff.after(failures);
                            tracing::debug!(controller = self.name, failures, ?pause, "pass failed; retrying");
                            due = Some(Instant::now() + pause);
                        }
                    }
                    self.health.send_modify(|h| {
                        h.consecutive_failures = failures;
                        if failures == 0 {
                            h.last_success = Some(Instant::now());
                        }
                    });
                }
            }
        }
    }
}

impl<S: Reconcile<Error = Infallible> + 'static> Runner<S> {
    /// [`Runner::run`] for a controller whose passes cannot fail fatally.
    pub async fn run_until_cancelled(self, state: S, shutdown: CancellationToken) -> S {
        match self.run(state, shutdown).await {
            Ok(state) => state,
        }
    }
}

/// Sleeps until `when`, or forever without one: a timer branch of `select!` that may be off.
pub async fn sleep_until_some(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
    };

    use api::{Object, kinds::SERVICE};

    use super::*;
    use crate::{MemoryStore, Store};

    /// A controller whose passes follow a script and record when they ran.
    struct Scripted {
        outcomes: VecDeque<Outcome>,
        passes: Arc<Mutex<Vec<Duration>>>,
        start: Instant,
        /// Counted by a timer trigger.
        ticks: u32,
        /// Present so that runs with an informer keep it alive, as real controllers do.
        _informer: Option<Informer>,
    }

    impl Reconcile for Scripted {
        type Error = Infallible;

        async fn pass(&mut self) -> Result<Outcome, Infallible> {
            self.passes.lock().unwrap().push(self.start.elapsed());
            Ok(self.outcomes.pop_front().unwrap_or(Outcome::Done))
        }
    }

    fn scripted(outcomes: &[Outcome]) -> (Scripted, Arc<Mutex<Vec<Duration>>>) {
        let passes = Arc::new(Mutex::new(Vec::new()));
        let state = Scripted {
            outcomes: outcomes.iter().copied().collect(),
            passes: passes.clone(),
            start: Instant::now(),
            ticks: 0,
            _informer: None,
        };
        (state, passes)
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn times(passes: &Mutex<Vec<Duration>>) -> Vec<Duration> {
        passes.lock().unwrap().clone()
    }

    async fn service(store: &MemoryStore, name: &str) {
        store.create(Object::new(&SERVICE, Some("default"), name)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_makes_one_pass() {
        let store = MemoryStore::new();
        let informer = Informer::start(Arc::new(store.clone()), &SERVICE, None);
        let (mut state, passes) = scripted(&[]);
        let runner = Runner::new("test").debounce(ms(10)).watch(&informer);
        state._informer = Some(informer);
        tokio::spawn(runner.run_until_cancelled(state, CancellationToken::new()));
        tokio::time::sleep(secs(1)).await;
        assert_eq!(times(&passes), [ms(0)], "one start-up pass");

        for name in ["a", "b", "c", "d", "e"] {
            service(&store, name).await;
        }
        tokio::time::sleep(ms(5)).await;
        assert_eq!(times(&passes).len(), 1, "the window is still open");
        service(&store, "f").await;
        tokio::time::sleep(secs(1)).await;
        assert_eq!(times(&passes), [ms(0), secs(1) + ms(10)], "six changes in one window, one pass");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_pass_backs_off_and_the_backoff_starts_over_after_a_success() {
        use Outcome::{Done, Retry};
        let (state, passes) = scripted(&[Retry, Retry, Retry, Done, Retry, Done]);
        let (poke, poked) = watch::channel(());
        let runner =
            Runner::new("test").backoff(Backoff { first: secs(1), max: secs(3) }).on_change(poked, |_, ()| Wake::Now);
        let health = runner.health();
        tokio::spawn(runner.run_until_cancelled(state, CancellationToken::new()));
        tokio::time::sleep(ms(4500)).await;
        assert_eq!(health.borrow().consecutive_failures, 3);
        assert_eq!(health.borrow().last_success, None);
        tokio::time::sleep(ms(5500)).await;
        // 1 s, 2 s, then the 3 s cap; the success stops the retries.
        assert_eq!(times(&passes), [secs(0), secs(1), secs(3), secs(6)]);
        assert_eq!(health.borrow().consecutive_failures, 0);
        assert!(health.borrow().last_success.is_some());

        poke.send(()).unwrap();
        tokio::time::sleep(secs(5)).await;
        assert_eq!(times(&passes)[4..], [secs(10), secs(11)], "the first pause again after a success");
    }

    #[tokio::test(start_paused = true)]
    async fn extra_triggers_update_the_state_and_wake_as_asked() {
        let (state, passes) = scripted(&[]);
        let (wake, wakes) = watch::channel(Wake::No);
        let runner = Runner::new("test")
            .debounce(ms(100))
            .on_change(wakes, |_, wake| wake)
            .every(secs(30), |state: &mut Scripted| {
                state.ticks += 1;
                Wake::No
            })
            .every(secs(45), |_| Wake::Now);
        let stopped = CancellationToken::new();
        let task = tokio::spawn(runner.run_until_cancelled(state, stopped.clone()));
        tokio::time::sleep(secs(1)).await;
        wake.send(Wake::Debounced).unwrap();
        tokio::time::sleep(secs(1)).await;
        wake.send(Wake::Now).unwrap();
        tokio::time::sleep(secs(1)).await;
        wake.send(Wake::No).unwrap();
        tokio::time::sleep(secs(58)).await;
        assert_eq!(times(&passes), [secs(0), secs(1) + ms(100), secs(2), secs(45)]);
        stopped.cancel();
        let state = tokio::time::timeout(secs(1), task).await.expect("stopped").unwrap();
        assert_eq!(state.ticks, 2, "the 30 s timer ran at 30 s and 60 s, and woke no pass");
    }

    #[tokio::test(start_paused = true)]
    async fn changes_during_a_retry_run_a_pass_sooner_unless_held() {
        for hold in [false, true] {
            let (state, passes) = scripted(&[Outcome::Retry]);
            let (poke, poked) = watch::channel(());
            let mut runner = Runner::new("test")
                .debounce(ms(10))
                .backoff(Backoff::fixed(secs(5)))
                .on_change(poked, |_, ()| Wake::Debounced);
            if hold {
                runner = runner.hold_changes_while_retrying();
            }
            let stopped = CancellationToken::new();
            tokio::spawn(runner.run_until_cancelled(state, stopped.clone()));
            tokio::time::sleep(secs(1)).await;
            poke.send(()).unwrap();
            tokio::time::sleep(secs(10)).await;
            let expected = if hold { [secs(0), secs(5)] } else { [secs(0), secs(1) + ms(10)] };
            assert_eq!(times(&passes), expected, "hold: {hold}");
            stopped.cancel();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_runs_again_without_changes() {
        let (state, passes) = scripted(&[Outcome::RequeueAfter(secs(5)), Outcome::RequeueAfter(secs(5))]);
        tokio::spawn(Runner::new("test").run_until_cancelled(state, CancellationToken::new()));
        tokio::time::sleep(secs(60)).await;
        assert_eq!(times(&passes), [secs(0), secs(5), secs(10)]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_pass_waits_until_every_informer_synced() {
        let (state, passes) = scripted(&[]);
        let (first, first_synced) = watch::channel(false);
        let (second, second_synced) = watch::channel(false);
        let mut runner = Runner::new("test");
        runner.triggers.synced = vec![first_synced, second_synced];
        let health = runner.health();
        tokio::spawn(runner.run_until_cancelled(state, CancellationToken::new()));
        tokio::time::sleep(secs(1)).await;
        first.send(true).unwrap();
        tokio::time::sleep(secs(1)).await;
        assert!(times(&passes).is_empty(), "a pass before the second informer synced");
        assert!(!health.borrow().synced);
        second.send(true).unwrap();
        tokio::time::sleep(secs(1)).await;
        assert_eq!(times(&passes), [secs(2)]);
        assert!(health.borrow().synced);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_pass_sees_an_informer_with_its_list() {
        let store = MemoryStore::new();
        service(&store, "a").await;
        let informer = Informer::start(Arc::new(store.clone()), &SERVICE, None);
        struct Counting(Informer, Arc<Mutex<Vec<usize>>>);
        impl Reconcile for Counting {
            type Error = Infallible;
            async fn pass(&mut self) -> Result<Outcome, Infallible> {
                self.1.lock().unwrap().push(self.0.snapshot().len());
                Ok(Outcome::Done)
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let runner = Runner::new("test").watch(&informer);
        tokio::spawn(runner.run_until_cancelled(Counting(informer, seen.clone()), CancellationToken::new()));
        tokio::time::sleep(secs(1)).await;
        assert_eq!(*seen.lock().unwrap(), [1], "one pass, over the listed object");
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_the_runner_before_and_after_sync() {
        let (state, passes) = scripted(&[]);
        let (_never, unsynced) = watch::channel(false);
        let mut runner = Runner::new("test");
        runner.triggers.synced = vec![unsynced];
        let stopped = CancellationToken::new();
        let task = tokio::spawn(runner.run_until_cancelled(state, stopped.clone()));
        tokio::time::sleep(secs(1)).await;
        stopped.cancel();
        tokio::time::timeout(secs(1), task).await.expect("stopped while waiting for sync").unwrap();
        assert!(times(&passes).is_empty());

        let (state, passes) = scripted(&[]);
        let stopped = CancellationToken::new();
        let runner = Runner::new("test").every(secs(1), |_| Wake::Now);
        let task = tokio::spawn(runner.run_until_cancelled(state, stopped.clone()));
        tokio::time::sleep(ms(2500)).await;
        stopped.cancel();
        tokio::time::timeout(secs(1), task).await.expect("stopped while running").unwrap();
        tokio::time::sleep(secs(10)).await;
        assert_eq!(times(&passes), [secs(0), secs(1), secs(2)], "no pass after the cancellation");
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_stops_the_runner() {
        struct Fatal;
        impl Reconcile for Fatal {
            type Error = &'static str;
            async fn pass(&mut self) -> Result<Outcome, &'static str> {
                Err("gone")
            }
        }
        let result = Runner::new("test").run(Fatal, CancellationToken::new()).await;
        assert!(matches!(result, Err("gone")));
    }
}
