//! Gratuitous ARP and unsolicited neighbour advertisements: what a node sends when it takes over
//! an announced address, so neighbours that cached the previous holder's MAC switch to this one
//! at once instead of when their entry expires.
//!
//! Frames are built by pure functions (tested byte by byte); only [`send_gratuitous_arp`] and
//! [`send_unsolicited_na`] touch the kernel, through an `AF_PACKET` socket in the calling
//! thread's network namespace. Protocol 0 on that socket means it receives nothing. The device
//! needs no IP address (Cilium's first sender needed one, #41641). One call sends each frame
//! once; repeating (a few times over a couple of seconds, as MetalLB does) is the caller's
//! policy.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};

pub const ETH_BROADCAST: [u8; 6] = [0xff; 6];
/// The Ethernet group of ff02::1 (RFC 2464 7).
pub const ETH_ALL_NODES: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
pub const IPV6_ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ARPOP_REQUEST: u16 = 1;
const ARPOP_REPLY: u16 = 2;
/// Ethernet frames shorter than this are padded on the wire; built padded so every driver sends
/// them as built.
const ETH_ZLEN: usize = 60;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOUR_ADVERT: u8 = 136;
const ND_OPT_TARGET_LL_ADDR: u8 = 2;
/// R=0 S=0 O=1: unsolicited, and replaces the MAC a neighbour cached (RFC 4861 7.2.6).
const NA_FLAG_OVERRIDE: u32 = 0x2000_0000;

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_ZLEN + 26);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn arp(op: u16, mac: [u8; 6], ip: Ipv4Addr, tha: [u8; 6]) -> Vec<u8> {
    let mut f = ethernet(ETH_BROADCAST, mac, ETH_P_ARP);
    f.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&ip.octets());
    f.resize(ETH_ZLEN, 0);
    f
}

/// The request-form announcement (RFC 5227 2.3): op 1, sender = target = `ip`, sha = `mac`,
/// tha = 0, Ethernet broadcast. Linux updates an existing neighbour entry from it at once, even
/// within its lock time.
pub fn gratuitous_arp_request(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    arp(ARPOP_REQUEST, mac, ip, [0; 6])
}

/// The reply-form announcement (RFC 5944 4.6, for devices that learn only from replies): op 2,
/// sender = target = `ip`, sha = tha = `mac`, broadcast. Linux takes a reply as gratuitous only
/// when tha equals sha.
pub fn gratuitous_arp_reply(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    arp(ARPOP_REPLY, mac, ip, mac)
}

/// One's-complement sum of 16-bit big-endian words (RFC 1071), not yet inverted.
fn ones_sum(data: &[u8], mut sum: u32) -> u32 {
    for chunk in data.chunks(2) {
        let hi = u32::from(chunk[0]) << 8;
        let lo = chunk.get(1).copied().map(u32::from).unwrap_or(0);
        sum += hi | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// ICMPv6 checksum over the pseudo header (RFC 8200 8.1) and `message`.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(message.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_ICMPV6]);
    !(ones_sum(message, ones_sum(&pseudo, 0)) as u16)
}

/// The unsolicited neighbour advertisement for `ip` (RFC 4861 7.2.6): from `ip` to all nodes
/// (ff02::1, Ethernet 33:33:00:00:00:01), hop limit 255, R=0 S=0 O=1, Target Link-Layer Address
/// option = `mac`. (Cilium's has O=0 and a Source Link-Layer option, which receivers do not use
/// to replace a cached MAC.)
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&[ND_NEIGHBOUR_ADVERT, 0, 0, 0]);
    msg.extend_from_slice(&NA_FLAG_OVERRIDE.to_be_bytes());
    msg.extend_from_slice(&ip.octets());
    msg.extend_from_slice(&[ND_OPT_TARGET_LL_ADDR, 1]);
    msg.extend_from_slice(&mac);
    let csum = icmpv6_checksum(ip, IPV6_ALL_NODES, &msg);
    msg[2..4].copy_from_slice(&csum.to_be_bytes());

    let mut f = ethernet(ETH_ALL_NODES, mac, ETH_P_IPV6);
    f.extend_from_slice(&0x6000_0000u32.to_be_bytes());
    f.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    f.extend_from_slice(&[IPPROTO_ICMPV6, 255]);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&IPV6_ALL_NODES.octets());
    f.extend_from_slice(&msg);
    f
}

/// Sends both gratuitous ARP forms for `ip` with `mac` out of device `ifindex` of the calling
/// thread's network namespace.
pub fn send_gratuitous_arp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<()> {
    let sock = raw::PacketSocket::open().map_err(|source| send_error(ifindex, "socket(AF_PACKET)", source))?;
    for frame in [gratuitous_arp_request(mac, ip), gratuitous_arp_reply(mac, ip)] {
        sock.send(ifindex, ETH_BROADCAST, &frame)
            .map_err(|source| send_error(ifindex, "sendto (gratuitous ARP)", source))?;
    }
    Ok(())
}

/// Sends the unsolicited neighbour advertisement for `ip` with `mac` out of device `ifindex` of
/// the calling thread's network namespace.
pub fn send_unsolicited_na(ifindex: u32, mac: [u8; 6], ip: Ipv6Addr) -> Result<()> {
    let sock = raw::PacketSocket::open().map_err(|source| send_error(ifindex, "socket(AF_PACKET)", source))?;
    sock.send(ifindex, ETH_ALL_NODES, &unsolicited_na(mac, ip))
        .map_err(|source| send_error(ifindex, "sendto (unsolicited NA)", source))
}

fn send_error(ifindex: u32, call: &'static str, source: std::io::Error) -> Error {
    let ifname = match nix::net::if_::if_indextoname(ifindex) {
        Ok(name) if crate::sys::ifindex_exists(ifindex) => format!("{} (ifindex {ifindex})", name.to_string_lossy()),
        _ => format!("ifindex {ifindex}"),
    };
    Error::Send { ifname, call, source }
}

/// A device of the calling thread's network namespace: what an [`crate::L2Entry`] needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// The ifindex and MAC of device `ifname` in the calling thread's network namespace (through
/// netlink: /sys/class/net shows the namespace sysfs was mounted in, not the thread's).
pub fn interface_info(ifname: &str) -> Result<InterfaceInfo> {
    let not_found = |reason: String| Error::Interface { ifname: ifname.into(), reason };
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| not_found(format!("getifaddrs: {e}")))?;
    for a in addrs {
        if a.interface_name != ifname {
            continue;
        }
        if let Some(link) = a.address.as_ref().and_then(|s| s.as_link_addr())
            && let Some(mac) = link.addr()
        {
            return Ok(InterfaceInfo { ifindex: link.ifindex() as u32, mac });
        }
    }
    Err(not_found("no such device, or it has no link-layer address".into()))
}

/// The only unsafe code of this module: one `AF_PACKET` socket and `sendto` on it.
mod raw {
    use std::mem::size_of;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    pub struct PacketSocket(OwnedFd);

    impl PacketSocket {
        /// A raw packet socket bound to no protocol: it can send on any device of the calling
        /// thread's network namespace and receives nothing.
        #[allow(unsafe_code)]
        pub fn open() -> std::io::Result<Self> {
            // SAFETY: plain socket(2) with constant arguments; no pointers are passed.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: socket(2) returned a new descriptor that nothing else owns.
            Ok(PacketSocket(unsafe { OwnedFd::from_raw_fd(fd) }))
        }

        /// Sends `frame` (Ethernet header included) out of device `ifindex`.
        #[allow(unsafe_code)]
        pub fn send(&self, ifindex: u32, dst: [u8; 6], frame: &[u8]) -> std::io::Result<()> {
            let ifindex = i32::try_from(ifindex).map_err(|_| std::io::Error::from_raw_os_error(libc::ENODEV))?;
            // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = ifindex;
            addr.sll_halen = 6;
            addr.sll_addr[..6].copy_from_slice(&dst);
            // SAFETY: the fd is open for the call; `frame` is valid for reads of its length and
            // `addr` is a fully initialised sockaddr_ll of the size passed. The kernel only reads.
            let n = unsafe {
                libc::sendto(
                    self.0.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if n as usize != frame.len() {
                return Err(std::io::Error::other(format!("sent {n} of {} bytes", frame.len())));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 211);

    #[test]
    fn gratuitous_arp_request_bytes() {
        let f = gratuitous_arp_request(MAC, VIP);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..], &MAC, &[0x08, 0x06], // Ethernet, broadcast
            &[0x00, 0x01, 0x08, 0x00, 6, 4], &[0x00, 0x01],                 // Ethernet/IPv4, request
            &MAC, &[192, 168, 10, 211],                                     // sha, spa
            &[0; 6], &[192, 168, 10, 211],                                  // tha = 0, tpa = spa
            &[0; 18],                                                       // padding to 60
        ]
        .concat();
        assert_eq!(f, want);
        assert_eq!(f.len(), 60);
    }

    #[test]
    fn gratuitous_arp_reply_bytes() {
        let f = gratuitous_arp_reply(MAC, VIP);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[0xff; 6][..], &MAC, &[0x08, 0x06],
            &[0x00, 0x01, 0x08, 0x00, 6, 4], &[0x00, 0x02],
            &MAC, &[192, 168, 10, 211],
            &MAC, &[192, 168, 10, 211],                   // tha = sha: what Linux calls gratuitous
            &[0; 18],
        ]
        .concat();
        assert_eq!(f, want);
    }

    #[test]
    fn unsolicited_na_bytes_and_checksum() {
        let ip: Ipv6Addr = "fd00:10::211".parse().unwrap();
        let f = unsolicited_na(MAC, ip);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(&f[14..18], &[0x60, 0, 0, 0], "version 6, class 0, flow 0");
        assert_eq!(&f[18..20], &[0, 32], "payload length");
        assert_eq!((f[20], f[21]), (58, 255), "ICMPv6, hop limit 255");
        assert_eq!(&f[22..38], &ip.octets(), "from the VIP");
        assert_eq!(&f[38..54], &IPV6_ALL_NODES.octets());
        assert_eq!((f[54], f[55]), (136, 0), "neighbour advertisement");
        assert_eq!(&f[58..62], &[0x20, 0, 0, 0], "R=0 S=0 O=1");
        assert_eq!(&f[62..78], &ip.octets(), "target");
        assert_eq!(&f[78..80], &[2, 1], "Target Link-Layer Address option, 8 bytes");
        assert_eq!(&f[80..86], &MAC);
        // The checksum field makes the whole sum (pseudo header included) all ones.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[22..54]);
        pseudo.extend_from_slice(&[0, 0, 0, 32, 0, 0, 0, 58]);
        assert_eq!(ones_sum(&f[54..], ones_sum(&pseudo, 0)), 0xffff);
        // and etherparse agrees
        let h = etherparse::PacketHeaders::from_ethernet_slice(&f).unwrap();
        let Some(etherparse::TransportHeader::Icmpv6(icmp)) = h.transport else { panic!("no ICMPv6") };
        let Some(etherparse::NetHeaders::Ipv6(ip6, _)) = h.net else { panic!("no IPv6") };
        assert_eq!(
            icmp.checksum,
            icmp.icmp_type.calc_checksum(ip6.source, ip6.destination, h.payload.slice()).unwrap()
        );
    }

    #[test]
    fn ones_sum_handles_odd_lengths() {
        assert_eq!(ones_sum(&[0x01], 0), 0x0100);
        assert_eq!(ones_sum(&[0xff, 0xff, 0x00, 0x01], 0), 0x0001);
    }
}
