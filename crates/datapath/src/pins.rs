//! Where the datapath pins its maps and links: bpffs on `/sys/fs/bpf`, with everything of cilia
//! under `/sys/fs/bpf/cilia` (one directory per node, or per lab and node), and how a node's pin
//! directory is set up before objects are loaded into it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys::{ensure_bpffs, is_bpffs};

/// Where bpffs is mounted, as on any host running Cilium.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// The directory of all of cilia's pins.
pub const BPF_ROOT: &str = "/sys/fs/bpf/cilia";

/// The pin directory of a node whose agent runs outside a lab: `/sys/fs/bpf/cilia/<node>`.
pub fn node_pin_dir(node: &str) -> PathBuf {
    Path::new(BPF_ROOT).join(node)
}

/// Mounts bpffs on `/sys/fs/bpf` when `pin_dir` lies below it and nothing is mounted there yet;
/// a pin directory elsewhere (a test's own mount) is left to its owner.
pub fn ensure_bpffs_for(pin_dir: &Path) -> Result<()> {
    let mount = Path::new(BPFFS_MOUNT);
    if pin_dir.starts_with(mount) {
        ensure_bpffs(mount)?;
    }
    Ok(())
}

/// Creates `pin_dir` with its `links` subdirectory and checks that it lies on bpffs, where pins
/// outlive the process.
pub(crate) fn create_pin_dir(pin_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(pin_dir.join("links")).map_err(|source| Error::Io {
        op: "create pin directory",
        path: pin_dir.into(),
        source,
    })?;
    if !is_bpffs(pin_dir) {
        return Err(Error::PinDir {
            path: pin_dir.into(),
            reason: "not on a bpffs mount (mount one with datapath::ensure_bpffs)".into(),
        });
    }
    Ok(())
}
