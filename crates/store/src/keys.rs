//! Where objects live in the key space:
//! `/cilia/registry/<qualified plural>/<namespace>/<name>` for namespaced kinds and
//! `/cilia/registry/<qualified plural>/<name>` for cluster-scoped ones, as kube-apiserver lays out
//! `/registry/...`. Both backends use the same keys, so prefix semantics are identical.

use api::{ObjectRef, ResourceKind};

/// The root every cilia key lives under.
pub const DEFAULT_ROOT: &str = "/cilia/registry";

/// The key of one object.
pub fn object_key(root: &str, object: &ObjectRef) -> String {
    match &object.namespace {
        Some(ns) => format!("{root}/{}/{ns}/{}", object.kind.qualified_plural(), object.name),
        None => format!("{root}/{}/{}", object.kind.qualified_plural(), object.name),
    }
}

/// The prefix of every key of `kind` (in `namespace`, for namespaced kinds). It ends with `/` so
/// that `services/` never matches `servicesfoo/...` and namespace `a` never matches `ab`.
pub fn prefix(root: &str, kind: &ResourceKind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.namespaced => format!("{root}/{}/{ns}/", kind.qualified_plural()),
        _ => format!("{root}/{}/", kind.qualified_plural()),
    }
}

/// The reference a key stands for, when the object itself is unavailable (a deletion whose
/// previous value was compacted away).
pub fn parse(root: &str, kind: &'static ResourceKind, key: &str) -> Option<ObjectRef> {
    let rest = key.strip_prefix(&prefix(root, kind, None))?;
    if kind.namespaced {
        let (ns, name) = rest.split_once('/')?;
        Some(ObjectRef::new(kind, Some(ns), name))
    } else {
        Some(ObjectRef::new(kind, None, rest))
    }
}

/// Checks that a name or namespace can be one path segment of a key.
pub fn check_segment(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.contains('/') || value.contains('\0') || value == "." || value == ".." {
        return Err(format!("{what} {value:?} may not contain '/' or NUL, nor be '.' or '..'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use api::kinds::{LB_IP_POOL, NODE, SERVICE};

    use super::*;

    #[test]
    fn layout() {
        let svc = ObjectRef::new(&SERVICE, Some("default"), "webpod");
        assert_eq!(object_key(DEFAULT_ROOT, &svc), "/cilia/registry/services/default/webpod");
        let pool = ObjectRef::new(&LB_IP_POOL, None, "pool");
        assert_eq!(object_key(DEFAULT_ROOT, &pool), "/cilia/registry/ciliumloadbalancerippools.cilium.io/pool");
        assert_eq!(prefix(DEFAULT_ROOT, &SERVICE, Some("kube-system")), "/cilia/registry/services/kube-system/");
        assert_eq!(prefix(DEFAULT_ROOT, &SERVICE, None), "/cilia/registry/services/");
        // A namespace means nothing for cluster-scoped kinds.
        assert_eq!(prefix(DEFAULT_ROOT, &NODE, Some("default")), "/cilia/registry/nodes/");
    }

    #[test]
    fn parse_round_trips() {
        let svc = ObjectRef::new(&SERVICE, Some("default"), "webpod");
        assert_eq!(parse(DEFAULT_ROOT, &SERVICE, &object_key(DEFAULT_ROOT, &svc)), Some(svc));
        let node = ObjectRef::new(&NODE, None, "k8s-w1");
        assert_eq!(parse(DEFAULT_ROOT, &NODE, &object_key(DEFAULT_ROOT, &node)), Some(node));
        assert_eq!(parse(DEFAULT_ROOT, &NODE, "/elsewhere/nodes/x"), None);
    }

    #[test]
    fn segments() {
        assert!(check_segment("name", "webpod").is_ok());
        assert!(check_segment("name", "").is_err());
        assert!(check_segment("name", "a/b").is_err());
        assert!(check_segment("namespace", "..").is_err());
    }
}
