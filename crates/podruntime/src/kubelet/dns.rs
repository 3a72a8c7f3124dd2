//! Name resolution inside pods: the place where a pod's `resolv.conf` will come from once the
//! cluster has a DNS service (`nameserver <kube-dns cluster IP>`, `search <ns>.svc.cluster.local
//! svc.cluster.local cluster.local`, `options ndots:5`, as the kubelet writes it).
//!
//! Until then pods resolve with the machine's own `/etc/resolv.conf`. To switch it on, return
//! the file's content here and have [`crate::pod_netns::spawn_inside`]'s callers (container
//! start, `cilia exec`) enter a private mount namespace on their spawning thread
//! (`unshare(CLONE_NEWNS)`, then bind-mount the file over `/etc/resolv.conf`), which is what
//! `ip netns exec` does with `/etc/netns/<name>/resolv.conf`.

use api::types::Pod;

/// The pod's `resolv.conf`, or None to use the machine's.
pub fn resolv_conf(_pod: &Pod) -> Option<String> {
    None
}
