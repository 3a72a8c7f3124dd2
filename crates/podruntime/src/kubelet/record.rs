//! What the pod runtime knows about each of its pods, on disk, so that a restarted runtime adopts
//! its pods (namespace, network, processes) instead of setting them up again.
//!
//! A record is written before the pod's namespace is created and removed after it is deleted:
//! every pod namespace of the lab is named by some record, and one that is not is a leftover.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::ErrorKind,
    path::Path,
};

use lab::procfs::ProcessId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The pod's network namespace (see [`crate::pod_netns`]).
    pub netns: String,
    /// CNI_CONTAINERID: the pod uid, which is unique and valid as a container ID.
    pub container_id: String,
    pub ifname: String,
    /// The ADD result, passed back as `prevResult` on DEL. None until ADD succeeded.
    #[serde(default)]
    pub cni_result: Option<Value>,
    /// When this node accepted the pod (`status.startTime`).
    #[serde(default)]
    pub start_time: Option<String>,
    /// Termination grace of the pod, for a teardown after the pod object is gone.
    #[serde(default)]
    pub grace_seconds: Option<i64>,
    #[serde(default)]
    pub containers: BTreeMap<String, ContainerRecord>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    /// The running process; None while stopped.
    #[serde(default)]
    pub process: Option<ProcessId>,
    #[serde(default)]
    pub restarts: u32,
}

impl PodRecord {
    /// The pod's address from the ADD result (`ips[0].address` without its prefix length).
    pub fn pod_ip(&self) -> Option<String> {
        let address = self.cni_result.as_ref()?.get("ips")?.get(0)?.get("address")?.as_str()?;
        Some(address.split('/').next().unwrap_or(address).to_string())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("a record always serializes");
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, json).map_err(|e| Error::io("write", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))
    }

    pub fn load(path: &Path) -> Result<PodRecord> {
        let text = fs::read(path).map_err(|e| Error::io("read", path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn remove(path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io("remove", path, e)),
            _ => Ok(()),
        }
    }
}

/// Every readable record in `dir`; unreadable ones are reported and skipped.
pub fn load_all(dir: &Path) -> Vec<PodRecord> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            PodRecord::load(&p)
                .map_err(|e| tracing::warn!(error = &e as &dyn std::error::Error, "skipping an unreadable pod record"))
                .ok()
        })
        .collect()
}

/// The namespaces named by the records of every node under `nodes_dir`.
pub fn namespaces_in_use(nodes_dir: &Path) -> BTreeSet<String> {
    let Ok(nodes) = fs::read_dir(nodes_dir) else { return BTreeSet::new() };
    nodes.filter_map(|n| n.ok()).flat_map(|n| load_all(&n.path().join("pods"))).map(|r| r.netns).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_pod_ip() {
        let dir = tempfile::tempdir().unwrap();
        let pods = dir.path().join("k8s-w1/pods");
        fs::create_dir_all(&pods).unwrap();
        let mut r = PodRecord {
            uid: "u1".into(),
            namespace: "default".into(),
            name: "web".into(),
            netns: "t1-pod-default-web-u1".into(),
            container_id: "u1".into(),
            ifname: "eth0".into(),
            cni_result: None,
            start_time: None,
            grace_seconds: Some(0),
            containers: BTreeMap::new(),
        };
        assert_eq!(r.pod_ip(), None);
        r.cni_result = Some(serde_json::json!({"ips": [{"address": "172.20.1.7/32"}]}));
        assert_eq!(r.pod_ip().as_deref(), Some("172.20.1.7"));
        r.save(&pods.join("u1.json")).unwrap();
        fs::write(pods.join("garbage.json"), "{").unwrap();
        assert_eq!(load_all(&pods), vec![r.clone()]);
        assert_eq!(namespaces_in_use(dir.path()), BTreeSet::from([r.netns.clone()]));
        PodRecord::remove(&pods.join("u1.json")).unwrap();
        PodRecord::remove(&pods.join("u1.json")).unwrap();
        assert!(load_all(&pods).is_empty());
    }
}
