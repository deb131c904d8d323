//! Deployed on real nodes: `kubectl rollout restart` of the controller
//! Deployment (two replicas, one leads) and of the speaker DaemonSet both
//! complete while a client keeps requesting the EXTERNAL-IP, and the client
//! loses no request: the controller is not on the data path, and a stopping
//! speaker hands its addresses over before it goes.

use std::time::Duration;

use ferrolb_e2e::real_cluster::{RealCluster, longest_gap};

#[test]
fn rolling_restarts_of_controller_and_speakers_complete_without_failed_requests() {
    let cluster = RealCluster::up(3, "nftables");
    cluster.install_ferrolb();
    let ip = cluster.deploy_backend("web", 3, &[], "Cluster");
    cluster.curl_until(&ip, Duration::from_secs(30), |_| true);
    let client = cluster.requester(&ip);
    client.wait_requests(20, Duration::from_secs(30));

    let mut failures = Vec::new();
    for (what, kind) in [
        ("deployment/controller", "controller"),
        ("daemonset/speaker", "speaker"),
    ] {
        let from = client.answers().len();
        cluster.kubectl_ok(&["rollout", "restart", "-n", "ferrolb-system", what]);
        cluster.rollout_status(what);
        client.wait_requests(20, Duration::from_secs(30));
        let answers = client.answers();
        let failed = answers[from..].iter().filter(|a| a.body.is_none()).count();
        println!(
            "rollout restart {kind}: {} requests during the rollout, {failed} failed, longest gap {:.2} s",
            answers.len() - from,
            longest_gap(&answers, from).as_secs_f64()
        );
        if failed > 0 {
            failures.push(format!("{kind}: {failed} failed requests"));
        }
    }
    println!(
        "{}",
        cluster.kubectl_ok(&["get", "pods", "-n", "ferrolb-system", "-o", "wide"])
    );
    assert!(
        failures.is_empty(),
        "requests failed during rolling restarts: {failures:?}"
    );
}
