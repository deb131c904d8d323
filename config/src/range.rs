//! Address ranges as operators write them: a CIDR (`198.51.100.0/28`) or an
//! inclusive span (`198.51.100.100-198.51.100.120`). Ranges are handled by their
//! ends only, so a whole IPv6 /64 costs as much as a /32: nothing here ever
//! enumerates addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

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

    /// The whole prefix `network/prefix_len`; host bits of `network` are
    /// ignored, as in MetalLB. `None` when `prefix_len` is longer than the
    /// family allows (32 or 128).
    pub fn from_cidr(network: IpAddr, prefix_len: u8) -> Option<AddressRange> {
        let bits = family_bits(Family::of(network));
        if u32::from(prefix_len) > bits {
            return None;
        }
        let host = host_mask(bits, prefix_len);
        let first = to_u128(network) & !host;
        let family = Family::of(network);
        Some(AddressRange {
            first: from_u128(first, family),
            last: from_u128(first | host, family),
        })
    }

    /// The prefix length, when the span is exactly one aligned CIDR prefix
    /// (a single address is a `/32` or `/128`).
    pub fn prefix_len(&self) -> Option<u8> {
        let first = to_u128(self.first);
        let span = to_u128(self.last) - first;
        // A prefix holds 2^k addresses and starts on a multiple of 2^k:
        // `span` is then k one-bits, none of which are set in `first`.
        let is_prefix = span & span.wrapping_add(1) == 0 && first & span == 0;
        let bits = family_bits(self.family());
        // `span.count_ones() <= bits <= 128`, so the difference fits a u8.
        is_prefix.then(|| (bits - span.count_ones()) as u8)
    }

    /// The span as an operator writes it in a pool: `198.51.100.0/28` when it
    /// is one prefix, else `198.51.100.100-198.51.100.120`. Reading it back
    /// with [`AddressRange::parse`] gives the same span.
    pub fn to_notation(&self) -> String {
        match self.prefix_len() {
            Some(len) => format!("{}/{len}", self.first),
            None => format!("{}-{}", self.first, self.last),
        }
    }

    /// Reads one `addresses` entry the way MetalLB's legacy format does: a
    /// CIDR (`198.51.100.0/28`; host bits are ignored but reported) or a span
    /// `a-b` whose ends may be surrounded by spaces (`a - b`). A bare address
    /// is refused: MetalLB wants `/32` or `/128` for one address.
    pub fn parse(text: &str) -> Result<ParsedRange, AddressError> {
        let text = text.trim();
        let owned = || text.to_owned();
        if let Some((first, last)) = text.split_once('-') {
            let parse_end = |part: &str| {
                let part = part.trim();
                part.parse::<IpAddr>()
                    .map_err(|_| AddressError::NotAnAddress {
                        text: owned(),
                        part: part.to_owned(),
                    })
            };
            let (first, last) = (parse_end(first)?, parse_end(last)?);
            if Family::of(first) != Family::of(last) {
                return Err(AddressError::MixedFamilies { text: owned() });
            }
            let range = AddressRange::new(first, last).ok_or_else(|| AddressError::Reversed {
                text: owned(),
                first,
                last,
            })?;
            return Ok(ParsedRange {
                range,
                host_bits_set: false,
            });
        }
        let Some((ip, len)) = text.split_once('/') else {
            return Err(match text.parse::<IpAddr>() {
                Ok(ip) => AddressError::SingleAddress {
                    text: owned(),
                    ip,
                    len: max_prefix_len(Family::of(ip)),
                },
                Err(_) => AddressError::Unrecognised { text: owned() },
            });
        };
        let ip: IpAddr = ip.parse().map_err(|_| AddressError::NotAnAddress {
            text: owned(),
            part: ip.to_owned(),
        })?;
        // Digits only: `u8::from_str` would also take a sign.
        let len: u8 = (!len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()))
            .then(|| len.parse().ok())
            .flatten()
            .ok_or_else(|| AddressError::NotAPrefixLength {
                text: owned(),
                part: len.to_owned(),
            })?;
        let range =
            AddressRange::from_cidr(ip, len).ok_or_else(|| AddressError::PrefixTooLong {
                text: owned(),
                len,
                family: Family::of(ip),
                max: max_prefix_len(Family::of(ip)),
            })?;
        Ok(ParsedRange {
            range,
            host_bits_set: range.first != ip,
        })
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

impl FromStr for AddressRange {
    type Err = AddressError;

    /// Reads a CIDR or an `a-b` span, as [`AddressRange::parse`] does.
    fn from_str(text: &str) -> Result<AddressRange, AddressError> {
        AddressRange::parse(text).map(|parsed| parsed.range)
    }
}

/// One `addresses` entry, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedRange {
    /// The addresses it means.
    pub range: AddressRange,
    /// It was a CIDR whose address had host bits set (`198.51.100.5/24`):
    /// accepted as meaning the whole network, but likely a typo.
    pub host_bits_set: bool,
}

/// An `addresses` entry that is not a CIDR or an `a-b` span. Each variant
/// quotes the entry as written (trimmed) and says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No `/` and no `-`, and not an address either.
    #[error("{text:?} is neither a CIDR nor a range a-b")]
    Unrecognised {
        /// The entry.
        text: String,
    },
    /// A bare address: MetalLB's format wants `/32` or `/128`.
    #[error(
        "{text:?} is a single address, not a CIDR or a range a-b; write {ip}/{len} for that one address"
    )]
    SingleAddress {
        /// The entry.
        text: String,
        /// The address.
        ip: IpAddr,
        /// The prefix length of one address of its family.
        len: u8,
    },
    /// One side of the entry is not an IP address.
    #[error("{text:?} is neither a CIDR nor a range a-b: {part:?} is not an IP address")]
    NotAnAddress {
        /// The entry.
        text: String,
        /// The side that is not an address.
        part: String,
    },
    /// What follows `/` is not a number.
    #[error("{text:?} is neither a CIDR nor a range a-b: {part:?} is not a prefix length")]
    NotAPrefixLength {
        /// The entry.
        text: String,
        /// What follows the `/`.
        part: String,
    },
    /// A prefix longer than the family allows.
    #[error("{text:?} has a /{len} prefix, longer than the {max} bits of an {family} address")]
    PrefixTooLong {
        /// The entry.
        text: String,
        /// The prefix length written.
        len: u8,
        /// The family of the address written.
        family: Family,
        /// The longest prefix of that family.
        max: u8,
    },
    /// A span from an IPv4 to an IPv6 address or back.
    #[error("range {text:?} runs from one address family to the other")]
    MixedFamilies {
        /// The entry.
        text: String,
    },
    /// A span whose start lies after its end.
    #[error("range {text:?} is reversed: its start {first} comes after its end {last}")]
    Reversed {
        /// The entry.
        text: String,
        /// The start as written.
        first: IpAddr,
        /// The end as written.
        last: IpAddr,
    },
}

/// The number of bits of an address of `family`.
fn family_bits(family: Family) -> u32 {
    u32::from(max_prefix_len(family))
}

/// The prefix length of a single address of `family`.
fn max_prefix_len(family: Family) -> u8 {
    match family {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

/// The host part of a `/prefix_len` in an address of `bits` bits.
fn host_mask(bits: u32, prefix_len: u8) -> u128 {
    let host_bits = bits - u32::from(prefix_len);
    // `checked_shl` is `None` for a shift by 128: a /0 of IPv6.
    1u128.checked_shl(host_bits).map_or(u128::MAX, |b| b - 1)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn range(a: &str, b: &str) -> AddressRange {
        AddressRange::new(ip(a), ip(b)).unwrap()
    }

    fn parse_err(text: &str) -> String {
        AddressRange::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_cidr_means_every_address_of_its_network() {
        let parsed = AddressRange::parse("198.51.100.0/28").unwrap();
        assert_eq!(parsed.range, range("198.51.100.0", "198.51.100.15"));
        assert!(!parsed.host_bits_set);
        assert_eq!(parsed.range.size(), 16);
    }

    #[test]
    fn a_cidr_with_host_bits_means_its_network_and_says_so() {
        let parsed = AddressRange::parse("198.51.100.5/24").unwrap();
        assert_eq!(parsed.range, range("198.51.100.0", "198.51.100.255"));
        assert!(parsed.host_bits_set);
    }

    #[test]
    fn an_ipv6_slash_64_is_two_to_the_64_addresses() {
        let r: AddressRange = "2001:db8:1::/64".parse().unwrap();
        assert_eq!(r, range("2001:db8:1::", "2001:db8:1::ffff:ffff:ffff:ffff"));
        assert_eq!(r.size(), 18_446_744_073_709_551_616);
    }

    #[test]
    fn whole_address_spaces_are_prefixes_too() {
        let all_v4: AddressRange = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all_v4.size(), 1 << 32);
        assert_eq!(all_v4.to_notation(), "0.0.0.0/0");
        let all_v6: AddressRange = "::/0".parse().unwrap();
        assert_eq!(all_v6.size(), u128::MAX);
        assert_eq!(all_v6.to_notation(), "::/0");
    }

    #[test]
    fn a_span_may_have_spaces_around_its_dash_as_in_metallb() {
        let r: AddressRange = "198.51.100.100 - 198.51.100.120".parse().unwrap();
        assert_eq!(r, range("198.51.100.100", "198.51.100.120"));
        assert_eq!(r.size(), 21);
    }

    #[test]
    fn a_span_from_an_address_to_itself_is_one_address() {
        let r: AddressRange = "198.51.100.7-198.51.100.7".parse().unwrap();
        assert_eq!(r.size(), 1);
        assert_eq!(r.to_notation(), "198.51.100.7/32");
    }

    #[test]
    fn ipv6_spans_read_like_ipv4_ones() {
        let r: AddressRange = "2001:db8::10-2001:db8::1f".parse().unwrap();
        assert_eq!(r.size(), 16);
        assert_eq!(r.to_notation(), "2001:db8::10/124");
    }

    #[test]
    fn notation_is_a_cidr_only_for_aligned_power_of_two_spans() {
        assert_eq!(
            range("198.51.100.0", "198.51.100.15").prefix_len(),
            Some(28)
        );
        assert_eq!(range("198.51.100.8", "198.51.100.23").prefix_len(), None);
        assert_eq!(range("198.51.100.0", "198.51.100.14").prefix_len(), None);
        assert_eq!(
            range("198.51.100.100", "198.51.100.120").to_notation(),
            "198.51.100.100-198.51.100.120"
        );
        assert_eq!(range("2001:db8::1", "2001:db8::1").prefix_len(), Some(128));
    }

    #[test]
    fn unreadable_entries_say_what_they_are_not() {
        assert_eq!(
            parse_err("198.51.100.300"),
            r#""198.51.100.300" is neither a CIDR nor a range a-b"#
        );
        assert_eq!(
            parse_err("198.51.100.7"),
            r#""198.51.100.7" is a single address, not a CIDR or a range a-b; write 198.51.100.7/32 for that one address"#
        );
        assert_eq!(
            parse_err("2001:db8::7"),
            r#""2001:db8::7" is a single address, not a CIDR or a range a-b; write 2001:db8::7/128 for that one address"#
        );
        assert_eq!(
            parse_err("198.51.100.1-198.51.100.300"),
            r#""198.51.100.1-198.51.100.300" is neither a CIDR nor a range a-b: "198.51.100.300" is not an IP address"#
        );
        assert_eq!(
            parse_err("198.51.100.0/x"),
            r#""198.51.100.0/x" is neither a CIDR nor a range a-b: "x" is not a prefix length"#
        );
        assert_eq!(
            parse_err("198.51.100.0/+8"),
            r#""198.51.100.0/+8" is neither a CIDR nor a range a-b: "+8" is not a prefix length"#
        );
        assert_eq!(
            parse_err("198.51.100.0/33"),
            r#""198.51.100.0/33" has a /33 prefix, longer than the 32 bits of an IPv4 address"#
        );
        assert_eq!(
            parse_err("2001:db8::/129"),
            r#""2001:db8::/129" has a /129 prefix, longer than the 128 bits of an IPv6 address"#
        );
    }

    #[test]
    fn spans_across_families_or_backwards_are_refused() {
        assert_eq!(
            parse_err("198.51.100.1-2001:db8::1"),
            r#"range "198.51.100.1-2001:db8::1" runs from one address family to the other"#
        );
        assert_eq!(
            parse_err("198.51.100.120-198.51.100.100"),
            r#"range "198.51.100.120-198.51.100.100" is reversed: its start 198.51.100.120 comes after its end 198.51.100.100"#
        );
    }

    #[test]
    fn intersection_is_the_shared_span() {
        let a = range("198.51.100.0", "198.51.100.15");
        let b = range("198.51.100.8", "198.51.100.40");
        assert_eq!(
            a.intersection(&b),
            Some(range("198.51.100.8", "198.51.100.15"))
        );
        assert_eq!(a.intersection(&range("2001:db8::", "2001:db8::ff")), None);
    }

    /// Any span of either family.
    fn any_range() -> impl Strategy<Value = AddressRange> {
        prop_oneof![
            (any::<u32>(), any::<u32>()).prop_map(|(a, b)| {
                let (a, b) = (a.min(b), a.max(b));
                AddressRange::new(Ipv4Addr::from(a).into(), Ipv4Addr::from(b).into()).unwrap()
            }),
            // Prefixes, so that the CIDR notation gets exercised.
            (any::<u32>(), 0u8..=32).prop_map(|(a, len)| {
                AddressRange::from_cidr(Ipv4Addr::from(a).into(), len).unwrap()
            }),
            (any::<u128>(), any::<u128>()).prop_map(|(a, b)| {
                let (a, b) = (a.min(b), a.max(b));
                AddressRange::new(Ipv6Addr::from(a).into(), Ipv6Addr::from(b).into()).unwrap()
            }),
            (any::<u128>(), 0u8..=128).prop_map(|(a, len)| {
                AddressRange::from_cidr(Ipv6Addr::from(a).into(), len).unwrap()
            }),
        ]
    }

    proptest! {
        #[test]
        fn notation_reads_back_as_the_same_span(r in any_range()) {
            let parsed = AddressRange::parse(&r.to_notation()).unwrap();
            prop_assert_eq!(parsed.range, r);
            prop_assert!(!parsed.host_bits_set);
        }

        #[test]
        fn a_prefix_holds_two_to_the_host_bits(a in any::<u32>(), len in 0u8..=32) {
            let r = AddressRange::from_cidr(Ipv4Addr::from(a).into(), len).unwrap();
            prop_assert_eq!(r.size(), 1u128 << (32 - len));
            prop_assert_eq!(r.prefix_len(), Some(len));
            prop_assert!(r.contains(Ipv4Addr::from(a).into()));
        }
    }
}
