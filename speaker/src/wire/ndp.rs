//! Ethernet + IPv6 + ICMPv6 Neighbor Solicitation and Advertisement frames:
//! [`NdpRepr`] parses them, with the validity checks of RFC 4861 §7.1, and
//! builds them with their checksum. Also the solicited-node group helpers.

// Heads up! Before working on this file you should read, at least, RFC 4861
// §4.3 (Neighbor Solicitation), §4.4 (Neighbor Advertisement), §4.6.1
// (link-layer address options), §7.1 (message validation: hop limit 255,
// code 0, valid checksum, no zero-length option, target not multicast, rules
// for the unspecified source) and §7.2 (address resolution, NUD, and who
// sends which NA), and RFC 4443 §2.3 for the checksum's pseudo-header.
//
// pnet's `NdpOptionPacket` computes an option's size as `length * 8` in `u8`
// arithmetic: it panics on lengths of 32 and more in debug builds and misreads
// them in release builds, and it accepts length 0. Its option accessors
// (`get_options`, `get_options_iter`) must never see received bytes; options
// are walked and validated here, from `get_options_raw`.

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::BitOr;

use pnet_packet::Packet;
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{
    MutableNeighborAdvertPacket, MutableNeighborSolicitPacket, NdpOptionTypes,
    NeighborAdvertPacket, NeighborSolicitPacket,
};
use pnet_packet::icmpv6::{Icmpv6Code, Icmpv6Packet, Icmpv6Types, MutableIcmpv6Packet};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use pnet_packet::util::ipv6_checksum;

use super::{ETHERNET_HEADER_LEN, Ethernet, Layer, MacAddr, WireError};

/// Length of the IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Length of an NS or NA without options: type, code, checksum, flags /
/// reserved, target.
pub const NDP_MESSAGE_LEN: usize = 24;
/// Length of a source / target link-layer address option for Ethernet.
pub const LINK_LAYER_OPTION_LEN: usize = 8;
/// RFC 4861 §7.1: Neighbor Discovery messages carry hop limit 255, which
/// no router forwards, so a receiver knows the sender is on link.
pub const HOP_LIMIT: u8 = 255;
/// The link-scope all-nodes group, destination of unsolicited NAs.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The R, S and O flags of a Neighbor Advertisement (RFC 4861 §4.4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NeighborFlags(u8);

impl NeighborFlags {
    /// R: the sender is a router.
    pub const ROUTER: NeighborFlags = NeighborFlags(0x80);
    /// S: sent in response to a Neighbor Solicitation.
    pub const SOLICITED: NeighborFlags = NeighborFlags(0x40);
    /// O: replace the link-layer address a receiver has cached.
    pub const OVERRIDE: NeighborFlags = NeighborFlags(0x20);

    /// No flag set.
    pub const fn empty() -> NeighborFlags {
        NeighborFlags(0)
    }

    /// The flags from the NA's flag byte; the reserved bits are dropped, as
    /// receivers must ignore them.
    pub const fn from_bits_truncate(bits: u8) -> NeighborFlags {
        NeighborFlags(bits & 0xe0)
    }

    /// The flag byte as sent.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: NeighborFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for NeighborFlags {
    type Output = NeighborFlags;

    fn bitor(self, rhs: NeighborFlags) -> NeighborFlags {
        NeighborFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for NeighborFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (NeighborFlags::ROUTER, "ROUTER"),
            (NeighborFlags::SOLICITED, "SOLICITED"),
            (NeighborFlags::OVERRIDE, "OVERRIDE"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
            .collect();
        write!(f, "NeighborFlags({})", set.join(" | "))
    }
}

/// The ICMPv6 part of a Neighbor Discovery frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdpMessage {
    /// Neighbor Solicitation (type 135): who has `target`?
    NeighborSolicit {
        /// The address being resolved or probed.
        target: Ipv6Addr,
        /// The solicitor's link-layer address (option 1): required in a
        /// multicast NS, optional in a unicast one, absent in a DAD probe.
        source_ll: Option<MacAddr>,
    },
    /// Neighbor Advertisement (type 136): `target` is at `target_ll`.
    NeighborAdvert {
        /// The address advertised.
        target: Ipv6Addr,
        /// R, S, O.
        flags: NeighborFlags,
        /// The advertiser's link-layer address (option 2).
        target_ll: Option<MacAddr>,
    },
}

impl NdpMessage {
    /// The target address of the solicitation or advertisement.
    pub fn target(&self) -> Ipv6Addr {
        match *self {
            NdpMessage::NeighborSolicit { target, .. }
            | NdpMessage::NeighborAdvert { target, .. } => target,
        }
    }

    fn link_layer(&self) -> Option<MacAddr> {
        match *self {
            NdpMessage::NeighborSolicit { source_ll, .. } => source_ll,
            NdpMessage::NeighborAdvert { target_ll, .. } => target_ll,
        }
    }

    fn icmp_len(&self) -> usize {
        NDP_MESSAGE_LEN
            + match self.link_layer() {
                Some(_) => LINK_LAYER_OPTION_LEN,
                None => 0,
            }
    }
}

/// An Ethernet + IPv6 + ICMPv6 NS/NA frame, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NdpRepr {
    /// The Ethernet header's addresses.
    pub ethernet: Ethernet,
    /// The IPv6 source; `::` in a duplicate address detection probe.
    pub source: Ipv6Addr,
    /// The IPv6 destination.
    pub destination: Ipv6Addr,
    /// The solicitation or advertisement.
    pub message: NdpMessage,
}

impl NdpRepr {
    /// Parses an Ethernet + IPv6 + ICMPv6 frame as a Neighbor Solicitation
    /// or Advertisement, enforcing RFC 4861 §7.1. Unknown options are
    /// skipped (§4.6); of repeated link-layer options the first counts, as in
    /// Linux. Bytes after the IPv6 payload (Ethernet padding) are ignored.
    pub fn parse(frame: &[u8]) -> Result<NdpRepr, WireError> {
        let eth = EthernetPacket::new(frame).ok_or(WireError::Truncated {
            layer: Layer::Ethernet,
            len: frame.len(),
            need: ETHERNET_HEADER_LEN,
        })?;
        if eth.get_ethertype() != EtherTypes::Ipv6 {
            return Err(WireError::WrongEtherType {
                expected: "IPv6",
                found: eth.get_ethertype().0,
            });
        }
        let ethernet = Ethernet {
            source: eth.get_source(),
            destination: eth.get_destination(),
        };
        let packet = eth.payload();
        let ip = Ipv6Packet::new(packet).ok_or(WireError::Truncated {
            layer: Layer::Ipv6,
            len: packet.len(),
            need: IPV6_HEADER_LEN,
        })?;
        if ip.get_version() != 6 {
            return Err(WireError::Ipv6Version(ip.get_version()));
        }
        let icmp_len = usize::from(ip.get_payload_length());
        let icmp = packet
            .get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + icmp_len)
            .ok_or(WireError::Truncated {
                layer: Layer::Ipv6,
                len: packet.len(),
                need: IPV6_HEADER_LEN + icmp_len,
            })?;
        if ip.get_next_header() != IpNextHeaderProtocols::Icmpv6 {
            return Err(WireError::NotIcmpv6(ip.get_next_header().0));
        }
        let icmp_type = *icmp.first().ok_or(WireError::Truncated {
            layer: Layer::Icmpv6,
            len: 0,
            need: NDP_MESSAGE_LEN,
        })?;
        let solicit = match icmp_type {
            135 => true,
            136 => false,
            other => return Err(WireError::NotNeighborDiscovery(other)),
        };
        if icmp.len() < NDP_MESSAGE_LEN {
            return Err(WireError::Truncated {
                layer: Layer::Icmpv6,
                len: icmp.len(),
                need: NDP_MESSAGE_LEN,
            });
        }
        if icmp[1] != 0 {
            return Err(WireError::IcmpCode(icmp[1]));
        }
        if ip.get_hop_limit() != HOP_LIMIT {
            return Err(WireError::HopLimit(ip.get_hop_limit()));
        }
        let (source, destination) = (ip.get_source(), ip.get_destination());
        verify_checksum(icmp, &source, &destination)?;

        let message = message(icmp, solicit)?;
        let repr = NdpRepr {
            ethernet,
            source,
            destination,
            message,
        };
        repr.check_rfc4861()?;
        Ok(repr)
    }

    /// RFC 4861 §7.1.1 and §7.1.2, beyond the header checks.
    fn check_rfc4861(&self) -> Result<(), WireError> {
        if self.source.is_multicast() {
            return Err(WireError::MulticastSource(self.source));
        }
        let target = self.message.target();
        if target.is_multicast() {
            return Err(WireError::MulticastTarget(target));
        }
        match self.message {
            NdpMessage::NeighborSolicit { source_ll, .. } if self.source.is_unspecified() => {
                if !is_solicited_node(self.destination) {
                    return Err(WireError::DadNotToSolicitedNode(self.destination));
                }
                if source_ll.is_some() {
                    return Err(WireError::DadWithSourceLinkLayer);
                }
            }
            NdpMessage::NeighborAdvert { flags, .. }
                if self.destination.is_multicast() && flags.contains(NeighborFlags::SOLICITED) =>
            {
                return Err(WireError::SolicitedToMulticast(self.destination));
            }
            _ => {}
        }
        Ok(())
    }

    /// The number of bytes [`NdpRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + self.message.icmp_len()
    }

    /// Writes the frame, checksum included, into the first
    /// [`NdpRepr::buffer_len`] bytes of `buf`: hop limit 255, traffic class
    /// and flow label 0, as the Linux kernel sends them.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than [`NdpRepr::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        assert!(
            buf.len() >= len,
            "Neighbor Discovery frame needs {len} bytes, buffer has {}",
            buf.len()
        );
        let icmp_len = self.message.icmp_len();
        let (head, rest) = buf[..len].split_at_mut(ETHERNET_HEADER_LEN);
        let (ip_head, icmp) = rest.split_at_mut(IPV6_HEADER_LEN);
        // Every view below only fails on a short buffer, excluded above.
        let Some(mut eth) = MutableEthernetPacket::new(head) else {
            unreachable!("Ethernet header is {ETHERNET_HEADER_LEN} bytes")
        };
        eth.set_destination(self.ethernet.destination);
        eth.set_source(self.ethernet.source);
        eth.set_ethertype(EtherTypes::Ipv6);

        let Some(mut ip) = MutableIpv6Packet::new(ip_head) else {
            unreachable!("IPv6 header is {IPV6_HEADER_LEN} bytes")
        };
        ip.set_version(6);
        ip.set_traffic_class(0);
        ip.set_flow_label(0);
        ip.set_payload_length(icmp_len as u16);
        ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
        ip.set_hop_limit(HOP_LIMIT);
        ip.set_source(self.source);
        ip.set_destination(self.destination);

        let option = match self.message {
            NdpMessage::NeighborSolicit { target, source_ll } => {
                let Some(mut ns) = MutableNeighborSolicitPacket::new(icmp) else {
                    unreachable!("NS is at least {NDP_MESSAGE_LEN} bytes")
                };
                ns.set_icmpv6_type(Icmpv6Types::NeighborSolicit);
                ns.set_icmpv6_code(Icmpv6Code(0));
                ns.set_reserved(0);
                ns.set_target_addr(target);
                source_ll.map(|mac| (NdpOptionTypes::SourceLLAddr.0, mac))
            }
            NdpMessage::NeighborAdvert {
                target,
                flags,
                target_ll,
            } => {
                let Some(mut na) = MutableNeighborAdvertPacket::new(icmp) else {
                    unreachable!("NA is at least {NDP_MESSAGE_LEN} bytes")
                };
                na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
                na.set_icmpv6_code(Icmpv6Code(0));
                na.set_flags(flags.bits());
                na.set_reserved(0);
                na.set_target_addr(target);
                target_ll.map(|mac| (NdpOptionTypes::TargetLLAddr.0, mac))
            }
        };
        if let Some((option_type, mac)) = option {
            let MacAddr(a, b, c, d, e, f) = mac;
            icmp[NDP_MESSAGE_LEN..NDP_MESSAGE_LEN + LINK_LAYER_OPTION_LEN].copy_from_slice(&[
                option_type,
                1,
                a,
                b,
                c,
                d,
                e,
                f,
            ]);
        }

        let checksum = {
            let Some(view) = Icmpv6Packet::new(icmp) else {
                unreachable!("ICMPv6 message is at least 4 bytes")
            };
            pnet_packet::icmpv6::checksum(&view, &self.source, &self.destination)
        };
        let Some(mut view) = MutableIcmpv6Packet::new(icmp) else {
            unreachable!("ICMPv6 message is at least 4 bytes")
        };
        view.set_checksum(checksum);
    }

    /// The frame's bytes in a new buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = vec![0; self.buffer_len()];
        self.emit(&mut buf);
        buf
    }
}

/// The solicited-node multicast group of `addr` (RFC 4291 §2.7.1):
/// ff02::1:ff00:0/104 plus the address's low 24 bits. A speaker joins it for
/// each IPv6 address it owns, so that switches doing MLD snooping forward the
/// solicitations for it.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let low = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(low[13]),
        u16::from_be_bytes([low[14], low[15]]),
    )
}

/// Whether `addr` is a solicited-node multicast group.
pub fn is_solicited_node(addr: Ipv6Addr) -> bool {
    addr.octets()[..13] == solicited_node(Ipv6Addr::UNSPECIFIED).octets()[..13]
}

/// The Ethernet address IPv6 multicast `group` maps to (RFC 2464 §7):
/// 33:33 followed by the group's low 32 bits.
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr::new(0x33, 0x33, o[12], o[13], o[14], o[15])
}

fn truncated_icmp(icmp: &[u8]) -> WireError {
    WireError::Truncated {
        layer: Layer::Icmpv6,
        len: icmp.len(),
        need: NDP_MESSAGE_LEN,
    }
}

/// Checks the ICMPv6 checksum over the pseudo-header and the whole message.
fn verify_checksum(
    icmp: &[u8],
    source: &Ipv6Addr,
    destination: &Ipv6Addr,
) -> Result<(), WireError> {
    let found = u16::from_be_bytes([icmp[2], icmp[3]]);
    // Summing every word, the checksum included, gives all ones for a valid
    // message; this also accepts either encoding of a zero checksum.
    let residue = ipv6_checksum(
        icmp,
        usize::MAX,
        &[],
        source,
        destination,
        IpNextHeaderProtocols::Icmpv6,
    );
    if residue == 0 {
        return Ok(());
    }
    let expected = ipv6_checksum(
        icmp,
        1,
        &[],
        source,
        destination,
        IpNextHeaderProtocols::Icmpv6,
    );
    Err(WireError::Checksum { found, expected })
}

/// Walks and validates every option (RFC 4861 §4.6: no zero length, none
/// past the end), returning the first link-layer option of `wanted` type.
/// `options` starts at byte 24 of the ICMPv6 message.
fn link_layer_option(options: &[u8], wanted: u8) -> Result<Option<MacAddr>, WireError> {
    let mut found = None;
    let mut at = 0;
    while at < options.len() {
        let offset = NDP_MESSAGE_LEN + at;
        let message_len = NDP_MESSAGE_LEN + options.len();
        let (option_type, length) = match options[at..] {
            [option_type, length, ..] => (option_type, length),
            _ => {
                return Err(WireError::OptionOverrun {
                    offset,
                    bytes: options.len() - at,
                    len: message_len,
                });
            }
        };
        if length == 0 {
            return Err(WireError::OptionZeroLength { offset });
        }
        let bytes = usize::from(length) * 8;
        let Some(option) = options.get(at..at + bytes) else {
            return Err(WireError::OptionOverrun {
                offset,
                bytes,
                len: message_len,
            });
        };
        let link_layer = option_type == NdpOptionTypes::SourceLLAddr.0
            || option_type == NdpOptionTypes::TargetLLAddr.0;
        if link_layer && length != 1 {
            return Err(WireError::LinkLayerOptionLength { offset, length });
        }
        if option_type == wanted && found.is_none() {
            found = Some(MacAddr::new(
                option[2], option[3], option[4], option[5], option[6], option[7],
            ));
        }
        at += bytes;
    }
    Ok(found)
}

/// The Neighbor Solicitation (`solicit`) or Advertisement in `icmp`, whose
/// length, type, code and checksum were checked.
fn message(icmp: &[u8], solicit: bool) -> Result<NdpMessage, WireError> {
    let message = if solicit {
        let ns = NeighborSolicitPacket::new(icmp).ok_or(truncated_icmp(icmp))?;
        let source_ll = link_layer_option(ns.get_options_raw(), NdpOptionTypes::SourceLLAddr.0)?;
        NdpMessage::NeighborSolicit {
            target: ns.get_target_addr(),
            source_ll,
        }
    } else {
        let na = NeighborAdvertPacket::new(icmp).ok_or(truncated_icmp(icmp))?;
        let target_ll = link_layer_option(na.get_options_raw(), NdpOptionTypes::TargetLLAddr.0)?;
        NdpMessage::NeighborAdvert {
            target: na.get_target_addr(),
            flags: NeighborFlags::from_bits_truncate(na.get_flags()),
            target_ll,
        }
    };
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{self, MAC_A, MAC_B, MAC_B2, mac};
    use proptest::prelude::*;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("test address")
    }

    const LINK_LOCAL_B: &str = "fe80::f1:b0ff:fe00:b";

    fn kernel_multicast_ns() -> NdpRepr {
        NdpRepr {
            ethernet: Ethernet {
                source: mac(MAC_A),
                destination: mac([0x33, 0x33, 0xff, 0, 0, 2]),
            },
            source: v6("2001:db8:100::1"),
            destination: v6("ff02::1:ff00:2"),
            message: NdpMessage::NeighborSolicit {
                target: v6("2001:db8:100::2"),
                source_ll: Some(mac(MAC_A)),
            },
        }
    }

    fn kernel_unicast_ns() -> NdpRepr {
        NdpRepr {
            ethernet: Ethernet {
                source: mac(MAC_B),
                destination: mac(MAC_A),
            },
            source: v6(LINK_LOCAL_B),
            destination: v6("2001:db8:100::1"),
            message: NdpMessage::NeighborSolicit {
                target: v6("2001:db8:100::1"),
                source_ll: Some(mac(MAC_B)),
            },
        }
    }

    fn kernel_solicited_na() -> NdpRepr {
        NdpRepr {
            ethernet: Ethernet {
                source: mac(MAC_B),
                destination: mac(MAC_A),
            },
            source: v6("2001:db8:100::2"),
            destination: v6("2001:db8:100::1"),
            message: NdpMessage::NeighborAdvert {
                target: v6("2001:db8:100::2"),
                flags: NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE,
                target_ll: Some(mac(MAC_B)),
            },
        }
    }

    fn kernel_bare_na() -> NdpRepr {
        NdpRepr {
            ethernet: Ethernet {
                source: mac(MAC_A),
                destination: mac(MAC_B),
            },
            source: v6("2001:db8:100::1"),
            destination: v6(LINK_LOCAL_B),
            message: NdpMessage::NeighborAdvert {
                target: v6("2001:db8:100::1"),
                flags: NeighborFlags::SOLICITED,
                target_ll: None,
            },
        }
    }

    fn kernel_unsolicited_na() -> NdpRepr {
        NdpRepr {
            ethernet: Ethernet {
                source: mac(MAC_B2),
                destination: mac([0x33, 0x33, 0, 0, 0, 1]),
            },
            source: v6("2001:db8:100::2"),
            destination: ALL_NODES,
            message: NdpMessage::NeighborAdvert {
                target: v6("2001:db8:100::2"),
                flags: NeighborFlags::OVERRIDE,
                target_ll: Some(mac(MAC_B2)),
            },
        }
    }

    /// Recomputes the checksum of a frame edited by a test, so that the
    /// check under test, not the checksum, rejects it.
    fn refresh_checksum(frame: &mut [u8]) {
        let (src, dst) = {
            let ip = Ipv6Packet::new(&frame[14..]).expect("IPv6 header");
            (ip.get_source(), ip.get_destination())
        };
        let icmp = &mut frame[54..];
        icmp[2..4].copy_from_slice(&[0, 0]);
        let sum = ipv6_checksum(icmp, 1, &[], &src, &dst, IpNextHeaderProtocols::Icmpv6);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    }

    /// `frame` with its options replaced by `options`, lengths and checksum
    /// fixed up.
    fn with_options(mut frame: Vec<u8>, options: &[u8]) -> Vec<u8> {
        frame.truncate(14 + 40 + 24);
        frame.extend_from_slice(options);
        let payload = (24 + options.len()) as u16;
        frame[18..20].copy_from_slice(&payload.to_be_bytes());
        refresh_checksum(&mut frame);
        frame
    }

    #[test]
    fn parses_kernel_frames() {
        let cases: &[(&str, Vec<u8>, NdpRepr)] = &[
            (
                "multicast NS (address resolution)",
                fixtures::ns_multicast(),
                kernel_multicast_ns(),
            ),
            (
                "unicast NS (NUD probe to the target)",
                fixtures::ns_unicast(),
                kernel_unicast_ns(),
            ),
            (
                "solicited NA with S, O and the option",
                fixtures::na_solicited(),
                kernel_solicited_na(),
            ),
            (
                "solicited NA, S only, no option",
                fixtures::na_solicited_bare(),
                kernel_bare_na(),
            ),
            (
                "unsolicited NA to all nodes",
                fixtures::na_unsolicited(),
                kernel_unsolicited_na(),
            ),
        ];
        for (desc, frame, expected) in cases {
            assert_eq!(NdpRepr::parse(frame).as_ref(), Ok(expected), "{desc}");
        }
    }

    #[test]
    fn a_dad_probe_parses_with_its_nonce_option_skipped() {
        assert_eq!(
            NdpRepr::parse(&fixtures::ns_dad()),
            Ok(NdpRepr {
                ethernet: Ethernet {
                    source: mac(MAC_A),
                    destination: mac([0x33, 0x33, 0xff, 0, 0, 0x0a]),
                },
                source: Ipv6Addr::UNSPECIFIED,
                destination: v6("ff02::1:ff00:a"),
                message: NdpMessage::NeighborSolicit {
                    target: v6("2001:db8:100::a"),
                    source_ll: None,
                },
            })
        );
    }

    #[test]
    fn emits_what_the_kernel_sends_checksum_included() {
        let cases: &[(&str, NdpRepr, Vec<u8>)] = &[
            (
                "multicast NS",
                kernel_multicast_ns(),
                fixtures::ns_multicast(),
            ),
            ("unicast NS", kernel_unicast_ns(), fixtures::ns_unicast()),
            (
                "solicited NA",
                kernel_solicited_na(),
                fixtures::na_solicited(),
            ),
            ("bare NA", kernel_bare_na(), fixtures::na_solicited_bare()),
            (
                "unsolicited NA",
                kernel_unsolicited_na(),
                fixtures::na_unsolicited(),
            ),
        ];
        for (desc, repr, expected) in cases {
            assert_eq!(&repr.to_vec(), expected, "{desc}");
            assert_eq!(repr.buffer_len(), expected.len(), "{desc}");
        }
    }

    #[test]
    fn ethernet_padding_after_the_payload_is_ignored() {
        let mut frame = fixtures::na_solicited_bare();
        frame.extend_from_slice(&[0xaa; 8]);
        assert_eq!(NdpRepr::parse(&frame), Ok(kernel_bare_na()));
    }

    #[test]
    fn reserved_flag_bits_are_ignored() {
        let mut frame = fixtures::na_solicited();
        frame[58] |= 0x1f;
        frame[61] = 0xff;
        refresh_checksum(&mut frame);
        assert_eq!(NdpRepr::parse(&frame), Ok(kernel_solicited_na()));
    }

    #[test]
    fn the_first_of_two_link_layer_options_counts() {
        let options = [[1, 1, 2, 0, 0, 0, 0, 1], [1, 1, 2, 0, 0, 0, 0, 2]].concat();
        let frame = with_options(fixtures::ns_multicast(), &options);
        let repr = NdpRepr::parse(&frame).expect("valid NS");
        assert_eq!(
            repr.message,
            NdpMessage::NeighborSolicit {
                target: v6("2001:db8:100::2"),
                source_ll: Some(mac([2, 0, 0, 0, 0, 1]))
            }
        );
    }

    #[test]
    fn rejects_invalid_messages_per_rfc_4861() {
        struct Case {
            desc: &'static str,
            frame: Vec<u8>,
            expected: WireError,
        }
        let edit = |base: fn() -> Vec<u8>, offset: usize, bytes: &[u8]| {
            let mut frame = base();
            frame[offset..offset + bytes.len()].copy_from_slice(bytes);
            refresh_checksum(&mut frame);
            frame
        };
        let cases = vec![
            Case {
                desc: "hop limit 64: the sender may be off link",
                frame: edit(fixtures::ns_multicast, 21, &[64]),
                expected: WireError::HopLimit(64),
            },
            Case {
                desc: "ICMP code 1",
                frame: edit(fixtures::ns_multicast, 55, &[1]),
                expected: WireError::IcmpCode(1),
            },
            Case {
                desc: "a flipped checksum bit",
                frame: {
                    let mut frame = fixtures::ns_multicast();
                    frame[57] ^= 1;
                    frame
                },
                expected: WireError::Checksum {
                    found: u16::from_be_bytes([
                        fixtures::ns_multicast()[56],
                        fixtures::ns_multicast()[57] ^ 1,
                    ]),
                    expected: u16::from_be_bytes([
                        fixtures::ns_multicast()[56],
                        fixtures::ns_multicast()[57],
                    ]),
                },
            },
            Case {
                desc: "an option of length 0",
                frame: with_options(fixtures::ns_multicast(), &[14, 0, 0, 0, 0, 0, 0, 0]),
                expected: WireError::OptionZeroLength { offset: 24 },
            },
            Case {
                desc: "an option of length 32, which panics pnet's parser",
                frame: with_options(fixtures::ns_multicast(), &[14, 32, 0, 0, 0, 0, 0, 0]),
                expected: WireError::OptionOverrun {
                    offset: 24,
                    bytes: 256,
                    len: 32,
                },
            },
            Case {
                desc: "a lone byte after the last option",
                frame: with_options(fixtures::ns_multicast(), &[1, 1, 2, 0, 0, 0, 0, 1, 7]),
                expected: WireError::OptionOverrun {
                    offset: 32,
                    bytes: 1,
                    len: 33,
                },
            },
            Case {
                desc: "a 16-byte source link-layer option",
                frame: with_options(
                    fixtures::ns_multicast(),
                    &[1, 2, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
                expected: WireError::LinkLayerOptionLength {
                    offset: 24,
                    length: 2,
                },
            },
            Case {
                desc: "a multicast target",
                frame: edit(fixtures::ns_multicast, 62, &[0xff, 0x02]),
                expected: WireError::MulticastTarget(v6("ff02:db8:100::2")),
            },
            Case {
                desc: "a multicast source",
                frame: edit(fixtures::ns_multicast, 22, &ALL_NODES.octets()),
                expected: WireError::MulticastSource(ALL_NODES),
            },
            Case {
                desc: "a DAD probe sent to all nodes",
                frame: edit(fixtures::ns_dad, 38, &v6("ff02::1").octets()),
                expected: WireError::DadNotToSolicitedNode(v6("ff02::1")),
            },
            Case {
                desc: "a DAD probe with a source link-layer option",
                frame: with_options(fixtures::ns_dad(), &[1, 1, 2, 0, 0, 0, 0, 1]),
                expected: WireError::DadWithSourceLinkLayer,
            },
            Case {
                desc: "a solicited NA to all nodes",
                frame: edit(fixtures::na_unsolicited, 58, &[0x60]),
                expected: WireError::SolicitedToMulticast(ALL_NODES),
            },
            Case {
                desc: "a hop-by-hop header before ICMPv6",
                frame: edit(fixtures::ns_multicast, 20, &[0]),
                expected: WireError::NotIcmpv6(0),
            },
            Case {
                desc: "an echo request",
                frame: edit(fixtures::ns_multicast, 54, &[128]),
                expected: WireError::NotNeighborDiscovery(128),
            },
            Case {
                desc: "IP version 4 in an IPv6 frame",
                frame: edit(fixtures::ns_multicast, 14, &[0x40]),
                expected: WireError::Ipv6Version(4),
            },
            Case {
                desc: "a payload length past the frame's end",
                frame: edit(fixtures::ns_multicast, 18, &[0, 40]),
                expected: WireError::Truncated {
                    layer: Layer::Ipv6,
                    len: 72,
                    need: 80,
                },
            },
            Case {
                desc: "a payload too short for an NS",
                frame: {
                    let mut frame = edit(fixtures::ns_multicast, 18, &[0, 20]);
                    frame.truncate(74);
                    frame
                },
                expected: WireError::Truncated {
                    layer: Layer::Icmpv6,
                    len: 20,
                    need: 24,
                },
            },
        ];
        for case in cases {
            assert_eq!(
                NdpRepr::parse(&case.frame),
                Err(case.expected),
                "{}",
                case.desc
            );
        }
    }

    #[test]
    fn solicited_node_group_and_its_mac() {
        let group = solicited_node(v6("2001:db8::100"));
        assert_eq!(group, v6("ff02::1:ff00:100"));
        assert_eq!(
            multicast_mac(group),
            mac([0x33, 0x33, 0xff, 0x00, 0x01, 0x00])
        );
        assert!(is_solicited_node(group));
        assert!(!is_solicited_node(ALL_NODES));
        assert_eq!(multicast_mac(ALL_NODES), mac([0x33, 0x33, 0, 0, 0, 1]));
    }

    #[test]
    fn flags_debug_names_the_set_flags() {
        let flags = NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE;
        assert_eq!(format!("{flags:?}"), "NeighborFlags(SOLICITED | OVERRIDE)");
        assert!(!flags.contains(NeighborFlags::ROUTER));
    }

    fn any_mac() -> impl Strategy<Value = MacAddr> {
        any::<[u8; 6]>().prop_map(mac)
    }

    fn unicast_v6() -> impl Strategy<Value = Ipv6Addr> {
        any::<[u8; 16]>()
            .prop_map(Ipv6Addr::from)
            .prop_filter("unicast", |a| !a.is_multicast() && !a.is_unspecified())
    }

    /// Any NS or NA that RFC 4861 §7.1 accepts.
    fn any_repr() -> impl Strategy<Value = NdpRepr> {
        let solicit = (
            unicast_v6(),
            prop_oneof![
                // Address resolution: from a unicast source to the
                // solicited-node group, with the source's MAC.
                (unicast_v6(), any_mac()).prop_map(|(src, mac)| (src, None, Some(mac))),
                // NUD: unicast, the option optional.
                (unicast_v6(), unicast_v6(), proptest::option::of(any_mac()))
                    .prop_map(|(src, dst, mac)| (src, Some(dst), mac)),
                // DAD: from ::, to the solicited-node group, no option.
                Just((Ipv6Addr::UNSPECIFIED, None, None)),
            ],
        )
            .prop_map(|(target, (source, destination, source_ll))| {
                let destination = destination.unwrap_or_else(|| solicited_node(target));
                (
                    source,
                    destination,
                    NdpMessage::NeighborSolicit { target, source_ll },
                )
            });
        let advert = (
            unicast_v6(),
            unicast_v6(),
            prop_oneof![unicast_v6(), Just(ALL_NODES)],
            0u8..8,
            proptest::option::of(any_mac()),
        )
            .prop_map(|(target, source, destination, bits, target_ll)| {
                let mut flags = NeighborFlags::from_bits_truncate(bits << 5);
                if destination.is_multicast() {
                    flags = NeighborFlags::from_bits_truncate(
                        flags.bits() & !NeighborFlags::SOLICITED.bits(),
                    );
                }
                (
                    source,
                    destination,
                    NdpMessage::NeighborAdvert {
                        target,
                        flags,
                        target_ll,
                    },
                )
            });
        (any_mac(), any_mac(), prop_oneof![solicit, advert]).prop_map(
            |(src, dst, (source, destination, message))| NdpRepr {
                ethernet: Ethernet {
                    source: src,
                    destination: dst,
                },
                source,
                destination,
                message,
            },
        )
    }

    proptest! {
        #[test]
        fn parse_inverts_emit(repr in any_repr()) {
            prop_assert_eq!(NdpRepr::parse(&repr.to_vec()), Ok(repr));
        }

        #[test]
        fn any_options_with_a_valid_checksum_never_panic(
            options in proptest::collection::vec(any::<u8>(), 0..300),
            solicit in any::<bool>(),
        ) {
            let base = if solicit { fixtures::ns_multicast() } else { fixtures::na_solicited() };
            let frame = with_options(base, &options);
            let _ = NdpRepr::parse(&frame);
        }

        #[test]
        fn options_built_from_valid_lengths_parse(
            options in proptest::collection::vec((2u8..=255, 1u8..=4), 0..6),
        ) {
            let bytes: Vec<u8> = options
                .iter()
                .flat_map(|&(kind, len)| {
                    let mut option = vec![0; usize::from(len) * 8];
                    option[0] = kind;
                    option[1] = if kind == 2 { 1 } else { len };
                    option.truncate(usize::from(option[1]) * 8);
                    option
                })
                .collect();
            let frame = with_options(fixtures::ns_multicast(), &bytes);
            prop_assert!(NdpRepr::parse(&frame).is_ok());
        }

        #[test]
        fn any_corruption_of_a_kernel_frame_never_panics(
            offset in 0usize..86,
            byte in any::<u8>(),
            cut in 0usize..=86,
        ) {
            let mut frame = fixtures::ns_multicast();
            frame[offset] = byte;
            frame.truncate(cut);
            let _ = NdpRepr::parse(&frame);
        }
    }
}
