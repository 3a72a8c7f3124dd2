//! Read-modify-write without lost updates: every write is conditional on the version it was
//! computed from, and a conflict starts over from a fresh read. `cilia patch/label/annotate` and
//! the controllers write through this.

use std::{
    hash::{BuildHasher, RandomState},
    time::Duration,
};

use api::{Object, ObjectRef};

use crate::{
    error::{Error, Result},
    store::Store,
};

/// Conflicts tolerated before giving up. Two busy writers on one object conflict a handful of
/// times at most; reaching this means something rewrites the object continuously.
pub const MAX_UPDATE_ATTEMPTS: usize = 64;

/// Reads the object, applies `mutate`, and writes it back if `mutate` returned `true`, conditional
/// on the resourceVersion it read; on `Conflict` it reads again and re-applies `mutate`. Returns
/// the object as written (or as read, when nothing changed).
///
/// `mutate` may run several times, each time on a fresh copy. Its changes to the resourceVersion
/// are ignored, and changing the object's identity (kind, namespace, name) is rejected.
pub async fn update_with_retry<S, F>(store: &S, object: &ObjectRef, mutate: F) -> Result<Object>
where
    S: Store + ?Sized,
    F: FnMut(&mut Object) -> Result<bool> + Send,
{
    retry(store, object, mutate, Part::Whole).await
}

/// [`update_with_retry`] for a change of `status` only, written with [`Store::update_status`]
/// (Kubernetes' status subresource), so that a writer needs no right to the rest of the object.
pub async fn update_status_with_retry<S, F>(store: &S, object: &ObjectRef, mutate: F) -> Result<Object>
where
    S: Store + ?Sized,
    F: FnMut(&mut Object) -> Result<bool> + Send,
{
    retry(store, object, mutate, Part::Status).await
}

/// What a retried write replaces.
#[derive(Clone, Copy)]
enum Part {
    Whole,
    Status,
}

async fn retry<S, F>(store: &S, object: &ObjectRef, mut mutate: F, part: Part) -> Result<Object>
where
    S: Store + ?Sized,
    F: FnMut(&mut Object) -> Result<bool> + Send,
{
    let mut last_conflict = None;
    for attempt in 0..MAX_UPDATE_ATTEMPTS {
        if attempt > 0 {
            // Writers that conflicted once tend to meet again in lockstep; a random pause of up
            // to a few milliseconds separates them.
            tokio::time::sleep(jitter(attempt)).await;
        }
        let Some(mut current) = store.get(object).await? else {
            return Err(Error::NotFound(object.clone()));
        };
        let read_version = current.metadata.resource_version.clone();
        if !mutate(&mut current)? {
            return Ok(current);
        }
        if current.object_ref().as_ref() != Some(object) {
            return Err(Error::Invalid(format!("{object}: the update changed the object's kind, namespace or name")));
        }
        current.metadata.resource_version = read_version;
        let written = match part {
            Part::Whole => store.update(current).await,
            Part::Status => store.update_status(current).await,
        };
        match written {
            Err(conflict @ Error::Conflict { .. }) => last_conflict = Some(conflict),
            result => return result,
        }
    }
    Err(last_conflict.unwrap_or_else(|| Error::Unavailable(format!("{object}: no update attempt was made"))))
}

/// Up to `attempt` milliseconds (at most 16), uniformly.
fn jitter(attempt: usize) -> Duration {
    let ceiling = attempt.min(16) as u64 * 1000;
    // A fresh RandomState is seeded differently on every call: enough randomness for spreading
    // retries, without a dependency on a random number generator.
    let micros = RandomState::new().hash_one(attempt) % (ceiling + 1);
    Duration::from_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_bounded() {
        for attempt in 1..100 {
            assert!(jitter(attempt) <= Duration::from_millis(16));
        }
    }
}
