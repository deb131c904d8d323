//! What a speaker does when someone else answers for an address, as a client
//! and an operator see it: a foreign host using an address yields one
//! `IPConflict` event naming its MAC (and an address already in use is not
//! announced at all); a second speaker answering is a split brain, counted,
//! after which the client's neighbour entry goes back to the rightful owner;
//! and a clean SIGTERM handover is neither.

use std::net::IpAddr;
use std::time::Duration;

use ferrolb_e2e::cluster::{Cluster, answers};
use ferrolb_e2e::objects::LoadBalancer;
use ferrolb_e2e::{Netns, wait_for};
use k8s_openapi::api::core::v1::Service;

fn ingress(svc: &Service) -> IpAddr {
    ferrolb_config::request::ingress(svc)
        .first()
        .copied()
        .expect("an ingress address")
}

/// Waits until exactly one node answers for `ip`; returns it (1-based).
async fn owner_of(cluster: &Cluster, ip: IpAddr) -> usize {
    wait_for(
        &format!("exactly one node answering for {ip}"),
        Duration::from_secs(20),
        || async {
            match answers(&cluster.lan.client, &ip.to_string()).as_slice() {
                [mac] => cluster
                    .node_with_mac(mac)
                    .ok_or_else(|| format!("{mac} is no node's MAC")),
                other => Err(format!("answers: {other:?}")),
            }
        },
    )
    .await
}

/// One metric line's value from the speaker in `ns`; 0 if absent.
fn metric(ns: &Netns, line_start: &str) -> u64 {
    let out = ns.exec("curl", &["-s", "http://127.0.0.1:7473/metrics"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// The notes of the `IPConflict` events in `default`.
fn conflict_events(cluster: &Cluster) -> Vec<String> {
    let out = cluster.plane.kubectl(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        "reason=IPConflict",
        "-o",
        "jsonpath={range .items[*]}{.note}{.message}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// `ns` claims `ip` as a host configured with it does: the kernel holds it
/// and sends `count` gratuitous ARPs.
fn claim(ns: &Netns, ip: IpAddr, count: u32) {
    ns.exec_ok("ip", &["addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
    let _ = ns.exec(
        "arping",
        &[
            "-U",
            "-c",
            &count.to_string(),
            "-I",
            "eth0",
            &ip.to_string(),
        ],
    );
}

fn release(ns: &Netns, ip: IpAddr) {
    ns.exec_ok("ip", &["addr", "del", &format!("{ip}/32"), "dev", "eth0"]);
}

/// The MAC the client's kernel holds for `ip`, lower case.
fn client_neighbour(cluster: &Cluster, ip: IpAddr) -> Option<String> {
    let neigh = cluster
        .lan
        .client
        .exec_ok("ip", &["neigh", "show", &ip.to_string()]);
    neigh
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_lowercase)
}

/// Waits until node `i`'s Lease publishes its MAC, so that the other
/// speakers know it for a speaker.
async fn published(cluster: &Cluster, i: usize) {
    let mac = cluster.lan.node(i).mac.to_lowercase();
    wait_for(
        &format!("node-{i}'s Lease to publish {mac}"),
        Duration::from_secs(15),
        || async {
            let out = cluster.plane.kubectl(&[
                "get",
                "lease",
                "-n",
                "ferrolb-system",
                &format!("ferrolb-speaker-node-{i}"),
                "-o",
                "jsonpath={.metadata.annotations.ferrolb\\.io/macs}",
            ]);
            if out.to_lowercase().contains(&mac) {
                Ok(())
            } else {
                Err(out)
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_foreign_host_answering_for_an_announced_address_yields_one_event() {
    let cluster = Cluster::start(2).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2]).await;
    let ip = ingress(&svc);
    let owner = owner_of(&cluster, ip).await;
    let owner_ns = cluster.lan.node(owner);

    // A host on the LAN is (mis)configured with the address, and announces
    // it twice over a few seconds.
    claim(&cluster.lan.client, ip, 3);
    let _ = cluster
        .lan
        .client
        .exec("arping", &["-U", "-c", "2", "-I", "eth0", &ip.to_string()]);
    let client_mac = cluster.lan.client.mac.to_lowercase();
    let events = wait_for("the IPConflict event", Duration::from_secs(10), || async {
        let events = conflict_events(&cluster);
        if events.is_empty() {
            Err("none yet".to_owned())
        } else {
            Ok(events)
        }
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].to_lowercase().contains(&client_mac), "{events:?}");
    assert_eq!(metric(owner_ns, "ferrolb_ip_conflicts_total"), 1);
    assert_eq!(metric(owner_ns, "ferrolb_split_brain_total"), 0);
    release(&cluster.lan.client, ip);
}

#[tokio::test]
async fn an_address_already_in_use_on_the_lan_is_not_announced() {
    let cluster = Cluster::start(2).await;
    let taken = cluster.lan.pool_v4(20);
    cluster.lan.client.exec_ok(
        "ip",
        &["addr", "add", &format!("{taken}/32"), "dev", "eth0"],
    );
    let lb = LoadBalancer::new("web").annotation("ferrolb.io/loadBalancerIPs", &taken.to_string());
    let svc = cluster.expose(lb, &[1, 2]).await;
    assert_eq!(ingress(&svc), taken);

    let client_mac = cluster.lan.client.mac.to_lowercase();
    let events = wait_for("the IPConflict event", Duration::from_secs(15), || async {
        let events = conflict_events(&cluster);
        if events.is_empty() {
            Err("none yet".to_owned())
        } else {
            Ok(events)
        }
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].to_lowercase().contains(&client_mac), "{events:?}");
    assert!(events[0].contains("not announced"), "{events:?}");
    // Neither node ever sent a gratuitous frame or an answer for it.
    for ns in &cluster.lan.nodes {
        let label = format!("{{address=\"{taken}\"}}");
        assert_eq!(
            metric(ns, &format!("ferrolb_speaker_gratuitous_sent_total{label}")),
            0
        );
        assert_eq!(
            metric(ns, &format!("ferrolb_speaker_responses_sent_total{label}")),
            0
        );
    }
    let counted: u64 = cluster
        .lan
        .nodes
        .iter()
        .map(|ns| metric(ns, "ferrolb_ip_conflicts_total"))
        .sum();
    assert_eq!(counted, 1);
    release(&cluster.lan.client, taken);
}

#[tokio::test]
async fn a_second_speaker_answering_is_a_split_brain_and_the_owner_wins_the_client_back() {
    let cluster = Cluster::start(2).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2]).await;
    let ip = ingress(&svc);
    let owner = owner_of(&cluster, ip).await;
    let other = 3 - owner;
    published(&cluster, other).await;
    let owner_mac = cluster.lan.node(owner).mac.to_lowercase();
    let other_mac = cluster.lan.node(other).mac.to_lowercase();
    // The client talks to the address, so its kernel holds an entry.
    cluster
        .lan
        .client
        .exec("ping", &["-c", "1", "-W", "1", &ip.to_string()]);
    assert_eq!(client_neighbour(&cluster, ip), Some(owner_mac.clone()));

    // The other node answers for the address too, from its own MAC, as a
    // speaker that wrongly believes it owns it would. A speaker that just
    // started is given a few seconds to take its addresses back (that is a
    // handover), so it keeps answering until the owner counts it.
    let other_ns = cluster.lan.node(other);
    let stopped = wait_for(
        "the owner to count the split brain",
        Duration::from_secs(20),
        || async {
            claim(other_ns, ip, 2);
            release(other_ns, ip);
            match metric(cluster.lan.node(owner), "ferrolb_split_brain_total") {
                0 => Err("0".to_owned()),
                _ => Ok(std::time::Instant::now()),
            }
        },
    )
    .await;
    wait_for(
        "the client's entry to hold the owner's MAC",
        Duration::from_secs(3),
        || async {
            match client_neighbour(&cluster, ip) {
                Some(mac) if mac == owner_mac => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // And it stays there: the owner announced after the last foreign frame.
    while stopped.elapsed() < Duration::from_secs(4) {
        assert_ne!(client_neighbour(&cluster, ip), Some(other_mac.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        metric(cluster.lan.node(owner), "ferrolb_ip_conflicts_total"),
        0
    );
    assert!(conflict_events(&cluster).is_empty());
}

#[tokio::test]
async fn a_sigterm_handover_is_no_conflict_but_a_foreign_host_still_is() {
    let mut cluster = Cluster::start(2).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2]).await;
    let ip = ingress(&svc);
    let owner = owner_of(&cluster, ip).await;
    let other = 3 - owner;
    published(&cluster, owner).await;
    published(&cluster, other).await;

    let mut leaving = cluster.speakers[owner - 1].take().expect("owner's speaker");
    assert!(leaving.terminate(), "the speaker stops cleanly");
    assert_eq!(owner_of(&cluster, ip).await, other);
    let leaving_log = leaving.output();
    // The overlap happened: the leaving speaker saw the new owner's
    // announcement while it still answered, and took it for what it is.
    assert!(
        leaving_log.contains(&format!("also answers for {ip}: expected")),
        "no overlap seen:\n{leaving_log}"
    );
    let new_owner = cluster.speakers[other - 1].as_ref().expect("running");
    for (who, log) in [("leaving", leaving_log), ("new owner", new_owner.output())] {
        for bad in ["split brain", "IP conflict", "also claims"] {
            assert!(
                !log.lines().any(|l| l.contains("WARN") && l.contains(bad)),
                "{who} warned {bad:?}:\n{log}"
            );
        }
    }
    let other_ns = cluster.lan.node(other);
    assert_eq!(metric(other_ns, "ferrolb_split_brain_total"), 0);
    assert_eq!(metric(other_ns, "ferrolb_ip_conflicts_total"), 0);
    assert_eq!(
        metric(
            other_ns,
            &format!("ferrolb_speaker_conflicts_total{{address=\"{ip}\"}}")
        ),
        0
    );

    // A foreign MAC answering for the same address still counts.
    claim(&cluster.lan.client, ip, 2);
    wait_for("the conflict counted", Duration::from_secs(5), || async {
        match metric(other_ns, "ferrolb_ip_conflicts_total") {
            1 => Ok(()),
            n => Err(format!("{n}")),
        }
    })
    .await;
    release(&cluster.lan.client, ip);
    drop(leaving);
}
