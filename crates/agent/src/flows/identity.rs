//! Numeric identities for flows. cilia allocates no security identities (there is no network
//! policy yet), so the flow buffer derives one from what Cilium derives it from: the pod's
//! namespace and labels. The same label set gives the same number on every node and across
//! restarts (FNV-1a of the namespace and the sorted labels), in Cilium's range for cluster-local
//! identities (256..=65535). Two different label sets may collide (1 in 65 280); the number names
//! a workload in output, it grants nothing.

use std::collections::BTreeMap;

/// Cilium's first identity for workloads; below are the reserved ones (host 1, world 2, ...).
pub const FIRST_WORKLOAD_IDENTITY: u32 = 256;
const WORKLOAD_IDENTITIES: u32 = 65536 - FIRST_WORKLOAD_IDENTITY;

/// The identity of pods in `namespace` with `labels`.
pub fn workload_identity(namespace: &str, labels: &BTreeMap<String, String>) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    // each string with its length first, so no two label sets give the same bytes
    let mut field = |text: &str| {
        eat(&(text.len() as u64).to_le_bytes());
        eat(text.as_bytes());
    };
    field(namespace);
    for (k, v) in labels {
        field(k);
        field(v);
    }
    FIRST_WORKLOAD_IDENTITY + (hash % u64::from(WORKLOAD_IDENTITIES)) as u32
}

/// Labels as Hubble prints them (`k8s:app=webpod`), with the namespace label Cilium adds.
pub fn hubble_labels(namespace: &str, labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = labels.iter().map(|(k, v)| format!("k8s:{k}={v}")).collect();
    out.push(format!("k8s:io.kubernetes.pod.namespace={namespace}"));
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    #[test]
    fn the_same_labels_give_the_same_identity_and_others_another() {
        let web = workload_identity("default", &labels(&[("app", "webpod")]));
        assert_eq!(web, workload_identity("default", &labels(&[("app", "webpod")])));
        assert!((FIRST_WORKLOAD_IDENTITY..=65535).contains(&web));
        assert_ne!(web, workload_identity("default", &labels(&[("app", "curl")])));
        assert_ne!(web, workload_identity("other", &labels(&[("app", "webpod")])));
        // a value is not confused with the next key
        assert_ne!(
            workload_identity("default", &labels(&[("a", "b"), ("c", "d")])),
            workload_identity("default", &labels(&[("a", "b\0k8s:c=d")]))
        );
    }

    #[test]
    fn labels_are_printed_with_their_source_and_the_namespace() {
        assert_eq!(
            hubble_labels("default", &labels(&[("app", "webpod")])),
            ["k8s:app=webpod", "k8s:io.kubernetes.pod.namespace=default"]
        );
    }
}
