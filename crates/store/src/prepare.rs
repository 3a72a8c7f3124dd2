//! What every backend does to an object before writing it, so that both backends stamp metadata
//! identically: the checks a key needs, the system-owned fields, and the stored encoding.

use api::{Object, ObjectRef};

use crate::{
    error::{Error, Result},
    keys,
};

/// Checks that the object can be stored and normalizes it the way kube-apiserver does: the
/// storage apiVersion, no namespace on cluster-scoped kinds. Returns its reference.
pub fn normalize(object: &mut Object) -> Result<ObjectRef> {
    let kind = object.resource_kind().ok_or_else(|| Error::Invalid(format!("unknown kind {:?}", object.kind)))?;
    let shown = || match &object.metadata.namespace {
        Some(ns) if kind.namespaced => format!("{kind} {ns}/{}", object.metadata.name),
        _ => format!("{kind} {}", object.metadata.name),
    };
    if !kind.serves(&object.api_version) {
        return Err(Error::Invalid(format!(
            "{}: apiVersion {:?} is not served for {kind}; use one of {}",
            shown(),
            object.api_version,
            kind.served_api_versions().join(", ")
        )));
    }
    if kind.namespaced {
        let ns = object.metadata.namespace.as_deref().unwrap_or_default();
        keys::check_segment("namespace", ns).map_err(|e| Error::Invalid(format!("{}: {e}", shown())))?;
    }
    keys::check_segment("name", &object.metadata.name).map_err(|e| Error::Invalid(format!("{}: {e}", shown())))?;
    object.api_version = kind.api_version();
    if !kind.namespaced {
        object.metadata.namespace = None;
    }
    Ok(ObjectRef::new(kind, object.metadata.namespace.as_deref(), &object.metadata.name))
}

/// Prepares a new object: generated name, uid, creation timestamp, generation 1. A uid or
/// resourceVersion the caller carried over (from `get -o yaml` output) is replaced.
pub fn for_create(mut object: Object) -> Result<(ObjectRef, Object)> {
    if object.metadata.name.is_empty()
        && let Some(prefix) = object.metadata.generate_name.as_deref()
    {
        object.metadata.name = format!("{prefix}{}", random_suffix());
    }
    let object_ref = normalize(&mut object)?;
    let meta = &mut object.metadata;
    meta.uid = Some(uuid::Uuid::new_v4().to_string());
    meta.creation_timestamp = Some(api::meta::now_rfc3339());
    meta.generation = Some(1);
    meta.resource_version = None;
    Ok((object_ref, object))
}

/// Prepares the replacement of `stored`: the identity and creation time stay, the generation
/// counts spec changes.
pub fn for_update(mut object: Object, stored: &Object) -> Object {
    let generation = stored.metadata.generation.unwrap_or(1);
    let bumped = if object.spec_differs(stored) { generation + 1 } else { generation };
    let meta = &mut object.metadata;
    meta.uid.clone_from(&stored.metadata.uid);
    meta.creation_timestamp.clone_from(&stored.metadata.creation_timestamp);
    meta.generation = Some(bumped);
    meta.resource_version = None;
    object
}

/// Parses a caller's resourceVersion.
pub fn parse_resource_version(object: &ObjectRef, rv: &str) -> Result<i64> {
    rv.parse::<i64>().map_err(|_| Error::Invalid(format!("{object}: resourceVersion {rv:?} is not a store revision")))
}

/// The stored form: JSON without resourceVersion, which is the key's modification revision and
/// is filled in on read.
pub fn encode(object_ref: &ObjectRef, object: &Object) -> Result<Vec<u8>> {
    let mut object = object.clone();
    object.metadata.resource_version = None;
    serde_json::to_vec(&object).map_err(|e| Error::Backend(format!("{object_ref}: cannot encode: {e}")))
}

/// Reads a stored value written at `revision`.
pub fn decode(key: &str, value: &[u8], revision: i64) -> Result<Object> {
    let mut object: Object = serde_json::from_slice(value)
        .map_err(|e| Error::Backend(format!("the value at {key} is not an object: {e}")))?;
    object.metadata.resource_version = Some(revision.to_string());
    Ok(object)
}

/// Sorts a list as [`crate::ObjectList`] promises: by namespace, then name. Key order differs
/// (`a-b/x` sorts before `a/x` by bytes).
pub fn sort(items: &mut [Object]) {
    items.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
}

/// Five characters from Kubernetes' generateName alphabet (no vowels, no look-alikes).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bits = uuid::Uuid::new_v4().as_u128();
    (0..5)
        .map(|_| {
            let i = (bits % ALPHABET.len() as u128) as usize;
            bits /= ALPHABET.len() as u128;
            char::from(ALPHABET[i])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use api::kinds::{NODE, SERVICE};
    use serde_json::json;

    use super::*;

    #[test]
    fn create_stamps_system_fields() {
        let mut svc = Object::new(&SERVICE, Some("default"), "webpod");
        svc.metadata.resource_version = Some("42".into());
        svc.metadata.uid = Some("from-yaml".into());
        let (r, created) = for_create(svc).expect("valid");
        assert_eq!(r.to_string(), "Service default/webpod");
        assert_eq!(created.metadata.generation, Some(1));
        assert_eq!(created.metadata.resource_version, None);
        assert_ne!(created.metadata.uid.as_deref(), Some("from-yaml"));
        assert!(created.metadata.creation_timestamp.as_deref().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn generate_name() {
        let mut pod = Object::new(&api::kinds::POD, Some("default"), "");
        pod.metadata.generate_name = Some("webpod-".into());
        let (_, created) = for_create(pod).expect("valid");
        assert_eq!(created.metadata.name.len(), "webpod-".len() + 5);
        assert!(created.metadata.name.starts_with("webpod-"));
    }

    #[test]
    fn rejects_what_cannot_be_a_key() {
        let no_ns = Object::new(&SERVICE, None, "webpod");
        assert!(matches!(for_create(no_ns), Err(Error::Invalid(m)) if m.contains("namespace")));
        let slash = Object::new(&SERVICE, Some("default"), "a/b");
        assert!(matches!(for_create(slash), Err(Error::Invalid(m)) if m.contains("Service default/a/b")));
        let mut unknown = Object::new(&SERVICE, Some("default"), "x");
        unknown.kind = "Frob".into();
        assert!(matches!(for_create(unknown), Err(Error::Invalid(_))));
        let mut bad_version = Object::new(&SERVICE, Some("default"), "x");
        bad_version.api_version = "v2".into();
        assert!(matches!(for_create(bad_version), Err(Error::Invalid(m)) if m.contains("use one of v1")));
    }

    #[test]
    fn normalizes_scope_and_version() {
        let mut node = Object::new(&NODE, None, "k8s-w1");
        node.metadata.namespace = Some("default".into());
        let r = normalize(&mut node).expect("valid");
        assert_eq!(r.namespace, None);
        assert_eq!(node.metadata.namespace, None);

        let mut pool = Object::new(&api::kinds::LB_IP_POOL, None, "pool");
        pool.api_version = "cilium.io/v2alpha1".into();
        normalize(&mut pool).expect("valid");
        assert_eq!(pool.api_version, "cilium.io/v2");
    }

    #[test]
    fn update_keeps_identity_and_counts_spec_changes() {
        let (_, mut stored) = for_create(Object::new(&SERVICE, Some("default"), "webpod")).expect("valid");
        stored.body.insert("spec".into(), json!({"type": "ClusterIP"}));
        let mut next = Object::new(&SERVICE, Some("default"), "webpod");
        next.body.insert("spec".into(), json!({"type": "ClusterIP"}));
        next.body.insert("status".into(), json!({"loadBalancer": {}}));
        let same_spec = for_update(next.clone(), &stored);
        assert_eq!(same_spec.metadata.generation, Some(1));
        assert_eq!(same_spec.metadata.uid, stored.metadata.uid);
        assert_eq!(same_spec.metadata.creation_timestamp, stored.metadata.creation_timestamp);
        next.body.insert("spec".into(), json!({"type": "LoadBalancer"}));
        assert_eq!(for_update(next, &stored).metadata.generation, Some(2));
    }

    #[test]
    fn encoding_leaves_out_the_resource_version() {
        let mut svc = Object::new(&SERVICE, Some("default"), "webpod");
        svc.metadata.resource_version = Some("7".into());
        let r = ObjectRef::new(&SERVICE, Some("default"), "webpod");
        let bytes = encode(&r, &svc).expect("encodes");
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let back = decode("k", &bytes, 9).expect("decodes");
        assert_eq!(back.metadata.resource_version.as_deref(), Some("9"));
        assert!(matches!(decode("k", b"nope", 1), Err(Error::Backend(m)) if m.contains("at k")));
    }
}
