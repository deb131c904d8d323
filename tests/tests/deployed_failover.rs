//! Deployed on real nodes: when the announcing node's speaker pod is
//! deleted, and when a whole node stops (kubelet, containerd, pods, link),
//! the client's requests move to another node. Prints the gap the client saw.

use std::time::Duration;

use ferrolb_e2e::real_cluster::{RealCluster, field, longest_gap};

/// The node that answers ARP for `ip`, when exactly one does.
fn owner(cluster: &RealCluster, ip: &str) -> String {
    let owners = cluster.announcing_nodes(ip);
    assert_eq!(owners.len(), 1, "one node answers ARP for {ip}: {owners:?}");
    owners[0].clone()
}

#[test]
fn answers_move_to_another_node_when_the_owners_speaker_pod_goes_and_when_its_node_stops() {
    let cluster = RealCluster::up(3, "nftables");
    cluster.install_ferrolb();
    let ip = cluster.deploy_backend("web", 2, &[], "Cluster");
    cluster.curl_until(&ip, Duration::from_secs(30), |_| true);
    let first = owner(&cluster, &ip);

    // 1. The owner's speaker pod is deleted (SIGTERM, then the DaemonSet
    // starts a new one on the same node).
    let client = cluster.requester(&ip);
    client.wait_requests(20, Duration::from_secs(30));
    let from = client.answers().len();
    let pod = cluster
        .ferrolb_pod("speaker", &first)
        .expect("speaker on the owner");
    cluster.kubectl_ok(&["delete", "pod", "-n", "ferrolb-system", &pod]);
    cluster.rollout_status("daemonset/speaker");
    client.wait_requests(20, Duration::from_secs(30));
    let answers = client.answers();
    let failed = answers[from..].iter().filter(|a| a.body.is_none()).count();
    let gap = longest_gap(&answers, from);
    println!(
        "speaker pod {pod} on {first} deleted: {failed} of {} requests failed, longest gap {:.2} s",
        answers.len() - from,
        gap.as_secs_f64()
    );
    assert!(
        gap < Duration::from_secs(5),
        "the client waited {gap:?} for an answer"
    );
    drop(client);

    // 2. The owner's node stops. Keep the backends off it, so that what the
    // client sees is the announcement moving, not kube-proxy still sending
    // to pods of a node the control plane has not yet declared lost.
    let owner_now = owner(&cluster, &ip);
    let others: Vec<&str> = cluster
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| *n != owner_now)
        .collect();
    cluster.move_backend("web", 2, &others, "Cluster");
    cluster.curl_until(&ip, Duration::from_secs(30), |_| true);
    let client = cluster.requester(&ip);
    client.wait_requests(20, Duration::from_secs(30));
    let from = client.answers().len();
    cluster.stop_node(&owner_now);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answers = client.answers();
        if answers[from..]
            .iter()
            .rev()
            .take(10)
            .filter(|a| a.body.is_some())
            .count()
            == 10
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no steady answers 30 s after {owner_now} stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let answers = client.answers();
    let failed = answers[from..].iter().filter(|a| a.body.is_none()).count();
    let gap = longest_gap(&answers, from);
    let new_owner = owner(&cluster, &ip);
    println!(
        "node {owner_now} stopped: {failed} of {} requests failed, longest gap {:.2} s; {new_owner} announces now",
        answers.len() - from,
        gap.as_secs_f64()
    );
    assert_ne!(new_owner, owner_now);
    let last = answers.last().and_then(|a| a.body.clone()).unwrap();
    assert_ne!(field(&last, "node"), Some(owner_now.as_str()), "{last}");
    assert!(
        gap < Duration::from_secs(10),
        "the client waited {gap:?} for an answer"
    );
}
