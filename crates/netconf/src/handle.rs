//! A netlink connection bound to one network namespace.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::netns::{Netns, current_label};

/// rtnetlink handle whose socket lives in one network namespace.
///
/// A netlink socket belongs to the namespace of the thread that created it, whatever thread uses
/// it later; so the socket is opened on a thread inside the namespace and its connection task is
/// then driven by the caller's tokio runtime. Cheap to clone; the connection ends when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Netconf {
    pub(crate) handle: rtnetlink::Handle,
    /// `None` when the socket was opened in the caller's own namespace: sysctls are then written
    /// directly instead of from a thread that enters the namespace.
    pub(crate) netns: Option<Arc<Netns>>,
    label: Arc<str>,
}

impl std::fmt::Debug for Netconf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netconf").field("netns", &self.label).finish()
    }
}

impl Netconf {
    /// Connects in the calling thread's namespace. Must be called inside a tokio runtime; every
    /// thread of that runtime is expected to be in the same namespace (an agent started inside
    /// its node namespace).
    pub fn current() -> Result<Self> {
        let label = current_label();
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|source| Error::Socket { netns: label.clone(), source })?;
        tokio::spawn(conn);
        Ok(Netconf { handle, netns: None, label: label.into() })
    }

    /// Connects inside `netns`, from the caller's tokio runtime.
    pub async fn connect(netns: Netns) -> Result<Self> {
        let runtime = tokio::runtime::Handle::current();
        let label = netns.name().to_string();
        let err_label = label.clone();
        let (conn, handle) = netns
            .run(move || {
                // The socket registers with the reactor when it is created, so this thread needs
                // the runtime's context even though the connection task runs elsewhere.
                let _guard = runtime.enter();
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(|source| Error::Socket { netns: err_label, source })?;
                Ok((conn, handle))
            })
            .await?;
        tokio::spawn(conn);
        Ok(Netconf { handle, netns: Some(Arc::new(netns)), label: label.into() })
    }

    /// Opens the namespace at `path` and connects inside it.
    pub async fn connect_path(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Netconf::connect(Netns::open(path)?).await
    }

    /// The namespace's name as used in errors.
    pub fn netns_name(&self) -> &str {
        &self.label
    }

    /// The raw rtnetlink handle, for requests this crate does not wrap.
    pub fn raw(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    pub(crate) fn nl_err(
        &self,
        op: &'static str,
        device: impl Into<String>,
    ) -> impl FnOnce(rtnetlink::Error) -> Error + '_ {
        let device = device.into();
        move |source| Error::Netlink { netns: self.label.to_string(), device, op, source: Box::new(source) }
    }

    pub(crate) fn no_device(&self, op: &'static str, device: impl Into<String>) -> Error {
        Error::NoSuchDevice { netns: self.label.to_string(), device: device.into(), op }
    }

    pub(crate) fn invalid(&self, op: &'static str, device: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid { netns: self.label.to_string(), device: device.into(), op, reason: reason.into() }
    }

    pub(crate) fn mismatch(&self, device: impl Into<String>, what: impl Into<String>) -> Error {
        Error::Mismatch { netns: self.label.to_string(), device: device.into(), what: what.into() }
    }
}
