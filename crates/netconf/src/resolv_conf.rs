//! A process's own `/etc/resolv.conf`, as `ip netns exec` gives one with
//! `/etc/netns/<name>/resolv.conf`: the process starts in a private mount namespace where a file
//! is bind-mounted over `/etc/resolv.conf`. The namespace's mounts are made slaves first, so
//! nothing propagates back: the machine and every other process keep their own file.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::{ffi::OsStrExt, process::CommandExt};
use std::path::Path;
use std::process::Command;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

/// What the child does when the bind mount itself fails (say, `/etc/resolv.conf` is a dangling
/// symlink).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfBindFails {
    /// Run with the machine's file anyway, as `ip netns exec` does.
    RunAnyway,
    /// Do not run: the spawn fails with the mount's error.
    Fail,
}

/// Makes `cmd` start in a private mount namespace with `resolv_conf` mounted over
/// `/etc/resolv.conf`.
#[allow(unsafe_code)] // pre_exec is the only hook that runs in the child between fork and exec.
pub fn bind_on_spawn(cmd: &mut Command, resolv_conf: &Path, if_fails: IfBindFails) -> io::Result<()> {
    let source = CString::new(resolv_conf.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let target = CString::new("/etc/resolv.conf").map_err(io::Error::other)?;
    let root = CString::new("/").map_err(io::Error::other)?;
    // SAFETY: the closure runs in the forked child before exec. It only makes system calls
    // (unshare, mount) on C strings built before the fork, which the closure owns; nix passes a
    // `CStr` through without allocating, and errors are plain errno values.
    unsafe {
        cmd.pre_exec(move || {
            unshare(CloneFlags::CLONE_NEWNS).map_err(io::Error::from)?;
            mount(None::<&CStr>, root.as_c_str(), None::<&CStr>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&CStr>)
                .map_err(io::Error::from)?;
            let bound =
                mount(Some(source.as_c_str()), target.as_c_str(), None::<&CStr>, MsFlags::MS_BIND, None::<&CStr>);
            match (bound, if_fails) {
                (Err(e), IfBindFails::Fail) => Err(io::Error::from(e)),
                _ => Ok(()),
            }
        });
    }
    Ok(())
}
