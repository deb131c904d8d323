//! Memory of both binaries in a cluster full of large objects they do not
//! serve: N headless ClusterIP Services (default 10,000;
//! `FERROLB_BENCH_BIG`) carrying K KiB of annotations each (default 100;
//! `FERROLB_BENCH_ANNOTATION_KIB`), plus M LoadBalancer Services (default
//! 1,000; `FERROLB_BENCH_LB`) with one endpoint each, on a private control
//! plane with one node namespace. Prints the speaker's and the controller's
//! RSS while the objects arrive and after a restart that lists them all
//! (the targets: speaker ≤ 50 MiB, controller ≤ 100 MiB); asserts nothing.
//!
//! Run: `cargo bench -p ferrolb-e2e --bench memory` (as root). The large
//! Services take N × K KiB in etcd (1 GB at the defaults), removed with the
//! control plane at the end. `FERROLB_BINARY_DIR=<dir>` measures the
//! binaries in `<dir>` instead (another build, for a before/after figure).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrolb_e2e::cluster::{Cluster, start_speaker};
use ferrolb_e2e::objects::{LoadBalancer, endpoint_slice};
use ferrolb_e2e::{Daemon, Netns, wait_for};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ObjectMeta, PostParams};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/<pid>/status` field in MiB.
fn mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0) as f64
        / 1024.0
}

fn announced(ns: &Netns) -> usize {
    let out = ns.exec("curl", &["-s", "http://127.0.0.1:7473/metrics"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("ferrolb_speaker_announced_addresses "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A headless ClusterIP Service (no cluster IP to allocate, no selector so
/// no endpoints) with `kib` KiB of annotations.
fn big(name: &str, kib: usize) -> Service {
    let blob = "x".repeat(1024);
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            annotations: Some(
                (0..kib)
                    .map(|i| (format!("bench.example.com/blob-{i}"), blob.clone()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("None".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn report(what: &str, speaker: u32, controller: u32) {
    println!(
        "  {what:<34} speaker RSS {:6.1} MiB (peak {:6.1}); controller RSS {:6.1} MiB (peak {:6.1})",
        mib(speaker, "VmRSS"),
        mib(speaker, "VmHWM"),
        mib(controller, "VmRSS"),
        mib(controller, "VmHWM"),
    );
}

async fn wait_announced(ns: &Netns, n: usize) {
    wait_for(
        &format!("{n} addresses announced"),
        Duration::from_secs(900),
        || async {
            match announced(ns) {
                count if count == n => Ok(()),
                count => Err(format!("{count} announced")),
            }
        },
    )
    .await;
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let big_count = env_number("FERROLB_BENCH_BIG", 10_000);
    let kib = env_number("FERROLB_BENCH_ANNOTATION_KIB", 100);
    let lb_count = env_number("FERROLB_BENCH_LB", 1_000);
    let mut cluster = Cluster::start(1).await;
    let services = Api::<Service>::namespaced(cluster.client.clone(), "default");
    let slices = Api::<EndpointSlice>::namespaced(cluster.client.clone(), "default");
    println!(
        "memory: {big_count} ClusterIP Services × {kib} KiB of annotations + {lb_count} LoadBalancer Services, 1 node"
    );
    let speaker_pid = |cluster: &Cluster| cluster.speakers[0].as_ref().map_or(0, Daemon::pid);
    wait_announced(cluster.lan.node(1), 0).await;
    report("idle", speaker_pid(&cluster), cluster.controller.pid());

    let started = Instant::now();
    futures::stream::iter(0..lb_count)
        .map(|i| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                let name = format!("lb-{i:05}");
                let lb = LoadBalancer::new(&name)
                    .families("SingleStack", &["IPv6"])
                    .without_node_ports()
                    .build();
                services
                    .create(&PostParams::default(), &lb)
                    .await
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
                let slice = endpoint_slice(&name, &[("10.244.1.10", "node-1", true)]);
                slices
                    .create(&PostParams::default(), &slice)
                    .await
                    .unwrap_or_else(|e| panic!("create the slice of {name}: {e}"));
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    wait_announced(cluster.lan.node(1), lb_count).await;
    report(
        &format!("{lb_count} LoadBalancers announced"),
        speaker_pid(&cluster),
        cluster.controller.pid(),
    );

    futures::stream::iter(0..big_count)
        .map(|i| {
            let services = services.clone();
            async move {
                let name = format!("big-{i:05}");
                services
                    .create(&PostParams::default(), &big(&name, kib))
                    .await
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let created = started.elapsed();
    // A LoadBalancer created after the large ones is announced once both
    // binaries have seen every one of them.
    let last = LoadBalancer::new("lb-last")
        .families("SingleStack", &["IPv6"])
        .without_node_ports()
        .build();
    services
        .create(&PostParams::default(), &last)
        .await
        .expect("create lb-last");
    slices
        .create(
            &PostParams::default(),
            &endpoint_slice("lb-last", &[("10.244.1.10", "node-1", true)]),
        )
        .await
        .expect("create the slice of lb-last");
    wait_announced(cluster.lan.node(1), lb_count + 1).await;
    println!(
        "  all created in {:.0} s ({:.0} MiB of annotations)",
        created.as_secs_f64(),
        (big_count * kib) as f64 / 1024.0
    );
    report(
        "after the large Services arrived",
        speaker_pid(&cluster),
        cluster.controller.pid(),
    );

    // A restart lists everything at once: what a crash-looping pod faces.
    cluster.kill_speaker(1);
    let metrics = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        SocketAddr::from(([127, 0, 0, 1], port))
    };
    cluster.controller.kill();
    cluster.controller = Daemon::start(
        "ferrolb-controller",
        &["--metrics-address", &metrics.to_string()],
        &cluster.plane,
        None,
    );
    cluster.speakers[0] = Some(start_speaker(&cluster.plane, cluster.lan.node(1), 1));
    wait_announced(cluster.lan.node(1), lb_count + 1).await;
    let ready = format!("http://{metrics}/readyz");
    wait_for(
        "the restarted controller ready",
        Duration::from_secs(600),
        || async {
            let out = std::process::Command::new("curl")
                .args(["-sf", &ready])
                .output()
                .expect("run curl");
            if out.status.success() {
                Ok(())
            } else {
                Err("not ready".to_owned())
            }
        },
    )
    .await;
    // Its first reconcile of every Service: one more LoadBalancer gets an
    // address only after the queue has drained past the large ones.
    let probe = LoadBalancer::new("lb-after-restart")
        .families("SingleStack", &["IPv6"])
        .without_node_ports()
        .build();
    services
        .create(&PostParams::default(), &probe)
        .await
        .expect("create lb-after-restart");
    slices
        .create(
            &PostParams::default(),
            &endpoint_slice("lb-after-restart", &[("10.244.1.10", "node-1", true)]),
        )
        .await
        .expect("create the slice of lb-after-restart");
    wait_announced(cluster.lan.node(1), lb_count + 2).await;
    report(
        "both restarted, all listed",
        speaker_pid(&cluster),
        cluster.controller.pid(),
    );
    println!(
        "  binaries: {}",
        std::env::var("FERROLB_BINARY_DIR").unwrap_or_else(|_| "this build".into())
    );
}
