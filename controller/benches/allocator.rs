//! Allocator throughput: one Service assigned and released per iteration, on
//! an IPv4 /16 holding 1,000 Services, an IPv6 /64 holding 10,000, and a /16
//! with a single free address left (with and without avoid-buggy-ips).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ferrolb_config::{
    AddressRange, Family, FamilyPolicy, Pool, PoolName, Port, Protocol, ServiceKey, ServiceRequest,
    TrafficPolicy,
};
use ferrolb_controller::allocator::Allocator;

fn pool(first: &str, last: &str, avoid_buggy_ips: bool) -> Pool {
    let first: IpAddr = first.parse().expect("address");
    let last: IpAddr = last.parse().expect("address");
    Pool {
        name: PoolName("bench".to_string()),
        ranges: vec![AddressRange::new(first, last).expect("range")],
        auto_assign: true,
        avoid_buggy_ips,
        node_selectors: Vec::new(),
        interfaces: Vec::new(),
        service_allocation: None,
    }
}

fn service(n: usize, family: Family) -> ServiceRequest {
    ServiceRequest {
        key: ServiceKey::new("bench", format!("svc-{n}")),
        families: FamilyPolicy::Single(family),
        requested: Vec::new(),
        pool: None,
        sharing: None,
        ports: vec![Port {
            port: 443,
            protocol: Protocol::Tcp,
        }],
        traffic_policy: TrafficPolicy::Cluster,
        selector: BTreeMap::new(),
        labels: BTreeMap::new(),
        namespace_labels: BTreeMap::new(),
    }
}

/// An allocator over `pool` with `held` Services already assigned.
fn filled(pool: &Pool, family: Family, held: usize) -> Allocator {
    let mut allocator = Allocator::new(std::slice::from_ref(pool));
    for n in 0..held {
        allocator.assign(&service(n, family)).expect("room");
    }
    allocator
}

/// Assign one more Service and release it again: the steady state of a
/// cluster where Services come and go.
fn churn(c: &mut Criterion, name: &str, mut allocator: Allocator, family: Family) {
    let probe = service(usize::MAX, family);
    c.bench_function(name, |b| {
        b.iter(|| {
            let allocation = allocator.assign(black_box(&probe)).expect("room");
            black_box(&allocation);
            allocator.release(&probe.key)
        })
    });
}

fn benches(c: &mut Criterion) {
    let slash16 = pool("10.0.0.0", "10.0.255.255", false);
    churn(
        c,
        "assign+release, IPv4 /16, 1000 held",
        filled(&slash16, Family::V4, 1000),
        Family::V4,
    );

    let slash64 = pool("fd00::", "fd00::ffff:ffff:ffff:ffff", false);
    churn(
        c,
        "assign+release, IPv6 /64, 10000 held",
        filled(&slash64, Family::V6, 10_000),
        Family::V6,
    );

    // Every address but the last one held.
    churn(
        c,
        "assign+release, IPv4 /16 nearly full (1 free)",
        filled(&slash16, Family::V4, 65_535),
        Family::V4,
    );

    // Every usable address but the last held, so every span left before it is
    // a lone .255/.0 pair the allocator must not walk.
    let careful = pool("10.0.0.0", "10.0.255.255", true);
    let usable = 256 * 254;
    let mut allocator = filled(&careful, Family::V4, usable - 1);
    let last_usable: IpAddr = "10.0.255.254".parse().expect("address");
    assert!(allocator.owners(last_usable).next().is_none(), "one left");
    churn(
        c,
        "assign+release, IPv4 /16 avoid-buggy-ips nearly full (1 free)",
        std::mem::take(&mut allocator),
        Family::V4,
    );
}

criterion_group! {
    name = allocator;
    // The build machine is shared: short, fixed measurements.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = benches
}
criterion_main!(allocator);
