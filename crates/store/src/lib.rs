//! The datastore of cilia: Kubernetes-shaped objects ([`api::Object`]) kept in etcd, behind the
//! [`Store`] trait so that controllers are unit-tested against [`MemoryStore`].
//!
//! - [`Store`]: get, list, create, update with optimistic concurrency, delete, watch from a revision,
//!   and TTL leases that take their objects with them when they expire.
//! - [`EtcdStore`]: the real backend (`http://host:port` or `unix:///path/to/socket`).
//! - [`MemoryStore`]: the same semantics in memory (revisions, watch history, compaction, leases).
//! - [`Informer`]: a watch cache for one kind that survives datastore restarts and compaction without
//!   losing or repeating events.
//! - [`reconcile::Runner`]: the watch, debounce, retry and cancellation loop of a level-triggered
//!   controller, around its pass; [`reconcile::KeyedRunner`]: the same around per-object work, with
//!   a work queue of keys.
//! - [`update_with_retry`]: read-modify-write that never loses a concurrent update.
//!
//! A resourceVersion is the store revision of the object's last write, as a decimal string.
#![forbid(unsafe_code)]

pub mod datastore_wait;
pub mod error;
pub mod etcd;
pub mod etcd_process;
pub mod fence;
pub mod informer;
mod keys;
pub mod lease;
pub mod memory;
mod prepare;
pub mod reconcile;
pub mod retry;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod unreadable;

pub use error::{Error, Result};
pub use etcd::{EtcdStore, Tls};
pub use fence::Fence;
pub use informer::{Change, Informer, InformerOptions, Subscription};
pub use lease::{LeaseId, LeaseKeeper};
pub use memory::MemoryStore;
pub use retry::{update_status_with_retry, update_with_retry};
pub use store::{ObjectList, Store, WatchEvent, WatchEventType, WatchStream};
