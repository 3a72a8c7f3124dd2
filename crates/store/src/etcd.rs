//! The etcd backend: one key per object (see `keys.rs`), JSON values, the etcd mod_revision as
//! resourceVersion, transactions for optimistic concurrency, etcd watches and leases.
//!
//! Endpoints are `http://host:port` or `unix:///path/to/socket` (comma-separated for several TCP
//! members). etcd-client 0.21 only builds TCP channels itself (it prefixes anything that is not
//! `http(s)://` with `http://`), so this module builds the gRPC channel with tonic, whose
//! `Endpoint` connects to `unix:` paths, and hands it over with `Client::from_channel` (the crate's
//! `raw-channel` feature). etcd 3.4 only accepts `unix://host:port` listen URLs and creates the
//! socket file named `host:port` in its working directory, so a server started in `/run/x` with
//! `--listen-client-urls unix://localhost:2379` is reached at `unix:///run/x/localhost:2379`.

use std::{collections::VecDeque, future::Future, sync::Arc, time::Duration};

use api::{Object, ObjectRef, ResourceKind, Selector};
use async_trait::async_trait;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, EventType, GetOptions, KeyValue, PutOptions, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use tonic::{Code, transport::Endpoint};

use crate::{
    error::{Error, Result},
    fence::Fence,
    keys::{self, DEFAULT_ROOT},
    lease::{LeaseId, ttl_seconds},
    prepare,
    store::{ObjectList, Store, WatchEvent, WatchEventType, WatchStream},
    unreadable,
};

/// How long one request may take before the store reports etcd unavailable.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 pings find a dead peer behind a quiet watch. etcd answers pings more frequent than its
/// `--grpc-keepalive-min-time` (5 s by default), or pings on a connection without streams, with
/// GOAWAY: hence 10 s, and pings only while a request or watch is open.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Objects per range request of a list: etcd-client refuses responses above 4 MiB, and pages keep
/// each response well below that.
const LIST_PAGE: i64 = 500;
/// Attempts of an unconditional update or a list that races with writers or compaction.
const MAX_INTERNAL_RETRIES: usize = 32;

/// A [`Store`] on an etcd v3 cluster. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    root: Arc<str>,
    endpoint: Arc<str>,
    request_timeout: Duration,
    list_page: i64,
    /// Set on a [`Store::fenced`] handle: (the fence object's key, the fence).
    fence: Option<Arc<(String, Fence)>>,
}

impl EtcdStore {
    /// Connects to `url`: `http://host:port`, `unix:///path/to/socket`, or several `http://`
    /// URLs separated by commas. The connection is made on first use and re-made after etcd
    /// restarts, so this succeeds while etcd is still down.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_tls(url, None).await
    }

    /// As [`EtcdStore::connect`], with TLS material for `https://` URLs (etcd with client
    /// certificate authentication); an `https://` URL without it is refused.
    pub async fn connect_tls(url: &str, tls: Option<&Tls>) -> Result<Self> {
        let channel = channel(url, tls)?;
        let client = Client::from_channel(etcd_client::Channel::Tonic(channel), None)
            .await
            .map_err(|e| Error::Unavailable(format!("etcd at {url}: {e}")))?;
        Ok(EtcdStore {
            client,
            root: Arc::from(DEFAULT_ROOT),
            endpoint: Arc::from(url),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            list_page: LIST_PAGE,
            fence: None,
        })
    }

    /// `compare` plus the fence's condition, when this handle is fenced.
    fn guarded(&self, compare: Option<Compare>) -> Vec<Compare> {
        let fence =
            self.fence.as_ref().map(|f| Compare::create_revision(f.0.clone(), CompareOp::Equal, f.1.create_revision));
        compare.into_iter().chain(fence).collect()
    }

    /// After a failed transaction: `Fenced` if the fence is why, else Ok (the caller's own
    /// condition failed). A re-created fence object never gets its old create revision back, so
    /// reading it after the fact is as good as knowing which compare failed.
    async fn check_fence(&self) -> Result<()> {
        let Some(fence) = &self.fence else { return Ok(()) };
        let response = self.call(self.client.kv_client().get(fence.0.clone(), None)).await?;
        match response.kvs().first() {
            Some(kv) if kv.create_revision() == fence.1.create_revision => Ok(()),
            _ => Err(Error::Fenced(fence.1.object.clone())),
        }
    }

    /// Keeps every key under `root` instead of `/cilia/registry`, so that several independent
    /// stores can share one etcd.
    pub fn with_root(mut self, root: &str) -> Self {
        self.root = Arc::from(root.trim_end_matches('/'));
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Objects per range request when listing (500 by default).
    pub fn with_list_page_size(mut self, objects: i64) -> Self {
        self.list_page = objects.max(1);
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs one request with the request timeout and maps its error.
    async fn call<T>(&self, request: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T> {
        self.call_for_lease(None, request).await
    }

    /// As [`Self::call`], reporting "lease not found" as [`Error::LeaseNotFound`] for `lease`.
    async fn call_for_lease<T>(
        &self,
        lease: Option<LeaseId>,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.request_timeout, request).await {
            Ok(result) => result.map_err(|e| match lease {
                Some(lease) if is_lease_not_found(&e) => Error::LeaseNotFound(lease),
                _ => self.error(e),
            }),
            Err(_) => Err(Error::Unavailable(format!(
                "etcd at {}: no answer within {:?}",
                self.endpoint, self.request_timeout
            ))),
        }
    }

    fn error(&self, error: etcd_client::Error) -> Error {
        use etcd_client::Error as E;
        let endpoint = &self.endpoint;
        match error {
            E::GRpcStatus(status) => {
                let message = format!("etcd at {endpoint}: {}", status.message());
                match status.code() {
                    // Unknown is how tonic reports a connection that broke mid-request.
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Aborted => {
                        Error::Unavailable(message)
                    }
                    Code::OutOfRange if status.message().contains("compacted") => {
                        Error::Compacted { compact_revision: 0 }
                    }
                    Code::OutOfRange | Code::InvalidArgument => Error::Invalid(message),
                    _ => Error::Backend(message),
                }
            }
            E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::LeaseKeepAliveError(_) => {
                Error::Unavailable(format!("etcd at {endpoint}: {error}"))
            }
            other => Error::Backend(format!("etcd at {endpoint}: {other}")),
        }
    }

    /// The stored object with its mod_revision, or `None`.
    async fn read(&self, key: &str) -> Result<Option<(Object, i64)>> {
        let response = self.call(self.client.kv_client().get(key, None)).await?;
        response.kvs().first().map(|kv| decode(kv).map(|o| (o, kv.mod_revision()))).transpose()
    }

    /// One page of a list at `revision` (0 = now). Returns the page and whether more follow.
    async fn list_page(&self, start: Vec<u8>, end: &[u8], revision: i64) -> Result<(Vec<KeyValue>, i64, bool)> {
        let mut options = GetOptions::new().with_range(end.to_vec()).with_limit(self.list_page);
        if revision != 0 {
            options = options.with_revision(revision);
        }
        let mut response = self.call(self.client.kv_client().get(start, Some(options))).await?;
        let revision = response.header().map_or(revision, |h| h.revision());
        let more = response.more();
        Ok((response.take_kvs(), revision, more))
    }

    async fn list_once(&self, kind: &'static ResourceKind, prefix: &str, selector: &Selector) -> Result<ObjectList> {
        let end = prefix_end(prefix.as_bytes());
        let mut start = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut items = Vec::new();
        let mut unreadable = Vec::new();
        loop {
            // Later pages read at the first page's revision, so the list is one snapshot.
            let (kvs, at, more) = self.list_page(start, &end, revision).await?;
            revision = at;
            for kv in &kvs {
                match decode(kv) {
                    Ok(object) if selector.matches(&object.metadata.labels) => items.push(object),
                    Ok(_) => {}
                    Err(e) => {
                        let key = String::from_utf8_lossy(kv.key()).into_owned();
                        note_unreadable(&key, &e);
                        if let Some(object) = keys::parse(&self.root, kind, &key) {
                            unreadable.push((object, e.to_string()));
                        }
                    }
                }
            }
            match kvs.last() {
                Some(last) if more => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        prepare::sort(&mut items);
        Ok(ObjectList { items, revision, unreadable })
    }
}

/// TLS to etcd's network listener: the CA that signed etcd's certificate, and this client's own
/// certificate and key (etcd runs with `--client-cert-auth`), all PEM.
#[derive(Clone)]
pub struct Tls {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

impl Tls {
    /// Reads the three PEM files, naming the one that cannot be read.
    pub fn from_files(ca: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> Result<Tls> {
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| Error::Invalid(format!("{what} {}: {e}", path.display())))
        };
        Ok(Tls {
            ca: read("CA certificate", ca)?,
            cert: read("client certificate", cert)?,
            key: read("client key", key)?,
        })
    }
}

fn channel(urls: &str, tls: Option<&Tls>) -> Result<tonic::transport::Channel> {
    let endpoints = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| endpoint(u, tls))
        .collect::<Result<Vec<_>>>()?;
    match endpoints.as_slice() {
        [] => Err(Error::Invalid("no etcd endpoint given".into())),
        [one] => Ok(one.connect_lazy()),
        _ if urls.contains("unix:") => {
            Err(Error::Invalid(format!("{urls}: a unix socket endpoint must be the only endpoint")))
        }
        _ => Ok(tonic::transport::Channel::balance_list(endpoints.into_iter())),
    }
}

fn endpoint(url: &str, tls: Option<&Tls>) -> Result<Endpoint> {
    let usage = "expected https://host:port (with a CA, a client certificate and its key), http://host:port or \
                 unix:///path/to/socket";
    let endpoint = match url.strip_prefix("unix://") {
        Some(path) if path.starts_with('/') => Endpoint::from_shared(url.to_string()),
        Some(_) => return Err(Error::Invalid(format!("{url}: the socket path must be absolute ({usage})"))),
        None if url.starts_with("http://") => Endpoint::from_shared(url.to_string()),
        None if url.starts_with("https://") => {
            let Some(tls) = tls else {
                return Err(Error::Invalid(format!(
                    "{url}: TLS needs the CA certificate, a client certificate and its key \
                     (--datastore-ca, --datastore-cert, --datastore-key)"
                )));
            };
            let config = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca))
                .identity(tonic::transport::Identity::from_pem(&tls.cert, &tls.key));
            Endpoint::from_shared(url.to_string())
                .map_err(|e| Error::Invalid(format!("{url}: {e} ({usage})")))?
                .tls_config(config)
        }
        None => return Err(Error::Invalid(format!("{url}: {usage}"))),
    }
    .map_err(|e| Error::Invalid(format!("{url}: {e} ({usage})")))?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(false)
        .tcp_nodelay(true))
}

/// The smallest key greater than every key starting with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only for a prefix of 0xff bytes: "\0" means "to the end of the key space" to etcd.
    vec![0]
}

fn is_lease_not_found(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == Code::NotFound && status.message().contains("lease not found")
        }
        // etcd-client's own report of a keep-alive answered with TTL 0.
        etcd_client::Error::LeaseKeepAliveError(message) => message.contains("lease not found"),
        _ => false,
    }
}

/// How many stored values this process found unreadable (listed or watched), for metrics.
pub fn unreadable_values_seen() -> u64 {
    unreadable::values_seen()
}

fn note_unreadable(key: &str, error: &Error) {
    unreadable::note(key, error);
}

/// Decodes a stored value; a readable one ends its key's count as unreadable.
fn decode(kv: &KeyValue) -> Result<Object> {
    let key = String::from_utf8_lossy(kv.key());
    let object = prepare::decode(&key, kv.value(), kv.mod_revision())?;
    unreadable::cleared(&key);
    Ok(object)
}

/// The revision a write happened at, from its response header.
fn written_at(header: Option<&etcd_client::ResponseHeader>) -> Result<i64> {
    header.map(|h| h.revision()).ok_or_else(|| Error::Backend("etcd answered a write without a revision".into()))
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, object: &ObjectRef) -> Result<Option<Object>> {
        Ok(self.read(&keys::object_key(&self.root, object)).await?.map(|(o, _)| o))
    }

    async fn list(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Result<ObjectList> {
        let prefix = keys::prefix(&self.root, kind, namespace);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.list_once(kind, &prefix, selector).await {
                // The first page's revision was compacted while later pages were read: start over.
                Err(Error::Compacted { .. }) if attempt < MAX_INTERNAL_RETRIES => continue,
                result => return result,
            }
        }
    }

    async fn create_with_lease(&self, object: Object, lease: Option<LeaseId>) -> Result<Object> {
        let (object_ref, mut object) = prepare::for_create(object)?;
        let key = keys::object_key(&self.root, &object_ref);
        let value = prepare::encode(&object_ref, &object)?;
        let options = lease.map(|l| PutOptions::new().with_lease(l.0));
        let txn = Txn::new()
            .when(self.guarded(Some(Compare::create_revision(key.clone(), CompareOp::Equal, 0))))
            .and_then([TxnOp::put(key, value, options)]);
        let response = self.call_for_lease(lease, self.client.kv_client().txn(txn)).await?;
        if !response.succeeded() {
            self.check_fence().await?;
            return Err(Error::AlreadyExists(object_ref));
        }
        object.metadata.resource_version = Some(written_at(response.header())?.to_string());
        Ok(object)
    }

    async fn update_with_lease(&self, mut object: Object, lease: Option<LeaseId>) -> Result<Object> {
        let object_ref = prepare::normalize(&mut object)?;
        let expected = match object.metadata.resource_version.as_deref() {
            Some(rv) => Some((rv.to_string(), prepare::parse_resource_version(&object_ref, rv)?)),
            None => None,
        };
        let key = keys::object_key(&self.root, &object_ref);
        for _ in 0..MAX_INTERNAL_RETRIES {
            let Some((stored, mod_revision)) = self.read(&key).await? else {
                return Err(Error::NotFound(object_ref));
            };
            if let Some((given, revision)) = &expected
                && *revision != mod_revision
            {
                return Err(Error::Conflict {
                    object: object_ref,
                    expected: given.clone(),
                    actual: mod_revision.to_string(),
                });
            }
            let mut next = prepare::for_update(object.clone(), &stored);
            let value = prepare::encode(&object_ref, &next)?;
            let options = match lease {
                Some(l) => PutOptions::new().with_lease(l.0),
                None => PutOptions::new().with_ignore_lease(),
            };
            // The compare makes generation and identity come from the version actually replaced.
            let txn = Txn::new()
                .when(self.guarded(Some(Compare::mod_revision(key.clone(), CompareOp::Equal, mod_revision))))
                .and_then([TxnOp::put(key.clone(), value, Some(options))]);
            let response = self.call_for_lease(lease, self.client.kv_client().txn(txn)).await?;
            if response.succeeded() {
                next.metadata.resource_version = Some(written_at(response.header())?.to_string());
                return Ok(next);
            }
            self.check_fence().await?;
            // Someone wrote in between. Reading again turns this into Conflict or NotFound for a
            // conditional update, and retries an unconditional one.
        }
        Err(Error::Unavailable(format!("{object_ref}: too many concurrent writers; try again")))
    }

    async fn delete(&self, object: &ObjectRef, precondition_resource_version: Option<&str>) -> Result<Option<Object>> {
        let key = keys::object_key(&self.root, object);
        let Some(given) = precondition_resource_version else {
            let options = DeleteOptions::new().with_prev_key();
            if self.fence.is_none() {
                let response = self.call(self.client.kv_client().delete(key, Some(options))).await?;
                return response.prev_kvs().first().map(decode).transpose();
            }
            let txn = Txn::new().when(self.guarded(None)).and_then([TxnOp::delete(key, Some(options))]);
            let response = self.call(self.client.kv_client().txn(txn)).await?;
            if !response.succeeded() {
                self.check_fence().await?;
            }
            return match response.op_responses().into_iter().next() {
                Some(TxnOpResponse::Delete(deleted)) => deleted.prev_kvs().first().map(decode).transpose(),
                _ => Err(Error::Backend(format!("etcd answered the deletion of {object} with nothing"))),
            };
        };
        let revision = prepare::parse_resource_version(object, given)?;
        let txn = Txn::new()
            .when(self.guarded(Some(Compare::mod_revision(key.clone(), CompareOp::Equal, revision))))
            .and_then([TxnOp::delete(key.clone(), Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key, None)]);
        let response = self.call(self.client.kv_client().txn(txn)).await?;
        if !response.succeeded() {
            self.check_fence().await?;
        }
        match response.op_responses().into_iter().next() {
            Some(TxnOpResponse::Delete(deleted)) => deleted.prev_kvs().first().map(decode).transpose(),
            Some(TxnOpResponse::Get(current)) => match current.kvs().first() {
                None => Ok(None),
                Some(kv) => Err(Error::Conflict {
                    object: object.clone(),
                    expected: given.to_string(),
                    actual: kv.mod_revision().to_string(),
                }),
            },
            _ => Err(Error::Backend(format!("etcd answered the deletion of {object} with nothing"))),
        }
    }

    async fn watch(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        after_revision: i64,
    ) -> Result<WatchStream> {
        let prefix = keys::prefix(&self.root, kind, namespace);
        let options = WatchOptions::new().with_prefix().with_start_revision(after_revision + 1).with_prev_key();
        let stream = self.call(self.client.watch_client().watch(prefix, Some(options))).await?;
        let state = WatchState { stream, pending: VecDeque::new(), done: false, store: self.clone(), kind };
        Ok(futures::stream::unfold(state, next_event).boxed())
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let response = self.call(self.client.lease_client().grant(ttl_seconds(ttl), None)).await?;
        Ok(LeaseId(response.id()))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        // Opening the keep-alive stream already renews once, but etcd-client keeps that answer to
        // itself; a second renewal on the same stream tells us the TTL.
        let renew = async {
            let (mut keeper, mut responses) = self.client.lease_client().keep_alive(lease.0).await?;
            keeper.keep_alive().await?;
            responses.message().await
        };
        match self.call_for_lease(Some(lease), renew).await? {
            // etcd answers a keep-alive of an expired lease with TTL 0.
            Some(response) if response.ttl() > 0 => Ok(Duration::from_secs(response.ttl().unsigned_abs())),
            Some(_) => Err(Error::LeaseNotFound(lease)),
            None => Err(Error::Unavailable(format!("etcd at {}: keep-alive stream closed", self.endpoint))),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        match self.call_for_lease(Some(lease), self.client.lease_client().revoke(lease.0)).await {
            Ok(_) | Err(Error::LeaseNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn revision(&self) -> Result<i64> {
        let options = GetOptions::new().with_count_only();
        let response = self.call(self.client.kv_client().get(self.root.as_bytes(), Some(options))).await?;
        written_at(response.header())
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        match self.call(self.client.kv_client().compact(revision, Some(CompactionOptions::new()))).await {
            Ok(_) | Err(Error::Compacted { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn fenced(&self, fence: Fence) -> Arc<dyn Store> {
        let key = keys::object_key(&self.root, &fence.object);
        Arc::new(EtcdStore { fence: Some(Arc::new((key, fence))), ..self.clone() })
    }
}

struct WatchState {
    stream: etcd_client::WatchStream,
    /// Events of the last response not yet handed out.
    pending: VecDeque<Result<WatchEvent>>,
    done: bool,
    store: EtcdStore,
    kind: &'static ResourceKind,
}

/// Turns etcd watch responses into [`WatchEvent`]s, ending with the error that ended the watch.
async fn next_event(mut state: WatchState) -> Option<(Result<WatchEvent>, WatchState)> {
    loop {
        if let Some(item) = state.pending.pop_front() {
            return Some((item, state));
        }
        if state.done {
            return None;
        }
        let ended = match state.stream.message().await {
            Ok(Some(response)) if response.canceled() || response.compact_revision() > 0 => {
                if response.compact_revision() > 0 {
                    Error::Compacted { compact_revision: response.compact_revision() }
                } else {
                    Error::Unavailable(format!(
                        "etcd at {}: watch canceled: {}",
                        state.store.endpoint,
                        response.cancel_reason()
                    ))
                }
            }
            Ok(Some(response)) => {
                for event in response.events() {
                    let converted = convert(&state.store, state.kind, event);
                    let failed = converted.is_err();
                    // An unreadable value is skipped: the watch goes on, and watchers keep the
                    // object's last readable version.
                    if let Some(item) = converted.transpose() {
                        state.pending.push_back(item);
                    }
                    if failed {
                        state.done = true;
                        break;
                    }
                }
                continue;
            }
            Ok(None) => Error::Unavailable(format!("etcd at {}: watch stream closed", state.store.endpoint)),
            Err(e) => state.store.error(e),
        };
        state.done = true;
        return Some((Err(ended), state));
    }
}

fn convert(store: &EtcdStore, kind: &'static ResourceKind, event: &etcd_client::Event) -> Result<Option<WatchEvent>> {
    let kv =
        event.kv().ok_or_else(|| Error::Backend(format!("etcd at {}: watch event without a key", store.endpoint)))?;
    let revision = kv.mod_revision();
    match event.event_type() {
        EventType::Put => {
            let type_ = if kv.create_revision() == kv.mod_revision() {
                WatchEventType::Added
            } else {
                WatchEventType::Modified
            };
            match decode(kv) {
                Ok(object) => Ok(Some(WatchEvent { type_, object, revision })),
                Err(e) => {
                    note_unreadable(&String::from_utf8_lossy(kv.key()), &e);
                    Ok(None)
                }
            }
        }
        EventType::Delete => {
            let key = String::from_utf8_lossy(kv.key());
            unreadable::cleared(&key);
            let mut object = match event.prev_kv().map(decode) {
                Some(Ok(prev)) => prev,
                // The previous value was compacted away, or was unreadable: the identity is all
                // we have.
                Some(Err(_)) | None => {
                    let object_ref = keys::parse(&store.root, kind, &key)
                        .ok_or_else(|| Error::Backend(format!("deleted key {key} is not a {kind}")))?;
                    Object::new(kind, object_ref.namespace.as_deref(), &object_ref.name)
                }
            };
            object.metadata.resource_version = Some(revision.to_string());
            Ok(Some(WatchEvent { type_: WatchEventType::Deleted, object, revision }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/cilia/registry/services/"), b"/cilia/registry/services0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[tokio::test]
    async fn endpoint_forms() {
        assert!(endpoint("unix:///run/cilia/localhost:2379", None).is_ok());
        assert!(endpoint("http://127.0.0.1:2379", None).is_ok());
        assert!(matches!(endpoint("unix://relative.sock", None), Err(Error::Invalid(_))));
        assert!(matches!(endpoint("127.0.0.1:2379", None), Err(Error::Invalid(_))));
        // TLS without its certificates is refused, saying what is missing.
        let err = endpoint("https://127.0.0.1:2379", None).unwrap_err().to_string();
        assert!(err.contains("--datastore-ca"), "{err}");
        assert!(matches!(channel("", None), Err(Error::Invalid(_))));
        assert!(matches!(channel("unix:///a.sock,http://127.0.0.1:1", None), Err(Error::Invalid(_))));
        assert!(channel("http://127.0.0.1:1, http://127.0.0.1:2", None).is_ok());
    }
}
