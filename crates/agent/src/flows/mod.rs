//! The node's flow buffer: datapath events made Hubble flows, kept for `cilia observe`.
//!
//! [`reader::run`] consumes the datapath's event ring buffer on a thread of its own, names both
//! ends of each packet from the cluster's pods, Services and nodes ([`directory`], [`enrich`];
//! identities are derived from the pod's labels, [`identity`]; devices by their ifindex,
//! [`interfaces`]) and publishes the flows to the
//! [`FlowHub`]: a ring of the most recent ones ([`ring`]) plus a broadcast channel for followers.
//!
//! Gating: the agent runs the datapath's events at [`EventsLevel::Medium`], Cilium's default
//! monitor aggregation (every drop; traces of TCP segments that open or close a connection and of
//! other protocols' packets, where they leave a program), so the buffer always holds the recent
//! connections and an established stream costs the datapath one array lookup per packet. Drop
//! and forward counters run at every level. Loss is never silent: records the datapath could not
//! write (ring buffer full) are counted in the kernel and reported here as `events_lost`; a
//! follower that falls more than [`FOLLOW_QUEUE`] flows behind is told how many it missed by the
//! broadcast channel (`RecvError::Lagged`).

pub mod directory;
pub mod enrich;
pub mod identity;
pub mod interfaces;
pub mod reader;
pub mod ring;
pub mod source;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub use datapath::EventsLevel;
use flow::Flow;
use tokio::sync::broadcast;

use ring::FlowRing;

/// Hubble's default ring capacity.
pub const DEFAULT_CAPACITY: usize = 4095;
/// Flows a follower may fall behind before it loses some.
pub const FOLLOW_QUEUE: usize = 4096;

/// The node's flows: the recent ones and a channel to follow new ones. Shared by the reader
/// (which publishes) and the Observer API (which serves).
#[derive(Debug)]
pub struct FlowHub {
    node_name: String,
    ring: Mutex<FlowRing>,
    follow: broadcast::Sender<Arc<Flow>>,
    /// How many events the datapath lost since the last notice, for followers.
    lost_notices: broadcast::Sender<u64>,
    events_lost: AtomicU64,
    undecodable: AtomicU64,
    reading: AtomicBool,
}

/// The buffer's state, for `status` and Hubble's `ServerStatus`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowHubStatus {
    pub node_name: String,
    /// Flows in the ring now.
    pub num_flows: u64,
    /// The ring's capacity.
    pub max_flows: u64,
    /// Flows ever published.
    pub seen_flows: u64,
    /// Events the datapath could not write to its ring buffer (full), since its maps were made.
    pub events_lost: u64,
    /// Records that did not decode.
    pub undecodable: u64,
    /// Followers connected now.
    pub followers: u64,
    /// Whether a reader consumes the datapath's events (false without the eBPF datapath).
    pub reading: bool,
}

impl FlowHub {
    pub fn new(node_name: &str, capacity: usize) -> Arc<FlowHub> {
        let (follow, _) = broadcast::channel(FOLLOW_QUEUE);
        let (lost_notices, _) = broadcast::channel(64);
        Arc::new(FlowHub {
            node_name: node_name.to_string(),
            ring: Mutex::new(FlowRing::new(capacity)),
            follow,
            lost_notices,
            events_lost: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            reading: AtomicBool::new(false),
        })
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Adds a flow to the ring and hands it to the followers.
    pub fn publish(&self, flow: Flow) {
        let flow = Arc::new(flow);
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.push(flow.clone());
        // No follower is no error. Sent under the ring's lock, so that `recent_and_follow` sees
        // each flow exactly once.
        let _ = self.follow.send(flow);
    }

    /// Publishes a batch under one lock of the ring.
    pub fn publish_all(&self, flows: impl IntoIterator<Item = Flow>) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        for flow in flows {
            let flow = Arc::new(flow);
            ring.push(flow.clone());
            let _ = self.follow.send(flow);
        }
    }

    /// The last `n` flows, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Arc<Flow>> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner).last(n)
    }

    /// New flows from now on.
    pub fn follow(&self) -> broadcast::Receiver<Arc<Flow>> {
        self.follow.subscribe()
    }

    /// The last `n` flows and a receiver of every later one, with no flow missed or repeated in
    /// between (`--last N --follow`).
    pub fn recent_and_follow(&self, n: usize) -> (Vec<Arc<Flow>>, broadcast::Receiver<Arc<Flow>>) {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        (ring.last(n), self.follow.subscribe())
    }

    pub fn status(&self) -> FlowHubStatus {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        FlowHubStatus {
            node_name: self.node_name.clone(),
            num_flows: ring.len() as u64,
            max_flows: ring.capacity() as u64,
            seen_flows: ring.pushed(),
            events_lost: self.events_lost.load(Ordering::Relaxed),
            undecodable: self.undecodable.load(Ordering::Relaxed),
            followers: self.follow.receiver_count() as u64,
            reading: self.reading.load(Ordering::Relaxed),
        }
    }

    /// Notices of events the datapath lost (how many since the previous notice).
    pub fn follow_losses(&self) -> broadcast::Receiver<u64> {
        self.lost_notices.subscribe()
    }

    /// Records the datapath's lost-events counter and tells followers; returns by how much it
    /// grew.
    pub(crate) fn set_events_lost(&self, total: u64) -> u64 {
        let before = self.events_lost.swap(total, Ordering::Relaxed);
        let grew = total.saturating_sub(before);
        if grew > 0 {
            let _ = self.lost_notices.send(grew);
        }
        grew
    }

    pub(crate) fn add_undecodable(&self, n: u64) {
        self.undecodable.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_reading(&self, reading: bool) {
        self.reading.store(reading, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(n: u16) -> Flow {
        Flow { node_name: format!("n{n}"), ..Flow::default() }
    }

    #[test]
    fn followers_get_every_flow_after_the_recent_ones_exactly_once() {
        let hub = FlowHub::new("k8s-w1", 3);
        for n in 0..5 {
            hub.publish(flow(n));
        }
        let (recent, mut rx) = hub.recent_and_follow(2);
        assert_eq!(recent.iter().map(|f| f.node_name.as_str()).collect::<Vec<_>>(), ["n3", "n4"]);
        hub.publish(flow(5));
        assert_eq!(rx.try_recv().unwrap().node_name, "n5");
        assert!(rx.try_recv().is_err());
        let status = hub.status();
        assert_eq!((status.num_flows, status.max_flows, status.seen_flows, status.followers), (3, 3, 6, 1));
        assert_eq!(status.node_name, "k8s-w1");
    }

    #[test]
    fn lost_events_are_reported_as_they_grow() {
        let hub = FlowHub::new("n", 10);
        let mut notices = hub.follow_losses();
        assert_eq!(hub.set_events_lost(0), 0);
        assert_eq!(hub.set_events_lost(7), 7);
        assert_eq!(hub.set_events_lost(9), 2);
        assert_eq!(hub.status().events_lost, 9);
        assert_eq!(notices.try_recv().unwrap(), 7);
        assert_eq!(notices.try_recv().unwrap(), 2);
        assert!(notices.try_recv().is_err());
    }

    #[test]
    fn a_slow_follower_is_told_how_many_flows_it_missed() {
        let hub = FlowHub::new("n", 10);
        let mut rx = hub.follow();
        for n in 0..(FOLLOW_QUEUE as u16 + 5) {
            hub.publish(flow(n));
        }
        match rx.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(missed)) => assert_eq!(missed, 5),
            other => panic!("expected a lag report, got {other:?}"),
        }
    }
}
