//! The AF_PACKET boundary: raw Ethernet sockets bound to one interface and
//! registered with tokio, plus the solicited-node multicast memberships that
//! let NDP solicitations reach them. This is the crate's only `unsafe` code;
//! everything above it sees `PacketSocket::recv`/`send` and
//! `SolicitedNodeGroups::join`/`leave`. No parsing and no ownership here.

use std::collections::HashMap;
use std::io;
use std::mem::size_of;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::respond::DropReason;
use crate::wire::MacAddr;
use crate::wire::ndp::solicited_node;

/// Failures at the socket boundary; each names the interface it concerns.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The socket could not be created or set up (needs CAP_NET_RAW); nothing
    /// is listening on the interface.
    #[error("cannot open a {listen} packet socket on {interface}: {step}: {source}")]
    Open {
        /// Interface name.
        interface: String,
        /// Which traffic the socket was for.
        listen: Listen,
        /// The setup step that failed (`socket`, `filter`, `bind`, …).
        step: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },
    /// Reading a frame failed; the socket stays open.
    #[error("cannot receive on {interface}: {source}")]
    Receive {
        /// Interface name.
        interface: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// Sending a frame failed; the frame is lost, the socket stays open.
    #[error("cannot send a {len}-byte frame on {interface}: {source}")]
    Send {
        /// Interface name.
        interface: String,
        /// Length of the frame that was not sent.
        len: usize,
        /// The kernel's answer.
        source: io::Error,
    },
    /// Joining or leaving a solicited-node group failed; membership unchanged.
    #[error("cannot {action} multicast group {group} on {interface}: {source}")]
    Membership {
        /// Interface name.
        interface: String,
        /// `join` or `leave`.
        action: &'static str,
        /// The solicited-node group.
        group: Ipv6Addr,
        /// The kernel's answer.
        source: io::Error,
    },
}

/// Which neighbour-discovery traffic a [`PacketSocket`] receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Every ARP frame (EtherType 0x0806).
    Arp,
    /// IPv6 frames carrying an ICMPv6 Neighbor Solicitation or Neighbor
    /// Advertisement: solicitations are answered, advertisements for an
    /// owned address reveal another station claiming it.
    NeighborDiscovery,
}

impl Listen {
    /// The EtherType the socket is bound to.
    fn ethertype(self) -> u16 {
        match self {
            Listen::Arp => 0x0806,
            Listen::NeighborDiscovery => 0x86dd,
        }
    }

    /// The classic BPF program the kernel runs before waking us, as
    /// `(code, jt, jf, k)` instructions. Binding to one EtherType already
    /// keeps other protocols (and, unlike `ETH_P_ALL`, the node's outgoing
    /// traffic) away; the program narrows IPv6 down to Neighbor Solicitations
    /// and Advertisements without extension headers, which is how every
    /// stack sends them.
    fn program(self) -> &'static [(u16, u8, u8, u32)] {
        const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
        const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
        const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
        const RET_K: u16 = 0x06; // BPF_RET | BPF_K
        const ACCEPT: u32 = 0x0004_0000; // snap length: the whole frame
        match self {
            Listen::Arp => &[
                (LD_H_ABS, 0, 0, 12), // EtherType
                (JEQ_K, 0, 1, 0x0806),
                (RET_K, 0, 0, ACCEPT),
                (RET_K, 0, 0, 0),
            ],
            Listen::NeighborDiscovery => &[
                (LD_H_ABS, 0, 0, 12), // EtherType
                (JEQ_K, 0, 6, 0x86dd),
                (LD_B_ABS, 0, 0, 14 + 6),  // IPv6 next header
                (JEQ_K, 0, 4, 58),         // ICMPv6
                (LD_B_ABS, 0, 0, 14 + 40), // ICMPv6 type
                (JEQ_K, 1, 0, 135),        // Neighbor Solicitation
                (JEQ_K, 0, 1, 136),        // Neighbor Advertisement
                (RET_K, 0, 0, ACCEPT),
                (RET_K, 0, 0, 0),
            ],
        }
    }

    fn filter(self) -> Vec<SockFilter> {
        self.program()
            .iter()
            .map(|&(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
            .collect()
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Listen::Arp => "ARP",
            Listen::NeighborDiscovery => "NDP",
        })
    }
}

/// How the frame reached the interface (`sll_pkttype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Unicast to this interface's MAC.
    Host,
    /// Sent to the Ethernet broadcast address.
    Broadcast,
    /// Sent to a multicast MAC this interface accepts.
    Multicast,
    /// Unicast to some other MAC, seen because the interface is promiscuous
    /// (a bridge port, or someone running tcpdump).
    OtherHost,
    /// Sent by this node.
    Outgoing,
    /// Any other kernel value.
    Other(u8),
}

impl PacketType {
    fn from_raw(raw: u8) -> Self {
        match raw {
            libc::PACKET_HOST => PacketType::Host,
            libc::PACKET_BROADCAST => PacketType::Broadcast,
            libc::PACKET_MULTICAST => PacketType::Multicast,
            libc::PACKET_OTHERHOST => PacketType::OtherHost,
            libc::PACKET_OUTGOING => PacketType::Outgoing,
            other => PacketType::Other(other),
        }
    }

    /// Whether a responder should look at the frame at all: frames for other
    /// hosts' MACs and the node's own frames are never ours to answer.
    pub fn is_inbound_to_us(self) -> bool {
        matches!(
            self,
            PacketType::Host | PacketType::Broadcast | PacketType::Multicast
        )
    }
}

/// One frame read by [`PacketSocket::recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes of the frame now in the buffer.
    pub len: usize,
    /// The frame was longer than the buffer and was cut to `len` bytes.
    pub truncated: bool,
    /// How the frame reached the interface.
    pub packet_type: PacketType,
    /// The 802.1Q tag control information the kernel took off the frame
    /// (`PACKET_AUXDATA`), if it carried a tag.
    pub vlan_tci: Option<u16>,
    /// The index of the interface the kernel delivered the frame from when
    /// it is not the socket's own: a VLAN (or other upper) device stacked
    /// on it, whose frames a socket bound to the lower one also gets.
    pub other_interface: Option<u32>,
}

impl Received {
    /// Why the frame must not be answered on the socket's interface, as far
    /// as the kernel's delivery tells, given the first bytes of the frame and
    /// the interface's MAC; `None` if it may be. A frame that came tagged, or
    /// through an upper device, belongs to another LAN; an answer sent here
    /// would leave untagged. The kernel also marks a frame for a VLAN this
    /// node has no interface for as "other host" after removing its tag, so
    /// such a mark on a frame addressed to this interface means the same.
    pub fn refusal(&self, frame: &[u8], mac: MacAddr) -> Option<DropReason> {
        let addressed_here = frame
            .get(..6)
            .is_some_and(|dst| dst[0] & 1 != 0 || dst == mac.octets().as_slice());
        if self.vlan_tci.is_some_and(|tci| tci & 0x0fff != 0) {
            return Some(DropReason::Vlan);
        }
        if self.other_interface.is_some() {
            return Some(DropReason::OtherInterface);
        }
        match self.packet_type {
            PacketType::OtherHost if addressed_here => Some(DropReason::Vlan),
            PacketType::Host | PacketType::Broadcast | PacketType::Multicast => {
                self.truncated.then_some(DropReason::Oversized)
            }
            PacketType::Outgoing => Some(DropReason::OwnFrame),
            PacketType::OtherHost | PacketType::Other(_) => Some(DropReason::OtherHost),
        }
    }
}

/// A non-promiscuous raw Ethernet socket bound to one interface and one
/// EtherType, filtered in the kernel, and driven by tokio.
#[derive(Debug)]
pub struct PacketSocket {
    fd: AsyncFd<Socket>,
    interface: String,
    ifindex: u32,
    listen: Listen,
}

impl PacketSocket {
    /// Opens the socket on interface `interface` (index `ifindex`). Must be
    /// called inside a tokio runtime. The filter is attached before the
    /// socket is bound to its EtherType, so no unfiltered frame is ever
    /// queued.
    pub fn open(interface: &str, ifindex: u32, listen: Listen) -> Result<Self, SocketError> {
        let failed = |step: &'static str| {
            let interface = interface.to_owned();
            move |source: io::Error| SocketError::Open {
                interface,
                listen,
                step,
                source,
            }
        };
        // Protocol 0: the kernel delivers nothing until `bind` names one.
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))
            .map_err(failed("socket"))?;
        socket
            .set_nonblocking(true)
            .map_err(failed("nonblocking"))?;
        ignore_outgoing(&socket).map_err(failed("PACKET_IGNORE_OUTGOING"))?;
        set_packet_option(&socket, libc::PACKET_AUXDATA).map_err(failed("PACKET_AUXDATA"))?;
        // Room for a burst of a few thousand small frames while the task is
        // busy: beyond `rmem_max` when CAP_NET_ADMIN allows, else up to it.
        if set_int_option(
            &socket,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            RECEIVE_BUFFER,
        )
        .is_err()
        {
            socket
                .set_recv_buffer_size(RECEIVE_BUFFER as usize)
                .map_err(failed("SO_RCVBUF"))?;
        }
        socket
            .attach_filter(&listen.filter())
            .map_err(failed("SO_ATTACH_FILTER"))?;
        bind(&socket, ifindex, listen.ethertype()).map_err(failed("bind"))?;
        let fd = register(socket).map_err(failed("register with tokio"))?;
        Ok(PacketSocket {
            fd,
            interface: interface.to_owned(),
            ifindex,
            listen,
        })
    }

    /// Which traffic this socket receives.
    pub fn listen(&self) -> Listen {
        self.listen
    }

    /// How many frames the kernel dropped since the last call because the
    /// receive queue was full (`PACKET_STATISTICS`, which reading resets).
    pub fn take_queue_drops(&self) -> Result<u32, SocketError> {
        queue_drops(self.fd.get_ref()).map_err(|source| SocketError::Receive {
            interface: self.interface.clone(),
            source,
        })
    }

    /// Waits for the next frame and copies it, Ethernet header included, into
    /// `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> Result<Received, SocketError> {
        self.fd
            .async_io(Interest::READABLE, |socket| {
                recv_frame(socket, buf, self.ifindex)
            })
            .await
            .map_err(|source| SocketError::Receive {
                interface: self.interface.clone(),
                source,
            })
    }

    /// Sends one complete Ethernet frame out of the interface.
    pub async fn send(&self, frame: &[u8]) -> Result<(), SocketError> {
        let sent = self
            .fd
            .async_io(Interest::WRITABLE, |socket| socket.send(frame))
            .await;
        match sent {
            Ok(n) if n == frame.len() => Ok(()),
            Ok(n) => Err(SocketError::Send {
                interface: self.interface.clone(),
                len: frame.len(),
                source: io::Error::new(io::ErrorKind::WriteZero, format!("only {n} bytes sent")),
            }),
            Err(source) => Err(SocketError::Send {
                interface: self.interface.clone(),
                len: frame.len(),
                source,
            }),
        }
    }
}

/// The solicited-node groups one interface has joined for owned IPv6
/// addresses. Joining through `IPV6_JOIN_GROUP` programs the NIC's multicast
/// filter *and* makes the kernel send MLD reports (and answer MLD queries),
/// so switches that snoop MLD forward the solicitations to this node.
/// Memberships live as long as the sockets, so dropping this leaves them all.
#[derive(Debug)]
pub struct SolicitedNodeGroups {
    interface: String,
    ifindex: u32,
    /// Each socket holds as many memberships as the kernel's per-socket
    /// option memory (`net.core.optmem_max`) allows; more sockets are opened
    /// as needed.
    sockets: Vec<Socket>,
    /// Group → (socket index, owned addresses mapping to it).
    joined: HashMap<Ipv6Addr, (usize, usize)>,
}

impl SolicitedNodeGroups {
    /// Memberships for interface `interface` (index `ifindex`); no sockets
    /// are opened until the first join.
    pub fn new(interface: &str, ifindex: u32) -> Self {
        SolicitedNodeGroups {
            interface: interface.to_owned(),
            ifindex,
            sockets: Vec::new(),
            joined: HashMap::new(),
        }
    }

    /// How many distinct groups are joined.
    pub fn len(&self) -> usize {
        self.joined.len()
    }

    /// Whether no group is joined.
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }

    /// Joins the group of `address`; addresses sharing a group are counted so
    /// the group is left only when the last of them is.
    pub fn join(&mut self, address: Ipv6Addr) -> Result<(), SocketError> {
        let group = solicited_node(address);
        if let Some((_, users)) = self.joined.get_mut(&group) {
            *users += 1;
            return Ok(());
        }
        let failed = |source| SocketError::Membership {
            interface: self.interface.clone(),
            action: "join",
            group,
            source,
        };
        for (k, socket) in self.sockets.iter().enumerate() {
            match socket.join_multicast_v6(&group, self.ifindex) {
                Ok(()) => {
                    self.joined.insert(group, (k, 1));
                    return Ok(());
                }
                Err(e) if is_out_of_option_memory(&e) => continue,
                Err(e) => return Err(failed(e)),
            }
        }
        let socket = Socket::new(Domain::IPV6, Type::DGRAM, None).map_err(failed)?;
        socket
            .join_multicast_v6(&group, self.ifindex)
            .map_err(failed)?;
        self.sockets.push(socket);
        self.joined.insert(group, (self.sockets.len() - 1, 1));
        Ok(())
    }

    /// Drops one use of the group of `address`, leaving it when unused.
    /// Leaving a group that was never joined is a no-op.
    pub fn leave(&mut self, address: Ipv6Addr) -> Result<(), SocketError> {
        let group = solicited_node(address);
        let Some((socket, users)) = self.joined.get_mut(&group) else {
            return Ok(());
        };
        *users -= 1;
        if *users > 0 {
            return Ok(());
        }
        let socket = *socket;
        self.joined.remove(&group);
        self.sockets[socket]
            .leave_multicast_v6(&group, self.ifindex)
            .map_err(|source| SocketError::Membership {
                interface: self.interface.clone(),
                action: "leave",
                group,
                source,
            })
    }
}

/// The kernel refuses another membership on a socket whose option memory is
/// used up.
fn is_out_of_option_memory(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::ENOBUFS))
}

/// An all-zero link-layer address, built field by field so no `unsafe` zeroing
/// is needed.
fn empty_sockaddr_ll() -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: 0,
        sll_protocol: 0,
        sll_ifindex: 0,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

/// `size_of::<T>()` as the kernel's length type; socket structs are tiny.
fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// Never hand the node's own transmissions to this socket (Linux ≥ 4.20).
/// An EtherType-bound socket does not see them anyway; this keeps that true
/// if the binding ever becomes `ETH_P_ALL`.
fn ignore_outgoing(socket: &Socket) -> io::Result<()> {
    set_packet_option(socket, libc::PACKET_IGNORE_OUTGOING)
}

/// The receive buffer asked for: 4 MiB, some thousands of frames.
const RECEIVE_BUFFER: libc::c_int = 4 << 20;

/// Turns on the `SOL_PACKET` option `option`.
fn set_packet_option(socket: &Socket, option: libc::c_int) -> io::Result<()> {
    set_int_option(socket, libc::SOL_PACKET, option, 1)
}

/// Sets the integer socket option `option` of `level` to `value`.
#[allow(unsafe_code)]
fn set_int_option(
    socket: &Socket,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the fd is open for the duration of the call (borrowed from
    // `socket`); `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const value).cast(),
            socklen_of::<libc::c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads and resets the socket's `PACKET_STATISTICS`: the frames dropped
/// because the receive queue was full.
#[allow(unsafe_code)]
fn queue_drops(socket: &Socket) -> io::Result<u32> {
    let mut stats = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = socklen_of::<libc::tpacket_stats>();
    // SAFETY: the fd is open for the duration of the call; `stats` is a
    // live tpacket_stats and `len` says its size, which the kernel writes
    // at most.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&raw mut stats).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(stats.tp_drops)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Binds the packet socket to one interface and one EtherType.
#[allow(unsafe_code)]
fn bind(socket: &Socket, ifindex: u32, ethertype: u16) -> io::Result<()> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: ethertype.to_be(),
        sll_ifindex: ifindex,
        ..empty_sockaddr_ll()
    };
    // SAFETY: the fd is open for the duration of the call; `addr` is a live,
    // fully initialised sockaddr_ll and the length passed is exactly its size.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const addr).cast(),
            socklen_of::<libc::sockaddr_ll>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Room for the `PACKET_AUXDATA` control message, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct ControlBuffer([u8; 64]);

/// Reads one frame, its packet type, the interface it came from and its
/// VLAN tag without blocking; `bound` is the socket's interface index.
#[allow(unsafe_code)]
fn recv_frame(socket: &Socket, buf: &mut [u8], bound: u32) -> io::Result<Received> {
    let mut from = empty_sockaddr_ll();
    let mut control = ControlBuffer([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; every field the kernel reads is set
    // below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut from).cast();
    msg.msg_namelen = socklen_of::<libc::sockaddr_ll>();
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    // SAFETY: the fd is open for the duration of the call; `msg` points at
    // live buffers (`buf` for `buf.len()` bytes, `from`, `control`) whose
    // sizes it states. MSG_TRUNC only changes the return value to the
    // frame's real length.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut msg, libc::MSG_TRUNC) };
    let Ok(full) = usize::try_from(n) else {
        return Err(io::Error::last_os_error());
    };
    let mut vlan_tci = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled,
    // within the length it reported in `msg`; the auxdata is read unaligned
    // from inside that buffer, and only when the header says it is there
    // and long enough.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            let need = libc::CMSG_LEN(size_of::<libc::tpacket_auxdata>() as u32) as usize;
            if header.cmsg_level == libc::SOL_PACKET
                && header.cmsg_type == libc::PACKET_AUXDATA
                && header.cmsg_len >= need
            {
                let aux: libc::tpacket_auxdata =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    vlan_tci = Some(aux.tp_vlan_tci);
                }
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    let from_index = u32::try_from(from.sll_ifindex).unwrap_or(0);
    Ok(Received {
        len: full.min(buf.len()),
        truncated: full > buf.len(),
        packet_type: PacketType::from_raw(from.sll_pkttype),
        vlan_tci,
        other_interface: (from_index != bound).then_some(from_index),
    })
}

/// Hands the socket to tokio's reactor.
#[allow(unsafe_code)]
fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its fd: it is open now, `as_raw_fd` returns the
    // same fd on every call, and it is closed only when the `Socket` is
    // dropped — which happens only when the `AsyncFd` that now owns it is.
    unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a classic BPF program the way the kernel does for the opcodes the
    /// filters use, so a miscounted jump offset fails here, not on a node.
    fn run(program: &[(u16, u8, u8, u32)], frame: &[u8]) -> u32 {
        let mut pc = 0;
        let mut acc: u32 = 0;
        loop {
            let (code, jt, jf, k) = program[pc];
            let at = k as usize;
            match code {
                0x28 => {
                    let Some(b) = frame.get(at..at + 2) else {
                        return 0;
                    };
                    acc = u32::from(u16::from_be_bytes([b[0], b[1]]));
                }
                0x30 => {
                    let Some(b) = frame.get(at) else { return 0 };
                    acc = u32::from(*b);
                }
                0x15 => pc += usize::from(if acc == k { jt } else { jf }),
                0x06 => return k,
                other => panic!("opcode {other:#x} not modelled"),
            }
            pc += 1;
        }
    }

    fn frame(ethertype: u16, next_header: u8, icmp_type: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 24];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f[20] = next_header;
        f[54] = icmp_type;
        f
    }

    #[test]
    fn frames_that_came_tagged_or_through_another_interface_are_refused() {
        let mac = MacAddr::new(2, 0, 0, 0, 0, 1);
        let broadcast = [0xffu8; 14];
        let to_other = [2u8, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0];
        let plain = Received {
            len: 60,
            truncated: false,
            packet_type: PacketType::Broadcast,
            vlan_tci: None,
            other_interface: None,
        };
        let cases = [
            ("an untagged broadcast", plain, &broadcast, None),
            (
                "a tag the kernel reports",
                Received {
                    vlan_tci: Some(0x2000 | 42),
                    ..plain
                },
                &broadcast,
                Some(DropReason::Vlan),
            ),
            (
                "a priority tag (VLAN 0) is the native LAN",
                Received {
                    vlan_tci: Some(0x2000),
                    ..plain
                },
                &broadcast,
                None,
            ),
            (
                "a broadcast the kernel calls another host's: a VLAN without an interface here",
                Received {
                    packet_type: PacketType::OtherHost,
                    ..plain
                },
                &broadcast,
                Some(DropReason::Vlan),
            ),
            (
                "unicast to another MAC",
                Received {
                    packet_type: PacketType::OtherHost,
                    ..plain
                },
                &to_other,
                Some(DropReason::OtherHost),
            ),
            (
                "delivered from an upper device",
                Received {
                    other_interface: Some(7),
                    ..plain
                },
                &broadcast,
                Some(DropReason::OtherInterface),
            ),
            (
                "longer than the buffer",
                Received {
                    truncated: true,
                    ..plain
                },
                &broadcast,
                Some(DropReason::Oversized),
            ),
            (
                "sent by this node",
                Received {
                    packet_type: PacketType::Outgoing,
                    ..plain
                },
                &broadcast,
                Some(DropReason::OwnFrame),
            ),
        ];
        for (desc, received, frame, expected) in cases {
            assert_eq!(received.refusal(frame, mac), expected, "{desc}");
        }
    }

    #[test]
    fn arp_filter_admits_arp_only() {
        let arp = Listen::Arp.program();
        assert_ne!(run(arp, &frame(0x0806, 0, 0)), 0);
        assert_eq!(run(arp, &frame(0x0800, 0, 0)), 0);
        assert_eq!(run(arp, &frame(0x86dd, 58, 135)), 0);
    }

    #[test]
    fn ndp_filter_admits_neighbor_solicitations_and_advertisements_only() {
        let ns = Listen::NeighborDiscovery.program();
        assert_ne!(run(ns, &frame(0x86dd, 58, 135)), 0, "solicitation");
        assert_ne!(run(ns, &frame(0x86dd, 58, 136)), 0, "advertisement");
        assert_eq!(run(ns, &frame(0x86dd, 58, 134)), 0, "router advert");
        assert_eq!(run(ns, &frame(0x86dd, 58, 128)), 0, "echo request");
        assert_eq!(run(ns, &frame(0x86dd, 17, 135)), 0, "UDP");
        assert_eq!(run(ns, &frame(0x0806, 58, 135)), 0, "ARP");
        assert_eq!(run(ns, &[0u8; 20]), 0, "runt frame");
    }
}
