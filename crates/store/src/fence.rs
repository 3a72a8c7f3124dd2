//! Fencing: writes that succeed only while their writer still holds what entitled it to write.
//!
//! A leader takes a Lease object with a datastore lease. If it stops (SIGSTOP, a long GC pause, a
//! partition) its lease lapses, a standby creates the object anew, and the old leader, resuming,
//! still believes it leads until its next renewal fails. A [`Fence`] closes that window: a
//! [`crate::Store::fenced`] handle makes every create, update and delete conditional, in the same
//! datastore transaction, on the fence object still having the create revision it had when the
//! leader took it. A re-created object has a new create revision, so every write of the old
//! leader is refused with [`crate::Error::Fenced`], however late it arrives.

use api::ObjectRef;

/// The object whose create revision must not change (the leader's Lease).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub object: ObjectRef,
    /// Its create revision when the holder took it: the resourceVersion `create` returned.
    pub create_revision: i64,
}

impl Fence {
    pub fn new(object: ObjectRef, create_revision: i64) -> Self {
        Fence { object, create_revision }
    }
}
