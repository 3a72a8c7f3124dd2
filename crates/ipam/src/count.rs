//! Address counts that cannot overflow.
//!
//! A pool's `IPsTotal` is a sum of range sizes, and one IPv6 range can hold 2^128 addresses (`::/0`),
//! one more than `u128` can represent. [`Count`] is a 192-bit unsigned integer: enough for the sum of
//! 2^64 full IPv6 ranges, which no pool will reach. It is printed in decimal, as the pool conditions
//! carry it.

use std::fmt;
use std::ops::{Add, AddAssign};

/// A non-negative integer below 2^192. Arithmetic saturates instead of wrapping.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Count {
    /// The value is `high * 2^128 + low`.
    high: u64,
    low: u128,
}

impl Count {
    pub const ZERO: Count = Count { high: 0, low: 0 };

    /// The number of addresses from `first` to `last` inclusive (`last - first + 1`); zero if
    /// `last < first`.
    pub fn span(first: u128, last: u128) -> Count {
        if last < first {
            return Count::ZERO;
        }
        Count::from(last - first) + Count::from(1u128)
    }

    /// `self - other`, or zero if `other` is larger.
    pub fn saturating_sub(self, other: Count) -> Count {
        if other >= self {
            return Count::ZERO;
        }
        let (low, borrow) = self.low.overflowing_sub(other.low);
        Count { high: self.high - other.high - u64::from(borrow), low }
    }

    /// The value as a `u128`, if it fits.
    pub fn to_u128(self) -> Option<u128> {
        (self.high == 0).then_some(self.low)
    }
}

impl From<u128> for Count {
    fn from(low: u128) -> Count {
        Count { high: 0, low }
    }
}

impl From<usize> for Count {
    fn from(n: usize) -> Count {
        Count::from(n as u128)
    }
}

impl Add for Count {
    type Output = Count;

    fn add(self, other: Count) -> Count {
        let (low, carry) = self.low.overflowing_add(other.low);
        match self.high.checked_add(other.high).and_then(|h| h.checked_add(u64::from(carry))) {
            Some(high) => Count { high, low },
            None => Count { high: u64::MAX, low: u128::MAX },
        }
    }
}

impl AddAssign for Count {
    fn add_assign(&mut self, other: Count) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Count {
    fn sum<I: Iterator<Item = Count>>(iter: I) -> Count {
        iter.fold(Count::ZERO, Add::add)
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.high == 0 {
            return write!(f, "{}", self.low);
        }
        // Long division by 10^19 (the largest power of ten below 2^64) over 64-bit limbs, most
        // significant first; each step's dividend `rem * 2^64 + limb` stays below 2^128.
        const CHUNK: u128 = 10_000_000_000_000_000_000;
        let mut limbs = [self.high, (self.low >> 64) as u64, self.low as u64];
        let mut chunks = Vec::new();
        while limbs.iter().any(|&l| l != 0) {
            let mut rem: u128 = 0;
            for limb in &mut limbs {
                let cur = (rem << 64) | u128::from(*limb);
                *limb = (cur / CHUNK) as u64;
                rem = cur % CHUNK;
            }
            chunks.push(rem as u64);
        }
        let mut chunks = chunks.into_iter().rev();
        if let Some(first) = chunks.next() {
            write!(f, "{first}")?;
        }
        for chunk in chunks {
            write!(f, "{chunk:019}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_sums() {
        assert_eq!(Count::span(10, 10).to_string(), "1");
        assert_eq!(Count::span(0, 255).to_string(), "256");
        assert_eq!(Count::span(5, 4), Count::ZERO);
        // An IPv6 /64 plus an IPv4 /24: the figure Cilium's issue #41981 shows.
        let total = Count::span(0, u64::MAX as u128) + Count::span(0, 255);
        assert_eq!(total.to_string(), "18446744073709551872");
        assert_eq!(total.saturating_sub(Count::from(2u128)).to_string(), "18446744073709551870");
    }

    #[test]
    fn beyond_u128() {
        let all_v6 = Count::span(0, u128::MAX);
        assert_eq!(all_v6.to_string(), "340282366920938463463374607431768211456");
        assert_eq!(all_v6.to_u128(), None);
        let two = all_v6 + all_v6;
        assert_eq!(two.to_string(), "680564733841876926926749214863536422912");
        assert_eq!(two.saturating_sub(all_v6), all_v6);
        assert_eq!((two.saturating_sub(Count::from(1u128))).to_string(), "680564733841876926926749214863536422911");
        assert_eq!(Count::from(3u128).saturating_sub(two), Count::ZERO);
    }
}
