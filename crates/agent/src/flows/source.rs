//! The [`FlowHub`] as the Observer API's [`FlowSource`]: the ring for history, the broadcast
//! channels for `--follow`, with every loss reported in the stream (the datapath's ring buffer
//! full, or this follower too slow).

use std::sync::Arc;

use flow::Flow;
use flow::server::{FlowSource, FollowEvent, FollowStream, LostSource, SourceStatus};
use futures::StreamExt;
use tokio::sync::broadcast::{self, error::RecvError};

use super::FlowHub;

impl FlowSource for FlowHub {
    fn node_name(&self) -> String {
        self.node_name().to_string()
    }

    fn recent(&self) -> Vec<Arc<Flow>> {
        FlowHub::recent(self, usize::MAX)
    }

    fn follow(&self) -> FollowStream {
        let state = (FlowHub::follow(self), self.follow_losses());
        futures::stream::unfold(state, |(mut flows, mut losses)| async move {
            let item = next_event(&mut flows, &mut losses).await?;
            Some((item, (flows, losses)))
        })
        .boxed()
    }

    fn status(&self) -> SourceStatus {
        let s = FlowHub::status(self);
        SourceStatus {
            num_flows: s.num_flows,
            max_flows: s.max_flows,
            seen_flows: s.seen_flows,
            lost_events: s.events_lost + s.undecodable,
        }
    }
}

/// The next flow or loss; `None` once the hub is gone.
async fn next_event(
    flows: &mut broadcast::Receiver<Arc<Flow>>,
    losses: &mut broadcast::Receiver<u64>,
) -> Option<FollowEvent> {
    loop {
        tokio::select! {
            biased;
            lost = losses.recv() => match lost {
                Ok(count) => return Some(FollowEvent::Lost { source: LostSource::DatapathRing, count }),
                // missed notices are about losses the status still counts; go on with the flows
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            },
            flow = flows.recv() => match flow {
                // shared with the ring and every other follower, not copied
                Ok(f) => return Some(FollowEvent::Flow(f)),
                Err(RecvError::Lagged(count)) => {
                    return Some(FollowEvent::Lost { source: LostSource::ObserverQueue, count });
                }
                Err(RecvError::Closed) => return None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::FOLLOW_QUEUE;

    fn flow(n: usize) -> Flow {
        Flow { node_name: format!("n{n}"), ..Flow::default() }
    }

    #[tokio::test]
    async fn a_follower_gets_flows_and_every_loss() {
        let hub = FlowHub::new("k8s-w1", 8);
        let mut stream = FlowSource::follow(hub.as_ref());
        hub.publish(flow(1));
        assert_eq!(stream.next().await, Some(FollowEvent::Flow(Arc::new(flow(1)))));
        hub.set_events_lost(3);
        assert_eq!(stream.next().await, Some(FollowEvent::Lost { source: LostSource::DatapathRing, count: 3 }));
        for n in 0..FOLLOW_QUEUE + 2 {
            hub.publish(flow(n));
        }
        assert_eq!(stream.next().await, Some(FollowEvent::Lost { source: LostSource::ObserverQueue, count: 2 }));
        assert_eq!(stream.next().await, Some(FollowEvent::Flow(Arc::new(flow(2)))));
        let status = FlowSource::status(hub.as_ref());
        assert_eq!((status.num_flows, status.max_flows, status.lost_events), (8, 8, 3));
        assert_eq!(FlowSource::recent(hub.as_ref()).len(), 8);
        assert_eq!(FlowSource::node_name(hub.as_ref()), "k8s-w1");
    }
}
