//! How much a node's datapath holds: the entries of every pinned map and the pinned links. For
//! soak runs and leak hunting (`cargo run --release --example map-entries -p datapath -- DIR`).

use std::ffi::c_void;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use aya::maps::{MapData, MapType};

use crate::error::{Error, Result};

/// One pinned map's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapCount {
    pub name: String,
    /// Keys present (for arrays: their fixed size).
    pub entries: usize,
    pub max_entries: u32,
}

/// Entries of every map pinned directly in `pin_dir`, by name.
pub fn map_counts(pin_dir: &Path) -> Result<Vec<MapCount>> {
    let dir =
        std::fs::read_dir(pin_dir).map_err(|source| Error::Io { op: "list pins", path: pin_dir.into(), source })?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(true) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(map) = MapData::from_pin(entry.path()) else { continue };
        let info = map.info().map_err(|e| Error::Io {
            op: "read map info",
            path: entry.path(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let entries = match info.map_type() {
            // A ring buffer has no keys to walk (the kernel refuses with ENOTSUPP); its size is
            // in bytes, not entries.
            Ok(MapType::RingBuf) => continue,
            Ok(MapType::Array | MapType::PerCpuArray) => info.max_entries() as usize,
            _ => count_keys(map.fd().as_fd(), info.key_size() as usize).map_err(|source| Error::Io {
                op: "iterate map keys",
                path: entry.path(),
                source,
            })?,
        };
        out.push(MapCount { name, entries, max_entries: info.max_entries() });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Pinned links (`links/`).
pub fn link_pins(pin_dir: &Path) -> usize {
    std::fs::read_dir(pin_dir.join("links")).map(|d| d.flatten().count()).unwrap_or(0)
}

/// `BPF_MAP_GET_NEXT_KEY` from `enum bpf_cmd` (stable kernel ABI).
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// The `map_elem` member of `union bpf_attr` as GET_NEXT_KEY reads it.
#[repr(C)]
struct NextKeyAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    next_key: u64,
}

/// Walks the map's keys with `BPF_MAP_GET_NEXT_KEY` and counts them (no values read, any key size).
#[allow(unsafe_code)]
fn count_keys(map: BorrowedFd<'_>, key_size: usize) -> std::io::Result<usize> {
    let mut key = vec![0u8; key_size.max(1)];
    let mut next = vec![0u8; key_size.max(1)];
    let mut count = 0usize;
    let mut first = true;
    loop {
        let attr = NextKeyAttr {
            map_fd: map.as_raw_fd() as u32,
            pad: 0,
            // A null key asks for the first key.
            key: if first { 0 } else { key.as_ptr() as u64 },
            next_key: next.as_mut_ptr() as u64,
        };
        // SAFETY: `attr` is a fully initialised `map_elem` attribute block of the size passed;
        // `key` (read) and `next` (written) are live buffers of the map's key size, and the
        // borrowed map fd stays open for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_GET_NEXT_KEY,
                &attr as *const NextKeyAttr as *const c_void,
                size_of::<NextKeyAttr>() as libc::c_long,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOENT) {
                return Ok(count);
            }
            return Err(e);
        }
        count += 1;
        std::mem::swap(&mut key, &mut next);
        first = false;
        // A map that keeps changing under the walk may restart it; never loop forever.
        if count > 64 << 20 {
            return Ok(count);
        }
    }
}
