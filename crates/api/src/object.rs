//! The generic object: what the datastore stores and the CLI prints.
//!
//! Every kind shares `apiVersion`, `kind` and `metadata`; the rest (`spec`, `status`, or top-level
//! fields such as EndpointSlice's `endpoints`) is kept as JSON so that fields cilia does not model are
//! stored and printed unchanged. Typed views (`types::*`) are produced with [`Object::to_typed`].

use std::fmt;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::{kinds::ResourceKind, meta::ObjectMeta};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Object {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Everything besides apiVersion, kind and metadata, in document order.
    #[serde(flatten)]
    pub body: Map<String, Value>,
}

/// Identifies one object: its kind, namespace (for namespaced kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: &'static ResourceKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    /// `Service default/webpod`, `Node k8s-ctr`: the form error messages use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind.kind, self.name),
        }
    }
}

impl ObjectRef {
    pub fn new(kind: &'static ResourceKind, namespace: Option<&str>, name: &str) -> Self {
        ObjectRef {
            kind,
            namespace: if kind.namespaced { namespace.map(str::to_string) } else { None },
            name: name.to_string(),
        }
    }
}

impl Object {
    /// An empty object of `kind` with the kind's preferred apiVersion.
    pub fn new(kind: &'static ResourceKind, namespace: Option<&str>, name: &str) -> Self {
        Object {
            api_version: kind.api_version(),
            kind: kind.kind.to_string(),
            metadata: ObjectMeta {
                name: name.to_string(),
                namespace: if kind.namespaced { namespace.map(str::to_string) } else { None },
                ..Default::default()
            },
            body: Map::new(),
        }
    }

    /// The registered kind of this object, if cilia knows it.
    pub fn resource_kind(&self) -> Option<&'static ResourceKind> {
        crate::kinds::by_kind(&self.kind)
    }

    /// The reference to this object. Fails for kinds cilia does not know.
    pub fn object_ref(&self) -> Option<ObjectRef> {
        let kind = self.resource_kind()?;
        Some(ObjectRef::new(kind, self.metadata.namespace.as_deref(), &self.metadata.name))
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    pub fn namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }

    /// The object as one JSON value (apiVersion, kind, metadata first).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("an Object always serializes")
    }

    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }

    /// Converts to a typed view (e.g. `types::Service`).
    pub fn to_typed<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(self.to_value())
    }

    /// The typed view, or None (logged) when the object does not read as `T`: controllers skip
    /// such an object, so that one odd object does not stop everything else.
    pub fn to_typed_or_skip<T: DeserializeOwned>(&self) -> Option<T> {
        match self.to_typed() {
            Ok(t) => Some(t),
            Err(e) => {
                let what = self.object_ref().map_or_else(|| self.name().to_string(), |r| r.to_string());
                tracing::warn!(object = %what, error = %e, "skipping an object that does not parse");
                None
            }
        }
    }

    /// The typed views of the objects that read as `T`; the others are skipped and logged.
    pub fn typed_all<T: DeserializeOwned>(objects: &[Object]) -> Vec<T> {
        objects.iter().filter_map(Object::to_typed_or_skip).collect()
    }

    /// Converts a typed view back. Its apiVersion and kind must be set by the type's serializer.
    pub fn from_typed<T: Serialize>(typed: &T) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::to_value(typed)?)
    }

    /// `spec`, `status` or any other top-level field.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.body.get(name)
    }

    /// Follows a dotted path such as `spec.nodeName` or `metadata.labels.app`.
    pub fn lookup_path(&self, path: &str) -> Option<Value> {
        let value = self.to_value();
        let mut cur = &value;
        for part in path.split('.') {
            cur = match cur {
                Value::Object(map) => map.get(part)?,
                Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur.clone())
    }

    /// A Node's first `InternalIP` as IPv4, read from the JSON so that a Node with fields the typed
    /// view rejects still yields its address (controllers must not stall on one odd object).
    /// `types::Node::internal_ip` is the same for typed Nodes.
    pub fn node_internal_ipv4(&self) -> Option<std::net::Ipv4Addr> {
        let addresses = self.body.get("status")?.get("addresses")?.as_array()?;
        addresses.iter().find(|a| a["type"] == "InternalIP").and_then(|a| a["address"].as_str()?.parse().ok())
    }

    /// Whether `spec` differs between two versions (bumps `metadata.generation`).
    pub fn spec_differs(&self, other: &Object) -> bool {
        self.body.get("spec") != other.body.get("spec")
    }
}

/// Typed views of a kind's objects that survive an object turning unreadable: an object that no
/// longer parses as `T` (written around the API, or by a newer version) is represented by its
/// last version that did, instead of vanishing. A controller that dropped it would act as if it
/// were deleted: release its address, take its backends out of service.
#[derive(Debug)]
pub struct LastReadable<T> {
    known: std::collections::BTreeMap<(Option<String>, String), T>,
}

impl<T> Default for LastReadable<T> {
    fn default() -> Self {
        LastReadable { known: Default::default() }
    }
}

impl<T: DeserializeOwned + Clone> LastReadable<T> {
    /// The typed views of `objects` (the complete current list): each parsed one, or the last
    /// readable version of one that does not parse (left out if there never was one). Objects no
    /// longer listed are forgotten.
    pub fn read(&mut self, objects: &[Object]) -> Vec<T> {
        let mut next = std::collections::BTreeMap::new();
        let mut out = Vec::with_capacity(objects.len());
        for object in objects {
            let key = (object.metadata.namespace.clone(), object.metadata.name.clone());
            let typed = object.to_typed_or_skip::<T>().or_else(|| self.known.get(&key).cloned());
            if let Some(t) = typed {
                next.insert(key, t.clone());
                out.push(t);
            }
        }
        self.known = next;
        out
    }
}

#[cfg(test)]
mod last_readable_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_that_stops_parsing_keeps_its_last_readable_version() {
        let object = |name: &str, spec: serde_json::Value| -> Object {
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"}, "spec": spec}))
            .unwrap()
        };
        let mut views: LastReadable<crate::types::Service> = LastReadable::default();
        let good = [object("a", json!({"ports": [{"port": 80}]})), object("b", json!({"ports": [{"port": 81}]}))];
        assert_eq!(views.read(&good).len(), 2);
        let broken = object("a", json!({"ports": [{"port": 80}], "sessionAfinity": "None"}));
        let never = object("c", json!({"bogus": true}));
        let seen = views.read(&[broken, good[1].clone(), never]);
        let names: Vec<&str> = seen.iter().map(|s| s.metadata.name.as_str()).collect();
        assert_eq!(names, ["a", "b"], "a keeps its last readable version; c never had one");
        assert_eq!(seen[0].spec.ports[0].port, 80);
        assert!(views.read(&[good[1].clone()]).len() == 1 && views.known.len() == 1, "deleted objects are forgotten");
    }
}
