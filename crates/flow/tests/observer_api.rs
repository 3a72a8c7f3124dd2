//! The Observer API end to end over a real unix socket: a tonic server over a flow source holding
//! real `Flow` values, and the client `cilia observe` uses.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow::Flow;
use flow::client::{FlowsEvent, FlowsQuery, ObserverClient};
use flow::filter_flags::FilterFlags;
use flow::server::{FlowSource, FollowEvent, FollowStream, LostSource, SourceStatus, serve_unix};
use flow::testing::{curl_to_webpod, drop_no_backend};
use futures::StreamExt;
use tokio::sync::mpsc;

/// A ring of flows with live subscribers, as an agent keeps one.
#[derive(Default)]
struct Ring {
    flows: Mutex<Vec<Arc<Flow>>>,
    followers: Mutex<Vec<mpsc::UnboundedSender<FollowEvent>>>,
}

impl Ring {
    fn push(&self, flow: Flow) {
        let flow = Arc::new(flow);
        self.flows.lock().unwrap().push(flow.clone());
        self.followers.lock().unwrap().retain(|tx| tx.send(FollowEvent::Flow(flow.clone())).is_ok());
    }

    fn lose(&self, count: u64) {
        self.followers
            .lock()
            .unwrap()
            .retain(|tx| tx.send(FollowEvent::Lost { source: LostSource::DatapathRing, count }).is_ok());
    }

    fn followers(&self) -> usize {
        self.followers.lock().unwrap().len()
    }
}

impl FlowSource for Ring {
    fn node_name(&self) -> String {
        "k8s-w1".into()
    }
    fn recent(&self) -> Vec<Arc<Flow>> {
        self.flows.lock().unwrap().clone()
    }
    fn follow(&self) -> FollowStream {
        let (tx, rx) = mpsc::unbounded_channel();
        // As a ring racing with its own snapshot may, hand the newest flow to the new follower
        // too: the server must not send it twice.
        if let Some(last) = self.flows.lock().unwrap().last() {
            // a copy, as a source that does not share its flows would send
            let _ = tx.send(FollowEvent::Flow(Arc::new(Flow::clone(last))));
        }
        self.followers.lock().unwrap().push(tx);
        Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
    }
    fn status(&self) -> SourceStatus {
        let n = self.flows.lock().unwrap().len() as u64;
        SourceStatus { num_flows: n, max_flows: 4095, seen_flows: n, lost_events: 0 }
    }
}

fn at(ms: i64) -> Flow {
    let mut f = curl_to_webpod();
    f.time = chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap();
    f
}

async fn start() -> (Arc<Ring>, ObserverClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = flow::server::socket_path(dir.path());
    let ring = Arc::new(Ring::default());
    let source: Arc<dyn FlowSource> = ring.clone();
    let serve_path = path.clone();
    tokio::spawn(async move { serve_unix(&serve_path, source).await });
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = ObserverClient::connect_unix(&path).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (ring, client.expect("observer socket never answered within 2 s"), dir)
}

async fn next<S>(s: &mut S) -> FlowsEvent
where
    S: futures::Stream<Item = Result<FlowsEvent, String>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("no event within 5 s")
        .expect("stream ended")
        .unwrap()
}

async fn collect(client: &mut ObserverClient, q: FlowsQuery) -> Vec<FlowsEvent> {
    let stream = client.get_flows(&q).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), stream.map(Result::unwrap).collect::<Vec<_>>())
        .await
        .expect("a non-follow GetFlows ends after the history")
}

#[tokio::test]
async fn history_is_filtered_and_limited_server_side() {
    let (ring, mut client, dir) = start().await;
    for i in 0..10 {
        ring.push(at(i));
    }
    ring.push(drop_no_backend());
    let all = collect(&mut client, FlowsQuery::default()).await;
    assert_eq!(all.len(), 11);
    let last3 = collect(&mut client, FlowsQuery { number: 3, ..FlowsQuery::default() }).await;
    assert_eq!(last3, vec![FlowsEvent::Flow(at(8)), FlowsEvent::Flow(at(9)), FlowsEvent::Flow(drop_no_backend())]);
    let dropped = FlowsQuery {
        number: 20,
        whitelist: FilterFlags { verdicts: vec!["DROPPED".into()], ..FilterFlags::default() }.to_filters().unwrap(),
        ..FlowsQuery::default()
    };
    assert_eq!(collect(&mut client, dropped).await, vec![FlowsEvent::Flow(drop_no_backend())]);
    let status = client.server_status().await.unwrap();
    assert_eq!((status.num_flows, status.max_flows), (11, 4095));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(flow::server::socket_path(dir.path())).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the observer socket is not root-only");
    let nodes = client.get_nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].name, "k8s-w1");
}

#[tokio::test]
async fn follow_streams_new_flows_and_losses_without_duplicates() {
    let (ring, mut client, _dir) = start().await;
    ring.push(at(1));
    let query = FlowsQuery {
        number: 1,
        follow: true,
        whitelist: FilterFlags { pods: vec!["curl-pod".into()], ..FilterFlags::default() }.to_filters().unwrap(),
        ..FlowsQuery::default()
    };
    let mut stream = Box::pin(client.get_flows(&query).await.unwrap());
    assert_eq!(next(&mut stream).await, FlowsEvent::Flow(at(1)));
    for _ in 0..100 {
        if ring.followers() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut other_pod = at(2);
    other_pod.source.pod_name = "other".into();
    other_pod.destination.pod_name = "other".into();
    ring.push(other_pod); // filtered out
    ring.push(at(3));
    ring.lose(7);
    assert_eq!(next(&mut stream).await, FlowsEvent::Flow(at(3)));
    assert_eq!(
        next(&mut stream).await,
        FlowsEvent::Lost { node: "k8s-w1".into(), source: LostSource::DatapathRing as i32, count: 7 }
    );
    // Closing the stream lets the server drop its subscription.
    drop(stream);
    let mut followers = ring.followers();
    for i in 0..100 {
        ring.push(at(4 + i));
        followers = ring.followers();
        if followers == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(followers, 0, "the server still follows 2 s after the client left");
}

#[tokio::test]
async fn invalid_filter_is_an_error_answer() {
    let (_ring, mut client, _dir) = start().await;
    let bad = flow::filter::FlowFilter { protocol: vec!["tpc".into()], ..Default::default() };
    let err = match client.get_flows(&FlowsQuery { whitelist: vec![bad], ..FlowsQuery::default() }).await {
        Ok(_) => panic!("a filter naming an unknown protocol was accepted"),
        Err(e) => e,
    };
    assert!(err.contains("tpc"), "{err}");
}
