//! IPv4 addresses with their prefix length, as `ip addr` shows them (`192.168.10.100/24`): the
//! workspace's [`Ipv4Net`] serves as an interface address and, with host bits zero, as a route
//! destination. This module adds what the lab needs on top: constants and `ip`'s way of writing
//! host routes.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// `a.b.c.d/prefix`, usable in constants; a prefix over 32 fails to compile there.
pub const fn ipv4_net(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

/// Parses `addr/prefix`, or a bare address as a `/32` (`ip route` prints host routes that way).
/// Errors quote the input and say which half is wrong.
pub fn parse(s: &str) -> Result<Ipv4Net, String> {
    let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
    let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{s:?} is not an IPv4 address"))?;
    let prefix = prefix.parse().ok().and_then(|p| Ipv4Net::new(addr, p).ok());
    prefix.ok_or_else(|| format!("{s:?} has no valid prefix length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let c = ipv4_net(192, 168, 10, 100, 24);
        assert_eq!(c.to_string(), "192.168.10.100/24");
        assert_eq!(parse("192.168.10.100/24").unwrap(), c);
        assert_eq!(parse("10.0.2.2").unwrap().prefix_len(), 32);
        assert_eq!(parse("10.0.2.2/33").unwrap_err(), "\"10.0.2.2/33\" has no valid prefix length");
        assert_eq!(parse("default").unwrap_err(), "\"default\" is not an IPv4 address");
    }
}
