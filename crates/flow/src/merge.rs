//! The cluster view: several nodes' flows merged into one stream in time order.
//!
//! `--last N` takes every node's last N flows and keeps the latest N of their union. With
//! `--follow` flows arrive live from each node; a [`ReorderBuffer`] holds each one for a short
//! window so that a flow from a slower node still comes out before a later one from a faster
//! node (Hubble Relay sorts its follow stream the same way).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::Flow;

/// Merges per-node flow lists in time order and keeps the last `last` of them (all when
/// `last` is `None`). Stable: flows with the same time keep their node order.
pub fn merge_last(per_node: Vec<Vec<Flow>>, last: Option<usize>) -> Vec<Flow> {
    let mut all: Vec<Flow> = per_node.into_iter().flatten().collect();
    all.sort_by_key(|f| f.time);
    if let Some(n) = last {
        let skip = all.len().saturating_sub(n);
        all.drain(..skip);
    }
    all
}

/// Merges per-node flow lists in time order and keeps the first `first` of them (`--first N`:
/// each node sent its first N, of which the earliest N are the cluster's).
pub fn merge_first(per_node: Vec<Vec<Flow>>, first: usize) -> Vec<Flow> {
    let mut all = merge_last(per_node, None);
    all.truncate(first);
    all
}

/// Orders a live merged stream: flows are released once they are `window` older than "now", in
/// time order. A flow that arrives later than that is released on the next call rather than
/// dropped, so nothing is ever lost, only possibly printed out of order.
#[derive(Debug)]
pub struct ReorderBuffer {
    window: TimeDelta,
    // Keyed by (time, arrival sequence) so equal times keep arrival order.
    pending: BinaryHeap<Reverse<(DateTime<Utc>, u64, OrdFlow)>>,
    seq: u64,
}

/// Flow wrapper giving the heap a total order that never looks at the flow itself. Boxed: the
/// heap moves its entries on every push and pop, and a flow is several hundred bytes.
#[derive(Debug)]
struct OrdFlow(Box<Flow>);

impl PartialEq for OrdFlow {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for OrdFlow {}
impl PartialOrd for OrdFlow {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdFlow {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl ReorderBuffer {
    pub fn new(window: std::time::Duration) -> ReorderBuffer {
        ReorderBuffer {
            window: TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX),
            pending: BinaryHeap::new(),
            seq: 0,
        }
    }

    pub fn push(&mut self, flow: Flow) {
        self.seq += 1;
        self.pending.push(Reverse((flow.time, self.seq, OrdFlow(Box::new(flow)))));
    }

    /// The flows whose time is at least `window` before `now`, oldest first.
    pub fn pop_ready(&mut self, now: DateTime<Utc>) -> Vec<Flow> {
        let horizon = now - self.window;
        let mut out = Vec::new();
        while let Some(Reverse((time, _, _))) = self.pending.peek() {
            if *time > horizon {
                break;
            }
            if let Some(Reverse((_, _, OrdFlow(flow)))) = self.pending.pop() {
                out.push(*flow);
            }
        }
        out
    }

    /// Everything still held, oldest first (at the end of the stream).
    pub fn drain(&mut self) -> Vec<Flow> {
        let mut out = Vec::with_capacity(self.pending.len());
        while let Some(Reverse((_, _, OrdFlow(flow)))) = self.pending.pop() {
            out.push(*flow);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::curl_to_webpod;

    fn at(node: &str, ms: i64) -> Flow {
        let mut f = curl_to_webpod();
        f.node_name = node.into();
        f.time = DateTime::<Utc>::from_timestamp_millis(1_000_000 + ms).unwrap();
        f
    }

    fn names(flows: &[Flow]) -> Vec<String> {
        flows.iter().map(|f| format!("{}@{}", f.node_name, f.time.timestamp_millis() - 1_000_000)).collect()
    }

    #[test]
    fn merges_nodes_in_time_order_and_keeps_the_last() {
        let a = vec![at("a", 1), at("a", 4), at("a", 9)];
        let b = vec![at("b", 2), at("b", 3), at("b", 10)];
        let c = vec![at("c", 4)];
        let all = merge_last(vec![a.clone(), b.clone(), c.clone()], None);
        assert_eq!(names(&all), ["a@1", "b@2", "b@3", "a@4", "c@4", "a@9", "b@10"]);
        let last3 = merge_last(vec![a, b, c], Some(3));
        assert_eq!(names(&last3), ["c@4", "a@9", "b@10"]);
        assert!(merge_last(vec![], Some(5)).is_empty());
        let first3 = merge_first(vec![vec![at("a", 1), at("a", 9)], vec![at("b", 2), at("b", 3), at("b", 10)]], 3);
        assert_eq!(names(&first3), ["a@1", "b@2", "b@3"]);
    }

    #[test]
    fn reorder_buffer_releases_after_the_window_in_time_order() {
        let mut buf = ReorderBuffer::new(std::time::Duration::from_millis(100));
        let now = |ms: i64| DateTime::<Utc>::from_timestamp_millis(1_000_000 + ms).unwrap();
        buf.push(at("a", 50));
        buf.push(at("b", 20)); // slower node, earlier flow
        buf.push(at("a", 130));
        assert!(buf.pop_ready(now(100)).is_empty());
        assert_eq!(names(&buf.pop_ready(now(150))), ["b@20", "a@50"]);
        // A straggler older than what was already released still comes out, not lost.
        buf.push(at("c", 10));
        assert_eq!(names(&buf.pop_ready(now(151))), ["c@10"]);
        assert_eq!(buf.len(), 1);
        assert_eq!(names(&buf.drain()), ["a@130"]);
        assert!(buf.is_empty());
    }
}
