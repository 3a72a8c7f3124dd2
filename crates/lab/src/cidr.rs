//! An IPv4 address with its prefix length, as `ip addr` shows it (`192.168.10.100/24`). The same
//! type serves as an interface address and, with host bits zero, as a route destination.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub const fn new(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Ipv4Cidr { addr: Ipv4Addr::new(a, b, c, d), prefix }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `ip route` prints host routes without `/32`.
        let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let addr = addr.parse().map_err(|_| format!("{s:?} is not an IPv4 address"))?;
        let prefix =
            prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| format!("{s:?} has no valid prefix length"))?;
        Ok(Ipv4Cidr { addr, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let c = Ipv4Cidr::new(192, 168, 10, 100, 24);
        assert_eq!(c.to_string(), "192.168.10.100/24");
        assert_eq!("192.168.10.100/24".parse::<Ipv4Cidr>().unwrap(), c);
        assert_eq!("10.0.2.2".parse::<Ipv4Cidr>().unwrap().prefix, 32);
        assert!("10.0.2.2/33".parse::<Ipv4Cidr>().is_err());
        assert!("default".parse::<Ipv4Cidr>().is_err());
    }
}
