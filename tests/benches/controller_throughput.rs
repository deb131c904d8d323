//! How fast the release-built controller turns Services into addresses,
//! next to what the same API server can do at all:
//!
//! 1. idle create→status latency: one Service at a time, each timed from its
//!    create request to the watch event showing its address;
//! 2. cold start: N pending Services already stored (default 10,000;
//!    `FERROLB_BENCH_SERVICES`), the controller started → Services allocated
//!    per second, printed beside the rate at which the API server accepts
//!    plain status patches of those same Services in the same run
//!    (`FERROLB_BENCH_IN_FLIGHT` patches in flight, default 16).
//!
//! Run: `cargo bench -p ferrolb-e2e --bench controller_throughput`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ferrolb_e2e::objects::{LoadBalancer, apply_config, namespace};
use ferrolb_e2e::{ControlPlane, Daemon};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

const CONFIG: &str = "\
address-pools:
- name: bench
  protocol: layer2
  addresses:
  - 2001:db8:be7c::/112
";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn has_address(service: &Service) -> bool {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty())
}

fn service(name: &str) -> Service {
    LoadBalancer::new(name)
        .families("SingleStack", &["IPv6"])
        .without_node_ports()
        .build()
}

fn controller(cp: &ControlPlane, identity: &str) -> Daemon {
    Daemon::start(
        "ferrolb-controller",
        &["--metrics-address", "127.0.0.1:0", "--identity", identity],
        cp,
        None,
    )
}

/// Creates Services one at a time and times each to its address.
async fn idle_latency(cp: &ControlPlane, client: &kube::Client, samples: usize) {
    let ns = namespace(client, "latency").await;
    let api: Api<Service> = Api::namespaced(client.clone(), &ns);
    let _controller = controller(cp, "latency");
    let mut events = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    // A first Service shows the controller leads and is ready.
    api.create(&PostParams::default(), &service("warm-up"))
        .await
        .expect("create");
    while let Some(s) = events.try_next().await.expect("watch") {
        if has_address(&s) {
            break;
        }
    }
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = format!("one-{i:04}");
        let sent = Instant::now();
        api.create(&PostParams::default(), &service(&name))
            .await
            .expect("create");
        loop {
            let s = events
                .try_next()
                .await
                .expect("watch")
                .expect("watch ended");
            if s.metadata.name.as_deref() == Some(&name) && has_address(&s) {
                latencies.push(sent.elapsed());
                break;
            }
        }
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  idle create→status, one at a time ({samples}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 100.0)),
    );
}

/// Stores `count` pending Services, measures the API server's own rate
/// of status patches on them, then starts the controller and measures its
/// allocation rate.
async fn cold_start(cp: &ControlPlane, client: &kube::Client, count: usize, in_flight: usize) {
    let ns = namespace(client, "cold").await;
    let api: Api<Service> = Api::namespaced(client.clone(), &ns);
    let start = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("svc-{i:05}");
                api.create(&PostParams::default(), &service(&name))
                    .await
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
            }
        })
        .buffer_unordered(in_flight)
        .collect::<Vec<()>>()
        .await;
    println!(
        "  {count} pending Services stored in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // The API server's rate for the write the controller makes: a merge
    // patch of the status (a condition, which the controller ignores).
    let start = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("svc-{i:05}");
                let patch = serde_json::json!({ "status": { "conditions": [{
                    "type": "BenchPatched", "status": "True", "reason": "Bench",
                    "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"
                }] } });
                let merge = Patch::Merge(&patch);
                let params = PatchParams::default();
                let call = api.patch_status(&name, &params, &merge);
                tokio::time::timeout(Duration::from_secs(30), call)
                    .await
                    .unwrap_or_else(|_| panic!("patch {name}: no answer in 30 s"))
                    .unwrap_or_else(|e| panic!("patch {name}: {e}"));
            }
        })
        .buffer_unordered(in_flight)
        .collect::<Vec<()>>()
        .await;
    let patch_rate = count as f64 / start.elapsed().as_secs_f64();
    println!("  {count} status patches accepted at {patch_rate:.0}/s");

    let mut events = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let started = Instant::now();
    let mut controller = controller(cp, "cold");
    let mut done: HashSet<String> = HashSet::with_capacity(count);
    let mut first = None;
    while done.len() < count {
        let Ok(next) = tokio::time::timeout(Duration::from_secs(1), events.try_next()).await else {
            // A controller that lost its Lease under its own load exits.
            assert!(
                controller.running(),
                "the controller exited after {} of {count} Services:\n{}",
                done.len(),
                controller.output()
            );
            continue;
        };
        let s = next.expect("watch").expect("watch ended");
        if has_address(&s)
            && let Some(name) = s.metadata.name
        {
            first.get_or_insert_with(Instant::now);
            done.insert(name);
        }
    }
    let all = started.elapsed();
    let from_first = first.map(|f| f.elapsed()).unwrap_or_default();
    let rate = count as f64 / from_first.as_secs_f64();
    println!(
        "  cold start: all {count} allocated {:.1} s after the controller started \
         ({:.1} s after the first): {rate:.0} Services/s",
        all.as_secs_f64(),
        from_first.as_secs_f64()
    );
    println!(
        "  the same API server accepts {patch_rate:.0} plain status patches/s \
         ({in_flight} in flight): ratio {:.2}",
        rate / patch_rate
    );
}

#[tokio::main]
async fn main() {
    let count = env_number("FERROLB_BENCH_SERVICES", 10_000);
    let in_flight = env_number("FERROLB_BENCH_IN_FLIGHT", 16);
    let samples = env_number("FERROLB_BENCH_SAMPLES", 200);
    // `cargo bench` builds (and runs) the release controller; `cargo test
    // --bench` a debug one, for a quick check only.
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("controller_throughput: {profile} controller, private control plane");
    {
        let cp = ControlPlane::own().await;
        let client = cp.client().await;
        apply_config(&client, CONFIG).await;
        idle_latency(&cp, &client, samples).await;
    }
    let cp = ControlPlane::own().await;
    let client = cp.client().await;
    apply_config(&client, CONFIG).await;
    cold_start(&cp, &client, count, in_flight).await;
}
