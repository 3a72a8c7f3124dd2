//! The few kernel calls aya 0.14 does not wrap: updating a pinned cgroup link to a new program,
//! batch map reads and deletes, reading the current network namespace's cookie, and
//! checking/mounting bpffs.

use std::ffi::CString;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

/// `SO_NETNS_COOKIE` (Linux 5.14), missing from the libc crate.
const SO_NETNS_COOKIE: libc::c_int = 71;
/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: libc::__fsword_t = 0xcafe_4a11;

/// `enum bpf_cmd` values (stable kernel ABI) missing from the libc crate.
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;

/// The `obj_pin`/`obj_get` member of `union bpf_attr`.
#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// Opens a pinned BPF object (`BPF_OBJ_GET`).
#[allow(unsafe_code)]
pub fn obj_get(path: &Path) -> std::io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let attr = ObjGetAttr { pathname: c_path.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    // SAFETY: `attr` is a fully initialised `obj_get` attribute block of the size passed, and
    // `pathname` points to a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, &attr as *const ObjGetAttr, size_of::<ObjGetAttr>() as libc::c_long)
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success BPF_OBJ_GET returns a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// The `link_update` member of `union bpf_attr`.
#[repr(C)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// Atomically replaces the program behind a BPF link (`BPF_LINK_UPDATE`): the hook never runs
/// without a program, so traffic is translated throughout an agent upgrade.
#[allow(unsafe_code)]
pub fn link_update(link: BorrowedFd<'_>, new_prog: BorrowedFd<'_>) -> std::io::Result<()> {
    let attr = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: new_prog.as_raw_fd() as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    // SAFETY: `attr` is a live, fully initialised `link_update` attribute block and the size
    // passed is its exact size; the kernel only reads from it. Both fds are borrowed, so they
    // stay open for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_UPDATE,
            &attr as *const LinkUpdateAttr,
            size_of::<LinkUpdateAttr>() as libc::c_long,
        )
    };
    if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// The `link_detach` member of `union bpf_attr`.
#[repr(C)]
struct LinkDetachAttr {
    link_fd: u32,
}

/// Detaches a link from its hook now (`BPF_LINK_DETACH`). Dropping the last reference (closing
/// fds, removing the pin) also detaches, but the kernel releases links from a workqueue, so that
/// happens a moment later; callers that promise "detached" on return use this first.
#[allow(unsafe_code)]
pub fn link_detach(link: BorrowedFd<'_>) -> std::io::Result<()> {
    let attr = LinkDetachAttr { link_fd: link.as_raw_fd() as u32 };
    // SAFETY: `attr` is a fully initialised `link_detach` attribute block of the size passed;
    // the borrowed fd stays open for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            &attr as *const LinkDetachAttr,
            size_of::<LinkDetachAttr>() as libc::c_long,
        )
    };
    if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// Detaches the link pinned at `pin` (if any is still attached) and removes the pin.
pub fn detach_pinned_link(pin: &Path) -> std::io::Result<()> {
    if let Ok(fd) = obj_get(pin) {
        // A defunct link (its device is gone) refuses with ENOLINK: nothing left to detach.
        match link_detach(fd.as_fd()) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOLINK) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)) => {
            }
            Err(e) => return Err(e),
        }
    }
    match std::fs::remove_file(pin) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The `batch` member of `union bpf_attr` (`BPF_MAP_*_BATCH`).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Where a batch walk of a hash map stands: the kernel's opaque position (a bucket index for
/// hash maps), `None` before the first batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchCursor(Option<u64>);

/// Reads the next entries of a hash map from `cursor` with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6),
/// as many as `keys` and `values` hold (they must be equally long, and `K`/`V` the map's exact
/// key and value types). Returns how many were read and the cursor after them, `None` once the
/// walk reached the end. The kernel returns whole buckets, so entries added or removed while
/// the walk goes on neither restart it nor make it skip entries that stay.
#[allow(unsafe_code)]
pub fn map_lookup_batch<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    cursor: BatchCursor,
    keys: &mut [K],
    values: &mut [V],
) -> std::io::Result<(usize, Option<BatchCursor>)> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let mut out_batch: u64 = 0;
    let in_batch = cursor.0;
    let mut attr = BatchAttr {
        in_batch: in_batch.as_ref().map_or(0, |b| b as *const u64 as u64),
        out_batch: &mut out_batch as *mut u64 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: keys.len() as u32,
        map_fd: map.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: `attr` is a fully initialised `batch` attribute block of the size passed. `keys`
    // and `values` hold `count` elements of the map's key and value types (plain data, any bit
    // pattern valid), so the kernel writes at most within them; the batch tokens are 8-byte
    // buffers, larger than a hash map's 4-byte token. Everything outlives the call, and the map
    // fd is borrowed for it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            &mut attr as *mut BatchAttr,
            size_of::<BatchAttr>() as libc::c_long,
        )
    };
    let read = (attr.count as usize).min(keys.len());
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        // The end of the map: what was read in this call is valid.
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok((read, None));
        }
        return Err(e);
    }
    Ok((read, Some(BatchCursor(Some(out_batch)))))
}

/// Deletes `keys` from a hash map with `BPF_MAP_DELETE_BATCH` (Linux 5.6). Keys that are gone
/// already (an LRU eviction, the datapath) are skipped. Returns how many were deleted.
#[allow(unsafe_code)]
pub fn map_delete_batch<K: aya::Pod>(map: BorrowedFd<'_>, keys: &[K]) -> std::io::Result<usize> {
    let mut deleted = 0;
    let mut rest = keys;
    while !rest.is_empty() {
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: rest.len() as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a fully initialised `batch` attribute block of the size passed;
        // `keys` holds `count` keys of the map's key type, which the kernel only reads. The map
        // fd is borrowed for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_DELETE_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>() as libc::c_long,
            )
        };
        // The kernel stops at the first key it cannot delete and says how many it did before.
        let done = (attr.count as usize).min(rest.len());
        deleted += done;
        if rc >= 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
        // Skip the key that is gone and go on after it.
        rest = rest.get(done + 1..).unwrap_or_default();
    }
    Ok(deleted)
}

/// Cookie of the calling thread's network namespace, as `bpf_get_netns_cookie()` returns it in
/// the socket-LB hooks.
#[allow(unsafe_code)]
pub fn current_netns_cookie() -> Result<u64> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")
        .or_else(|_| std::net::UdpSocket::bind("0.0.0.0:0"))
        .map_err(|source| Error::Syscall { call: "socket (for SO_NETNS_COOKIE)", source })?;
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: the socket fd is open for the whole call; `cookie` and `len` are valid for writes
    // and `len` holds the size of `cookie`, which bounds what the kernel writes.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(Error::Syscall { call: "getsockopt(SO_NETNS_COOKIE)", source: std::io::Error::last_os_error() });
    }
    Ok(cookie)
}

/// Whether `path` lies on a bpffs mount.
pub fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).map(|s| s.filesystem_type().0 == BPF_FS_MAGIC).unwrap_or(false)
}

/// Mounts bpffs on `dir` unless it is one already, as Cilium does for /sys/fs/bpf. The agent
/// calls this for `/sys/fs/bpf` before [`crate::Datapath::open`].
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    if is_bpffs(dir) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        op: "create bpffs mount point",
        path: dir.into(),
        source,
    })?;
    nix::mount::mount(Some("bpf"), dir, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>).map_err(|e| {
        Error::Io { op: "mount bpffs", path: dir.into(), source: std::io::Error::from_raw_os_error(e as i32) }
    })
}

/// The name of the device with this ifindex in the calling thread's network namespace; `None`
/// when there is none. (Not through nix, for the reason [`ifindex_exists`] gives.)
#[allow(unsafe_code)]
pub fn interface_name(ifindex: u32) -> Option<String> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    if unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null() {
        return None;
    }
    // SAFETY: on success the kernel wrote a NUL-terminated name into the buffer.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// Whether a device with this ifindex exists in the calling thread's network namespace. (Not
/// through nix: its if_indextoname 0.31 reports success for an index that does not exist.)
#[allow(unsafe_code)]
pub fn ifindex_exists(ifindex: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
}
