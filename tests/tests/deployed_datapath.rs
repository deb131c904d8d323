//! Deployed from the image and manifests, on real nodes: a LoadBalancer
//! Service's EXTERNAL-IP answers the client from a real pod through the real
//! kube-proxy, in nftables and then iptables mode, and `kubectl describe svc`
//! and the speaker's log say what was allocated and which node announces it.
//! IPv4 only: the real cluster's pods and Services are single-stack.

use std::time::Duration;

use ferrolb_e2e::real_cluster::{RealCluster, field};

/// Every one of `n` requests answers from a running backend pod, and the
/// nodes that answered are real nodes.
fn answers_from_pods(cluster: &RealCluster, ip: &str, n: usize) -> Vec<String> {
    let pods = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let mut seen = Vec::new();
    for _ in 0..n {
        let body = cluster
            .curl(ip)
            .unwrap_or_else(|| panic!("curl http://{ip}/ from the client failed"));
        let pod = field(&body, "pod").expect("pod= in the answer");
        let node = field(&body, "node").expect("node= in the answer");
        assert!(
            pods.split_whitespace().any(|p| p == pod),
            "{pod} is not a backend pod ({pods})"
        );
        assert!(
            cluster.nodes.iter().any(|n| n.name == node),
            "{node} is not a node"
        );
        seen.push(body);
    }
    seen
}

#[test]
fn external_ip_answers_from_a_pod_through_kube_proxy_in_nftables_and_iptables_modes() {
    let cluster = RealCluster::up(3, "nftables");
    cluster.install_ferrolb();
    let ip = cluster.deploy_backend("web", 3, &[], "Cluster");
    println!("{}", cluster.kubectl_ok(&["get", "svc", "web"]));
    let (low, high) = cluster.pool.split_once('-').unwrap();
    let octet = |a: &str| a.rsplit('.').next().unwrap().parse::<u8>().unwrap();
    assert!(
        ip.starts_with("198.51.100.") && (octet(low)..=octet(high)).contains(&octet(&ip)),
        "EXTERNAL-IP {ip} is not from the pool {}",
        cluster.pool
    );

    cluster.curl_until(&ip, Duration::from_secs(30), |_| true);
    for body in answers_from_pods(&cluster, &ip, 6) {
        println!("nftables: curl http://{ip}/ -> {body}");
    }
    let owners = cluster.announcing_nodes(&ip);
    assert_eq!(
        owners.len(),
        1,
        "exactly one node answers ARP for {ip}: {owners:?}"
    );
    let owner = &owners[0];

    // What an operator reads: the allocation and the announcing node in the
    // Service's events, the decision in the owner's speaker log.
    let describe = cluster.kubectl_ok(&["describe", "svc", "web"]);
    println!("{describe}");
    assert!(
        describe
            .lines()
            .any(|l| l.starts_with("LoadBalancer Ingress:") && l.contains(&ip)),
        "{describe}"
    );
    assert!(
        describe.contains(&format!("Assigned {ip} from pool lan")),
        "{describe}"
    );
    assert!(
        describe.contains(&format!("announcing from node \"{owner}\"")),
        "{describe}"
    );
    let speaker = cluster
        .ferrolb_pod("speaker", owner)
        .expect("a speaker on the owner");
    let log = cluster.kubectl_ok(&["logs", "-n", "ferrolb-system", &speaker]);
    assert!(
        log.lines()
            .any(|l| l.contains("owner changed: announcing from this node") && l.contains(&ip)),
        "the owner's speaker log does not say it announces {ip}:\n{log}"
    );

    cluster.proxy_mode("iptables");
    cluster.curl_until(&ip, Duration::from_secs(30), |_| true);
    let node = &cluster.nodes[0];
    let nat = std::process::Command::new("ip")
        .args(["netns", "exec", &node.netns, "iptables-save", "-t", "nat"])
        .output()
        .unwrap();
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(
        nat.contains("KUBE-SERVICES") && nat.contains(&ip),
        "kube-proxy in iptables mode has no rule for {ip}:\n{nat}"
    );
    let nft = std::process::Command::new("ip")
        .args(["netns", "exec", &node.netns, "nft", "list", "tables"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&nft.stdout).contains("kube-proxy"),
        "the nftables mode's table is still there"
    );
    for body in answers_from_pods(&cluster, &ip, 6) {
        println!("iptables: curl http://{ip}/ -> {body}");
    }
}
