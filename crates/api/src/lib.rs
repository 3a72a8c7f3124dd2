//! Resource model of cilia: Kubernetes-shaped objects (apiVersion, kind, metadata, spec, status),
//! the kinds cilia knows, label and field selectors, and manifest parsing with validation.
//!
//! Everything here is pure: no I/O beyond parsing strings, no kernel.
#![forbid(unsafe_code)]

pub mod cilium_config;
pub mod error;
pub mod kinds;
pub mod labels;
pub mod manifest;
pub mod meta;
pub mod object;
pub mod selector;
pub mod types;
pub mod validate;

pub use error::ValidationError;
pub use kinds::ResourceKind;
pub use meta::{Condition, LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference};
pub use object::{LastReadable, Object, ObjectRef};
pub use selector::{FieldSelector, Selector};
