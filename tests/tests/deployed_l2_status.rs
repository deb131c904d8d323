//! Deployed on real nodes: `kubectl get servicel2statuses -A` names the node
//! answering for a Service and its interface, written by that node's
//! speaker under its own service-account token (the manifest's admission
//! policy lets it write only objects naming its node); the object is not
//! rewritten while nothing changes, follows the address when the owner's
//! node stops, and goes with the Service.

use std::time::{Duration, Instant};

use ferrolb_e2e::real_cluster::RealCluster;

/// The one node answering ARP for `ip`, other than `not`, within 30 s.
fn owner(cluster: &RealCluster, ip: &str, not: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let owners = cluster.announcing_nodes(ip);
        if let [only] = owners.as_slice()
            && Some(only.as_str()) != not
        {
            return only.clone();
        }
        assert!(
            Instant::now() < deadline,
            "one node other than {not:?} answering ARP for {ip}: {owners:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kubectl get servicel2statuses -A` without its header, cells split.
fn rows(cluster: &RealCluster) -> Vec<Vec<String>> {
    cluster
        .kubectl_ok(&["get", "servicel2statuses", "-A", "--no-headers"])
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Waits until the table holds exactly `expected` (its cells before AGE).
fn wait_rows(cluster: &RealCluster, expected: &[&[&str]], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now: Vec<Vec<String>> = rows(cluster)
            .into_iter()
            .map(|mut r| {
                r.truncate(6);
                r
            })
            .collect();
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl get servicel2statuses -A shows {now:?}, not {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kubectl_shows_the_announcing_node_and_follows_it_when_the_node_stops() {
    let cluster = RealCluster::up(3, "nftables");
    cluster.install_ferrolb();
    let ip = cluster.deploy_backend("web", 2, &[], "Cluster");
    cluster.curl_until(&ip, Duration::from_secs(30), |_| true);
    let first = owner(&cluster, &ip, None);
    let addresses = format!("[\"{ip}\"]");
    let row = |node: &str| -> Vec<String> {
        ["default", "web", "web", node, "[\"eth0\"]", &addresses]
            .map(str::to_owned)
            .to_vec()
    };
    let expected = row(&first);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    wait_rows(&cluster, &[&expected], Duration::from_secs(30));

    // Nothing changes for a while: the object keeps its resourceVersion.
    let version = || {
        cluster.kubectl_ok(&[
            "get",
            "servicel2status",
            "-n",
            "default",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let before = version();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(version(), before, "after {:?}", start.elapsed());
        std::thread::sleep(Duration::from_millis(250));
    }

    // The owner's node stops and cannot clean up: the node that takes the
    // address over takes the object over, under its own token.
    cluster.stop_node(&first);
    let next = owner(&cluster, &ip, Some(&first));
    let expected = row(&next);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    let stopped = Instant::now();
    wait_rows(&cluster, &[&expected], Duration::from_secs(30));
    println!(
        "node {first} stopped: {next} answers and kubectl shows it {:.2} s later",
        stopped.elapsed().as_secs_f64()
    );
    for pod in cluster
        .kubectl_ok(&[
            "get",
            "pods",
            "-n",
            "ferrolb-system",
            "-l",
            "app.kubernetes.io/component=speaker",
            "--field-selector",
            &format!("spec.nodeName!={first}"),
            "-o",
            "name",
        ])
        .lines()
    {
        let log = cluster.kubectl_ok(&["logs", "-n", "ferrolb-system", pod]);
        assert!(
            !log.contains("could not write the status object"),
            "{pod}: {log}"
        );
    }

    // The Service goes; the garbage collector removes its object with it.
    cluster.kubectl_ok(&["delete", "service", "web"]);
    wait_rows(&cluster, &[], Duration::from_secs(60));
}
