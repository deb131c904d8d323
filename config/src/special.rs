//! The special-purpose address ranges (RFC 6890) that no pool may hold and no
//! speaker may announce: addresses no host on a LAN owns by answering ARP or
//! NDP for them. Start with [`SpecialPurpose::of`] for one address and
//! [`SpecialPurpose::within`] for a range; the table is [`SPECIAL_RANGES`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::range::AddressRange;

/// Why a range is set apart from ordinary unicast addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialPurpose {
    /// `0.0.0.0/8` and `::`: "this host"; never a destination.
    Unspecified,
    /// `127.0.0.0/8` and `::1`: never leave the host.
    Loopback,
    /// `224.0.0.0/4` and `ff00::/8`: name groups, not hosts.
    Multicast,
    /// `169.254.0.0/16` and `fe80::/10`: hosts pick their own.
    LinkLocal,
    /// `::ffff:0:0/96`: IPv4 addresses as IPv6 sockets see them; never on a
    /// wire.
    Ipv4Mapped,
    /// `255.255.255.255`: every host of the link.
    Broadcast,
}

impl SpecialPurpose {
    /// The purpose of the range `ip` lies in, if it lies in one.
    pub fn of(ip: IpAddr) -> Option<SpecialPurpose> {
        SPECIAL_RANGES
            .iter()
            .find(|s| s.range().contains(ip))
            .map(|s| s.purpose)
    }

    /// The first special-purpose range `range` reaches into, with the
    /// addresses they share; `None` when every address of `range` is
    /// ordinary unicast.
    pub fn within(range: &AddressRange) -> Option<(SpecialRange, AddressRange)> {
        SPECIAL_RANGES
            .iter()
            .find_map(|s| range.intersection(&s.range()).map(|shared| (*s, shared)))
    }

    /// A stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            SpecialPurpose::Unspecified => "unspecified",
            SpecialPurpose::Loopback => "loopback",
            SpecialPurpose::Multicast => "multicast",
            SpecialPurpose::LinkLocal => "link_local",
            SpecialPurpose::Ipv4Mapped => "ipv4_mapped",
            SpecialPurpose::Broadcast => "broadcast",
        }
    }

    /// Why no pool may hold such addresses, for messages.
    fn why(&self) -> &'static str {
        match self {
            SpecialPurpose::Unspecified => "they mean \"this host\" and are never a destination",
            SpecialPurpose::Loopback => "they never leave a host",
            SpecialPurpose::Multicast => "they name groups of hosts, not one host",
            SpecialPurpose::LinkLocal => "hosts pick them for themselves",
            SpecialPurpose::Ipv4Mapped => {
                "they stand for IPv4 addresses inside IPv6 sockets and never appear on a wire"
            }
            SpecialPurpose::Broadcast => "it reaches every host of the link",
        }
    }
}

impl fmt::Display for SpecialPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecialPurpose::Unspecified => "unspecified",
            SpecialPurpose::Loopback => "loopback",
            SpecialPurpose::Multicast => "multicast",
            SpecialPurpose::LinkLocal => "link-local",
            SpecialPurpose::Ipv4Mapped => "IPv4-mapped",
            SpecialPurpose::Broadcast => "broadcast",
        })
    }
}

/// One special-purpose prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialRange {
    /// What it is for.
    pub purpose: SpecialPurpose,
    /// Its network address.
    pub network: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
}

impl SpecialRange {
    /// The addresses it holds.
    pub fn range(&self) -> AddressRange {
        // The table below holds valid prefixes only (a test reads each).
        AddressRange::from_cidr(self.network, self.prefix_len)
            .unwrap_or_else(|| unreachable!("{self:?} is a valid prefix"))
    }
}

impl fmt::Display for SpecialRange {
    /// `the loopback range 127.0.0.0/8 (they never leave a host)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = self.range();
        match range.prefix_len() {
            Some(32 | 128) => write!(f, "the {} address {}", self.purpose, range.first())?,
            _ => write!(f, "the {} range {}", self.purpose, range.to_notation())?,
        }
        write!(f, " ({})", self.purpose.why())
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix_len: u8, purpose: SpecialPurpose) -> SpecialRange {
    SpecialRange {
        purpose,
        network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        prefix_len,
    }
}

const fn v6(segments: [u16; 8], prefix_len: u8, purpose: SpecialPurpose) -> SpecialRange {
    let [a, b, c, d, e, f, g, h] = segments;
    SpecialRange {
        purpose,
        network: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
        prefix_len,
    }
}

/// Every special-purpose range, IPv4 first. Ranges reserved for
/// documentation or private use are ordinary unicast on a LAN and are not
/// listed.
pub const SPECIAL_RANGES: [SpecialRange; 10] = [
    v4(0, 0, 0, 0, 8, SpecialPurpose::Unspecified),
    v4(127, 0, 0, 0, 8, SpecialPurpose::Loopback),
    v4(169, 254, 0, 0, 16, SpecialPurpose::LinkLocal),
    v4(224, 0, 0, 0, 4, SpecialPurpose::Multicast),
    v4(255, 255, 255, 255, 32, SpecialPurpose::Broadcast),
    v6([0; 8], 128, SpecialPurpose::Unspecified),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, SpecialPurpose::Loopback),
    v6(
        [0, 0, 0, 0, 0, 0xffff, 0, 0],
        96,
        SpecialPurpose::Ipv4Mapped,
    ),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, SpecialPurpose::LinkLocal),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, SpecialPurpose::Multicast),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_table_entry_is_a_prefix_of_its_network() {
        for s in SPECIAL_RANGES {
            assert_eq!(s.range().first(), s.network, "{s:?}");
        }
    }

    #[test]
    fn addresses_are_classified_by_the_range_they_lie_in() {
        let cases = [
            ("0.0.0.0", Some(SpecialPurpose::Unspecified)),
            ("0.1.2.3", Some(SpecialPurpose::Unspecified)),
            ("127.0.0.1", Some(SpecialPurpose::Loopback)),
            ("127.255.255.254", Some(SpecialPurpose::Loopback)),
            ("169.254.1.1", Some(SpecialPurpose::LinkLocal)),
            ("224.0.0.1", Some(SpecialPurpose::Multicast)),
            ("239.255.255.255", Some(SpecialPurpose::Multicast)),
            ("255.255.255.255", Some(SpecialPurpose::Broadcast)),
            ("::", Some(SpecialPurpose::Unspecified)),
            ("::1", Some(SpecialPurpose::Loopback)),
            ("::ffff:198.51.100.1", Some(SpecialPurpose::Ipv4Mapped)),
            ("fe80::1", Some(SpecialPurpose::LinkLocal)),
            ("febf::1", Some(SpecialPurpose::LinkLocal)),
            ("ff02::1", Some(SpecialPurpose::Multicast)),
            ("198.51.100.1", None),
            ("203.0.113.255", None),
            ("10.0.0.1", None),
            ("1.0.0.0", None),
            ("126.255.255.255", None),
            ("128.0.0.0", None),
            ("223.255.255.255", None),
            ("240.0.0.1", None),
            ("2001:db8::1", None),
            ("fec0::1", None),
            ("::2", None),
        ];
        for (address, purpose) in cases {
            assert_eq!(SpecialPurpose::of(ip(address)), purpose, "{address}");
        }
    }

    #[test]
    fn a_range_is_special_when_any_of_its_addresses_is() {
        let (special, shared) =
            SpecialPurpose::within(&"126.255.255.250-127.0.0.5".parse().unwrap()).unwrap();
        assert_eq!(special.purpose, SpecialPurpose::Loopback);
        assert_eq!(shared.to_string(), "127.0.0.0-127.0.0.5");
        assert_eq!(
            SpecialPurpose::within(&"198.51.100.0/24".parse().unwrap()),
            None
        );
    }
}
