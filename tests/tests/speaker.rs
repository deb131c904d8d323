//! Speakers in three node namespaces announce each LoadBalancer address from
//! exactly one node, as a client on the LAN sees it: ARP and NDP answers, TCP
//! to EXTERNAL-IP:port, and failover when the owner's speaker dies.

use std::net::IpAddr;
use std::time::Duration;

use ferrolb_config::request::ingress;
use ferrolb_e2e::cluster::{Cluster, answers};
use ferrolb_e2e::objects::LoadBalancer;
use ferrolb_e2e::{Netns, wait_for};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

/// Waits until exactly one MAC answers for `ip` from the client, and returns
/// the node it belongs to.
async fn owner_of(cluster: &Cluster, ip: IpAddr) -> usize {
    let client: &Netns = &cluster.lan.client;
    wait_for(
        &format!("exactly one node answering for {ip}"),
        Duration::from_secs(20),
        || async {
            let macs = answers(client, &ip.to_string());
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

/// Waits until nobody answers for `ip` from the client.
async fn no_answer(cluster: &Cluster, ip: IpAddr) {
    wait_for(
        &format!("no answer for {ip}"),
        Duration::from_secs(10),
        || async {
            let macs = answers(&cluster.lan.client, &ip.to_string());
            if macs.is_empty() {
                Ok(())
            } else {
                Err(format!("{macs:?}"))
            }
        },
    )
    .await;
}

fn speaker_metric(ns: &Netns, name: &str) -> String {
    let out = ns.exec("curl", &["-s", "http://127.0.0.1:7473/metrics"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(name))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn one_node_answers_arp_and_ndp_and_carries_the_traffic() {
    let cluster = Cluster::start(3).await;
    let lb = LoadBalancer::new("web").families("RequireDualStack", &["IPv4", "IPv6"]);
    let svc = cluster.expose(lb, &[1, 2, 3]).await;
    let ips = ingress(&svc);
    assert_eq!(ips.len(), 2, "{ips:?}");

    let owner = owner_of(&cluster, ips[0]).await;
    assert_eq!(
        owner_of(&cluster, ips[1]).await,
        owner,
        "both families on one node"
    );
    for (i, ns) in cluster.lan.nodes.iter().enumerate() {
        let announced = speaker_metric(ns, "ferrolb_speaker_announced_addresses");
        let expected = if i + 1 == owner { 2 } else { 0 };
        assert_eq!(
            announced,
            format!("ferrolb_speaker_announced_addresses {expected}"),
            "node-{}",
            i + 1
        );
    }

    // `kubectl describe svc` names the announcing node.
    let owner_name = format!("node-{owner}");
    wait_for(
        "the nodeAssigned event",
        Duration::from_secs(10),
        || async {
            let described = cluster
                .plane
                .kubectl(&["describe", "svc", "web", "-n", "default"]);
            if described.contains("nodeAssigned")
                && described.contains(&format!("announcing from node \"{owner_name}\""))
            {
                Ok(())
            } else {
                Err(described)
            }
        },
    )
    .await;

    // kube-proxy's part, stood in for by a DNAT to a listener on the NodePort
    // in every node namespace: the connection lands on the owner.
    let node_port = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|p| p[0].node_port.unwrap())
        .unwrap();
    let probe = env!("CARGO_BIN_EXE_flb-probe");
    let mut listeners = Vec::new();
    for (i, ns) in cluster.lan.nodes.iter().enumerate() {
        let target = format!("{}:{node_port}", ns.v4);
        listeners.push(ns.spawn(probe, &["listen", &target, &format!("node-{}", i + 1)], &[]));
        ns.exec_ok("nft", &["add", "table", "ip", "kp"]);
        ns.exec_ok(
            "nft",
            &["add chain ip kp pre { type nat hook prerouting priority -100 ; }"],
        );
        let rule = format!(
            "add rule ip kp pre ip daddr {} tcp dport 80 dnat to {target}",
            ips[0]
        );
        ns.exec_ok("nft", &[&rule]);
    }
    let reply = wait_for(
        "a TCP answer from EXTERNAL-IP:80",
        Duration::from_secs(10),
        || async {
            let out = cluster
                .lan
                .client
                .exec(probe, &["connect", &format!("{}:80", ips[0])]);
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    )
    .await;
    assert_eq!(reply, owner_name);

    // Deleting the Service stops the answers.
    Api::<Service>::namespaced(cluster.client.clone(), "default")
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete Service");
    for ip in &ips {
        no_answer(&cluster, *ip).await;
    }
}

#[tokio::test]
async fn the_owner_dying_moves_the_address_and_updates_the_client() {
    let mut cluster = Cluster::start(3).await;
    let lb = LoadBalancer::new("web").families("RequireDualStack", &["IPv4", "IPv6"]);
    let svc = cluster.expose(lb, &[1, 2, 3]).await;
    let ips = ingress(&svc);
    let owner = owner_of(&cluster, ips[0]).await;
    owner_of(&cluster, ips[1]).await;
    let client = &cluster.lan.client;
    // The client talks to the address, so its kernel holds an entry for it.
    for ip in &ips {
        client.exec("ping", &["-c", "1", "-W", "1", &ip.to_string()]);
    }
    let old_mac = cluster.lan.node(owner).mac.clone();

    cluster.kill_speaker(owner);
    let client = &cluster.lan.client;
    for ip in &ips {
        let new_mac = wait_for(
            &format!("the client's neighbour entry for {ip} to leave node-{owner}"),
            Duration::from_secs(15),
            || async {
                let neigh = client.exec_ok("ip", &["neigh", "show", &ip.to_string()]);
                let mac = neigh
                    .split_whitespace()
                    .skip_while(|w| *w != "lladdr")
                    .nth(1)
                    .map(str::to_owned);
                match mac {
                    Some(mac) if !mac.eq_ignore_ascii_case(&old_mac) => Ok(mac),
                    _ => Err(neigh),
                }
            },
        )
        .await;
        let new_owner = cluster.node_with_mac(&new_mac).expect("a node's MAC");
        assert_ne!(new_owner, owner);
    }
}

#[tokio::test]
async fn local_traffic_follows_the_ready_endpoint() {
    let cluster = Cluster::start(3).await;
    let svc = cluster
        .expose(LoadBalancer::new("web").local_traffic(), &[3])
        .await;
    let ip = ingress(&svc)[0];
    assert_eq!(owner_of(&cluster, ip).await, 3);

    cluster.set_endpoints("web", &[2]).await;
    wait_for(
        "node-2 to take the address",
        Duration::from_secs(15),
        || async {
            let macs = answers(&cluster.lan.client, &ip.to_string());
            match macs.as_slice() {
                [mac] if cluster.node_with_mac(mac) == Some(2) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn with_no_eligible_node_nobody_answers_and_the_service_says_why() {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Patch, PatchParams};
    let cluster = Cluster::start(2).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2]).await;
    let ip = ingress(&svc)[0];
    owner_of(&cluster, ip).await;

    // The operator takes every node out of external load balancing.
    let nodes = Api::<Node>::all(cluster.client.clone());
    let label = serde_json::json!({"metadata": {"labels": {
        "node.kubernetes.io/exclude-from-external-load-balancers": "true"
    }}});
    for i in 1..=2 {
        nodes
            .patch(
                &format!("node-{i}"),
                &PatchParams::default(),
                &Patch::Merge(&label),
            )
            .await
            .expect("label node");
    }
    no_answer(&cluster, ip).await;
    wait_for(
        "the NoAnnouncingNode event",
        Duration::from_secs(10),
        || async {
            let events = cluster.plane.kubectl(&[
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                "reason=NoAnnouncingNode",
                "-o",
                "custom-columns=NOTE:.note,MESSAGE:.message",
            ]);
            if events.contains("no node is eligible to announce") {
                Ok(())
            } else {
                Err(events)
            }
        },
    )
    .await;
}

/// Resumes a stopped process when dropped, also if the test fails.
struct Frozen(u32);

impl Frozen {
    fn stop(pid: u32) -> Frozen {
        let status = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill -STOP");
        assert!(status.success());
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[tokio::test]
async fn a_silent_api_server_leaves_the_announcements_as_they_are() {
    let cluster = Cluster::start(2).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2]).await;
    let ip = ingress(&svc)[0];
    let owner = owner_of(&cluster, ip).await;
    let owner_mac = cluster.lan.node(owner).mac.to_lowercase();

    // The API server stops answering without closing anything, as in a
    // partition: no watch fails, news just stops coming. A speaker trusting
    // its stale view would call the other dead after the 4 s lease and
    // answer too; both must keep doing what they did.
    let frozen = Frozen::stop(cluster.plane.api_server_pid());
    let silence = std::time::Instant::now();
    while silence.elapsed() < Duration::from_secs(10) {
        let macs = answers(&cluster.lan.client, &ip.to_string());
        assert_eq!(
            macs,
            vec![owner_mac.clone()],
            "after {:?} of silence",
            silence.elapsed()
        );
    }
    drop(frozen);

    assert_eq!(
        owner_of(&cluster, ip).await,
        owner,
        "the owner is the same once the API server answers again"
    );
}

#[tokio::test]
async fn a_restart_while_the_config_is_invalid_keeps_serving_the_last_good_one() {
    let mut cluster = Cluster::start(2).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2]).await;
    let ip = ingress(&svc)[0];
    owner_of(&cluster, ip).await;

    // A bad edit, then every ferrolb process restarts (a node reboot, a
    // rolling update): none of them has a config in memory any more.
    ferrolb_e2e::objects::apply_config(
        &cluster.client,
        "address-pools:\n- name: lan\n  adresses: []\n",
    )
    .await;
    cluster.kill_speaker(1);
    cluster.kill_speaker(2);
    cluster.controller.kill();
    cluster.controller = ferrolb_e2e::Daemon::start(
        "ferrolb-controller",
        &["--metrics-address", "127.0.0.1:0"],
        &cluster.plane,
        None,
    );
    for i in 1..=2 {
        cluster.speakers[i - 1] = Some(ferrolb_e2e::cluster::start_speaker(
            &cluster.plane,
            cluster.lan.node(i),
            i,
        ));
    }

    // The address is still answered by one node, and the controller still
    // allocates from the last good pools.
    owner_of(&cluster, ip).await;
    let second = cluster.expose(LoadBalancer::new("second"), &[1]).await;
    let second_ip = ingress(&second)[0];
    assert_ne!(second_ip, ip);
    assert!(
        cluster
            .controller
            .output()
            .contains("serving the last good config")
    );
}

#[tokio::test]
async fn a_service_that_stops_being_a_load_balancer_is_no_longer_answered_for() {
    let mut cluster = Cluster::start(2).await;
    let svc = cluster.expose(LoadBalancer::new("web"), &[1, 2]).await;
    let ip = ingress(&svc)[0];
    owner_of(&cluster, ip).await;
    // Every speaker has listed its watches and holds its sockets.
    for ns in &cluster.lan.nodes {
        let out = ns.exec("curl", &["-s", "http://127.0.0.1:7473/healthz"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    }
    // Without the controller, nothing clears the status: the speakers must
    // notice the type alone.
    cluster.controller.kill();
    Api::<Service>::namespaced(cluster.client.clone(), "default")
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "type": "ClusterIP" } })),
        )
        .await
        .expect("patch the Service to ClusterIP");
    no_answer(&cluster, ip).await;
}
