//! How long one election takes in a 100-node cluster, for Cluster and Local
//! traffic policy: a "reprocess all" runs it once per Service.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use ferrolb_config::TrafficPolicy;
use ferrolb_speaker::election::{Candidate, ServiceAddress, elect};

fn bench(c: &mut Criterion) {
    let names: Vec<String> = (0..100).map(|i| format!("worker-{i:03}")).collect();
    let labels = BTreeMap::from([("kubernetes.io/os".to_owned(), "linux".to_owned())]);
    let nodes: Vec<Candidate<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Candidate {
            has_serving_endpoint: i % 10 == 0,
            ..Candidate::healthy(name, &labels)
        })
        .collect();
    let cluster = ServiceAddress {
        address: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
        traffic_policy: TrafficPolicy::Cluster,
        has_serving_endpoints: true,
        node_selectors: &[],
    };
    let local = ServiceAddress {
        traffic_policy: TrafficPolicy::Local,
        ..cluster
    };
    let mut group = c.benchmark_group("elect_100_nodes");
    group.bench_function("cluster_policy", |b| {
        b.iter(|| elect(black_box(&cluster), black_box(&nodes), "worker-042"))
    });
    group.bench_function("local_policy", |b| {
        b.iter(|| elect(black_box(&local), black_box(&nodes), "worker-042"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
