//! ferrolb's local demo: a real control plane, two node namespaces running
//! speakers, the controller, and a client namespace. It creates a dual-stack
//! LoadBalancer Service, shows `kubectl get svc` going from `<pending>` to an
//! EXTERNAL-IP, which node answers ARP and NDP for it, and a TCP connection to
//! it. `--keep` leaves everything running until Ctrl-C.

use std::time::Duration;

use ferrolb_e2e::cluster::{Cluster, answers};
use ferrolb_e2e::objects::LoadBalancer;

#[tokio::main]
async fn main() {
    let keep = std::env::args().any(|a| a == "--keep");
    println!("== starting a control plane, 2 node namespaces with speakers, and the controller");
    let cluster = Cluster::start(2).await;
    println!(
        "== pool: {}-{} and {}-{}",
        cluster.lan.v4(32),
        cluster.lan.v4(62),
        cluster.lan.v6(0x100),
        cluster.lan.v6(0xffff)
    );
    println!("== kubectl create service web (type LoadBalancer, dual-stack)");
    let lb = LoadBalancer::new("web").families("RequireDualStack", &["IPv4", "IPv6"]);
    let svc = cluster.expose(lb, &[1, 2]).await;
    print!(
        "{}",
        cluster.plane.kubectl(&["get", "svc", "web", "-o", "wide"])
    );

    let ips: Vec<String> = svc
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip)
        .collect();
    // Give the owner a moment to win the election and start answering.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for ip in &ips {
        let macs = answers(&cluster.lan.client, ip);
        let owners: Vec<String> = macs
            .iter()
            .map(|m| match cluster.node_with_mac(m) {
                Some(n) => format!("{m} (node-{n})"),
                None => m.clone(),
            })
            .collect();
        println!(
            "== from the client namespace, who has {ip}? {}",
            owners.join(", ")
        );
    }
    println!("== events:");
    print!(
        "{}",
        cluster.plane.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web"
        ])
    );
    if keep {
        println!(
            "== running; try: export KUBECONFIG={}  (Ctrl-C stops and cleans up)",
            cluster.plane.kubeconfig.display()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    println!("== cleaning up");
}
