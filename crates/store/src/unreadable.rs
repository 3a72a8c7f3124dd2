//! Stored values this process found unreadable (not an object: written around cilia, or
//! corrupt), by key, for the components' metrics and `cilia status`.
//!
//! Lists and watches skip such a value per key and informers keep the object's last readable
//! version, so nothing else shows it: a key counts from the read that found it unreadable until a
//! read finds a readable value under it or its deletion is seen. Process-wide, because each
//! component is one process with one view of the datastore, whichever of its clients read the key.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Keys whose last value read was unreadable.
static KEYS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// `KEYS.len()`, so that the common case (nothing unreadable) costs a load and no lock per read.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Unreadable values read (a key read twice counts twice), since the process started.
static SEEN: AtomicU64 = AtomicU64::new(0);

/// A read found `key`'s value unreadable.
pub fn note(key: &str, error: &dyn std::fmt::Display) {
    SEEN.fetch_add(1, Ordering::Relaxed);
    let mut keys = KEYS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    keys.insert(key.to_string());
    COUNT.store(keys.len(), Ordering::Relaxed);
    tracing::warn!(key, %error, "skipping a stored value that is not an object");
}

/// A read found a readable value under `key`, or saw it deleted.
pub fn cleared(key: &str) {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut keys = KEYS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if keys.remove(key) {
        COUNT.store(keys.len(), Ordering::Relaxed);
    }
}

/// Keys whose value is unreadable as this process last read them.
pub fn objects() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// Unreadable values read since the process started.
pub fn values_seen() -> u64 {
    SEEN.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statics are shared by the crate's unit tests, so this one uses keys of its own and
    /// looks at differences.
    #[test]
    fn a_key_counts_until_it_is_read_readable_or_deleted() {
        let before = objects();
        let seen = values_seen();
        note("/test/unreadable/a", &"not JSON");
        note("/test/unreadable/a", &"not JSON");
        note("/test/unreadable/b", &"not JSON");
        assert_eq!(objects(), before + 2, "a key read twice counts once");
        assert_eq!(values_seen(), seen + 3);
        cleared("/test/unreadable/a");
        cleared("/test/unreadable/never");
        assert_eq!(objects(), before + 1);
        cleared("/test/unreadable/b");
        assert_eq!(objects(), before);
        assert_eq!(values_seen(), seen + 3, "the total only grows");
    }
}
