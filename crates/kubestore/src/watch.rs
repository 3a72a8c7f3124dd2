//! One watch of the seam over many watches of the server.
//!
//! kube-apiserver ends every watch after its timeout. The stream here opens the next one from the
//! newest resourceVersion it has seen (an event's, or a bookmark's when the kind was quiet), so the
//! informer above sees one stream that ends only on an error. 410 Gone (the version was compacted
//! away) ends it with [`Error::Compacted`], and the informer lists again.

use api::{Object, ResourceKind};
use futures::stream::{BoxStream, StreamExt as _};
use kube::core::WatchEvent as KubeEvent;
use kube::core::params::WatchParams;
use serde_json::Value;
use store::{Error, Result, WatchEvent, WatchEventType, WatchStream};

use crate::errors::from_kube;
use crate::revision::parse_revision;
use crate::{KubeStore, object_ref, to_object};

/// How long the server keeps one watch open (its own default is 30–60 minutes, at random).
const WATCH_TIMEOUT_SECONDS: u32 = 290;

type ServerEvents = BoxStream<'static, kube::Result<KubeEvent<Value>>>;

/// Where the stream stands: what it watches, from which version, and the server's open watch.
pub(crate) struct Resume {
    pub(crate) client: kube::Client,
    pub(crate) kind: &'static ResourceKind,
    pub(crate) namespace: Option<String>,
    pub(crate) from: String,
    pub(crate) events: Option<ServerEvents>,
}

/// Opens one watch of the server (with bookmarks, WatchParams' default) from `from`.
async fn open(
    client: &kube::Client,
    kind: &'static ResourceKind,
    namespace: Option<&str>,
    from: &str,
) -> Result<ServerEvents> {
    let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECONDS);
    let req = KubeStore::request(kind, namespace).watch(&params, from).map_err(|e| Error::Invalid(e.to_string()))?;
    let events =
        client.request_events::<Value>(req).await.map_err(|e| from_kube(e, &object_ref(kind, namespace, "")))?;
    Ok(events.boxed())
}

impl Resume {
    /// 410 Gone names the version this watch started from.
    fn error(&self, err: Error) -> Error {
        match err {
            Error::Compacted { .. } => {
                Error::Compacted { compact_revision: parse_revision(Some(&self.from)).unwrap_or(0) }
            }
            other => other,
        }
    }

    /// The next change, opening watches as the server ends them. None never comes: errors end
    /// the seam's stream instead (the caller drops it).
    async fn next(&mut self) -> Result<WatchEvent> {
        loop {
            if self.events.is_none() {
                let opened = open(&self.client, self.kind, self.namespace.as_deref(), &self.from).await;
                self.events = Some(opened.map_err(|e| self.error(e))?);
            }
            let Some(item) = self.events.as_mut().expect("opened above").next().await else {
                // The server's timeout: watch again from where this one got to.
                self.events = None;
                continue;
            };
            let what = object_ref(self.kind, self.namespace.as_deref(), "");
            let event = item.map_err(|e| self.error(from_kube(e, &what)))?;
            let (type_, value) = match event {
                KubeEvent::Added(v) => (WatchEventType::Added, v),
                KubeEvent::Modified(v) => (WatchEventType::Modified, v),
                KubeEvent::Deleted(v) => (WatchEventType::Deleted, v),
                KubeEvent::Bookmark(bookmark) => {
                    self.from = bookmark.metadata.resource_version;
                    continue;
                }
                KubeEvent::Error(status) if status.code == 410 => {
                    return Err(self.error(Error::Compacted { compact_revision: 0 }));
                }
                KubeEvent::Error(status) => {
                    return Err(Error::Unavailable(format!(
                        "watch of {}: {} {}: {}",
                        self.kind.kind, status.code, status.reason, status.message
                    )));
                }
            };
            let object: Object = to_object(value, self.kind)?;
            let revision = parse_revision(object.metadata.resource_version.as_deref())?;
            self.from = revision.to_string();
            return Ok(WatchEvent { type_, object, revision });
        }
    }
}

/// The seam's stream over `resume`: it ends after the first error.
pub(crate) fn stream(resume: Resume) -> WatchStream {
    futures::stream::unfold(Some(resume), |state| async move {
        let mut resume = state?;
        match resume.next().await {
            Ok(event) => Some((Ok(event), Some(resume))),
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}
