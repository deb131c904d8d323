//! Deployed on real nodes, `externalTrafficPolicy: Local`: the address is
//! announced only from the node running the ready backend, the pod sees the
//! client's own address, and moving the backend to another node moves the
//! announcement with it.

use std::time::{Duration, Instant};

use ferrolb_e2e::real_cluster::{RealCluster, field};

/// Waits until exactly `node` answers ARP for `ip` (60 s).
fn wait_announced_only_by(cluster: &RealCluster, ip: &str, node: &str) -> Duration {
    let start = Instant::now();
    loop {
        let owners = cluster.announcing_nodes(ip);
        if owners == [node] {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{ip} should be announced by {node} alone, answers come from {owners:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn local_policy_announces_from_the_backend_node_keeps_the_client_address_and_follows_the_backend() {
    let cluster = RealCluster::up(3, "nftables");
    cluster.install_ferrolb();
    let ip = cluster.deploy_backend("local", 1, &["node-2"], "Local");
    println!(
        "{}",
        cluster.kubectl_ok(&["get", "svc", "local", "-o", "wide"])
    );
    wait_announced_only_by(&cluster, &ip, "node-2");

    let body = cluster.curl_until(&ip, Duration::from_secs(30), |_| true);
    println!("curl http://{ip}/ -> {body}");
    assert_eq!(field(&body, "node"), Some("node-2"), "{body}");
    assert_eq!(
        field(&body, "client"),
        Some(cluster.client_ip.as_str()),
        "the pod must see the client's address with externalTrafficPolicy: Local"
    );

    // Move the only backend to node-3: the announcement follows it.
    cluster.move_backend("local", 1, &["node-3"], "Local");
    let moved = wait_announced_only_by(&cluster, &ip, "node-3");
    println!(
        "node-3 alone announces {:.1} s after the rollout to it completed",
        moved.as_secs_f64()
    );
    let body = cluster.curl_until(&ip, Duration::from_secs(30), |b| {
        field(b, "node") == Some("node-3")
    });
    println!("curl http://{ip}/ -> {body}");
    assert_eq!(
        field(&body, "client"),
        Some(cluster.client_ip.as_str()),
        "{body}"
    );
    let describe = cluster.kubectl_ok(&["describe", "svc", "local"]);
    assert!(
        describe.contains("announcing from node \"node-3\""),
        "{describe}"
    );
}
