//! What a datastore operation can fail with. Every variant that concerns one object names it
//! (`Service default/webpod`), so the CLI can print the error as is.

use api::ObjectRef;

use crate::lease::LeaseId;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The object does not exist. Not retryable.
    #[error("{0} not found")]
    NotFound(ObjectRef),

    /// `create` of an object that exists. Not retryable.
    #[error("{0} already exists")]
    AlreadyExists(ObjectRef),

    /// The caller's resourceVersion is stale: someone else wrote the object since it was read.
    /// Retryable after reading the object again (see [`crate::update_with_retry`]).
    #[error(
        "{object} has been modified: resourceVersion {expected} was expected, the stored one is \
         {actual}; read it again and retry"
    )]
    Conflict { object: ObjectRef, expected: String, actual: String },

    /// The watch asked for changes older than the oldest revision the store still keeps.
    /// Recover by listing again and watching from the list's revision.
    #[error("the history up to revision {compact_revision} has been compacted; list again")]
    Compacted { compact_revision: i64 },

    /// The lease expired or was revoked: attached objects are gone. Grant a new one.
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),

    /// The datastore could not be reached or did not answer in time. Retryable.
    #[error("datastore unavailable: {0}")]
    Unavailable(String),

    /// The request itself is wrong (unknown kind, missing name, unparsable resourceVersion).
    /// Not retryable.
    #[error("invalid request: {0}")]
    Invalid(String),

    /// The datastore answered with something unexpected (a stored value that is not an object).
    #[error("datastore error: {0}")]
    Backend(String),

    /// A fenced write ([`crate::Fence`]) was refused: its writer no longer holds the fence object
    /// (a leader whose lease lapsed while another took over). Not retryable.
    #[error("write refused: {0} was taken over since this writer held it")]
    Fenced(ObjectRef),
}

impl Error {
    /// Whether trying the same operation again may succeed without changing the request.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Conflict { .. } | Error::Unavailable(_))
    }
}
