//! Address ranges as operators write them: a CIDR (`198.51.100.0/28`) or an
//! inclusive span (`198.51.100.100-198.51.100.120`). Ranges are handled by their
//! ends only, so a whole IPv6 /64 costs as much as a /32: nothing here ever
//! enumerates addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address family of an address or a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of one address.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
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

/// A contiguous, inclusive span of addresses of one family.
///
/// Invariant: `first <= last` and both are of the same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressRange {
    first: IpAddr,
    last: IpAddr,
}

impl AddressRange {
    /// The span `first..=last`; `None` when the ends are of different
    /// families or reversed.
    pub fn new(first: IpAddr, last: IpAddr) -> Option<AddressRange> {
        (Family::of(first) == Family::of(last) && to_u128(first) <= to_u128(last))
            .then_some(AddressRange { first, last })
    }

    /// The lowest address.
    pub fn first(&self) -> IpAddr {
        self.first
    }

    /// The highest address.
    pub fn last(&self) -> IpAddr {
        self.last
    }

    /// The family of both ends.
    pub fn family(&self) -> Family {
        Family::of(self.first)
    }

    /// Whether `ip` lies in the span.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family()
            && (to_u128(self.first)..=to_u128(self.last)).contains(&to_u128(ip))
    }

    /// How many addresses the span holds. A whole IPv6 /0 does not fit in a
    /// `u128`, so the count saturates at `u128::MAX`.
    pub fn size(&self) -> u128 {
        (to_u128(self.last) - to_u128(self.first)).saturating_add(1)
    }

    /// The overlap of two spans, if any.
    pub fn intersection(&self, other: &AddressRange) -> Option<AddressRange> {
        if self.family() != other.family() {
            return None;
        }
        let lo = to_u128(self.first).max(to_u128(other.first));
        let hi = to_u128(self.last).min(to_u128(other.last));
        (lo <= hi).then(|| AddressRange {
            first: from_u128(lo, self.family()),
            last: from_u128(hi, self.family()),
        })
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// An address as an integer, so ranges compare and subtract without
/// enumerating. IPv4 addresses map to `0..2^32`.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The inverse of [`to_u128`] for a given family; IPv4 keeps the low 32 bits.
pub fn from_u128(n: u128, family: Family) -> IpAddr {
    match family {
        // Truncation is the point: an IPv4 address is the low 32 bits.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}
