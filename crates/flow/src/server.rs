//! The gRPC Observer service (Hubble's `observer.Observer`: `GetFlows`, `ServerStatus`,
//! `GetNodes`) over a node's flow ring, served on TCP (4244, for Hubble's own clients) and on a
//! unix socket (for `cilia observe`, which reaches nodes without sending traffic to their
//! addresses).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::{Request, Response, Status};

use crate::client::FlowsQuery;
use crate::convert::{filter_from_proto, flow_to_proto, timestamp_from_proto, timestamp_to_proto};
use crate::filter::{FlowFilter, is_selected};
use crate::model::Flow;
use crate::proto::flow as pb_flow;
use crate::proto::observer::observer_server::{Observer, ObserverServer};
use crate::proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNodesRequest, GetNodesResponse, Node, ServerStatusRequest,
    ServerStatusResponse, get_flows_response::ResponseTypes,
};
use crate::proto::relay::NodeState;

/// Hubble's port for a node's Observer API.
pub const OBSERVER_PORT: u16 = 4244;

/// The socket name under a node's state directory (Hubble's is `hubble.sock`).
pub const SOCKET_NAME: &str = "hubble.sock";

/// Where events were lost (Hubble's `LostEventSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostSource {
    /// The BPF ring buffer was full: the agent did not read fast enough.
    DatapathRing = 1,
    /// This follower did not read fast enough and events queued for it were discarded.
    ObserverQueue = 2,
    /// The flow ring overwrote events before they were read.
    FlowRing = 3,
}

/// One item of a node's live flow stream. A flow is shared, not copied, by every follower: the
/// server filters it and converts it to the wire type without a copy of its own.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowEvent {
    Flow(Arc<Flow>),
    Lost { source: LostSource, count: u64 },
}

pub type FollowStream = Pin<Box<dyn Stream<Item = FollowEvent> + Send>>;

/// Counters for `ServerStatus` and `GetNodes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// Flows currently in the ring.
    pub num_flows: u64,
    /// The ring's capacity.
    pub max_flows: u64,
    /// Flows seen since the agent started.
    pub seen_flows: u64,
    /// Events lost since the agent started, at any source.
    pub lost_events: u64,
}

/// What the Observer API serves: a node's flow ring. The agent implements it.
pub trait FlowSource: Send + Sync + 'static {
    fn node_name(&self) -> String;
    /// The flows in the ring, oldest first.
    fn recent(&self) -> Vec<Arc<Flow>>;
    /// Flows (and losses) from now on. `GetFlows` subscribes before it reads `recent()`, so an
    /// implementation may deliver a flow in both; the server drops the duplicate.
    fn follow(&self) -> FollowStream;
    fn status(&self) -> SourceStatus;
}

/// The Observer service over one [`FlowSource`].
pub struct ObserverService {
    source: Arc<dyn FlowSource>,
    started: Instant,
    /// What `GetNodes` reports as the node's API address.
    address: String,
}

impl ObserverService {
    pub fn new(source: Arc<dyn FlowSource>, address: String) -> ObserverService {
        ObserverService { source, started: Instant::now(), address }
    }

    pub fn into_server(self) -> ObserverServer<ObserverService> {
        ObserverServer::new(self)
    }
}

fn version() -> String {
    format!("cilia {}", env!("CARGO_PKG_VERSION"))
}

/// The server's side of a `GetFlowsRequest`: the same query the client sends, checked.
impl FlowsQuery {
    pub(crate) fn from_request(req: &GetFlowsRequest) -> Result<FlowsQuery, String> {
        let whitelist: Vec<FlowFilter> = req.whitelist.iter().map(filter_from_proto).collect();
        let blacklist: Vec<FlowFilter> = req.blacklist.iter().map(filter_from_proto).collect();
        for f in whitelist.iter().chain(&blacklist) {
            f.check()?;
        }
        if req.first && req.follow {
            return Err("first and follow cannot be combined".into());
        }
        Ok(FlowsQuery {
            number: req.number,
            first: req.first,
            follow: req.follow,
            whitelist,
            blacklist,
            since: req.since.as_ref().map(timestamp_from_proto),
            until: req.until.as_ref().map(timestamp_from_proto),
        })
    }

    pub(crate) fn selects(&self, flow: &Flow) -> bool {
        self.since.is_none_or(|s| flow.time >= s)
            && self.until.is_none_or(|u| flow.time <= u)
            && is_selected(&self.whitelist, &self.blacklist, flow)
    }

    /// The historical part of the answer, oldest first: `number` flows from the start
    /// (`first`) or the end; with `number` 0, all of them unless following (then none, as
    /// Hubble: `observe -f` alone shows new flows only).
    pub(crate) fn history(&self, recent: &[Arc<Flow>]) -> Vec<Arc<Flow>> {
        let selected: Vec<&Arc<Flow>> = recent.iter().filter(|f| self.selects(f)).collect();
        let n = match self.number {
            0 if self.follow && self.since.is_none() => 0,
            0 => selected.len(),
            n => usize::try_from(n).unwrap_or(usize::MAX).min(selected.len()),
        };
        let range = if self.first { 0..n } else { selected.len() - n..selected.len() };
        selected[range].iter().map(|f| Arc::clone(f)).collect()
    }
}

fn flow_response(flow: &Flow) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: flow.node_name.clone(),
        time: Some(timestamp_to_proto(&flow.time)),
        response_types: Some(ResponseTypes::Flow(flow_to_proto(flow))),
    }
}

fn lost_response(node: &str, source: LostSource, count: u64) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: node.to_string(),
        time: Some(timestamp_to_proto(&Utc::now())),
        response_types: Some(ResponseTypes::LostEvents(pb_flow::LostEvent {
            source: source as i32,
            num_events_lost: count,
            cpu: None,
        })),
    }
}

/// What a follow needs to turn the live stream into answers.
struct Live {
    events: FollowStream,
    query: FlowsQuery,
    /// The newest time of the snapshot the history came from, and its flows of that time: the
    /// live stream's copies of them were sent already.
    newest: Option<chrono::DateTime<Utc>>,
    overlap: Vec<Arc<Flow>>,
    node: String,
}

impl Live {
    /// The next answer; `None` at the end (the source is gone, or past `until`).
    async fn next(&mut self) -> Option<GetFlowsResponse> {
        loop {
            match self.events.next().await? {
                FollowEvent::Flow(flow) => {
                    // Older than the snapshot's newest, or one of its newest: sent already
                    // (the same flow is the same allocation; equality for other sources).
                    let seen = self.newest.is_some_and(|t| {
                        flow.time < t
                            || (flow.time == t && self.overlap.iter().any(|o| Arc::ptr_eq(o, &flow) || **o == *flow))
                    });
                    // Filtered before anything is converted: a flow left out costs no copy.
                    if seen || !self.query.selects(&flow) {
                        continue;
                    }
                    if self.query.until.is_some_and(|u| flow.time > u) {
                        return None;
                    }
                    return Some(flow_response(&flow));
                }
                FollowEvent::Lost { source, count } => return Some(lost_response(&self.node, source, count)),
            }
        }
    }
}

#[tonic::async_trait]
impl Observer for ObserverService {
    /// Polled by the connection's own task: no task and no channel per follower between the
    /// flow source and the wire, and the stream is dropped (unsubscribing it) when the client
    /// goes away.
    type GetFlowsStream = Pin<Box<dyn Stream<Item = Result<GetFlowsResponse, Status>> + Send>>;

    async fn get_flows(&self, request: Request<GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
        let query = FlowsQuery::from_request(request.get_ref()).map_err(Status::invalid_argument)?;
        // Subscribe before reading the ring so that no flow falls between the two.
        let live = query.follow.then(|| self.source.follow());
        let recent = self.source.recent();
        let history = query.history(&recent);
        let history = futures::stream::iter(history).map(|flow| Ok(flow_response(&flow)));
        let Some(events) = live else { return Ok(Response::new(history.boxed())) };
        let newest = recent.last().map(|f| f.time);
        let overlap: Vec<Arc<Flow>> = match newest {
            Some(t) => recent.iter().rev().take_while(|f| f.time == t).cloned().collect(),
            None => Vec::new(),
        };
        drop(recent);
        let live = Live { events, query, newest, overlap, node: self.source.node_name() };
        let live = futures::stream::unfold(live, |mut live| async move {
            let response = live.next().await?;
            Some((Ok(response), live))
        });
        Ok(Response::new(history.chain(live).boxed()))
    }

    async fn get_nodes(&self, _: Request<GetNodesRequest>) -> Result<Response<GetNodesResponse>, Status> {
        let st = self.source.status();
        Ok(Response::new(GetNodesResponse {
            nodes: vec![Node {
                name: self.source.node_name(),
                version: version(),
                address: self.address.clone(),
                state: NodeState::NodeConnected as i32,
                tls: None,
                uptime_ns: self.started.elapsed().as_nanos() as u64,
                num_flows: st.num_flows,
                max_flows: st.max_flows,
                seen_flows: st.seen_flows,
            }],
        }))
    }

    async fn server_status(&self, _: Request<ServerStatusRequest>) -> Result<Response<ServerStatusResponse>, Status> {
        let st = self.source.status();
        Ok(Response::new(ServerStatusResponse {
            num_flows: st.num_flows,
            max_flows: st.max_flows,
            seen_flows: st.seen_flows,
            uptime_ns: self.started.elapsed().as_nanos() as u64,
            num_connected_nodes: Some(1),
            num_unavailable_nodes: Some(0),
            unavailable_nodes: Vec::new(),
            version: version(),
        }))
    }
}

/// Serves the Observer API on TCP `addr` (Hubble's 4244) until the task is dropped.
pub async fn serve(addr: SocketAddr, source: Arc<dyn FlowSource>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "observer API listening");
    tonic::transport::Server::builder()
        .add_service(ObserverService::new(source, local.to_string()).into_server())
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await
        .map_err(std::io::Error::other)
}

/// Serves the Observer API on the connections `incoming` yields (a TLS listener's, say); `name`
/// is what `ServerStatus` calls this server.
pub async fn serve_incoming<IO, S>(incoming: S, source: Arc<dyn FlowSource>, name: String) -> std::io::Result<()>
where
    S: Stream<Item = std::io::Result<IO>> + Send + 'static,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tonic::transport::Server::builder()
        .add_service(ObserverService::new(source, name).into_server())
        .serve_with_incoming(incoming.map(|c| c.map(Conn)))
        .await
        .map_err(std::io::Error::other)
}

/// A connection the server takes from [`serve_incoming`]: tonic wants to know whom it talks to,
/// which the Observer API never asks.
struct Conn<T>(T);

impl<T> tonic::transport::server::Connected for Conn<T> {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Conn<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Conn<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Serves the Observer API on the unix socket at `path` (a stale socket file is replaced).
pub async fn serve_unix(path: &Path, source: Arc<dyn FlowSource>) -> std::io::Result<()> {
    let listener = bind_unix(path)?;
    tracing::info!(path = %path.display(), "observer API listening");
    tonic::transport::Server::builder()
        .add_service(ObserverService::new(source, format!("unix://{}", path.display())).into_server())
        .serve_with_incoming(UnixListenerStream::new(listener))
        .await
        .map_err(std::io::Error::other)
}

fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    // Flows name every pod and connection of the node: the socket is for root only.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(listener)
}

/// The unix socket of the Observer API under a node's state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter_flags::FilterFlags;
    use crate::testing::{curl_to_webpod, drop_no_backend};

    fn at(ms: i64) -> Arc<Flow> {
        let mut f = curl_to_webpod();
        f.time = chrono::DateTime::<Utc>::from_timestamp_millis(1_000_000 + ms).unwrap();
        Arc::new(f)
    }

    #[test]
    fn history_takes_last_or_first_n_of_the_selected() {
        let ring = vec![at(1), at(2), Arc::new(drop_no_backend()), at(3)];
        let sel = |number, first, follow| FlowsQuery { number, first, follow, ..FlowsQuery::default() };
        assert_eq!(sel(2, false, false).history(&ring).len(), 2);
        assert_eq!(sel(2, false, false).history(&ring)[1], at(3));
        assert_eq!(sel(2, true, false).history(&ring)[0], at(1));
        assert_eq!(sel(0, false, false).history(&ring).len(), 4);
        assert_eq!(sel(0, false, true).history(&ring).len(), 0);
        assert_eq!(sel(100, false, false).history(&ring).len(), 4);
        let dropped = FlowsQuery {
            number: 10,
            whitelist: FilterFlags { verdicts: vec!["DROPPED".into()], ..FilterFlags::default() }.to_filters().unwrap(),
            ..FlowsQuery::default()
        };
        assert_eq!(dropped.history(&ring), vec![Arc::new(drop_no_backend())]);
    }

    #[test]
    fn since_and_until_bound_the_selection() {
        let ring = vec![at(1), at(2), at(3)];
        let s = FlowsQuery { since: Some(at(2).time), until: Some(at(2).time), ..FlowsQuery::default() };
        assert_eq!(s.history(&ring), vec![at(2)]);
    }

    #[test]
    fn bad_filters_and_first_with_follow_are_rejected() {
        let mut req = GetFlowsRequest { follow: true, first: true, ..GetFlowsRequest::default() };
        assert!(FlowsQuery::from_request(&req).is_err());
        req.first = false;
        req.whitelist = vec![pb_flow::FlowFilter { destination_port: vec!["eighty".into()], ..Default::default() }];
        assert!(FlowsQuery::from_request(&req).unwrap_err().contains("eighty"));
    }
}
