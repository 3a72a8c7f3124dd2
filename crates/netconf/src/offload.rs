//! Generic receive offload of a device, through the ethtool ioctl (`ethtool -K DEV gro on|off`),
//! from a thread inside the namespace as for sysctls.

use std::io;

use crate::error::{Error, Result};
use crate::handle::Netconf;

const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct Ifreq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    /// `struct ifreq` is larger than a name and a pointer; the kernel copies all of it.
    _pad: [u8; 16],
}

#[allow(unsafe_code, reason = "the ethtool ioctl has no safe wrapper in the crates used")]
fn ethtool(fd: libc::c_int, device: &str, cmd: u32, data: u32) -> io::Result<u32> {
    if device.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut value = EthtoolValue { cmd, data };
    let mut req = Ifreq { name: [0; libc::IFNAMSIZ], data: &mut value, _pad: [0; 16] };
    for (dst, src) in req.name.iter_mut().zip(device.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq whose data points at `value`, both alive for the call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut req) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(value.data) }
}

/// Sets GRO of `device` in the calling thread's namespace; returns whether it changed.
#[allow(unsafe_code, reason = "a socket only as the ioctl's handle, owned at once")]
pub fn set_gro_here(device: &str, on: bool) -> io::Result<bool> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: a plain socket call; the descriptor is owned (and closed) by `sock` right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let current = ethtool(sock.as_raw_fd(), device, ETHTOOL_GGRO, 0)?;
    if (current != 0) == on {
        return Ok(false);
    }
    ethtool(sock.as_raw_fd(), device, ETHTOOL_SGRO, u32::from(on)).map(|_| true)
}

impl Netconf {
    /// Sets GRO of `device` in this handle's namespace; returns whether it changed.
    pub async fn set_gro(&self, device: &str, on: bool) -> Result<bool> {
        let label = self.netns_name().to_string();
        let device = device.to_string();
        let set = move || {
            set_gro_here(&device, on).map_err(|source| Error::Sysctl {
                netns: label,
                key: format!("ethtool {device} gro"),
                value: if on { "on" } else { "off" }.into(),
                source,
            })
        };
        match &self.netns {
            None => set(),
            Some(ns) => ns.run(set).await,
        }
    }
}
