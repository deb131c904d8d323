//! The network-namespace LAN: node namespaces reach the API server through the
//! bridge, and the client namespace reaches a node across it.

use std::time::Duration;

use ferrolb_e2e::{ControlPlane, Lan, wait_for};

#[tokio::test]
async fn node_namespace_lists_services_with_the_generated_kubeconfig() {
    let cp = ControlPlane::get().await;
    let lan = Lan::create(1);

    let out = lan.node(1).exec(
        cp.kubectl.to_str().expect("utf-8 path"),
        &[
            "--kubeconfig",
            cp.kubeconfig.to_str().expect("utf-8 path"),
            "get",
            "svc",
            "-n",
            "default",
            "-o",
            "name",
        ],
    );
    assert!(
        out.status.success(),
        "kubectl in {} failed: {}",
        lan.node(1).name,
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.lines().any(|l| l == "service/kubernetes"),
        "kubectl listed: {listed}"
    );
}

#[tokio::test]
async fn client_reaches_a_tcp_listener_in_a_node_namespace() {
    let lan = Lan::create(2);
    let probe = env!("CARGO_BIN_EXE_flb-probe");
    let node = lan.node(2);
    let addr = format!("{}:8080", node.v4);
    let _listener = node.spawn(probe, &["listen", &addr, "hello from node-2"], &[]);

    let reply = wait_for(
        "the listener in node-2",
        Duration::from_secs(10),
        || async {
            let out = lan.client.exec(probe, &["connect", &addr]);
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    )
    .await;
    assert_eq!(reply, "hello from node-2");

    // The client learnt node-2's MAC by ARP, across the bridge.
    let neigh = lan
        .client
        .exec_ok("ip", &["neigh", "show", &node.v4.to_string()]);
    assert!(neigh.contains(&node.mac), "client neighbour table: {neigh}");
}
