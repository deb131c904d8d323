//! Ethernet + ARP frames for IPv4 over Ethernet: [`ArpRepr`] parses them,
//! with the checks pnet leaves to its callers, and builds them.

// Heads up! Before working on this file you should read, at least, RFC 826
// (the packet format: `ar$hrd`, `ar$pro`, `ar$hln`, `ar$pln`, `ar$op`, and the
// four addresses) and RFC 5227 §2.1–2.4: an ARP Probe is a request with sender
// IP 0.0.0.0, an ARP Announcement is a request with sender IP = target IP and
// a zero target MAC. Both are ordinary requests to this parser; what they mean
// is decided in `respond`.

use std::net::Ipv4Addr;

use pnet_packet::Packet;
use pnet_packet::arp::{
    ArpHardwareTypes, ArpOperation as PnetArpOperation, ArpOperations, ArpPacket, MutableArpPacket,
};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};

use super::{ETHERNET_HEADER_LEN, Ethernet, Layer, MacAddr, WireError};

/// Length of an ARP packet for IPv4 over Ethernet.
pub const ARP_LEN: usize = 28;
/// Length of an Ethernet + ARP frame, without padding.
pub const FRAME_LEN: usize = ETHERNET_HEADER_LEN + ARP_LEN;

/// RFC 826 `ar$op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// `ares_op$REQUEST` (1): who has the target IP?
    Request,
    /// `ares_op$REPLY` (2): the sender IP is at the sender MAC.
    Reply,
}

/// An Ethernet + ARP frame for IPv4 over Ethernet, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// The Ethernet header's addresses.
    pub ethernet: Ethernet,
    /// Request or reply.
    pub operation: ArpOperation,
    /// `ar$sha`.
    pub sender_mac: MacAddr,
    /// `ar$spa`; 0.0.0.0 in an RFC 5227 probe.
    pub sender_ip: Ipv4Addr,
    /// `ar$tha`; zero (or, from some senders, broadcast) in a request.
    pub target_mac: MacAddr,
    /// `ar$tpa`.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an Ethernet + ARP frame. Trailing bytes (Ethernet padding to
    /// 60 bytes) are ignored.
    pub fn parse(frame: &[u8]) -> Result<ArpRepr, WireError> {
        let eth = EthernetPacket::new(frame).ok_or(WireError::Truncated {
            layer: Layer::Ethernet,
            len: frame.len(),
            need: ETHERNET_HEADER_LEN,
        })?;
        if eth.get_ethertype() != EtherTypes::Arp {
            return Err(WireError::WrongEtherType {
                expected: "ARP",
                found: eth.get_ethertype().0,
            });
        }
        let body = eth.payload();
        let arp = ArpPacket::new(body).ok_or(WireError::Truncated {
            layer: Layer::Arp,
            len: body.len(),
            need: ARP_LEN,
        })?;
        // pnet reads the four addresses at Ethernet/IPv4 offsets whatever the
        // header says; the lengths must be checked before trusting them.
        let (htype, hlen) = (arp.get_hardware_type(), arp.get_hw_addr_len());
        if htype != ArpHardwareTypes::Ethernet || hlen != 6 {
            return Err(WireError::ArpHardware {
                htype: htype.0,
                hlen,
            });
        }
        let (ptype, plen) = (arp.get_protocol_type(), arp.get_proto_addr_len());
        if ptype != EtherTypes::Ipv4 || plen != 4 {
            return Err(WireError::ArpProtocol {
                ptype: ptype.0,
                plen,
            });
        }
        let operation = match arp.get_operation() {
            ArpOperations::Request => ArpOperation::Request,
            ArpOperations::Reply => ArpOperation::Reply,
            PnetArpOperation(other) => return Err(WireError::ArpOperation(other)),
        };
        Ok(ArpRepr {
            ethernet: Ethernet {
                source: eth.get_source(),
                destination: eth.get_destination(),
            },
            operation,
            sender_mac: arp.get_sender_hw_addr(),
            sender_ip: arp.get_sender_proto_addr(),
            target_mac: arp.get_target_hw_addr(),
            target_ip: arp.get_target_proto_addr(),
        })
    }

    /// The number of bytes [`ArpRepr::emit`] writes: 42, unpadded (the NIC
    /// pads to the Ethernet minimum, as it does for the kernel's own ARP).
    pub fn buffer_len(&self) -> usize {
        FRAME_LEN
    }

    /// Writes the frame into the first [`ArpRepr::buffer_len`] bytes of `buf`.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than [`ArpRepr::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) {
        assert!(
            buf.len() >= FRAME_LEN,
            "ARP frame needs {FRAME_LEN} bytes, buffer has {}",
            buf.len()
        );
        let (head, body) = buf[..FRAME_LEN].split_at_mut(ETHERNET_HEADER_LEN);
        // Both views only fail on short buffers, excluded by the assert.
        let Some(mut eth) = MutableEthernetPacket::new(head) else {
            unreachable!("Ethernet header is {ETHERNET_HEADER_LEN} bytes")
        };
        eth.set_destination(self.ethernet.destination);
        eth.set_source(self.ethernet.source);
        eth.set_ethertype(EtherTypes::Arp);
        let Some(mut arp) = MutableArpPacket::new(body) else {
            unreachable!("ARP body is {ARP_LEN} bytes")
        };
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(match self.operation {
            ArpOperation::Request => ArpOperations::Request,
            ArpOperation::Reply => ArpOperations::Reply,
        });
        arp.set_sender_hw_addr(self.sender_mac);
        arp.set_sender_proto_addr(self.sender_ip);
        arp.set_target_hw_addr(self.target_mac);
        arp.set_target_proto_addr(self.target_ip);
    }

    /// The frame's bytes in a new buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = vec![0; self.buffer_len()];
        self.emit(&mut buf);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{self, MAC_A, MAC_B, MAC_B2, mac};
    use proptest::prelude::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, last)
    }

    fn kernel_request() -> ArpRepr {
        ArpRepr {
            ethernet: Ethernet {
                source: mac(MAC_A),
                destination: MacAddr::broadcast(),
            },
            operation: ArpOperation::Request,
            sender_mac: mac(MAC_A),
            sender_ip: ip(1),
            target_mac: MacAddr::zero(),
            target_ip: ip(2),
        }
    }

    fn kernel_reply() -> ArpRepr {
        ArpRepr {
            ethernet: Ethernet {
                source: mac(MAC_B),
                destination: mac(MAC_A),
            },
            operation: ArpOperation::Reply,
            sender_mac: mac(MAC_B),
            sender_ip: ip(2),
            target_mac: mac(MAC_A),
            target_ip: ip(1),
        }
    }

    fn kernel_announcement() -> ArpRepr {
        ArpRepr {
            ethernet: Ethernet {
                source: mac(MAC_B2),
                destination: MacAddr::broadcast(),
            },
            operation: ArpOperation::Request,
            sender_mac: mac(MAC_B2),
            sender_ip: ip(2),
            target_mac: MacAddr::zero(),
            target_ip: ip(2),
        }
    }

    #[test]
    fn parses_a_kernel_broadcast_request() {
        assert_eq!(
            ArpRepr::parse(&fixtures::arp_request_broadcast()),
            Ok(kernel_request())
        );
    }

    #[test]
    fn parses_a_kernel_unicast_request_from_the_probe_state() {
        let mut expected = kernel_request();
        expected.ethernet.destination = mac(MAC_B);
        assert_eq!(
            ArpRepr::parse(&fixtures::arp_request_unicast()),
            Ok(expected)
        );
    }

    #[test]
    fn parses_a_kernel_reply() {
        assert_eq!(ArpRepr::parse(&fixtures::arp_reply()), Ok(kernel_reply()));
    }

    #[test]
    fn parses_a_kernel_announcement() {
        assert_eq!(
            ArpRepr::parse(&fixtures::arp_gratuitous_request()),
            Ok(kernel_announcement())
        );
    }

    #[test]
    fn emits_what_the_kernel_sends() {
        assert_eq!(kernel_request().to_vec(), fixtures::arp_request_broadcast());
        assert_eq!(kernel_reply().to_vec(), fixtures::arp_reply());
        assert_eq!(
            kernel_announcement().to_vec(),
            fixtures::arp_gratuitous_request()
        );
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let mut frame = fixtures::arp_request_broadcast();
        frame.resize(60, 0);
        assert_eq!(ArpRepr::parse(&frame), Ok(kernel_request()));
    }

    #[test]
    fn a_frame_cut_inside_the_arp_body_is_truncated() {
        let frame = fixtures::arp_request_broadcast();
        assert_eq!(
            ArpRepr::parse(&frame[..41]),
            Err(WireError::Truncated {
                layer: Layer::Arp,
                len: 27,
                need: ARP_LEN
            })
        );
    }

    #[test]
    fn rejects_what_pnet_would_read_blindly() {
        let cases: &[(&str, usize, &[u8], WireError)] = &[
            (
                "token ring hardware type",
                14,
                &[0x00, 0x06],
                WireError::ArpHardware { htype: 6, hlen: 6 },
            ),
            (
                "8-byte hardware addresses",
                18,
                &[8],
                WireError::ArpHardware { htype: 1, hlen: 8 },
            ),
            (
                "IPv6 as the protocol type",
                16,
                &[0x86, 0xdd],
                WireError::ArpProtocol {
                    ptype: 0x86dd,
                    plen: 4,
                },
            ),
            (
                "16-byte protocol addresses",
                19,
                &[16],
                WireError::ArpProtocol {
                    ptype: 0x0800,
                    plen: 16,
                },
            ),
            (
                "RARP request opcode",
                20,
                &[0x00, 0x03],
                WireError::ArpOperation(3),
            ),
            (
                "IPv4 EtherType",
                12,
                &[0x08, 0x00],
                WireError::WrongEtherType {
                    expected: "ARP",
                    found: 0x0800,
                },
            ),
        ];
        for (desc, offset, bytes, expected) in cases {
            let mut frame = fixtures::arp_request_broadcast();
            frame[*offset..offset + bytes.len()].copy_from_slice(bytes);
            assert_eq!(ArpRepr::parse(&frame).as_ref(), Err(expected), "{desc}");
        }
    }

    #[test]
    #[should_panic(expected = "ARP frame needs 42 bytes, buffer has 41")]
    fn emit_into_a_short_buffer_is_a_caller_bug() {
        kernel_request().emit(&mut [0; 41]);
    }

    fn any_mac() -> impl Strategy<Value = MacAddr> {
        any::<[u8; 6]>().prop_map(mac)
    }

    fn any_repr() -> impl Strategy<Value = ArpRepr> {
        (
            any_mac(),
            any_mac(),
            any::<bool>(),
            any_mac(),
            any::<[u8; 4]>(),
            any_mac(),
            any::<[u8; 4]>(),
        )
            .prop_map(|(src, dst, reply, sha, spa, tha, tpa)| ArpRepr {
                ethernet: Ethernet {
                    source: src,
                    destination: dst,
                },
                operation: if reply {
                    ArpOperation::Reply
                } else {
                    ArpOperation::Request
                },
                sender_mac: sha,
                sender_ip: Ipv4Addr::from(spa),
                target_mac: tha,
                target_ip: Ipv4Addr::from(tpa),
            })
    }

    proptest! {
        #[test]
        fn parse_inverts_emit(repr in any_repr()) {
            prop_assert_eq!(ArpRepr::parse(&repr.to_vec()), Ok(repr));
        }

        #[test]
        fn any_corruption_of_a_kernel_frame_never_panics(
            offset in 0usize..42,
            byte in any::<u8>(),
            cut in 0usize..=42,
        ) {
            let mut frame = fixtures::arp_request_broadcast();
            frame[offset] = byte;
            frame.truncate(cut);
            let _ = ArpRepr::parse(&frame);
        }
    }
}
