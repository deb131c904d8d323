//! The election at cluster scale: 5,000 nodes and 50,000 Service addresses.
//! Prints how long it takes to rank every address once (a speaker's start),
//! a full decision pass over the kept rankings, the re-election after one
//! node dies (only the addresses it owned), and the memory the rankings hold.
//!
//! `cargo bench -p ferrolb-speaker --bench election_scale`
//! (`FERROLB_ELECTION_NODES` / `FERROLB_ELECTION_ADDRESSES` change the scale.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ferrolb_config::TrafficPolicy;
use ferrolb_speaker::election::{NodeFacts, Rankings, ServiceAddress};

fn scale(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every tenth Service has `externalTrafficPolicy: Local` with endpoints on
/// three nodes; half the addresses are IPv6.
fn services(count: usize, nodes: usize) -> Vec<(ServiceAddress<'static>, BTreeSet<String>)> {
    (0..count)
        .map(|i| {
            let address = if i % 2 == 0 {
                IpAddr::V4(Ipv4Addr::from(0xc633_6400_u32 + i as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | i as u128))
            };
            let local = i % 10 == 0;
            let endpoints = if local {
                (0..3)
                    .map(|k| format!("worker-{:05}", (i * 7 + k * 1_001) % nodes))
                    .collect()
            } else {
                BTreeSet::new()
            };
            let service = ServiceAddress {
                address,
                traffic_policy: if local {
                    TrafficPolicy::Local
                } else {
                    TrafficPolicy::Cluster
                },
                has_serving_endpoints: true,
                node_selectors: &[],
            };
            (service, endpoints)
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then a small scale shows the benchmark still runs.
    let benching = std::env::args().any(|a| a == "--bench");
    let nodes = scale("FERROLB_ELECTION_NODES", if benching { 5_000 } else { 50 });
    let addresses = scale(
        "FERROLB_ELECTION_ADDRESSES",
        if benching { 50_000 } else { 500 },
    );
    let names: Vec<String> = (0..nodes).map(|i| format!("worker-{i:05}")).collect();
    let labels = BTreeMap::from([("kubernetes.io/os".to_owned(), "linux".to_owned())]);
    let services = services(addresses, nodes);
    let me = names[nodes / 2].clone();

    let started = Instant::now();
    let mut rankings = Rankings::new();
    for name in &names {
        rankings.set_node(name, NodeFacts::healthy(labels.clone()));
    }
    for (service, _) in &services {
        rankings.add_address(service.address);
    }
    let build = started.elapsed();

    let pass = |rankings: &mut Rankings| {
        let started = Instant::now();
        let mut mine = 0usize;
        for (service, endpoints) in &services {
            mine += usize::from(black_box(rankings.elect(service, endpoints, &me)).is_me());
        }
        (started.elapsed(), mine)
    };
    let (first_pass, _) = pass(&mut rankings);
    let (full_pass, mine) = pass(&mut rankings);

    // The caller's index from an address to its Services (here one each).
    let by_address: HashMap<IpAddr, usize> = services
        .iter()
        .enumerate()
        .map(|(i, (s, _))| (s.address, i))
        .collect();
    // Kill the owners of a spread of addresses one after another; each time
    // re-elect only what the dead node owned.
    let mut deaths: Vec<(Duration, usize)> = Vec::new();
    for k in 0..20 {
        // Offset by one: every tenth address is a Local one.
        let (service, endpoints) = &services[k * addresses / 20 + 1];
        let Some(victim) = rankings.elect(service, endpoints, &me).owner else {
            continue;
        };
        let started = Instant::now();
        let moved = rankings.set_live(&victim, false);
        for address in &moved {
            let (service, endpoints) = &services[by_address[address]];
            black_box(rankings.elect(service, endpoints, &me));
        }
        deaths.push((started.elapsed(), moved.len()));
    }
    deaths.sort();
    let median = deaths[deaths.len() / 2];
    let worst = deaths[deaths.len() - 1];

    println!("election at {nodes} nodes, {addresses} addresses (10% Local, half IPv6), one core:");
    println!(
        "  rank every address once (speaker start): {:>9.1} ms  ({:.0} ns per SHA-256 rank)",
        ms(build),
        build.as_nanos() as f64 / (nodes * addresses) as f64
    );
    println!(
        "  first decision pass:                      {:>9.1} ms",
        ms(first_pass)
    );
    println!(
        "  full decision pass:                       {:>9.1} ms  ({mine} addresses won by {me})",
        ms(full_pass)
    );
    println!(
        "  re-election after one node dies, {} deaths: median {:.3} ms ({} addresses moved), worst {:.3} ms ({} moved)",
        deaths.len(),
        ms(median.0),
        median.1,
        ms(worst.0),
        worst.1
    );
    println!(
        "  memory held by the rankings:               {:>9.1} MiB",
        rankings.memory_bytes() as f64 / (1024.0 * 1024.0)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
