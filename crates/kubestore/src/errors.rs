//! kube-rs errors as the seam's errors: the status code and reason decide, the server's message
//! is kept.

use api::{ObjectRef, ResourceKind};
use store::Error;

/// Maps a failed request about `what` to the seam's error.
pub(crate) fn from_kube(err: kube::Error, what: &ObjectRef) -> Error {
    match err {
        kube::Error::Api(status) => match (status.code, status.reason.as_str()) {
            (404, _) => Error::NotFound(what.clone()),
            (409, "AlreadyExists") => Error::AlreadyExists(what.clone()),
            // Filled in with both versions by the caller, which knows what it sent.
            (409, _) => Error::Conflict { object: what.clone(), expected: String::new(), actual: String::new() },
            (410, _) => Error::Compacted { compact_revision: 0 },
            (400 | 403 | 405 | 415 | 422, _) => Error::Invalid(format!("{what}: {}", status.message)),
            (code, reason) => Error::Unavailable(format!("{what}: {code} {reason}: {}", status.message)),
        },
        other => Error::Unavailable(format!("{what}: {other}")),
    }
}

/// An object the server returned that does not read as one of cilia's objects.
pub(crate) fn invalid_object(kind: &ResourceKind, err: &serde_json::Error) -> Error {
    Error::Backend(format!("a {} from kube-apiserver does not read: {err}", kind.kind))
}
