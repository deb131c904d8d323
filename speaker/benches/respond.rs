//! How fast the responder decides, per received frame: ARP requests and
//! Neighbor Solicitations, for an owned address and for one owned elsewhere,
//! with 100 addresses of each family owned on the interface.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrolb_speaker::respond::{Interface, OwnedAddresses, Verdict, respond};
use ferrolb_speaker::wire::ndp::{multicast_mac, solicited_node};
use ferrolb_speaker::wire::{ArpOperation, ArpRepr, Ethernet, MacAddr, NdpMessage, NdpRepr};

const CLIENT: MacAddr = MacAddr(0x02, 0xf1, 0xb0, 0, 0, 0x0a);
const NODE: MacAddr = MacAddr(0x02, 0xf1, 0xb0, 0, 0, 0x0b);

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, last)
}

fn v6(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, last)
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    ArpRepr {
        ethernet: Ethernet {
            source: CLIENT,
            destination: MacAddr::broadcast(),
        },
        operation: ArpOperation::Request,
        sender_mac: CLIENT,
        sender_ip: v4(1),
        target_mac: MacAddr::zero(),
        target_ip: target,
    }
    .to_vec()
}

fn neighbor_solicit(target: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    NdpRepr {
        ethernet: Ethernet {
            source: CLIENT,
            destination: multicast_mac(group),
        },
        source: v6(1),
        destination: group,
        message: NdpMessage::NeighborSolicit {
            target,
            source_ll: Some(CLIENT),
        },
    }
    .to_vec()
}

fn bench(c: &mut Criterion) {
    let iface = Interface {
        name: "eth0".to_owned(),
        mac: NODE,
    };
    let owned: OwnedAddresses = (100..200u8)
        .map(|i| IpAddr::V4(v4(i)))
        .chain((100..200u16).map(|i| IpAddr::V6(v6(i))))
        .collect();
    let cases = [
        ("arp_request_ours", arp_request(v4(150)), true),
        ("arp_request_not_ours", arp_request(v4(50)), false),
        ("ns_ours", neighbor_solicit(v6(150)), true),
        ("ns_not_ours", neighbor_solicit(v6(50)), false),
    ];
    let mut group = c.benchmark_group("respond");
    group.throughput(Throughput::Elements(1));
    for (name, frame, ours) in &cases {
        let verdict = respond(frame, &iface, &owned);
        assert_eq!(
            matches!(verdict, Verdict::Reply(_)),
            *ours,
            "{name}: {verdict:?}"
        );
        group.bench_function(*name, |b| {
            b.iter(|| respond(black_box(frame), black_box(&iface), black_box(&owned)))
        });
    }
    // Decide and serialise the reply, as the announcer's loop does.
    let (_, frame, _) = &cases[2];
    let mut buf = [0u8; 128];
    group.bench_function("ns_ours_with_emit", |b| {
        b.iter(|| {
            if let Verdict::Reply(reply) = respond(black_box(frame), &iface, &owned) {
                reply.emit(&mut buf);
            }
            black_box(&buf);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
