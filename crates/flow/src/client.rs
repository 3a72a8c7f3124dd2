//! A client of the Observer API (a node's agent, or anything speaking Hubble's protocol), over a
//! unix socket or TCP.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::convert::{filter_to_proto, flow_from_proto, timestamp_to_proto};
use crate::filter::FlowFilter;
use crate::model::Flow;
use crate::proto::observer::observer_client::ObserverClient as GrpcClient;
use crate::proto::observer::{
    GetFlowsRequest, GetNodesRequest, Node, ServerStatusRequest, ServerStatusResponse,
    get_flows_response::ResponseTypes,
};

/// What to ask `GetFlows` for.
#[derive(Debug, Clone, Default)]
pub struct FlowsQuery {
    /// How many historical flows (the last ones, or the first with `first`); 0 = all, or none
    /// when following.
    pub number: u64,
    pub first: bool,
    pub follow: bool,
    pub whitelist: Vec<FlowFilter>,
    pub blacklist: Vec<FlowFilter>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl FlowsQuery {
    fn to_request(&self) -> GetFlowsRequest {
        GetFlowsRequest {
            number: self.number,
            first: self.first,
            follow: self.follow,
            whitelist: self.whitelist.iter().map(filter_to_proto).collect(),
            blacklist: self.blacklist.iter().map(filter_to_proto).collect(),
            since: self.since.as_ref().map(timestamp_to_proto),
            until: self.until.as_ref().map(timestamp_to_proto),
        }
    }
}

/// One item of a `GetFlows` answer.
#[derive(Debug, Clone, PartialEq)]
// Flows are nearly every item and losses rare: boxing each flow would cost an allocation per
// flow to save space on the rare one.
#[allow(clippy::large_enum_variant)]
pub enum FlowsEvent {
    Flow(Flow),
    /// `count` events were lost on `node` (Hubble's `LostEvent`; `source` is its number).
    Lost {
        node: String,
        source: i32,
        count: u64,
    },
}

/// An error with its causes (`transport error: No such file or directory`): tonic's transport
/// errors say little on their own.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        // Wrappers often repeat their inner error's text.
        if parts.last() != Some(&part) {
            parts.push(part);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[derive(Debug, Clone)]
pub struct ObserverClient {
    inner: GrpcClient<Channel>,
}

impl ObserverClient {
    /// Connects to the Observer API on the unix socket at `path`.
    pub async fn connect_unix(path: &Path) -> Result<ObserverClient, String> {
        let path: PathBuf = path.to_path_buf();
        let shown = path.display().to_string();
        // The URI is required by the HTTP/2 layer but never resolved: the connector below
        // always dials the socket.
        let channel = Endpoint::from_static("http://observer.invalid")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| {
                format!("connecting to the observer socket {shown} (is the node's agent running?): {}", causes(&e))
            })?;
        Ok(ObserverClient { inner: GrpcClient::new(channel) })
    }

    /// Connects to the Observer API at `ip:port` over TLS with `config` (the cluster's CA and a
    /// client certificate): the servers on the nodes' addresses take nothing else.
    pub async fn connect_tls(
        addr: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<ObserverClient, String> {
        let target: std::net::SocketAddr =
            addr.parse().map_err(|e| format!("invalid observer address {addr:?} (IP:PORT): {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let channel = Endpoint::from_static("http://observer.invalid")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let connector = connector.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(target).await?;
                    let name = rustls::pki_types::ServerName::IpAddress(target.ip().into());
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            }))
            .await
            .map_err(|e| format!("connecting to the observer at {addr} over TLS: {}", causes(&e)))?;
        Ok(ObserverClient { inner: GrpcClient::new(channel) })
    }

    /// Connects to the Observer API at `host:port` over TCP, without TLS.
    pub async fn connect_tcp(addr: &str) -> Result<ObserverClient, String> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("invalid observer address {addr:?}: {e}"))?
            .connect()
            .await
            .map_err(|e| format!("connecting to the observer at {addr}: {}", causes(&e)))?;
        Ok(ObserverClient { inner: GrpcClient::new(channel) })
    }

    /// The flows the query selects, as a stream that ends with the history unless following.
    pub async fn get_flows(
        &mut self,
        query: &FlowsQuery,
    ) -> Result<impl Stream<Item = Result<FlowsEvent, String>> + use<>, String> {
        let stream = self
            .inner
            .get_flows(query.to_request())
            .await
            .map_err(|s| format!("GetFlows: {}", s.message()))?
            .into_inner();
        Ok(stream.filter_map(|item| async move {
            match item {
                Err(status) => Some(Err(format!("GetFlows: {}", status.message()))),
                Ok(resp) => match resp.response_types {
                    Some(ResponseTypes::Flow(f)) => Some(flow_from_proto(f).map(FlowsEvent::Flow)),
                    Some(ResponseTypes::LostEvents(l)) => {
                        Some(Ok(FlowsEvent::Lost { node: resp.node_name, source: l.source, count: l.num_events_lost }))
                    }
                    // Node status events come from relays; a node's observer has none.
                    Some(ResponseTypes::NodeStatus(_)) | None => None,
                },
            }
        }))
    }

    pub async fn server_status(&mut self) -> Result<ServerStatusResponse, String> {
        self.inner
            .server_status(ServerStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| format!("ServerStatus: {}", s.message()))
    }

    pub async fn get_nodes(&mut self) -> Result<Vec<Node>, String> {
        self.inner
            .get_nodes(GetNodesRequest {})
            .await
            .map(|r| r.into_inner().nodes)
            .map_err(|s| format!("GetNodes: {}", s.message()))
    }
}
