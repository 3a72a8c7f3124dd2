//! Where a node's pod runtime keeps its files, beside the agent's in the lab's state dir:
//! `/run/cilia/lab/<lab>/nodes/<node>/`. Under /run on purpose: pods, like their network
//! namespaces, do not survive a reboot.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct NodePaths {
    nodes_dir: PathBuf,
    node_dir: PathBuf,
    agent_socket: PathBuf,
}

impl NodePaths {
    pub fn new(lab: &lab::Lab, node: &str) -> Self {
        let node_dir = lab.paths().node_dir(node);
        let nodes_dir = node_dir.parent().map_or_else(|| node_dir.clone(), std::path::Path::to_path_buf);
        NodePaths { node_dir, nodes_dir, agent_socket: lab.paths().cni_socket(node) }
    }

    /// The directory of every node of the lab.
    pub fn nodes_dir(&self) -> &Path {
        &self.nodes_dir
    }

    /// `/run/cilia/lab/<lab>/nodes/<node>/cni.sock`: where the node's agent serves the CNI plugin
    /// (the lab's [`lab::LabPaths::cni_socket`]).
    pub fn agent_socket(&self) -> PathBuf {
        self.agent_socket.clone()
    }

    /// One record per pod (`<uid>.json`) and the pods' container logs.
    pub fn pods_dir(&self) -> PathBuf {
        self.node_dir.join("pods")
    }

    pub fn record(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(format!("{uid}.json"))
    }

    /// Output of one container of a pod.
    pub fn container_log(&self, uid: &str, container: &str) -> PathBuf {
        self.pods_dir().join(format!("{uid}.{container}.log"))
    }
}
