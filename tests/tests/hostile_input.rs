//! Hostile objects change nothing that runs: a Service status listing the
//! gateway or a node's address makes no node answer for it, and a ConfigMap
//! whose YAML aliases would expand to hundreds of megabytes is refused while
//! the addresses keep being answered and every process stays within the
//! memory limit of its manifest.

use std::net::IpAddr;
use std::time::Duration;

use ferrolb_config::request::ingress;
use ferrolb_e2e::cluster::{Cluster, answers};
use ferrolb_e2e::objects::{LoadBalancer, apply_config};
use ferrolb_e2e::{Daemon, wait_for};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};

/// Waits until exactly one MAC answers for `ip` from the client, and returns
/// the node it belongs to.
async fn owner_of(cluster: &Cluster, ip: IpAddr) -> usize {
    wait_for(
        &format!("exactly one node answering for {ip}"),
        Duration::from_secs(20),
        || async {
            let macs = answers(&cluster.lan.client, &ip.to_string());
            match macs.as_slice() {
                [mac] => cluster
                    .node_with_mac(mac)
                    .ok_or_else(|| format!("{mac} is no node's MAC")),
                other => Err(format!("answers: {other:?}")),
            }
        },
    )
    .await
}

/// The notes of the events with `reason` in namespace `namespace`.
fn event_notes(cluster: &Cluster, namespace: &str, reason: &str) -> String {
    cluster.plane.kubectl(&[
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        &format!("reason={reason}"),
        "-o",
        "custom-columns=NOTE:.note,MESSAGE:.message",
    ])
}

#[tokio::test]
async fn a_status_listing_the_gateway_or_a_node_address_makes_no_node_answer_for_them() {
    let mut cluster = Cluster::start(3).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2, 3]).await;
    let ip = ingress(&svc)[0];
    let owner = owner_of(&cluster, ip).await;

    // With the controller stopped, so that nothing rewrites it, someone who
    // may write Service status lists the gateway and node 2's own address
    // next to the pool address.
    cluster.controller.kill();
    let gateway = IpAddr::V4(cluster.lan.gateway_v4());
    let node_2 = IpAddr::V4(cluster.lan.node(2).v4);
    let status = serde_json::json!({"status": {"loadBalancer": {"ingress": [
        {"ip": ip.to_string()}, {"ip": gateway.to_string()}, {"ip": node_2.to_string()}
    ]}}});
    Api::<Service>::namespaced(cluster.client.clone(), "default")
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status");

    // Every speaker has seen the patched status once the refusal is
    // reported: one event per refused address.
    wait_for(
        "the AddressNotAnnounced events",
        Duration::from_secs(20),
        || async {
            let notes = event_notes(&cluster, "default", "AddressNotAnnounced");
            let expected = [
                format!("not announcing {gateway}: it lies in no ferrolb pool"),
                format!("not announcing {node_2}: it is an address of node \"node-2\""),
            ];
            if expected.iter().all(|e| notes.contains(e.as_str())) {
                Ok(())
            } else {
                Err(notes)
            }
        },
    )
    .await;
    for (i, speaker) in cluster.speakers.iter().enumerate() {
        let log = speaker.as_ref().expect("running").output();
        assert!(
            log.contains("not announcing an address of the Service's status"),
            "node-{}: {log}",
            i + 1
        );
    }

    // The gateway is answered by the gateway alone (the root namespace's
    // bridge), node 2's address by node 2 alone, the pool address still by
    // its owner; for a while, not once.
    let bridge = std::process::Command::new("ip")
        .args(["-br", "link", "show", &cluster.lan.bridge])
        .output()
        .expect("ip link show");
    let gateway_mac = String::from_utf8_lossy(&bridge.stdout)
        .split_whitespace()
        .nth(2)
        .expect("the bridge's MAC")
        .to_lowercase();
    let node_2_mac = cluster.lan.node(2).mac.to_lowercase();
    let owner_mac = cluster.lan.node(owner).mac.to_lowercase();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            answers(&cluster.lan.client, &gateway.to_string()),
            vec![gateway_mac.clone()]
        );
        assert_eq!(
            answers(&cluster.lan.client, &node_2.to_string()),
            vec![node_2_mac.clone()]
        );
        assert_eq!(
            answers(&cluster.lan.client, &ip.to_string()),
            vec![owner_mac.clone()]
        );
    }
    let refused = cluster
        .lan
        .node(1)
        .exec("curl", &["-s", "http://127.0.0.1:7473/metrics"]);
    let refused = String::from_utf8_lossy(&refused.stdout);
    assert!(
        refused.contains("ferrolb_speaker_refused_addresses{reason=\"not_in_pool\"} 1")
            && refused.contains("ferrolb_speaker_refused_addresses{reason=\"node_address\"} 1"),
        "{refused}"
    );
}

/// The most memory a process has held (`VmHWM`), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in status");
    kib * 1024
}

/// The manifest's memory limits (deploy/ferrolb.yaml).
const CONTROLLER_LIMIT: u64 = 256 << 20;
const SPEAKER_LIMIT: u64 = 128 << 20;

/// A config aliasing one 100 KB pool name 3,000 times: 163 KB of text
/// standing for 300 MB of values.
fn alias_bomb() -> String {
    let mut text = format!(
        "address-pools:\n- name: &big {}\n  protocol: layer2\n  addresses: [198.51.100.0/24]\n  interfaces:\n",
        "x".repeat(100_000)
    );
    for _ in 0..3_000 {
        text.push_str("  - *big\n");
    }
    text
}

#[tokio::test]
async fn an_alias_bomb_config_is_refused_and_everything_keeps_running_within_its_limits() {
    let mut cluster = Cluster::start(2).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2]).await;
    let ip = ingress(&svc)[0];
    let owner = owner_of(&cluster, ip).await;

    apply_config(&cluster.client, &alias_bomb()).await;
    let refusal = "the config expands to more than 2097152 bytes (2 MiB) once its YAML aliases (*name) are replaced by what they name";
    wait_for(
        "the ConfigRejected event",
        Duration::from_secs(20),
        || async {
            let notes = event_notes(&cluster, "ferrolb-system", "ConfigRejected");
            if notes.contains(refusal) {
                Ok(())
            } else {
                Err(notes)
            }
        },
    )
    .await;
    wait_for(
        "every speaker refusing the config",
        Duration::from_secs(20),
        || async {
            let refused = cluster
                .speakers
                .iter()
                .all(|s| s.as_ref().expect("running").output().contains(refusal));
            if refused {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .await;
    assert_eq!(owner_of(&cluster, ip).await, owner);
    let mut peaks = vec![(
        "controller".to_owned(),
        cluster.controller.pid(),
        CONTROLLER_LIMIT,
    )];
    for (i, speaker) in cluster.speakers.iter().enumerate() {
        let pid = speaker.as_ref().expect("running").pid();
        peaks.push((format!("node-{}'s speaker", i + 1), pid, SPEAKER_LIMIT));
    }
    let check_peaks = |peaks: &[(String, u32, u64)]| {
        for (who, pid, limit) in peaks {
            let peak = peak_memory(*pid);
            eprintln!(
                "{who}: peak memory {} KiB (limit {} KiB)",
                peak >> 10,
                limit >> 10
            );
            assert!(peak < *limit, "{who} peaked at {peak} bytes");
        }
    };
    check_peaks(&peaks);

    // Both binaries read the ConfigMap when they start: restarted with the
    // bomb in place, they serve the last good config.
    cluster.controller.kill();
    cluster.controller = Daemon::start(
        "ferrolb-controller",
        &["--metrics-address", "127.0.0.1:0"],
        &cluster.plane,
        None,
    );
    let other = if owner == 1 { 2 } else { 1 };
    cluster.kill_speaker(other);
    cluster.speakers[other - 1] = Some(ferrolb_e2e::cluster::start_speaker(
        &cluster.plane,
        cluster.lan.node(other),
        other,
    ));
    wait_for(
        "the restarted processes refusing the config",
        Duration::from_secs(30),
        || async {
            let controller = cluster.controller.output();
            let speaker = cluster.speakers[other - 1]
                .as_ref()
                .expect("running")
                .output();
            if controller.contains(refusal) && speaker.contains(refusal) {
                Ok(())
            } else {
                Err(format!("controller:\n{controller}\nspeaker:\n{speaker}"))
            }
        },
    )
    .await;
    let second = cluster.expose(LoadBalancer::new("second"), &[other]).await;
    owner_of(&cluster, ingress(&second)[0]).await;
    assert_eq!(owner_of(&cluster, ip).await, owner);
    let speaker = cluster.speakers[other - 1].as_ref().expect("running");
    check_peaks(&[
        (
            "restarted controller".to_owned(),
            cluster.controller.pid(),
            CONTROLLER_LIMIT,
        ),
        (
            format!("node-{other}'s restarted speaker"),
            speaker.pid(),
            SPEAKER_LIMIT,
        ),
    ]);
}
