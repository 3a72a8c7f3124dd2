//! The N most recent flows of a node, oldest first: a fixed-capacity ring that overwrites its
//! oldest entry, as Hubble's (default capacity 4095).

use std::collections::VecDeque;
use std::sync::Arc;

use flow::Flow;

#[derive(Debug)]
pub struct FlowRing {
    flows: VecDeque<Arc<Flow>>,
    capacity: usize,
    /// Flows ever pushed (the ring's "seen" count).
    pushed: u64,
}

impl FlowRing {
    pub fn new(capacity: usize) -> FlowRing {
        let capacity = capacity.max(1);
        FlowRing { flows: VecDeque::with_capacity(capacity), capacity, pushed: 0 }
    }

    pub fn push(&mut self, flow: Arc<Flow>) {
        if self.flows.len() == self.capacity {
            self.flows.pop_front();
        }
        self.flows.push_back(flow);
        self.pushed += 1;
    }

    /// The last `n` flows, oldest first.
    pub fn last(&self, n: usize) -> Vec<Arc<Flow>> {
        let skip = self.flows.len().saturating_sub(n);
        self.flows.iter().skip(skip).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn pushed(&self) -> u64 {
        self.pushed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(node: &str) -> Arc<Flow> {
        Arc::new(Flow { node_name: node.into(), ..Flow::default() })
    }

    fn names(flows: &[Arc<Flow>]) -> Vec<&str> {
        flows.iter().map(|f| f.node_name.as_str()).collect()
    }

    #[test]
    fn keeps_the_newest_flows_oldest_first() {
        let mut ring = FlowRing::new(3);
        assert!(ring.is_empty());
        for n in ["a", "b", "c", "d", "e"] {
            ring.push(flow(n));
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.pushed(), 5);
        assert_eq!(names(&ring.last(10)), ["c", "d", "e"]);
        assert_eq!(names(&ring.last(2)), ["d", "e"]);
        assert!(ring.last(0).is_empty());
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_last_flow() {
        let mut ring = FlowRing::new(0);
        ring.push(flow("a"));
        ring.push(flow("b"));
        assert_eq!(names(&ring.last(5)), ["b"]);
    }
}
