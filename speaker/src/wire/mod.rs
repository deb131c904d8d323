//! The frames a speaker reads and writes: Ethernet + ARP ([`arp`]) and
//! Ethernet + IPv6 + ICMPv6 Neighbor Solicitation / Advertisement ([`ndp`]).
//! Pure: bytes in, owned `Repr`s out, and back. pnet's packet views are used
//! inside these modules only; nothing here opens a socket.
//!
//! Start with [`Frame::parse`], which dispatches on the EtherType.

pub mod arp;
pub mod ndp;

use std::fmt;
use std::net::IpAddr;

pub use arp::{ArpOperation, ArpRepr};
pub use ndp::{NdpMessage, NdpRepr, NeighborFlags};
/// An Ethernet (EUI-48) address: pnet's value type, re-exported so callers
/// need not name pnet.
pub use pnet::util::MacAddr;

use pnet_packet::ethernet::{EtherType, EtherTypes};

/// Length of an Ethernet II header without a VLAN tag.
pub const ETHERNET_HEADER_LEN: usize = 14;

/// The two addresses of an Ethernet II header; the EtherType is implied by
/// the `Repr` that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ethernet {
    /// The sending station.
    pub source: MacAddr,
    /// The receiving station, or a broadcast / multicast group.
    pub destination: MacAddr,
}

/// The protocol layer at which a frame fell short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The Ethernet header.
    Ethernet,
    /// The ARP packet.
    Arp,
    /// The IPv6 header, or the payload its length field promises.
    Ipv6,
    /// The ICMPv6 Neighbor Discovery message.
    Icmpv6,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "Ethernet header",
            Layer::Arp => "ARP packet",
            Layer::Ipv6 => "IPv6 packet",
            Layer::Icmpv6 => "ICMPv6 message",
        })
    }
}

/// Why a frame is not a valid ARP or Neighbor Discovery message. Parsing
/// never panics: every malformed input ends here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame ends before the named layer does.
    #[error("{layer} truncated: {len} bytes, at least {need} needed")]
    Truncated {
        /// The layer that is cut short.
        layer: Layer,
        /// Bytes available for it.
        len: usize,
        /// Bytes it needs.
        need: usize,
    },
    /// The EtherType is not the one this parser handles.
    #[error("EtherType {found:#06x} is not {expected}")]
    WrongEtherType {
        /// What the parser handles ("ARP", "IPv6" or "ARP or IPv6").
        expected: &'static str,
        /// The EtherType on the wire.
        found: u16,
    },
    /// ARP over a link other than Ethernet (RFC 826 `ar$hrd` / `ar$hln`).
    #[error(
        "ARP hardware type {htype} with address length {hlen}; only Ethernet (1, 6) is handled"
    )]
    ArpHardware {
        /// `ar$hrd`.
        htype: u16,
        /// `ar$hln`.
        hlen: u8,
    },
    /// ARP for a protocol other than IPv4 (RFC 826 `ar$pro` / `ar$pln`).
    #[error(
        "ARP protocol type {ptype:#06x} with address length {plen}; only IPv4 (0x0800, 4) is handled"
    )]
    ArpProtocol {
        /// `ar$pro`.
        ptype: u16,
        /// `ar$pln`.
        plen: u8,
    },
    /// An ARP opcode other than request (1) or reply (2).
    #[error("ARP operation {0} is neither request (1) nor reply (2)")]
    ArpOperation(u16),
    /// The IPv6 version field is not 6.
    #[error("IP version {0} in an IPv6 frame")]
    Ipv6Version(u8),
    /// The IPv6 next header is not ICMPv6 (58); extension headers are not
    /// followed, as Neighbor Discovery does not use them.
    #[error("IPv6 next header {0} is not ICMPv6 (58)")]
    NotIcmpv6(u8),
    /// An ICMPv6 message that is neither a Neighbor Solicitation (135) nor a
    /// Neighbor Advertisement (136).
    #[error("ICMPv6 type {0} is neither Neighbor Solicitation (135) nor Advertisement (136)")]
    NotNeighborDiscovery(u8),
    /// RFC 4861 §7.1: the ICMP code must be 0.
    #[error("ICMPv6 code {0}, Neighbor Discovery requires 0")]
    IcmpCode(u8),
    /// RFC 4861 §7.1: the hop limit must be 255, proving the sender is on link.
    #[error("hop limit {0}, Neighbor Discovery requires 255 (sender must be on link)")]
    HopLimit(u8),
    /// The ICMPv6 checksum does not match the pseudo-header and message.
    #[error("ICMPv6 checksum {found:#06x}, expected {expected:#06x}")]
    Checksum {
        /// The checksum on the wire.
        found: u16,
        /// The checksum of the received bytes.
        expected: u16,
    },
    /// RFC 4861 §4.6: an option of length 0 is invalid and the whole message
    /// must be discarded.
    #[error("Neighbor Discovery option at byte {offset} has length 0")]
    OptionZeroLength {
        /// Offset of the option within the ICMPv6 message.
        offset: usize,
    },
    /// An option runs past the end of the message.
    #[error(
        "Neighbor Discovery option at byte {offset} ({bytes} bytes) runs past the message's {len} bytes"
    )]
    OptionOverrun {
        /// Offset of the option within the ICMPv6 message.
        offset: usize,
        /// The option's length in bytes (8 × its length field).
        bytes: usize,
        /// Length of the ICMPv6 message.
        len: usize,
    },
    /// A source / target link-layer address option whose length is not one
    /// 8-byte unit, the only size that holds an Ethernet address.
    #[error(
        "link-layer address option at byte {offset} has length {length} (units of 8 bytes); Ethernet needs 1"
    )]
    LinkLayerOptionLength {
        /// Offset of the option within the ICMPv6 message.
        offset: usize,
        /// The option's length field.
        length: u8,
    },
    /// RFC 4291 §2.7: a multicast address is never a source.
    #[error("source {0} is a multicast address")]
    MulticastSource(std::net::Ipv6Addr),
    /// RFC 4861 §7.1: the target address must not be multicast.
    #[error("target {0} is a multicast address")]
    MulticastTarget(std::net::Ipv6Addr),
    /// RFC 4861 §7.1.1: a Neighbor Solicitation from the unspecified address
    /// (duplicate address detection) must go to a solicited-node group.
    #[error("solicitation from :: sent to {0}, not to a solicited-node group")]
    DadNotToSolicitedNode(std::net::Ipv6Addr),
    /// RFC 4861 §7.1.1: a Neighbor Solicitation from the unspecified address
    /// must not carry a source link-layer address option.
    #[error("solicitation from :: carries a source link-layer address option")]
    DadWithSourceLinkLayer,
    /// RFC 4861 §7.1.2: an advertisement to a multicast address must not
    /// have the Solicited flag.
    #[error("solicited advertisement sent to multicast address {0}")]
    SolicitedToMulticast(std::net::Ipv6Addr),
}

impl WireError {
    /// A stable, low-cardinality label for metrics.
    pub fn as_label(&self) -> &'static str {
        match self {
            WireError::Truncated { .. } => "truncated",
            WireError::WrongEtherType { .. } => "wrong_ethertype",
            WireError::ArpHardware { .. } => "arp_hardware",
            WireError::ArpProtocol { .. } => "arp_protocol",
            WireError::ArpOperation(_) => "arp_operation",
            WireError::Ipv6Version(_) => "ipv6_version",
            WireError::NotIcmpv6(_) => "not_icmpv6",
            WireError::NotNeighborDiscovery(_) => "not_neighbor_discovery",
            WireError::IcmpCode(_) => "icmp_code",
            WireError::HopLimit(_) => "hop_limit",
            WireError::Checksum { .. } => "checksum",
            WireError::OptionZeroLength { .. } => "option_zero_length",
            WireError::OptionOverrun { .. } => "option_overrun",
            WireError::LinkLayerOptionLength { .. } => "link_layer_option_length",
            WireError::MulticastSource(_) => "multicast_source",
            WireError::MulticastTarget(_) => "multicast_target",
            WireError::DadNotToSolicitedNode(_) => "dad_not_to_solicited_node",
            WireError::DadWithSourceLinkLayer => "dad_with_source_link_layer",
            WireError::SolicitedToMulticast(_) => "solicited_to_multicast",
        }
    }
}

/// Any frame the speaker handles: ARP, or Neighbor Discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// An Ethernet + ARP frame.
    Arp(ArpRepr),
    /// An Ethernet + IPv6 + ICMPv6 NS/NA frame.
    Ndp(NdpRepr),
}

impl Frame {
    /// Parses an Ethernet frame as ARP or Neighbor Discovery, by EtherType.
    /// Bytes after the message (Ethernet padding) are ignored.
    pub fn parse(frame: &[u8]) -> Result<Frame, WireError> {
        match ethertype(frame)? {
            EtherTypes::Arp => ArpRepr::parse(frame).map(Frame::Arp),
            EtherTypes::Ipv6 => NdpRepr::parse(frame).map(Frame::Ndp),
            other => Err(WireError::WrongEtherType {
                expected: "ARP or IPv6",
                found: other.0,
            }),
        }
    }

    /// The number of bytes [`Frame::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Frame::Arp(repr) => repr.buffer_len(),
            Frame::Ndp(repr) => repr.buffer_len(),
        }
    }

    /// Writes the frame into the first [`Frame::buffer_len`] bytes of `buf`.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than [`Frame::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) {
        match self {
            Frame::Arp(repr) => repr.emit(buf),
            Frame::Ndp(repr) => repr.emit(buf),
        }
    }

    /// The frame's bytes in a new buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = vec![0; self.buffer_len()];
        self.emit(&mut buf);
        buf
    }

    /// The IP address the frame is about: the ARP sender address for a reply
    /// or announcement, the target of an NS/NA. Used to count per address.
    pub fn address(&self) -> IpAddr {
        match self {
            Frame::Arp(repr) => match repr.operation {
                ArpOperation::Reply => IpAddr::V4(repr.sender_ip),
                ArpOperation::Request => IpAddr::V4(repr.target_ip),
            },
            Frame::Ndp(repr) => IpAddr::V6(repr.message.target()),
        }
    }
}

/// The EtherType of an Ethernet II frame.
fn ethertype(frame: &[u8]) -> Result<EtherType, WireError> {
    match frame.get(12..ETHERNET_HEADER_LEN) {
        Some(&[hi, lo]) => Ok(EtherType(u16::from_be_bytes([hi, lo]))),
        _ => Err(WireError::Truncated {
            layer: Layer::Ethernet,
            len: frame.len(),
            need: ETHERNET_HEADER_LEN,
        }),
    }
}

/// The kernel-captured frames in `tests/fixtures/`, decoded.
#[cfg(test)]
pub(crate) mod fixtures {
    /// Decodes a fixture: `#` lines are comments, the rest is hex.
    pub(crate) fn decode(text: &str) -> Vec<u8> {
        let hex: String = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .flat_map(|line| line.split_whitespace())
            .collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("fixture is hex"))
            .collect()
    }

    macro_rules! fixture {
        ($name:ident, $file:literal) => {
            pub(crate) fn $name() -> Vec<u8> {
                decode(include_str!(concat!("../../tests/fixtures/", $file)))
            }
        };
    }

    fixture!(arp_request_broadcast, "arp_request_broadcast.hex");
    fixture!(arp_request_unicast, "arp_request_unicast.hex");
    fixture!(arp_reply, "arp_reply.hex");
    fixture!(arp_gratuitous_request, "arp_gratuitous_request.hex");
    fixture!(ns_multicast, "ns_multicast.hex");
    fixture!(ns_unicast, "ns_unicast.hex");
    fixture!(ns_dad, "ns_dad.hex");
    fixture!(na_solicited, "na_solicited.hex");
    fixture!(na_solicited_bare, "na_solicited_bare.hex");
    fixture!(na_unsolicited, "na_unsolicited.hex");

    /// Interface a's MAC in the captures (the requester).
    pub(crate) const MAC_A: [u8; 6] = [0x02, 0xf1, 0xb0, 0x00, 0x00, 0x0a];
    /// Interface b's MAC in the captures (the responder).
    pub(crate) const MAC_B: [u8; 6] = [0x02, 0xf1, 0xb0, 0x00, 0x00, 0x0b];
    /// Interface b's MAC after the change that triggered its announcements.
    pub(crate) const MAC_B2: [u8; 6] = [0x02, 0xf1, 0xb0, 0x00, 0x00, 0xbb];

    /// A `MacAddr` from bytes.
    pub(crate) fn mac(b: [u8; 6]) -> super::MacAddr {
        super::MacAddr::new(b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_parse_dispatches_on_ethertype() {
        assert!(matches!(
            Frame::parse(&fixtures::arp_request_broadcast()),
            Ok(Frame::Arp(_))
        ));
        assert!(matches!(
            Frame::parse(&fixtures::ns_multicast()),
            Ok(Frame::Ndp(_))
        ));
    }

    #[test]
    fn an_ipv4_frame_is_neither_arp_nor_ndp() {
        let mut frame = fixtures::arp_request_broadcast();
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(
            Frame::parse(&frame),
            Err(WireError::WrongEtherType {
                expected: "ARP or IPv6",
                found: 0x0800
            })
        );
    }

    #[test]
    fn a_runt_frame_is_truncated_at_the_ethernet_header() {
        assert_eq!(
            Frame::parse(&[0xff; 13]),
            Err(WireError::Truncated {
                layer: Layer::Ethernet,
                len: 13,
                need: 14
            })
        );
    }

    #[test]
    fn errors_read_as_sentences() {
        let err = WireError::Checksum {
            found: 0x1234,
            expected: 0xabcd,
        };
        assert_eq!(err.to_string(), "ICMPv6 checksum 0x1234, expected 0xabcd");
        assert_eq!(err.as_label(), "checksum");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Frame::parse(&bytes);
        }

        #[test]
        fn random_bytes_behind_a_valid_header_never_panic(
            ipv6 in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut frame = vec![0xff; 12];
            frame.extend_from_slice(if ipv6 { &[0x86, 0xdd] } else { &[0x08, 0x06] });
            frame.extend_from_slice(&body);
            let _ = Frame::parse(&frame);
        }
    }
}
