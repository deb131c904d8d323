//! The whole speaker at scale, on a real control plane and real namespaces:
//! its memory with N announced addresses (default 1,000;
//! `FERROLB_BENCH_ADDRESSES` to change), and how long the other node takes
//! to announce all of them after the owner's speaker is killed. Prints the
//! figures; asserts nothing about speed.

use std::time::{Duration, Instant};

use ferrolb_e2e::cluster::Cluster;
use ferrolb_e2e::objects::LoadBalancer;
use ferrolb_e2e::{Netns, wait_for};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};

fn announced(ns: &Netns) -> usize {
    let out = ns.exec("curl", &["-s", "http://127.0.0.1:7473/metrics"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("ferrolb_speaker_announced_addresses "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("FERROLB_BENCH_ADDRESSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut cluster = Cluster::start(2).await;
    for ns in &cluster.lan.nodes {
        wait_for(
            "the speaker's metrics endpoint",
            Duration::from_secs(30),
            || async {
                let out = ns.exec("curl", &["-sf", "http://127.0.0.1:7473/healthz"]);
                if out.status.success() {
                    Ok(())
                } else {
                    Err("not yet".to_owned())
                }
            },
        )
        .await;
    }
    let idle: Vec<u64> = cluster
        .speakers
        .iter()
        .flatten()
        .map(|s| memory_kib(s.pid(), "VmRSS:"))
        .collect();

    let started = Instant::now();
    let services = Api::<Service>::namespaced(cluster.client.clone(), "default");
    let slices = Api::<EndpointSlice>::namespaced(cluster.client.clone(), "default");
    futures::stream::iter(0..n)
        .map(|i| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                let name = format!("s{i}");
                let lb = LoadBalancer::new(&name)
                    .families("SingleStack", &["IPv6"])
                    .without_node_ports()
                    .build();
                services
                    .create(&PostParams::default(), &lb)
                    .await
                    .expect("create Service");
                let slice =
                    ferrolb_e2e::objects::endpoint_slice(&name, &[("10.244.1.10", "node-1", true)]);
                slices
                    .create(&PostParams::default(), &slice)
                    .await
                    .expect("create EndpointSlice");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let created = started.elapsed();
    let nodes: Vec<&Netns> = cluster.lan.nodes.iter().collect();
    wait_for(
        &format!("{n} addresses announced"),
        Duration::from_secs(600),
        || async {
            let total: usize = nodes.iter().map(|ns| announced(ns)).sum();
            if total == n {
                Ok(())
            } else {
                Err(format!("{total} announced"))
            }
        },
    )
    .await;
    let all_announced = started.elapsed();

    println!("speaker_scale: {n} Services (IPv6, one endpoint each) on 2 nodes");
    println!(
        "  created in {:.1} s; all announced {:.1} s after the first create",
        created.as_secs_f64(),
        all_announced.as_secs_f64()
    );
    let mut busiest = (0, 0);
    for (i, speaker) in cluster.speakers.iter().flatten().enumerate() {
        let count = announced(&cluster.lan.nodes[i]);
        println!(
            "  node-{}: {count} addresses, RSS {} KiB (idle {} KiB), peak {} KiB",
            i + 1,
            memory_kib(speaker.pid(), "VmRSS:"),
            idle[i],
            memory_kib(speaker.pid(), "VmHWM:")
        );
        if count > busiest.1 {
            busiest = (i + 1, count);
        }
    }

    // Failover: kill the busiest speaker without a handover and time until
    // the survivor announces everything.
    let (victim, _) = busiest;
    let survivor = if victim == 1 { 2 } else { 1 };
    let killed = Instant::now();
    cluster.kill_speaker(victim);
    let survivor_ns = cluster.lan.node(survivor);
    wait_for(
        "the survivor to announce every address",
        Duration::from_secs(120),
        || async {
            let count = announced(survivor_ns);
            if count == n {
                Ok(())
            } else {
                Err(format!("{count} announced"))
            }
        },
    )
    .await;
    println!(
        "  failover: node-{victim}'s speaker killed; node-{survivor} announces all {n} after {:.2} s (membership timeout 600 ms)",
        killed.elapsed().as_secs_f64()
    );
    if let Some(speaker) = &cluster.speakers[survivor - 1] {
        println!(
            "  node-{survivor} after takeover: RSS {} KiB, peak {} KiB",
            memory_kib(speaker.pid(), "VmRSS:"),
            memory_kib(speaker.pid(), "VmHWM:")
        );
    }
}
