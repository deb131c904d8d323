//! The speakers' LAN membership trusts only what is sealed with the cluster's
//! key, once: a datagram sealed with another key and a genuine one replayed
//! are dropped and counted, and no address changes hands. A speaker started
//! without the key refuses to run.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ferrolb_e2e::cluster::{Cluster, MEMBER_PORT, MEMBERLIST_KEY, answers};
use ferrolb_e2e::objects::LoadBalancer;
use ferrolb_e2e::{Lan, Netns, wait_for};
use ferrolb_speaker::liveness::{Effect, Liveness, Settings};
use ferrolb_speaker::seal::{Key, TAG_LEN};

fn speaker_metric(ns: &Netns, name: &str) -> String {
    let out = ns.exec("curl", &["-s", "http://127.0.0.1:7473/metrics"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(name))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `log` without its colour escapes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends `bytes` from the client namespace to `to`.
fn send_from_client(cluster: &Cluster, to: SocketAddr, bytes: &[u8]) {
    let probe = env!("CARGO_BIN_EXE_flb-probe");
    let out = cluster
        .lan
        .client
        .exec(probe, &["udp", &to.to_string(), &hex(bytes)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until every speaker holds all three live.
async fn all_live(cluster: &Cluster) {
    for ns in &cluster.lan.nodes {
        wait_for("three live members", Duration::from_secs(10), || async {
            let live = speaker_metric(ns, "ferrolb_speaker_members_live");
            (live == "ferrolb_speaker_members_live 3")
                .then_some(())
                .ok_or(live)
        })
        .await;
    }
}

/// The one node answering for `ip`, once every speaker hears the others and
/// exactly one node answers.
async fn owner_of(cluster: &Cluster, ip: &str) -> usize {
    all_live(cluster).await;
    wait_for(
        &format!("exactly one node answering for {ip}"),
        Duration::from_secs(20),
        || async {
            match answers(&cluster.lan.client, ip).as_slice() {
                [mac] => cluster
                    .node_with_mac(mac)
                    .ok_or_else(|| format!("{mac} is no node's MAC")),
                other => Err(format!("answers: {other:?}")),
            }
        },
    )
    .await
}

#[tokio::test]
async fn forged_and_replayed_member_datagrams_are_rejected_counted_and_move_nothing() {
    let cluster = Cluster::start(3).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2, 3]).await;
    let ip: IpAddr = svc.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
        .ip
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let owner = owner_of(&cluster, &ip.to_string()).await;
    let owner_ns = cluster.lan.node(owner);
    let target = SocketAddr::new(IpAddr::V4(owner_ns.v4), MEMBER_PORT);

    // A genuine datagram: what a member holding the cluster's key says first
    // to the owner. Sent once it is accepted; sent again it is a replay.
    let me = SocketAddr::new(IpAddr::V4(cluster.lan.client.v4), MEMBER_PORT);
    let key = Key::new(MEMBERLIST_KEY.as_bytes()).unwrap();
    let mut member = Liveness::new("visitor", me, key, Settings::default(), 1, Instant::now());
    let mut out = Vec::new();
    member.discover([(Lan::node_name(owner), target)], Instant::now(), &mut out);
    let genuine = match &out[..] {
        [Effect::Send { bytes, .. }] => bytes.clone(),
        other => panic!("expected one datagram, got {other:?}"),
    };
    // The same words sealed with another key.
    let forged = Key::new(b"not the cluster's key, but long")
        .unwrap()
        .seal(&genuine[TAG_LEN..]);

    send_from_client(&cluster, target, &genuine);
    send_from_client(&cluster, target, &genuine);
    send_from_client(&cluster, target, &forged);

    let rejected = |reason: &str| {
        format!("ferrolb_speaker_member_messages_rejected_total{{reason=\"{reason}\"}} 1")
    };
    wait_for(
        "the replay and the forgery counted",
        Duration::from_secs(10),
        || async {
            let counted =
                speaker_metric(owner_ns, "ferrolb_speaker_member_messages_rejected_total");
            (counted.contains(&rejected("replayed")) && counted.contains(&rejected("bad_tag")))
                .then_some(())
                .ok_or(counted)
        },
    )
    .await;

    // Nothing moved: the same single node answers, every speaker still
    // holds all three live, and no speaker logged a member going down.
    assert_eq!(
        answers(&cluster.lan.client, &ip.to_string()),
        vec![owner_ns.mac.to_lowercase()]
    );
    for (i, ns) in cluster.lan.nodes.iter().enumerate() {
        assert_eq!(
            speaker_metric(ns, "ferrolb_speaker_members_live"),
            "ferrolb_speaker_members_live 3",
            "node-{}",
            i + 1
        );
        let log = cluster.speakers[i].as_ref().unwrap().output();
        assert!(!log.contains("member down"), "node-{}: {log}", i + 1);
        let announced = speaker_metric(ns, "ferrolb_speaker_announced_addresses");
        let expected = u8::from(i + 1 == owner);
        assert_eq!(
            announced,
            format!("ferrolb_speaker_announced_addresses {expected}")
        );
    }
}

#[test]
fn a_speaker_without_the_membership_key_refuses_to_start() {
    let speaker = ferrolb_e2e::daemons::binary("ferrolb-speaker");
    let out = std::process::Command::new(speaker)
        .args(["--node-name", "node-1"])
        .env_remove("FERROLB_MEMBERLIST_SECRET")
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .expect("run the speaker");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("refusing to start: no membership key"),
        "{said}"
    );
    assert!(said.contains("ferrolb-memberlist"), "{said}");
}

/// The single MAC answering for `ip` in every round of ARP from the client
/// for `duration`; panics if a round sees none or two.
async fn only_one_mac_for(cluster: &Cluster, ip: &str, mac: &str, duration: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < duration {
        let macs = answers(&cluster.lan.client, ip);
        assert_eq!(macs, vec![mac.to_owned()], "after {:?}", start.elapsed());
    }
}

#[tokio::test]
async fn an_owner_cut_from_the_api_server_keeps_its_address_and_no_one_else_answers() {
    let cluster = Cluster::start(3).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2, 3]).await;
    let ip = svc.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
        .ip
        .clone()
        .unwrap();
    let owner = owner_of(&cluster, &ip).await;
    let ns = cluster.lan.node(owner);
    let mac = ns.mac.to_lowercase();
    // Its path to the API server is cut (its LAN is not): the others keep
    // hearing it on the LAN, so nobody takes over, and it keeps answering.
    ns.exec_ok("nft", &["add", "table", "ip", "apicut"]);
    ns.exec_ok(
        "nft",
        &["add chain ip apicut out { type filter hook output priority 0 ; }"],
    );
    ns.exec_ok(
        "nft",
        &[&format!(
            "add rule ip apicut out ip daddr {} drop",
            ferrolb_e2e::netns::API_ADDRESS
        )],
    );
    only_one_mac_for(&cluster, &ip, &mac, Duration::from_secs(12)).await;
    ns.exec_ok("nft", &["delete", "table", "ip", "apicut"]);
    assert_eq!(owner_of(&cluster, &ip).await, owner);
}

#[tokio::test]
async fn after_a_lan_partition_heals_the_rightful_owner_answers_again_and_the_client_follows() {
    let cluster = Cluster::start(3).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2, 3]).await;
    let ip = svc.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
        .ip
        .clone()
        .unwrap();
    let owner = owner_of(&cluster, &ip).await;
    let owner_mac = cluster.lan.node(owner).mac.to_lowercase();
    let client = &cluster.lan.client;
    client.exec("ping", &["-c", "1", "-W", "1", &ip]);

    // The owner's link goes down: another node takes the address over and
    // the client's neighbour entry moves to it.
    cluster.lan.set_node_link(owner, false);
    let interim = wait_for("another node to answer", Duration::from_secs(5), || async {
        match answers(&cluster.lan.client, &ip).as_slice() {
            [mac] if *mac != owner_mac => cluster.node_with_mac(mac).ok_or(mac.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let interim_mac = cluster.lan.node(interim).mac.to_lowercase();
    let neigh_mac = || {
        let neigh = client.exec_ok("ip", &["neigh", "show", &ip]).to_lowercase();
        neigh
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_owned)
            .unwrap_or(neigh)
    };
    wait_for(
        "the client to follow the takeover",
        Duration::from_secs(10),
        || async {
            let mac = neigh_mac();
            (mac == interim_mac).then_some(()).ok_or(mac)
        },
    )
    .await;

    // The link comes back. The owner had held itself alone and kept its
    // address; the others had taken it. Only the owner may answer now, and
    // it must announce again so the client moves back without asking.
    cluster.lan.set_node_link(owner, true);
    // The membership heals: the others hear the owner again (it refuted
    // their verdict), and the owner announces its address again.
    let owner_live = format!("member live member=node-{owner}");
    wait_for("the membership to heal", Duration::from_secs(5), || async {
        let healed = (1..=3).filter(|i| *i != owner).all(|i| {
            let log = plain(&cluster.speakers[i - 1].as_ref().unwrap().output());
            log.matches(&owner_live).count() >= 2
        });
        let owner_log = cluster.speakers[owner - 1].as_ref().unwrap().output();
        (healed && owner_log.contains("announcing again"))
            .then_some(())
            .ok_or("not yet".to_owned())
    })
    .await;
    wait_for(
        "the client to move back to the owner",
        Duration::from_secs(5),
        || async {
            let mac = neigh_mac();
            (mac == owner_mac).then_some(()).ok_or(mac)
        },
    )
    .await;
    only_one_mac_for(&cluster, &ip, &owner_mac, Duration::from_secs(3)).await;
    let log = cluster.speakers[owner - 1].as_ref().unwrap().output();
    assert!(log.contains("announcing again"), "{log}");
    // Two nodes announced the address while the LAN was split: the owner,
    // told it had been held down while it announced, counts that split brain.
    let split_brains = speaker_metric(cluster.lan.node(owner), "ferrolb_split_brain_total");
    assert_eq!(split_brains, "ferrolb_split_brain_total 1", "{log}");
}
