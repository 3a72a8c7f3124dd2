//! What wakes a controller, shared by both loops ([`super::Runner`] for whole-state passes,
//! [`super::KeyedRunner`] for per-object work): informers' changes, new values of a watch
//! channel, a timer; and the wait until every watched informer holds its first list.
//!
//! Each trigger becomes a closure that the loop applies to the controller's state between two
//! pieces of work (so the state needs no lock), and whose answer `W` says what work it asks for.

use std::time::Duration;

use futures::{
    StreamExt,
    stream::{self, BoxStream, SelectAll},
};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::informer::{Change, Informer};

/// Something done to the state when a trigger fires; says what work is wanted.
pub(crate) type Trigger<S, W> = Box<dyn FnOnce(&mut S) -> W + Send>;

pub(crate) struct Triggers<S, W> {
    pub(crate) synced: Vec<watch::Receiver<bool>>,
    streams: SelectAll<BoxStream<'static, Trigger<S, W>>>,
}

impl<S: 'static, W: 'static> Triggers<S, W> {
    pub(crate) fn new() -> Self {
        Triggers { synced: Vec::new(), streams: SelectAll::new() }
    }

    /// Calls `on_change` with each of `informer`'s changes, and makes [`Triggers::all_synced`]
    /// wait for its first list. Subscribes now, so nothing that happens between now and the
    /// start of the loop is missed.
    pub(crate) fn watch<F>(&mut self, informer: &Informer, on_change: F)
    where
        F: Fn(&mut S, Change) -> W + Clone + Send + Sync + 'static,
    {
        self.synced.push(informer.synced_receiver());
        let changes = stream::unfold(informer.subscribe(), move |mut sub| {
            let on_change = on_change.clone();
            async move {
                let change = sub.recv().await?;
                let trigger: Trigger<S, W> = Box::new(move |state| on_change(state, change));
                Some((trigger, sub))
            }
        });
        self.streams.push(changes.boxed());
    }

    /// Calls `on_change` with each new value of `values` (not the current one). Once its sender
    /// is gone, the receiver is no longer looked at.
    pub(crate) fn on_change<T, F>(&mut self, values: watch::Receiver<T>, on_change: F)
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(&mut S, T) -> W + Clone + Send + Sync + 'static,
    {
        let changes = stream::unfold(values, move |mut values| {
            let on_change = on_change.clone();
            async move {
                values.changed().await.ok()?;
                let value = values.borrow_and_update().clone();
                let trigger: Trigger<S, W> = Box::new(move |state| on_change(state, value));
                Some((trigger, values))
            }
        });
        self.streams.push(changes.boxed());
    }

    /// Calls `on_tick` every `period`, the first time one period after the start.
    pub(crate) fn every<F>(&mut self, period: Duration, on_tick: F)
    where
        F: Fn(&mut S) -> W + Clone + Send + Sync + 'static,
    {
        let mut interval = tokio::time::interval_at(Instant::now() + period, period);
        // A tick missed while work ran is not made up with a burst of ticks.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ticks = stream::unfold(interval, move |mut interval| {
            let on_tick = on_tick.clone();
            async move {
                interval.tick().await;
                let trigger: Trigger<S, W> = Box::new(move |state| on_tick(state));
                Some((trigger, interval))
            }
        });
        self.streams.push(ticks.boxed());
    }

    /// Waits until every watched informer holds its first list; false if `shutdown` came first.
    pub(crate) async fn all_synced(&mut self, shutdown: &CancellationToken) -> bool {
        let all = futures::future::join_all(self.synced.iter_mut().map(|s| async move {
            // The sender lives as long as its informer, which the state holds: it cannot close
            // while we wait, and if it did there would be nothing more to wait for.
            let _ = s.wait_for(|synced| *synced).await;
        }));
        tokio::select! {
            _ = all => true,
            () = shutdown.cancelled() => false,
        }
    }

    /// The next trigger; never resolves once every source is gone.
    pub(crate) async fn next(&mut self) -> Trigger<S, W> {
        match self.streams.next().await {
            Some(trigger) => trigger,
            None => std::future::pending().await,
        }
    }
}
