//! Addresses as integers, and inclusive address ranges parsed from pool blocks.
//!
//! Both families map to `u128` so one allocator serves IPv4 and IPv6. The family is decided by how
//! the address was written: an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is IPv6, as in Cilium.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::count::Count;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Address width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address `n` of `family`. For IPv4 only the low 32 bits are used.
pub fn from_u128(family: Family, n: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// Why a pool block does not describe a range. The messages name the offending value, so they can
/// be shown to the user as they are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("cidr '{0}' is not a CIDR (expected address/prefix-length)")]
    InvalidCidr(String),
    #[error("start '{0}' is not an IP address")]
    InvalidStart(String),
    #[error("stop '{0}' is not an IP address")]
    InvalidStop(String),
    #[error("start '{start}' and stop '{stop}' are of different address families")]
    MixedFamilies { start: String, stop: String },
    #[error("start '{start}' is after stop '{stop}'")]
    StartAfterStop { start: String, stop: String },
    #[error("stop '{0}' without start: start and stop must be in the same block")]
    StopWithoutStart(String),
    #[error("a block needs either cidr or start (and optionally stop)")]
    Empty,
}

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct IpRange {
    pub family: Family,
    pub first: u128,
    pub last: u128,
}

impl IpRange {
    /// A CIDR block. Host bits are masked off: `10.0.0.12/24` is `10.0.0.0 - 10.0.0.255`.
    pub fn from_cidr(cidr: &str) -> Result<IpRange, BlockError> {
        let bad = || BlockError::InvalidCidr(cidr.to_string());
        let (addr, len) = cidr.trim().split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let family = Family::of(ip);
        // Only plain decimal digits: `+24` or `024` would parse but are not CIDR syntax.
        if len.is_empty()
            || len.len() > 3
            || !len.bytes().all(|b| b.is_ascii_digit())
            || (len.len() > 1 && len.starts_with('0'))
        {
            return Err(bad());
        }
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len > family.bits() {
            return Err(bad());
        }
        let host_bits = u32::from(family.bits() - len);
        let host_mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
        let first = to_u128(ip) & !host_mask;
        Ok(IpRange { family, first, last: first | host_mask })
    }

    /// A start/stop block. An empty or absent `stop` makes the block the single address `start`.
    pub fn from_start_stop(start: &str, stop: Option<&str>) -> Result<IpRange, BlockError> {
        let first: IpAddr = start.trim().parse().map_err(|_| BlockError::InvalidStart(start.to_string()))?;
        let last: IpAddr = match stop.map(str::trim).filter(|s| !s.is_empty()) {
            None => first,
            Some(stop) => stop.parse().map_err(|_| BlockError::InvalidStop(stop.to_string()))?,
        };
        if Family::of(first) != Family::of(last) {
            return Err(BlockError::MixedFamilies { start: first.to_string(), stop: last.to_string() });
        }
        if to_u128(first) > to_u128(last) {
            return Err(BlockError::StartAfterStop { start: first.to_string(), stop: last.to_string() });
        }
        Ok(IpRange { family: Family::of(first), first: to_u128(first), last: to_u128(last) })
    }

    /// The number of addresses in the range.
    pub fn size(&self) -> Count {
        Count::span(self.first, self.last)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family && (self.first..=self.last).contains(&to_u128(ip))
    }

    /// Inclusive overlap: sharing a single edge address counts. Families never overlap.
    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.family == other.family && self.first <= other.last && other.first <= self.last
    }

    pub fn first_ip(&self) -> IpAddr {
        from_u128(self.family, self.first)
    }

    pub fn last_ip(&self) -> IpAddr {
        from_u128(self.family, self.last)
    }
}

impl fmt::Display for IpRange {
    /// `10.0.10.0 - 10.0.10.255`, the form the pool conflict message uses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} - {}", self.first_ip(), self.last_ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(cidr: &str) -> (String, String) {
        let r = IpRange::from_cidr(cidr).unwrap();
        (r.first_ip().to_string(), r.last_ip().to_string())
    }

    // Spec §7 TestRangeFromPrefix.
    #[test]
    fn cidr_blocks_are_masked() {
        assert_eq!(range("10.0.0.0/24"), ("10.0.0.0".into(), "10.0.0.255".into()));
        assert_eq!(range("10.0.0.0/25"), ("10.0.0.0".into(), "10.0.0.127".into()));
        assert_eq!(range("10.0.0.12/24"), ("10.0.0.0".into(), "10.0.0.255".into()));
        assert_eq!(range("::0000/112"), ("::".into(), "::ffff".into()));
        assert_eq!(range("192.168.100.200/28"), ("192.168.100.192".into(), "192.168.100.207".into()));
        assert_eq!(range("0.0.0.0/0"), ("0.0.0.0".into(), "255.255.255.255".into()));
        assert_eq!(IpRange::from_cidr("::/0").unwrap().size().to_string(), "340282366920938463463374607431768211456");
        assert_eq!(range("10.0.0.7/32"), ("10.0.0.7".into(), "10.0.0.7".into()));
    }

    #[test]
    fn bad_cidrs() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "x/8",
            "::/129",
            "",
            "/",
            "10.0.0.0/08",
            "10.0.0.0/ 8",
        ] {
            assert_eq!(IpRange::from_cidr(bad), Err(BlockError::InvalidCidr(bad.into())), "{bad}");
        }
    }

    #[test]
    fn start_stop_blocks() {
        let r = IpRange::from_start_stop("192.168.10.241", Some("192.168.10.245")).unwrap();
        assert_eq!(r.size().to_string(), "5");
        assert_eq!(r.to_string(), "192.168.10.241 - 192.168.10.245");
        assert_eq!(IpRange::from_start_stop("10.0.0.1", Some("")).unwrap().size().to_string(), "1");
        assert_eq!(IpRange::from_start_stop("10.0.0.1", None).unwrap().size().to_string(), "1");
        assert!(matches!(
            IpRange::from_start_stop("10.0.0.9", Some("10.0.0.1")),
            Err(BlockError::StartAfterStop { .. })
        ));
        assert!(matches!(IpRange::from_start_stop("10.0.0.1", Some("::1")), Err(BlockError::MixedFamilies { .. })));
        assert!(matches!(IpRange::from_start_stop("nope", None), Err(BlockError::InvalidStart(_))));
        assert!(matches!(IpRange::from_start_stop("10.0.0.1", Some("nope")), Err(BlockError::InvalidStop(_))));
        // Mapped addresses are IPv6 and so do not mix with IPv4.
        assert!(matches!(
            IpRange::from_start_stop("10.0.0.1", Some("::ffff:10.0.0.2")),
            Err(BlockError::MixedFamilies { .. })
        ));
    }

    // Spec §7 TestIntersects: inclusive ends.
    #[test]
    fn overlap_is_inclusive() {
        let r = |a: u128, b: u128| IpRange { family: Family::V4, first: a, last: b };
        assert!(!r(0, 10).overlaps(&r(11, 20)));
        assert!(r(0, 10).overlaps(&r(10, 20)));
        assert!(r(0, 10).overlaps(&r(5, 20)));
        assert!(r(0, 10).overlaps(&r(0, 10)));
        assert!(r(5, 20).overlaps(&r(0, 10)));
        assert!(r(10, 20).overlaps(&r(0, 10)));
        assert!(!r(11, 20).overlaps(&r(0, 10)));
        let v6 = IpRange { family: Family::V6, first: 0, last: 10 };
        assert!(!v6.overlaps(&r(0, 10)));
    }
}
