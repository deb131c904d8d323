//! What to do with one received frame: [`respond`] returns a [`Verdict`] —
//! the reply to send, a counted [`DropReason`], or a [`Conflict`] to report.
//! Also the gratuitous ARP and unsolicited NA a new owner sends. Pure: no
//! socket, no clock; the announcer reads, calls [`respond`], and sends.
//!
//! The one promise: a reply is only ever sent for an address in
//! [`OwnedAddresses`], from the interface's own MAC.

// What is answered, and why (see also research notes on Linux neighbour
// handling):
// * ARP requests, broadcast or unicast to our MAC (a client in the PROBE state
//   unicasts to the MAC it cached), including RFC 5227 probes from 0.0.0.0:
//   answering a probe is how an owner defends its address. Replies follow
//   Linux `arp_process`: unicast to the sender's MAC, target = the sender.
// * Neighbor Solicitations, multicast or unicast (NUD probes are sent to the
//   target address itself, at the MAC the client cached), with S and O set and
//   the target link-layer option always present: RFC 4861 §7.2.4 says an owner
//   SHOULD set O, and with O clear a client holding another node's MAC keeps
//   it. The NA's IPv6 source is the target itself, as Linux `ndisc_send_na`
//   does for an address it owns, so no link-local address is needed.
// * A DAD probe (NS from ::) gets an NA to all nodes with S clear (§7.2.4):
//   the prober learns the address is taken.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::ndp::{self, ALL_NODES};
use crate::wire::{
    ArpOperation, ArpRepr, Ethernet, Frame, MacAddr, NdpMessage, NdpRepr, NeighborFlags, WireError,
};

/// The interface a frame arrived on, as the responder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name, e.g. `eth0`.
    pub name: String,
    /// Its MAC: the source of every reply and the address clients learn.
    pub mac: MacAddr,
}

/// The addresses this node announces on one interface: the only ones the
/// responder ever answers for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedAddresses {
    v4: BTreeSet<Ipv4Addr>,
    v6: BTreeSet<Ipv6Addr>,
}

impl OwnedAddresses {
    /// No address: nothing is answered.
    pub fn new() -> OwnedAddresses {
        OwnedAddresses::default()
    }

    /// Starts answering for `ip`; false if it was already owned.
    pub fn insert(&mut self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => self.v4.insert(ip),
            IpAddr::V6(ip) => self.v6.insert(ip),
        }
    }

    /// Stops answering for `ip`; false if it was not owned.
    pub fn remove(&mut self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => self.v4.remove(&ip),
            IpAddr::V6(ip) => self.v6.remove(&ip),
        }
    }

    /// Whether `ip` is answered for.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => self.v4.contains(&ip),
            IpAddr::V6(ip) => self.v6.contains(&ip),
        }
    }

    /// How many addresses are owned.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether no address is owned.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The owned addresses, IPv4 first, each family in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.v4
            .iter()
            .copied()
            .map(IpAddr::V4)
            .chain(self.v6.iter().copied().map(IpAddr::V6))
    }
}

impl FromIterator<IpAddr> for OwnedAddresses {
    fn from_iter<I: IntoIterator<Item = IpAddr>>(iter: I) -> OwnedAddresses {
        let mut owned = OwnedAddresses::new();
        owned.extend(iter);
        owned
    }
}

impl Extend<IpAddr> for OwnedAddresses {
    fn extend<I: IntoIterator<Item = IpAddr>>(&mut self, iter: I) {
        for ip in iter {
            self.insert(ip);
        }
    }
}

/// The responder's decision for one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send this frame back out of the interface the request came in on.
    Reply(Frame),
    /// Send nothing; count the reason.
    Drop(DropReason),
    /// Send nothing: another station claims an address we own. Worth a
    /// metric and a log line — a split brain, or a foreign host using a
    /// pool address.
    Conflict(Conflict),
}

/// Another station claiming one of our addresses: an ARP packet with that
/// sender IP (RFC 5227 §2.4), an NA for that target, or an NS from that
/// source, from a MAC that is not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// The owned address being claimed.
    pub address: IpAddr,
    /// The MAC claiming it.
    pub mac: MacAddr,
}

/// Who is claiming one of our addresses, judged by its MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Claimant {
    /// Another ferrolb speaker also announces the address: a split brain,
    /// settled by the election; the rightful owner announces again.
    Speaker,
    /// A speaker handing over: the claimant just left or just joined, or
    /// this speaker is leaving. The leaving speaker answers on purpose until
    /// the new owner has announced, so no client loses a packet, and a
    /// speaker that just (re)joined takes back what the election gives it
    /// while the others learn of it; not a conflict.
    Handover,
    /// Another interface of this very node announcing the same address on
    /// the same LAN: not a conflict.
    ThisNode,
    /// A station that is no ferrolb speaker: an IP conflict, for the
    /// operator to resolve.
    Foreign,
}

impl Claimant {
    /// A stable label for logs and metrics.
    pub fn as_label(self) -> &'static str {
        match self {
            Claimant::Speaker => "split_brain",
            Claimant::Handover => "handover",
            Claimant::ThisNode => "this_node",
            Claimant::Foreign => "ip_conflict",
        }
    }
}

/// The MACs of the ferrolb speakers on the LAN, each published by its
/// speaker on its node Lease, and which of them are leaving.
///
/// Why a released or a new Lease marks a handover: a speaker releases its
/// Lease only on a clean stop, just before the others take its addresses
/// over, and it keeps answering for a short, bounded time after that so no
/// client loses a packet; a speaker whose Lease just appeared (a restart in
/// a rolling update) takes its addresses back as the others learn of it. A
/// speaker that crashes or is cut off never releases its Lease, and one
/// that heals from a partition kept it, so their frames count as a split
/// brain; a foreign MAC was never published, so it always counts as a
/// conflict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Speakers {
    /// MACs of this node's own announcing interfaces.
    pub own: BTreeSet<MacAddr>,
    /// MACs of other speakers that announce (their Lease is held).
    pub present: BTreeSet<MacAddr>,
    /// MACs of speakers that released their Lease, or whose Lease
    /// appeared, within the handover grace.
    pub handing_over: BTreeSet<MacAddr>,
}

impl Speakers {
    /// Who `mac`, claiming an address this node announces, is; `me_leaving`
    /// says this speaker is stopping and handing its addresses over, so any
    /// speaker claiming them is expected.
    pub fn claimant(&self, mac: MacAddr, me_leaving: bool) -> Claimant {
        if self.own.contains(&mac) {
            return Claimant::ThisNode;
        }
        let handing_over = self.handing_over.contains(&mac);
        match (
            self.present.contains(&mac) || handing_over,
            handing_over || me_leaving,
        ) {
            (true, true) => Claimant::Handover,
            (true, false) => Claimant::Speaker,
            (false, _) => Claimant::Foreign,
        }
    }
}

/// Why a frame got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame ends inside a header or message.
    Truncated,
    /// A field has a value its protocol forbids (hop limit ≠ 255, a
    /// zero-length option, a multicast target, a broadcast sender MAC…).
    Malformed,
    /// The ICMPv6 checksum is wrong.
    BadChecksum,
    /// Neither ARP for IPv4 over Ethernet nor an ICMPv6 NS/NA.
    Unsupported,
    /// Sent from this interface's own MAC: our own frame seen again.
    OwnFrame,
    /// An ARP reply or a Neighbor Advertisement: nothing to answer.
    NotARequest,
    /// Unicast to another station's MAC (seen only when the interface
    /// receives more than its own traffic); that station answers.
    OtherHost,
    /// The target is not an address this node announces here.
    NotOurs,
    /// A multicast NS without the source link-layer option RFC 4861 §4.3
    /// requires: there is no MAC to answer to.
    NoSourceLinkLayer,
    /// Sent from an address no station may use on a link, which Linux
    /// drops too (`arp_process`, `ipv6_rcv`): IPv4 loopback, 0/8 other than
    /// an RFC 5227 probe's 0.0.0.0, multicast, 240/4 and broadcast; IPv6
    /// loopback and IPv4-mapped.
    MartianSource,
    /// The frame was longer than the receive buffer: nothing a neighbour
    /// protocol sends.
    Oversized,
    /// The frame arrived with an 802.1Q tag, or was received on a VLAN
    /// interface stacked on this one: an answer sent here would go out
    /// untagged, on the wrong LAN.
    Vlan,
    /// The kernel delivered the frame from another interface than the one
    /// the socket serves (a VLAN or macvlan upper device).
    OtherInterface,
    /// The requester used up its share of replies
    /// (`--reply-rate-per-requester`).
    RequesterRateLimited,
    /// The interface used up its replies for all requesters together
    /// (`--reply-rate-per-interface`).
    InterfaceRateLimited,
    /// The kernel dropped the frame before the speaker read it: the
    /// socket's receive queue was full.
    QueueFull,
}

impl DropReason {
    /// Every reason, in the order the metric lists them.
    pub const ALL: [DropReason; 16] = [
        DropReason::Truncated,
        DropReason::Oversized,
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::Unsupported,
        DropReason::Vlan,
        DropReason::OtherInterface,
        DropReason::OwnFrame,
        DropReason::NotARequest,
        DropReason::OtherHost,
        DropReason::MartianSource,
        DropReason::NotOurs,
        DropReason::NoSourceLinkLayer,
        DropReason::RequesterRateLimited,
        DropReason::InterfaceRateLimited,
        DropReason::QueueFull,
    ];

    /// A stable label for the drop-counter metric.
    pub fn as_label(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::Unsupported => "unsupported",
            DropReason::OwnFrame => "own_frame",
            DropReason::NotARequest => "not_a_request",
            DropReason::OtherHost => "other_host",
            DropReason::NotOurs => "not_ours",
            DropReason::NoSourceLinkLayer => "no_source_link_layer",
            DropReason::MartianSource => "martian_source",
            DropReason::Oversized => "oversized",
            DropReason::Vlan => "vlan",
            DropReason::OtherInterface => "other_interface",
            DropReason::RequesterRateLimited => "requester_rate_limited",
            DropReason::InterfaceRateLimited => "interface_rate_limited",
            DropReason::QueueFull => "queue_full",
        }
    }
}

impl From<&WireError> for DropReason {
    fn from(err: &WireError) -> DropReason {
        match err {
            WireError::Truncated { .. } => DropReason::Truncated,
            WireError::Checksum { .. } => DropReason::BadChecksum,
            WireError::WrongEtherType { .. }
            | WireError::ArpHardware { .. }
            | WireError::ArpProtocol { .. }
            | WireError::ArpOperation(_)
            | WireError::NotIcmpv6(_)
            | WireError::NotNeighborDiscovery(_) => DropReason::Unsupported,
            WireError::Ipv6Version(_)
            | WireError::IcmpCode(_)
            | WireError::HopLimit(_)
            | WireError::OptionZeroLength { .. }
            | WireError::OptionOverrun { .. }
            | WireError::LinkLayerOptionLength { .. }
            | WireError::MulticastSource(_)
            | WireError::MulticastTarget(_)
            | WireError::DadNotToSolicitedNode(_)
            | WireError::DadWithSourceLinkLayer
            | WireError::SolicitedToMulticast(_) => DropReason::Malformed,
        }
    }
}

/// Decides what to send in answer to `frame`, received on `iface`, when
/// this node announces `owned` there.
pub fn respond(frame: &[u8], iface: &Interface, owned: &OwnedAddresses) -> Verdict {
    match Frame::parse(frame) {
        Ok(Frame::Arp(request)) => respond_arp(&request, iface, owned),
        Ok(Frame::Ndp(request)) => respond_ndp(&request, iface, owned),
        Err(err) => Verdict::Drop(DropReason::from(&err)),
    }
}

fn respond_arp(request: &ArpRepr, iface: &Interface, owned: &OwnedAddresses) -> Verdict {
    if request.ethernet.source == iface.mac {
        return Verdict::Drop(DropReason::OwnFrame);
    }
    let probe = request.operation == ArpOperation::Request && request.sender_ip.is_unspecified();
    if !probe && is_martian_v4(request.sender_ip) {
        return Verdict::Drop(DropReason::MartianSource);
    }
    if owned.contains(IpAddr::V4(request.sender_ip)) && request.sender_mac != iface.mac {
        return Verdict::Conflict(Conflict {
            address: IpAddr::V4(request.sender_ip),
            mac: request.sender_mac,
        });
    }
    if request.operation != ArpOperation::Request {
        return Verdict::Drop(DropReason::NotARequest);
    }
    if !addressed_to(request.ethernet.destination, iface) {
        return Verdict::Drop(DropReason::OtherHost);
    }
    if !owned.contains(IpAddr::V4(request.target_ip)) {
        return Verdict::Drop(DropReason::NotOurs);
    }
    // The reply is unicast to the sender's MAC; one that is a group or zero
    // would make it a broadcast or a black hole.
    if !is_station(request.sender_mac) {
        return Verdict::Drop(DropReason::Malformed);
    }
    Verdict::Reply(Frame::Arp(ArpRepr {
        ethernet: Ethernet {
            source: iface.mac,
            destination: request.sender_mac,
        },
        operation: ArpOperation::Reply,
        sender_mac: iface.mac,
        sender_ip: request.target_ip,
        target_mac: request.sender_mac,
        // 0.0.0.0 for an RFC 5227 probe, as Linux answers it.
        target_ip: request.sender_ip,
    }))
}

fn respond_ndp(request: &NdpRepr, iface: &Interface, owned: &OwnedAddresses) -> Verdict {
    if request.ethernet.source == iface.mac {
        return Verdict::Drop(DropReason::OwnFrame);
    }
    if is_martian_v6(request.source) {
        return Verdict::Drop(DropReason::MartianSource);
    }
    let (target, source_ll) = match request.message {
        NdpMessage::NeighborAdvert {
            target, target_ll, ..
        } => {
            let mac = target_ll.unwrap_or(request.ethernet.source);
            if owned.contains(IpAddr::V6(target)) && mac != iface.mac {
                return Verdict::Conflict(Conflict {
                    address: IpAddr::V6(target),
                    mac,
                });
            }
            return Verdict::Drop(DropReason::NotARequest);
        }
        NdpMessage::NeighborSolicit { target, source_ll } => (target, source_ll),
    };
    let solicitor_mac = source_ll.unwrap_or(request.ethernet.source);
    if owned.contains(IpAddr::V6(request.source)) && solicitor_mac != iface.mac {
        return Verdict::Conflict(Conflict {
            address: IpAddr::V6(request.source),
            mac: solicitor_mac,
        });
    }
    if !addressed_to(request.ethernet.destination, iface) {
        return Verdict::Drop(DropReason::OtherHost);
    }
    if !owned.contains(IpAddr::V6(target)) {
        return Verdict::Drop(DropReason::NotOurs);
    }
    if request.source.is_unspecified() {
        // RFC 4861 §7.2.4: a DAD probe is answered to all nodes, S clear.
        return Verdict::Reply(Frame::Ndp(advertisement(
            iface,
            target,
            ALL_NODES,
            NeighborFlags::OVERRIDE,
        )));
    }
    let destination_mac = match source_ll {
        Some(mac) => mac,
        // A unicast NS need not carry the option (RFC 4861 §4.3); its
        // sender is the frame's source.
        None if !request.destination.is_multicast() => request.ethernet.source,
        None => return Verdict::Drop(DropReason::NoSourceLinkLayer),
    };
    if !is_station(destination_mac) {
        return Verdict::Drop(DropReason::Malformed);
    }
    let mut reply = advertisement(
        iface,
        target,
        request.source,
        NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE,
    );
    reply.ethernet.destination = destination_mac;
    Verdict::Reply(Frame::Ndp(reply))
}

/// An NA for `target` from `iface`, its IPv6 source the target itself.
fn advertisement(
    iface: &Interface,
    target: Ipv6Addr,
    destination: Ipv6Addr,
    flags: NeighborFlags,
) -> NdpRepr {
    NdpRepr {
        ethernet: Ethernet {
            source: iface.mac,
            destination: ndp::multicast_mac(destination),
        },
        source: target,
        destination,
        message: NdpMessage::NeighborAdvert {
            target,
            flags,
            target_ll: Some(iface.mac),
        },
    }
}

/// A sender address no station uses on a link, as Linux's `arp_process`
/// judges it: 0/8 (the caller admits an RFC 5227 probe's 0.0.0.0), loopback,
/// multicast, and 240/4 with the limited broadcast.
fn is_martian_v4(ip: Ipv4Addr) -> bool {
    let first = ip.octets()[0];
    first == 0 || ip.is_loopback() || ip.is_multicast() || first >= 240
}

/// An IPv6 source `ipv6_rcv` drops when it arrives on a link: loopback and
/// IPv4-mapped. (A multicast source fails [`NdpRepr::parse`] already; the
/// unspecified source is a DAD probe's.)
fn is_martian_v6(ip: Ipv6Addr) -> bool {
    ip.is_loopback() || ip.to_ipv4_mapped().is_some()
}

/// Whether a frame sent to `destination` is for this interface: broadcast,
/// any multicast group (the NIC filter already chose which), or its MAC.
fn addressed_to(destination: MacAddr, iface: &Interface) -> bool {
    destination == iface.mac || is_group(destination)
}

fn is_group(mac: MacAddr) -> bool {
    mac.0 & 0x01 != 0
}

/// A unicast, non-zero MAC: something a reply can be sent to.
fn is_station(mac: MacAddr) -> bool {
    !is_group(mac) && mac != MacAddr::zero()
}

/// Whether `frame` says another station uses one of `probed`, addresses
/// this node is about to announce (RFC 5227 §2.1.1, RFC 4862 §5.4.3): an
/// ARP packet with that sender IP, an ARP probe for it (another host
/// probing at the same time), a Neighbor Advertisement for it, or a DAD
/// probe for it. Our own frames never count.
pub fn probe_conflict(
    frame: &[u8],
    iface: &Interface,
    probed: &OwnedAddresses,
) -> Option<Conflict> {
    match Frame::parse(frame).ok()? {
        Frame::Arp(arp) => {
            if arp.ethernet.source == iface.mac || arp.sender_mac == iface.mac {
                return None;
            }
            let claimed = if probed.contains(IpAddr::V4(arp.sender_ip)) {
                arp.sender_ip
            } else if arp.sender_ip.is_unspecified()
                && arp.operation == ArpOperation::Request
                && probed.contains(IpAddr::V4(arp.target_ip))
            {
                arp.target_ip
            } else {
                return None;
            };
            Some(Conflict {
                address: IpAddr::V4(claimed),
                mac: arp.sender_mac,
            })
        }
        Frame::Ndp(ndp) => {
            if ndp.ethernet.source == iface.mac {
                return None;
            }
            let target = ndp.message.target();
            let claims = match ndp.message {
                NdpMessage::NeighborAdvert { target_ll, .. } => {
                    target_ll.is_none_or(|mac| mac != iface.mac)
                }
                NdpMessage::NeighborSolicit { .. } => ndp.source.is_unspecified(),
            };
            (claims && probed.contains(IpAddr::V6(target))).then_some(Conflict {
                address: IpAddr::V6(target),
                mac: match ndp.message {
                    NdpMessage::NeighborAdvert {
                        target_ll: Some(mac),
                        ..
                    } => mac,
                    _ => ndp.ethernet.source,
                },
            })
        }
    }
}

/// The probe sent before first announcing `ip`: an RFC 5227 ARP probe
/// (sender IP 0.0.0.0, so no cache learns anything from it) or an RFC 4862
/// DAD probe (NS from `::` to the solicited-node group, no link-layer
/// option). Whoever uses the address answers it.
pub fn probe(iface: &Interface, ip: IpAddr) -> Frame {
    match ip {
        IpAddr::V4(ip) => Frame::Arp(ArpRepr {
            ethernet: Ethernet {
                source: iface.mac,
                destination: MacAddr::broadcast(),
            },
            operation: ArpOperation::Request,
            sender_mac: iface.mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: MacAddr::zero(),
            target_ip: ip,
        }),
        IpAddr::V6(ip) => {
            let group = ndp::solicited_node(ip);
            Frame::Ndp(NdpRepr {
                ethernet: Ethernet {
                    source: iface.mac,
                    destination: ndp::multicast_mac(group),
                },
                source: Ipv6Addr::UNSPECIFIED,
                destination: group,
                message: NdpMessage::NeighborSolicit {
                    target: ip,
                    source_ll: None,
                },
            })
        }
    }
}

/// The gratuitous ARP a new owner broadcasts for `ip`, in the request form
/// of an RFC 5227 ARP Announcement: sender IP = target IP = `ip`, target MAC
/// zero. Linux clients accept it even within their 1 s `locktime`, where a
/// reply form is ignored; it is what the kernel itself sends with
/// `arp_notify`.
pub fn gratuitous_arp(iface: &Interface, ip: Ipv4Addr) -> ArpRepr {
    ArpRepr {
        ethernet: Ethernet {
            source: iface.mac,
            destination: MacAddr::broadcast(),
        },
        operation: ArpOperation::Request,
        sender_mac: iface.mac,
        sender_ip: ip,
        target_mac: MacAddr::zero(),
        target_ip: ip,
    }
}

/// The unsolicited NA a new owner sends for `ip` (RFC 4861 §7.2.6): to all
/// nodes, Override set so caches holding the old owner's MAC switch,
/// Solicited clear, with the target link-layer option; the IPv6 source is
/// `ip` itself, as Linux sends it with `ndisc_notify`.
pub fn unsolicited_na(iface: &Interface, ip: Ipv6Addr) -> NdpRepr {
    advertisement(iface, ip, ALL_NODES, NeighborFlags::OVERRIDE)
}

/// The announcement for `ip`: [`gratuitous_arp`] or [`unsolicited_na`].
pub fn announcement(iface: &Interface, ip: IpAddr) -> Frame {
    match ip {
        IpAddr::V4(ip) => Frame::Arp(gratuitous_arp(iface, ip)),
        IpAddr::V6(ip) => Frame::Ndp(unsolicited_na(iface, ip)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{self, MAC_A, MAC_B, MAC_B2, mac};
    use proptest::prelude::*;

    /// A frame that must be dropped: why it is, the frame, the receiving
    /// interface's MAC, the owned addresses, and the expected reason.
    type DropCase = (
        &'static str,
        Vec<u8>,
        [u8; 6],
        &'static [&'static str],
        DropReason,
    );

    fn iface(bytes: [u8; 6]) -> Interface {
        Interface {
            name: "eth0".to_owned(),
            mac: mac(bytes),
        }
    }

    fn owned(addrs: &[&str]) -> OwnedAddresses {
        addrs
            .iter()
            .map(|a| a.parse::<IpAddr>().expect("test address"))
            .collect()
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("test address")
    }

    fn reply_bytes(verdict: Verdict) -> Vec<u8> {
        match verdict {
            Verdict::Reply(frame) => frame.to_vec(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn reply_ndp(verdict: Verdict) -> NdpRepr {
        match verdict {
            Verdict::Reply(Frame::Ndp(repr)) => repr,
            other => panic!("expected an NA, got {other:?}"),
        }
    }

    #[test]
    fn a_broadcast_request_for_an_owned_address_gets_the_kernels_own_reply() {
        let verdict = respond(
            &fixtures::arp_request_broadcast(),
            &iface(MAC_B),
            &owned(&["198.51.100.2"]),
        );
        assert_eq!(reply_bytes(verdict), fixtures::arp_reply());
    }

    #[test]
    fn a_unicast_request_from_a_probing_client_is_answered_too() {
        let verdict = respond(
            &fixtures::arp_request_unicast(),
            &iface(MAC_B),
            &owned(&["198.51.100.2"]),
        );
        assert_eq!(reply_bytes(verdict), fixtures::arp_reply());
    }

    #[test]
    fn an_rfc5227_probe_for_an_owned_address_is_answered_to_defend_it() {
        let mut probe = ArpRepr::parse(&fixtures::arp_request_broadcast()).expect("fixture");
        probe.sender_ip = Ipv4Addr::UNSPECIFIED;
        let verdict = respond(&probe.to_vec(), &iface(MAC_B), &owned(&["198.51.100.2"]));
        let Verdict::Reply(Frame::Arp(reply)) = verdict else {
            panic!("expected an ARP reply, got {verdict:?}");
        };
        assert_eq!(reply.operation, ArpOperation::Reply);
        assert_eq!(reply.ethernet.destination, mac(MAC_A));
        assert_eq!(reply.sender_ip, Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(reply.sender_mac, mac(MAC_B));
        assert_eq!(reply.target_ip, Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn requests_from_martian_senders_are_dropped_as_linux_drops_them() {
        let from = |sender: [u8; 4]| {
            let mut request = ArpRepr::parse(&fixtures::arp_request_broadcast()).expect("fixture");
            request.sender_ip = Ipv4Addr::from(sender);
            request.to_vec()
        };
        let owning = owned(&["198.51.100.2", "2001:db8:100::2"]);
        for (desc, sender) in [
            ("loopback", [127, 0, 0, 1]),
            ("this network, not the probe's 0.0.0.0", [0, 1, 2, 3]),
            ("multicast", [224, 0, 0, 1]),
            ("reserved", [240, 0, 0, 1]),
            ("limited broadcast", [255, 255, 255, 255]),
        ] {
            assert_eq!(
                respond(&from(sender), &iface(MAC_B), &owning),
                Verdict::Drop(DropReason::MartianSource),
                "{desc}"
            );
        }
        // An NS from a source no router or host may use on a link.
        for source in ["::1", "::ffff:198.51.100.9"] {
            let mut ns = NdpRepr::parse(&fixtures::ns_multicast()).expect("fixture");
            ns.source = v6(source);
            assert_eq!(
                respond(&ns.to_vec(), &iface(MAC_B), &owning),
                Verdict::Drop(DropReason::MartianSource),
                "{source}"
            );
        }
        // The RFC 5227 probe's 0.0.0.0 is a sender like any.
        assert!(matches!(
            respond(&from([0, 0, 0, 0]), &iface(MAC_B), &owning),
            Verdict::Reply(_)
        ));
    }

    #[test]
    fn arp_drop_reasons() {
        let token_ring = {
            let mut frame = fixtures::arp_request_broadcast();
            frame[14..16].copy_from_slice(&[0, 6]);
            frame
        };
        let for_someone_else = {
            let mut frame = fixtures::arp_request_broadcast();
            frame[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
            frame
        };
        let from_broadcast_mac = {
            let mut frame = fixtures::arp_request_broadcast();
            frame[22..28].copy_from_slice(&[0xff; 6]);
            frame
        };
        let cases: &[DropCase] = &[
            (
                "a request for an address another node owns is not answered",
                fixtures::arp_request_broadcast(),
                MAC_B,
                &["198.51.100.3"],
                DropReason::NotOurs,
            ),
            (
                "nothing is answered when nothing is owned",
                fixtures::arp_request_broadcast(),
                MAC_B,
                &[],
                DropReason::NotOurs,
            ),
            (
                "a reply is never answered",
                fixtures::arp_reply(),
                MAC_A,
                &["198.51.100.1"],
                DropReason::NotARequest,
            ),
            (
                "a request unicast to another station is that station's to answer",
                for_someone_else,
                MAC_B,
                &["198.51.100.2"],
                DropReason::OtherHost,
            ),
            (
                "a reply to a broadcast sender MAC would flood the segment",
                from_broadcast_mac,
                MAC_B,
                &["198.51.100.2"],
                DropReason::Malformed,
            ),
            (
                "ARP over token ring is not ours to handle",
                token_ring,
                MAC_B,
                &["198.51.100.2"],
                DropReason::Unsupported,
            ),
            (
                "a runt frame is truncated",
                fixtures::arp_request_broadcast()[..30].to_vec(),
                MAC_B,
                &["198.51.100.2"],
                DropReason::Truncated,
            ),
        ];
        for (desc, frame, mac_bytes, addrs, expected) in cases {
            assert_eq!(
                respond(frame, &iface(*mac_bytes), &owned(addrs)),
                Verdict::Drop(*expected),
                "{desc}"
            );
        }
    }

    #[test]
    fn our_own_frame_seen_again_is_ignored() {
        let own = gratuitous_arp(&iface(MAC_B), Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(
            respond(&own.to_vec(), &iface(MAC_B), &owned(&["198.51.100.2"])),
            Verdict::Drop(DropReason::OwnFrame)
        );
    }

    #[test]
    fn another_mac_announcing_an_owned_ipv4_address_is_a_conflict() {
        let verdict = respond(
            &fixtures::arp_gratuitous_request(),
            &iface(MAC_B),
            &owned(&["198.51.100.2"]),
        );
        assert_eq!(
            verdict,
            Verdict::Conflict(Conflict {
                address: "198.51.100.2".parse().expect("address"),
                mac: mac(MAC_B2),
            })
        );
    }

    #[test]
    fn a_multicast_ns_for_an_owned_address_gets_the_kernels_own_na() {
        let verdict = respond(
            &fixtures::ns_multicast(),
            &iface(MAC_B),
            &owned(&["2001:db8:100::2"]),
        );
        assert_eq!(reply_bytes(verdict), fixtures::na_solicited());
    }

    #[test]
    fn a_unicast_nud_probe_is_answered_with_override_and_the_option() {
        let na = reply_ndp(respond(
            &fixtures::ns_unicast(),
            &iface(MAC_A),
            &owned(&["2001:db8:100::1"]),
        ));
        // Same addresses as the kernel's own answer to this probe…
        let kernel = NdpRepr::parse(&fixtures::na_solicited_bare()).expect("fixture");
        assert_eq!(
            (na.ethernet, na.source, na.destination),
            (kernel.ethernet, kernel.source, kernel.destination)
        );
        // …but O and the option set, so a client caching another MAC switches.
        assert_eq!(
            na.message,
            NdpMessage::NeighborAdvert {
                target: v6("2001:db8:100::1"),
                flags: NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE,
                target_ll: Some(mac(MAC_A)),
            }
        );
    }

    #[test]
    fn a_dad_probe_for_an_owned_address_is_answered_to_all_nodes() {
        let na = reply_ndp(respond(
            &fixtures::ns_dad(),
            &iface(MAC_B),
            &owned(&["2001:db8:100::a"]),
        ));
        assert_eq!(
            na,
            NdpRepr {
                ethernet: Ethernet {
                    source: mac(MAC_B),
                    destination: mac([0x33, 0x33, 0, 0, 0, 1]),
                },
                source: v6("2001:db8:100::a"),
                destination: ALL_NODES,
                message: NdpMessage::NeighborAdvert {
                    target: v6("2001:db8:100::a"),
                    flags: NeighborFlags::OVERRIDE,
                    target_ll: Some(mac(MAC_B)),
                },
            }
        );
    }

    fn ns_without_option(destination: Ipv6Addr, eth_destination: MacAddr) -> Vec<u8> {
        NdpRepr {
            ethernet: Ethernet {
                source: mac(MAC_A),
                destination: eth_destination,
            },
            source: v6("2001:db8:100::1"),
            destination,
            message: NdpMessage::NeighborSolicit {
                target: v6("2001:db8:100::2"),
                source_ll: None,
            },
        }
        .to_vec()
    }

    #[test]
    fn a_unicast_ns_without_the_option_is_answered_to_the_frames_source() {
        let frame = ns_without_option(v6("2001:db8:100::2"), mac(MAC_B));
        let na = reply_ndp(respond(&frame, &iface(MAC_B), &owned(&["2001:db8:100::2"])));
        assert_eq!(na.ethernet.destination, mac(MAC_A));
        assert_eq!(na.destination, v6("2001:db8:100::1"));
    }

    #[test]
    fn ndp_drop_reasons() {
        let bad_checksum = {
            let mut frame = fixtures::ns_multicast();
            frame[57] ^= 1;
            frame
        };
        let echo_request = {
            let mut frame = fixtures::ns_multicast();
            frame[54] = 128;
            frame
        };
        let cases: &[DropCase] = &[
            (
                "an NS for an address another node owns is not answered",
                fixtures::ns_multicast(),
                MAC_B,
                &["2001:db8:100::3"],
                DropReason::NotOurs,
            ),
            (
                "an NA is never answered",
                fixtures::na_solicited(),
                MAC_A,
                &["2001:db8:100::1"],
                DropReason::NotARequest,
            ),
            (
                "a multicast NS without its source link-layer option has no one to answer to",
                ns_without_option(
                    ndp::solicited_node(v6("2001:db8:100::2")),
                    mac([0x33, 0x33, 0xff, 0, 0, 2]),
                ),
                MAC_B,
                &["2001:db8:100::2"],
                DropReason::NoSourceLinkLayer,
            ),
            (
                "a NUD probe for an owned address sent to another station's MAC",
                fixtures::ns_unicast(),
                [2, 0, 0, 0, 0, 0x99],
                &["2001:db8:100::1"],
                DropReason::OtherHost,
            ),
            (
                "a corrupted checksum",
                bad_checksum,
                MAC_B,
                &["2001:db8:100::2"],
                DropReason::BadChecksum,
            ),
            (
                "an echo request",
                echo_request,
                MAC_B,
                &["2001:db8:100::2"],
                DropReason::Unsupported,
            ),
            (
                "our own NS seen again",
                fixtures::ns_multicast(),
                MAC_A,
                &["2001:db8:100::2"],
                DropReason::OwnFrame,
            ),
        ];
        for (desc, frame, mac_bytes, addrs, expected) in cases {
            assert_eq!(
                respond(frame, &iface(*mac_bytes), &owned(addrs)),
                Verdict::Drop(*expected),
                "{desc}"
            );
        }
    }

    #[test]
    fn an_na_from_another_mac_for_an_owned_address_is_a_conflict() {
        assert_eq!(
            respond(
                &fixtures::na_unsolicited(),
                &iface(MAC_B),
                &owned(&["2001:db8:100::2"])
            ),
            Verdict::Conflict(Conflict {
                address: "2001:db8:100::2".parse().expect("address"),
                mac: mac(MAC_B2),
            })
        );
    }

    #[test]
    fn an_arp_reply_from_another_mac_for_an_owned_address_is_a_conflict_not_a_drop() {
        // Another owner answering a client: its reply is seen here only when
        // it is flooded, but then it must be reported, never dropped.
        assert_eq!(
            respond(
                &fixtures::arp_reply(),
                &iface(MAC_A),
                &owned(&["198.51.100.2"])
            ),
            Verdict::Conflict(Conflict {
                address: "198.51.100.2".parse().expect("address"),
                mac: mac(MAC_B),
            })
        );
    }

    #[test]
    fn claimants_are_speakers_leaving_speakers_or_foreign() {
        let mut speakers = Speakers::default();
        speakers.present.insert(mac(MAC_B));
        speakers.handing_over.insert(mac(MAC_B2));
        speakers.own.insert(mac([2, 0, 0, 0, 0, 1]));
        let cases = [
            (
                "a present speaker also announcing is a split brain",
                MAC_B,
                false,
                Claimant::Speaker,
            ),
            (
                "a speaker that released its Lease hands over",
                MAC_B2,
                false,
                Claimant::Handover,
            ),
            (
                "a MAC no speaker published is foreign",
                MAC_A,
                false,
                Claimant::Foreign,
            ),
            (
                "while this speaker leaves, a speaker taking over is expected",
                MAC_B,
                true,
                Claimant::Handover,
            ),
            (
                "while this speaker leaves, a foreign MAC is still foreign",
                MAC_A,
                true,
                Claimant::Foreign,
            ),
            (
                "another interface of this node is no conflict",
                [2, 0, 0, 0, 0, 1],
                false,
                Claimant::ThisNode,
            ),
        ];
        for (desc, claimant, me_leaving, expected) in cases {
            assert_eq!(
                speakers.claimant(mac(claimant), me_leaving),
                expected,
                "{desc}"
            );
        }
        // A speaker that came back is a speaker like any once its grace ends.
        speakers.present.insert(mac(MAC_B2));
        assert_eq!(speakers.claimant(mac(MAC_B2), false), Claimant::Handover);
        speakers.handing_over.clear();
        assert_eq!(speakers.claimant(mac(MAC_B2), false), Claimant::Speaker);
    }

    #[test]
    fn the_arp_probe_is_rfc5227s_and_a_reply_to_it_is_a_conflict() {
        let ip: IpAddr = "198.51.100.2".parse().expect("address");
        let Frame::Arp(arp) = probe(&iface(MAC_A), ip) else {
            panic!("an ARP probe for IPv4");
        };
        assert_eq!(arp.sender_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!(arp.target_ip, Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(arp.ethernet.destination, MacAddr::broadcast());
        assert_eq!(arp.target_mac, MacAddr::zero());
        // The owner of the address defends it with a reply to the prober.
        let Verdict::Reply(reply) =
            respond(&arp.to_vec(), &iface(MAC_B), &owned(&["198.51.100.2"]))
        else {
            panic!("the probe is answered by the owner");
        };
        let probed = owned(&["198.51.100.2"]);
        assert_eq!(
            probe_conflict(&reply.to_vec(), &iface(MAC_A), &probed),
            Some(Conflict {
                address: ip,
                mac: mac(MAC_B)
            })
        );
        // A gratuitous ARP for it, and another host probing it at the same
        // time, are conflicts too; our own probe and other addresses are not.
        assert_eq!(
            probe_conflict(&fixtures::arp_gratuitous_request(), &iface(MAC_A), &probed),
            Some(Conflict {
                address: ip,
                mac: mac(MAC_B2)
            })
        );
        let other_probe = probe(&iface(MAC_B2), ip).to_vec();
        assert_eq!(
            probe_conflict(&other_probe, &iface(MAC_A), &probed),
            Some(Conflict {
                address: ip,
                mac: mac(MAC_B2)
            })
        );
        assert_eq!(probe_conflict(&arp.to_vec(), &iface(MAC_A), &probed), None);
        assert_eq!(
            probe_conflict(&reply.to_vec(), &iface(MAC_A), &owned(&["198.51.100.3"])),
            None
        );
        // A client asking for the address is no claim on it.
        assert_eq!(
            probe_conflict(&fixtures::arp_request_broadcast(), &iface(MAC_A), &probed),
            None
        );
    }

    #[test]
    fn the_dad_probe_parses_as_one_and_an_na_answering_it_is_a_conflict() {
        let ip: IpAddr = "2001:db8:100::2".parse().expect("address");
        let bytes = probe(&iface(MAC_A), ip).to_vec();
        let parsed = NdpRepr::parse(&bytes).expect("a valid DAD probe");
        assert_eq!(parsed.source, Ipv6Addr::UNSPECIFIED);
        assert_eq!(
            parsed.destination,
            ndp::solicited_node(v6("2001:db8:100::2"))
        );
        assert_eq!(
            parsed.message,
            NdpMessage::NeighborSolicit {
                target: v6("2001:db8:100::2"),
                source_ll: None
            }
        );
        let Verdict::Reply(answer) = respond(&bytes, &iface(MAC_B), &owned(&["2001:db8:100::2"]))
        else {
            panic!("the owner answers a DAD probe");
        };
        let probed = owned(&["2001:db8:100::2"]);
        assert_eq!(
            probe_conflict(&answer.to_vec(), &iface(MAC_A), &probed),
            Some(Conflict {
                address: ip,
                mac: mac(MAC_B)
            })
        );
        assert_eq!(
            probe_conflict(&probe(&iface(MAC_B2), ip).to_vec(), &iface(MAC_A), &probed),
            Some(Conflict {
                address: ip,
                mac: mac(MAC_B2)
            })
        );
        assert_eq!(probe_conflict(&bytes, &iface(MAC_A), &probed), None);
        assert_eq!(
            probe_conflict(&fixtures::ns_multicast(), &iface(MAC_A), &probed),
            None,
            "a client resolving the address claims nothing"
        );
    }

    #[test]
    fn gratuitous_arp_is_the_request_form_the_kernel_sends() {
        let garp = gratuitous_arp(&iface(MAC_B2), Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(garp.to_vec(), fixtures::arp_gratuitous_request());
    }

    #[test]
    fn unsolicited_na_is_what_the_kernel_sends() {
        let na = unsolicited_na(&iface(MAC_B2), v6("2001:db8:100::2"));
        assert_eq!(na.to_vec(), fixtures::na_unsolicited());
        assert_eq!(
            announcement(&iface(MAC_B2), "2001:db8:100::2".parse().expect("address")).to_vec(),
            fixtures::na_unsolicited()
        );
    }

    #[test]
    fn owned_addresses_track_inserts_and_removals() {
        let mut owned = OwnedAddresses::new();
        assert!(owned.is_empty());
        assert!(owned.insert("198.51.100.2".parse().expect("address")));
        assert!(!owned.insert("198.51.100.2".parse().expect("address")));
        assert!(owned.insert("2001:db8:100::2".parse().expect("address")));
        assert_eq!(owned.len(), 2);
        assert!(owned.remove("198.51.100.2".parse().expect("address")));
        assert!(!owned.contains("198.51.100.2".parse().expect("address")));
        assert_eq!(
            owned.iter().collect::<Vec<_>>(),
            vec!["2001:db8:100::2".parse::<IpAddr>().expect("address")]
        );
    }

    #[test]
    fn drop_labels_are_distinct() {
        let all = [
            DropReason::Truncated,
            DropReason::Malformed,
            DropReason::BadChecksum,
            DropReason::Unsupported,
            DropReason::OwnFrame,
            DropReason::NotARequest,
            DropReason::OtherHost,
            DropReason::NotOurs,
            DropReason::NoSourceLinkLayer,
            DropReason::MartianSource,
            DropReason::Oversized,
            DropReason::Vlan,
            DropReason::OtherInterface,
            DropReason::RequesterRateLimited,
            DropReason::InterfaceRateLimited,
            DropReason::QueueFull,
        ];
        assert_eq!(all.len(), DropReason::ALL.len());
        let labels: BTreeSet<&str> = all.iter().map(|r| r.as_label()).collect();
        assert_eq!(labels.len(), all.len());
    }

    /// A small address space so that random requests often hit owned ones.
    fn any_frame() -> impl Strategy<Value = Vec<u8>> {
        let macs = prop_oneof![
            Just(MAC_A),
            Just(MAC_B),
            Just([0xff; 6]),
            Just([0x33, 0x33, 0xff, 0, 0, 2])
        ]
        .prop_map(mac);
        let v4 = (0u8..4).prop_map(|last| Ipv4Addr::new(198, 51, 100, last));
        let v6 = (0u16..4).prop_map(|last| Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, last));
        let arp = (
            macs.clone(),
            macs.clone(),
            any::<bool>(),
            macs.clone(),
            v4.clone(),
            macs.clone(),
            v4,
        )
            .prop_map(|(src, dst, reply, sha, spa, tha, tpa)| {
                ArpRepr {
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
                    sender_ip: spa,
                    target_mac: tha,
                    target_ip: tpa,
                }
                .to_vec()
            });
        let ns = (
            macs.clone(),
            macs.clone(),
            v6.clone(),
            v6,
            proptest::option::of(macs),
            any::<bool>(),
        )
            .prop_map(|(src, dst, source, target, source_ll, multicast)| {
                let source = if source.segments()[7] == 0 {
                    Ipv6Addr::UNSPECIFIED
                } else {
                    source
                };
                let (destination, source_ll) = if source.is_unspecified() {
                    (ndp::solicited_node(target), None)
                } else if multicast {
                    (ndp::solicited_node(target), source_ll)
                } else {
                    (target, source_ll)
                };
                NdpRepr {
                    ethernet: Ethernet {
                        source: src,
                        destination: dst,
                    },
                    source,
                    destination,
                    message: NdpMessage::NeighborSolicit { target, source_ll },
                }
                .to_vec()
            });
        prop_oneof![arp, ns]
    }

    fn any_owned() -> impl Strategy<Value = OwnedAddresses> {
        proptest::collection::vec((any::<bool>(), 0u8..4), 0..5).prop_map(|picks| {
            picks
                .into_iter()
                .map(|(v6, last)| {
                    if v6 {
                        IpAddr::V6(Ipv6Addr::new(
                            0x2001,
                            0xdb8,
                            0x100,
                            0,
                            0,
                            0,
                            0,
                            u16::from(last),
                        ))
                    } else {
                        IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
                    }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn replies_only_for_owned_addresses_from_our_own_mac(
            frame in any_frame(),
            owned in any_owned(),
            ours in prop_oneof![Just(MAC_A), Just(MAC_B)],
        ) {
            let iface = iface(ours);
            if let Verdict::Reply(reply) = respond(&frame, &iface, &owned) {
                prop_assert!(owned.contains(reply.address()), "replied for {} owning {:?}", reply.address(), owned);
                let unicast_to = match reply {
                    Frame::Arp(arp) => Some(arp.ethernet.destination),
                    Frame::Ndp(na) if !na.destination.is_multicast() => Some(na.ethernet.destination),
                    Frame::Ndp(_) => None,
                };
                if let Some(station) = unicast_to {
                    prop_assert!(is_station(station), "reply unicast to {}", station);
                }
                match reply {
                    Frame::Arp(arp) => {
                        prop_assert_eq!(arp.ethernet.source, iface.mac);
                        prop_assert_eq!(arp.sender_mac, iface.mac);
                        prop_assert_eq!(arp.operation, ArpOperation::Reply);
                    }
                    Frame::Ndp(na) => {
                        prop_assert_eq!(na.ethernet.source, iface.mac);
                        let NdpMessage::NeighborAdvert { flags, target_ll, .. } = na.message else {
                            return Err(TestCaseError::fail("an NS sent as a reply"));
                        };
                        prop_assert_eq!(target_ll, Some(iface.mac));
                        prop_assert!(flags.contains(NeighborFlags::OVERRIDE));
                    }
                }
                // What is sent parses back to itself.
                prop_assert_eq!(Frame::parse(&reply.to_vec()), Ok(reply));
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = respond(&bytes, &iface(MAC_B), &owned(&["198.51.100.2", "2001:db8:100::2"]));
        }
    }
}
