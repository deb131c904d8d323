//! The announcer on a namespaced LAN: how fast a client gets its ARP reply
//! and its Neighbor Advertisement, and how much memory an announcer process
//! holding 1,000 addresses uses. Latency is timed in the client namespace
//! from the request's `send` to the matching reply's `recv` (raw sockets, so
//! the client kernel's neighbour cache plays no part); the 1,000 addresses
//! are 250 IPv4 and 750 IPv6, all answered at once, and requests cycle
//! through them. Not criterion: one sample needs two namespaces and a
//! process, so this is a plain program that prints its figures. Without
//! `--bench` (`cargo test --benches`) it runs a small pass that only checks
//! every request is answered.

#[path = "../tests/lan/mod.rs"]
mod lan;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use ferrolb_speaker::interfaces;
use ferrolb_speaker::socket::{Listen, PacketSocket};
use ferrolb_speaker::wire::ndp::{multicast_mac, solicited_node};
use ferrolb_speaker::wire::{
    ArpOperation, ArpRepr, Ethernet, Frame, MacAddr, NdpMessage, NdpRepr, NeighborFlags,
};
use lan::{CLIENT_MAC, CLIENT_V4, CLIENT_V6, Lan, eventually};

/// What the client process is asked to measure, passed in its environment.
const TARGETS: &str = "FLBANN_TARGETS";
const ROUNDS: &str = "FLBANN_ROUNDS";
/// Round trips not counted: caches and the speaker's first wake-ups.
const WARM_UP: usize = 50;

fn main() {
    if lan::ran_as_speaker() {
        return;
    }
    if std::env::var(lan::ROLE).as_deref() == Ok("client") {
        client();
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let (addresses, rounds) = if full { (1000, 5000) } else { (20, 100) };
    bench(addresses, rounds, full);
}

/// `n` addresses: a quarter IPv4 (at most 250, all inside 198.51.100.0/24),
/// the rest IPv6 in 2001:db8:100::/64.
fn addresses(n: usize) -> Vec<IpAddr> {
    let v4 = (n / 4).min(250);
    let mut all: Vec<IpAddr> = (0..v4)
        .map(|k| IpAddr::V4(Ipv4Addr::new(198, 51, 100, 3 + k as u8)))
        .collect();
    all.extend(
        (0..n - v4).map(|k| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 1, k as u16))),
    );
    all
}

fn bench(n: usize, rounds: usize, full: bool) {
    let lan = Lan::create("bench");
    let mut speaker = lan.start_speaker(&[]);
    let all = addresses(n);
    let text: Vec<String> = all.iter().map(ToString::to_string).collect();
    let text: Vec<&str> = text.iter().map(String::as_str).collect();

    // Memory before any address, once the interface task is up.
    assert!(eventually(Duration::from_secs(10), || speaker
        .log()
        .contains("answering on eth0")));
    let idle = rss_kib(speaker.pid()).unwrap_or(0);

    speaker.announce(&text, &[]);
    let last = text[text.len() - 1];
    // Every address has had its five gratuitous frames: all state built.
    assert!(
        eventually(Duration::from_secs(20), || speaker
            .counts(last)
            .gratuitous_sent
            >= 5),
        "burst for {last} never finished:\n{}",
        speaker.log()
    );
    let loaded = rss_kib(speaker.pid()).unwrap_or(0);
    let peak = status_kib(speaker.pid(), "VmHWM:").unwrap_or(0);

    let v4: Vec<&str> = text.iter().copied().filter(|a| !a.contains(':')).collect();
    let v6: Vec<&str> = text.iter().copied().filter(|a| a.contains(':')).collect();
    let arp = measure(&lan, &v4, rounds);
    let ndp = measure(&lan, &v6, rounds);
    let after = rss_kib(speaker.pid()).unwrap_or(0);

    println!(
        "announcer, {n} addresses announced ({} IPv4, {} IPv6), one interface",
        v4.len(),
        v6.len()
    );
    println!("  ARP request → reply  {arp}");
    println!("  NS → NA              {ndp}");
    println!(
        "  announcer process RSS: {idle} KiB idle, {loaded} KiB with {n} addresses, \
         {after} KiB after {} requests (peak {peak} KiB)",
        2 * rounds
    );
    if !full {
        assert_eq!(arp.lost + ndp.lost, 0, "every request is answered");
    }
}

/// The figures of one family's round trips.
struct Latency {
    answered: usize,
    lost: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:>4} µs  p99 {:>4} µs  max {:>5} µs  ({} answered, {} lost)",
            self.p50.as_micros(),
            self.p99.as_micros(),
            self.max.as_micros(),
            self.answered,
            self.lost
        )
    }
}

/// Runs the client in the client namespace against `targets`.
fn measure(lan: &Lan, targets: &[&str], rounds: usize) -> Latency {
    let exe = std::env::current_exe().expect("the running executable has a path");
    let out = Command::new("ip")
        .args(["netns", "exec", &lan.client])
        .arg(exe)
        .env(lan::ROLE, "client")
        .env(TARGETS, targets.join(","))
        .env(ROUNDS, rounds.to_string())
        .output()
        .expect("ip netns exec starts");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lost = 0;
    let mut samples: Vec<Duration> = Vec::new();
    for line in text.lines() {
        if let Some(ns) = line.strip_prefix("rtt ") {
            samples.push(Duration::from_nanos(ns.parse().expect("nanoseconds")));
        } else if let Some(n) = line.strip_prefix("lost ") {
            lost = n.parse().expect("a count");
        }
    }
    samples.sort();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Latency {
        answered: samples.len(),
        lost,
        p50: at(0.50),
        p99: at(0.99),
        max: samples.last().copied().unwrap_or_default(),
    }
}

/// The client process: sends one request at a time and times its answer,
/// printing `rtt <ns>` per answered request and `lost <n>` at the end.
fn client() {
    let targets: Vec<IpAddr> = std::env::var(TARGETS)
        .expect("targets")
        .split(',')
        .map(|a| a.parse().expect("an address"))
        .collect();
    let rounds: usize = std::env::var(ROUNDS)
        .expect("rounds")
        .parse()
        .expect("a count");
    let eth0 = interfaces::scan()
        .expect("sysfs")
        .into_iter()
        .find(|f| f.name == "eth0")
        .expect("the client has eth0");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let listen = match targets[0] {
            IpAddr::V4(_) => Listen::Arp,
            IpAddr::V6(_) => Listen::NeighborDiscovery,
        };
        let socket = PacketSocket::open("eth0", eth0.index, listen).expect("a packet socket");
        let mut buf = vec![0u8; 2048];
        let mut lost = 0;
        for k in 0..rounds + WARM_UP {
            let target = targets[k % targets.len()];
            let request = request_for(target).to_vec();
            let sent = Instant::now();
            socket.send(&request).await.expect("send");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            loop {
                match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                    Err(_) => {
                        lost += usize::from(k >= WARM_UP);
                        break;
                    }
                    Ok(received) => {
                        let received = received.expect("recv");
                        if answers(&buf[..received.len], target) {
                            if k >= WARM_UP {
                                println!("rtt {}", sent.elapsed().as_nanos());
                            }
                            break;
                        }
                    }
                }
            }
        }
        println!("lost {lost}");
    });
}

fn client_mac() -> MacAddr {
    CLIENT_MAC.parse().expect("a MAC")
}

/// A broadcast ARP request, or a multicast NS to the solicited-node group,
/// as a Linux client resolving `target` sends it.
fn request_for(target: IpAddr) -> Frame {
    match target {
        IpAddr::V4(target) => Frame::Arp(ArpRepr {
            ethernet: Ethernet {
                source: client_mac(),
                destination: MacAddr::broadcast(),
            },
            operation: ArpOperation::Request,
            sender_mac: client_mac(),
            sender_ip: CLIENT_V4.parse().expect("an address"),
            target_mac: MacAddr::zero(),
            target_ip: target,
        }),
        IpAddr::V6(target) => {
            let group = solicited_node(target);
            Frame::Ndp(NdpRepr {
                ethernet: Ethernet {
                    source: client_mac(),
                    destination: multicast_mac(group),
                },
                source: CLIENT_V6.parse().expect("an address"),
                destination: group,
                message: NdpMessage::NeighborSolicit {
                    target,
                    source_ll: Some(client_mac()),
                },
            })
        }
    }
}

/// Whether `frame` is the answer to a request for `target`.
fn answers(frame: &[u8], target: IpAddr) -> bool {
    match (Frame::parse(frame), target) {
        (Ok(Frame::Arp(reply)), IpAddr::V4(target)) => {
            reply.operation == ArpOperation::Reply
                && reply.sender_ip == target
                && reply.target_mac == client_mac()
        }
        (Ok(Frame::Ndp(reply)), IpAddr::V6(target)) => matches!(
            reply.message,
            NdpMessage::NeighborAdvert { target: t, flags, .. }
                if t == target && flags.contains(NeighborFlags::SOLICITED)
        ),
        _ => false,
    }
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
