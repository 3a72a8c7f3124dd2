//! Shared helpers of the privileged tests: a private bpffs per test, a fresh network namespace
//! for the test thread, and packet building/checking.
#![allow(dead_code)]

pub mod packet;
pub mod topo;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A bpffs instance mounted on a fresh directory under /tmp, unmounted and removed on drop (also
/// when the test panics). Tests never touch /sys/fs/bpf.
pub struct Bpffs {
    root: PathBuf,
}

impl Bpffs {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("cilia-dp-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&root).expect("create bpffs mount point");
        nix::mount::mount(Some("bpf"), &root, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
            .expect("mount bpffs (tests run as root)");
        Bpffs { root }
    }

    /// The pin directory of one node, e.g. `<root>/cilia/test/node1`.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.root.join("cilia").join("test").join(node)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.root, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// Moves the calling test thread into a new, empty network namespace (only a down loopback), so
/// FIB lookups during BPF_PROG_TEST_RUN find nothing and nothing can reach the host's network.
/// Each test runs on its own thread, which ends with the test.
pub fn enter_empty_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Privileged tests fail, saying why, when not run as root: a test that did not run must never
/// count as passed (`make test` runs as root).
#[macro_export]
macro_rules! require_root {
    () => {
        assert!(
            $crate::common::is_root(),
            "needs root (BPF, network namespaces, bpffs): run as root, as `make test` does"
        );
    };
}
