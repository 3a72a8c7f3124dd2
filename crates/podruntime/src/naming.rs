//! Names as Kubernetes makes them: `webpod-5f6b6b4cd7-hwmcr` is the Deployment's name, the hash of
//! its pod template (the `pod-template-hash` label) and a random suffix.

use api::types::PodTemplateSpec;
use rand::RngExt as _;

/// The characters Kubernetes uses for generated names: no vowels (no accidental words) and no
/// characters that look alike (`0`/`o`, `1`/`l`, `3`/`e`).
pub const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Length of the random part of a generated name (`generateName` and pod names).
pub const SUFFIX_LEN: usize = 5;

/// The label that ties pods to the template revision they were made from.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// `pod-template-hash` of a template: FNV-1a (32 bit) of the template, its decimal digits mapped
/// onto [`ALPHABET`] as Kubernetes' `SafeEncodeString` does. Kubernetes hashes its own Go
/// rendering of the template, which cannot be reproduced here; cilia hashes the template's JSON,
/// which is as stable (serde_json keeps document order) and gives values of the same shape.
pub fn pod_template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_vec(template).expect("a pod template always serializes");
    safe_encode(&fnv1a32(&json).to_string())
}

/// Kubernetes' `rand.SafeEncodeString`: every byte mapped onto [`ALPHABET`].
pub fn safe_encode(s: &str) -> String {
    s.bytes().map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char).collect()
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// `n` random characters of [`ALPHABET`].
pub fn random_suffix(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// A new pod name for a Deployment: `<deployment>-<template hash>-<5 random>`.
pub fn pod_name(deployment: &str, template_hash: &str) -> String {
    format!("{deployment}-{template_hash}-{}", random_suffix(SUFFIX_LEN))
}

#[cfg(test)]
mod tests {
    use api::types::PodTemplateSpec;

    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "webpod"}},
            "spec": {"containers": [{"name": "webpod", "image": image}]}
        }))
        .unwrap()
    }

    #[test]
    fn template_hash_is_stable_and_shaped_like_kubernetes() {
        let a = pod_template_hash(&template("traefik/whoami"));
        assert_eq!(a, pod_template_hash(&template("traefik/whoami")));
        assert_ne!(a, pod_template_hash(&template("traefik/whoami:v1.10")));
        // Decimal digits of a u32 are 1 to 10 characters; SafeEncodeString maps '0'..'9' onto
        // these ten characters only, as in real hashes (`5f6b6b4cd7`).
        assert!((1..=10).contains(&a.len()), "{a}");
        assert!(a.chars().all(|c| "456789bcdf".contains(c)), "{a}");
    }

    #[test]
    fn safe_encode_matches_kubernetes() {
        // Worked by hand from SafeEncodeString: '0' (48) % 27 = 21 -> '4', '9' (57) % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn pod_names() {
        let name = pod_name("webpod", "5f6b6b4cd7");
        let suffix = name.strip_prefix("webpod-5f6b6b4cd7-").expect(&name);
        assert_eq!(suffix.len(), SUFFIX_LEN);
        assert!(suffix.bytes().all(|b| ALPHABET.contains(&b)), "{name}");
        let many: std::collections::BTreeSet<_> = (0..200).map(|_| random_suffix(5)).collect();
        assert!(many.len() > 190, "suffixes repeat too often");
    }
}
