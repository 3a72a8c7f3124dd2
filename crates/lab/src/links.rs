//! Setting every link of a namespace down or up from inside it, with `SIOCGIFFLAGS` and
//! `SIOCSIFFLAGS` on a socket of that namespace: no `ip` process per call, so a node's links all
//! go down within microseconds of each other, which is what makes `lab kill` a sharp moment.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::net::if_::if_nameindex;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use crate::error::LabError;
use crate::netns;

const LOOPBACK: &str = "lo";

/// A socket of the calling thread's network namespace, for interface ioctls.
fn ioctl_socket() -> io::Result<OwnedFd> {
    socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).map_err(io::Error::from)
}

fn request(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is a plain C struct (a name array and a union of integers and addresses), for
    // which all-zero bytes are a valid value.
    #[allow(unsafe_code)]
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // Interface names are at most 15 bytes; the zeroed last byte terminates the name.
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes().iter().take(libc::IFNAMSIZ - 1)) {
        *dst = *src as libc::c_char;
    }
    req
}

fn flags(sock: &OwnedFd, name: &str) -> io::Result<libc::c_short> {
    let mut req = request(name);
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into the ifreq we own, which
    // lives across the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after a successful SIOCGIFFLAGS the union holds the flags.
    #[allow(unsafe_code)]
    Ok(unsafe { req.ifr_ifru.ifru_flags })
}

fn set_flags(sock: &OwnedFd, name: &str, value: libc::c_short) -> io::Result<()> {
    let mut req = request(name);
    req.ifr_ifru.ifru_flags = value;
    // SAFETY: SIOCSIFFLAGS reads the name and flags from the ifreq we own, which lives across
    // the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

const IFF_UP: libc::c_short = libc::IFF_UP as libc::c_short;

fn os_error(namespace: &str, action: &'static str, e: io::Error) -> LabError {
    LabError::Netns {
        namespace: namespace.to_string(),
        action,
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(0)),
    }
}

/// Sets every link of `namespace` except lo administratively down; returns the names of those
/// that were up, in ifindex order.
pub(crate) fn all_down(namespace: &str) -> Result<Vec<String>, LabError> {
    netns::run_in(namespace, || {
        let sock = ioctl_socket().map_err(|e| os_error(namespace, "open an ioctl socket", e))?;
        let names: Vec<String> = if_nameindex()
            .map_err(|source| LabError::Netns { namespace: namespace.to_string(), action: "list links", source })?
            .iter()
            .map(|i| i.name().to_string_lossy().into_owned())
            .filter(|n| n != LOOPBACK)
            .collect();
        let mut were_up = Vec::new();
        for name in names {
            let current = match flags(&sock, &name) {
                Ok(f) => f,
                // Gone since the listing (a pod's veth whose namespace was just deleted).
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => continue,
                Err(e) => return Err(os_error(namespace, "read link flags", e)),
            };
            if current & IFF_UP == 0 {
                continue;
            }
            match set_flags(&sock, &name, current & !IFF_UP) {
                Ok(()) => were_up.push(name),
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
                Err(e) => return Err(os_error(namespace, "set a link down", e)),
            }
        }
        Ok(were_up)
    })
}

/// Sets the named links of `namespace` up; names that no longer exist are skipped. Returns the
/// names brought up.
pub(crate) fn up(namespace: &str, names: &[String]) -> Result<Vec<String>, LabError> {
    netns::run_in(namespace, || {
        let sock = ioctl_socket().map_err(|e| os_error(namespace, "open an ioctl socket", e))?;
        let mut brought = Vec::new();
        for name in names {
            let current = match flags(&sock, name) {
                Ok(f) => f,
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => continue,
                Err(e) => return Err(os_error(namespace, "read link flags", e)),
            };
            if current & IFF_UP != 0 {
                continue;
            }
            match set_flags(&sock, name, current | IFF_UP) {
                Ok(()) => brought.push(name.clone()),
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
                Err(e) => return Err(os_error(namespace, "set a link up", e)),
            }
        }
        Ok(brought)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_copied_and_terminated() {
        let req = request("eth1");
        let name: Vec<u8> = req.ifr_name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        assert_eq!(name, b"eth1");
        let long = request("a-very-long-interface-name");
        assert_eq!(long.ifr_name[libc::IFNAMSIZ - 1], 0);
    }
}
