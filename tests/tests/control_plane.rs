//! A LoadBalancer Service on the real API server, before ferrolb runs: it gets
//! a ClusterIP and NodePorts, and `kubectl get svc` shows it `<pending>`.

use ferrolb_e2e::ControlPlane;
use ferrolb_e2e::objects::{LoadBalancer, namespace};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};

#[tokio::test]
async fn load_balancer_service_without_ferrolb_stays_pending() {
    let cp = ControlPlane::get().await;
    let client = cp.client().await;
    let ns = namespace(&client, "pending").await;
    let services: Api<Service> = Api::namespaced(client, &ns);

    let created = services
        .create(&PostParams::default(), &LoadBalancer::new("web").build())
        .await
        .expect("create Service");

    let spec = created.spec.expect("spec");
    let cluster_ip = spec.cluster_ip.expect("the API server assigns a ClusterIP");
    assert!(cluster_ip.starts_with("10.96."), "ClusterIP {cluster_ip}");
    let node_port = spec.ports.expect("ports")[0]
        .node_port
        .expect("the API server assigns a NodePort");
    assert!((20000..=60000).contains(&node_port), "NodePort {node_port}");

    let table = cp.kubectl(&["get", "svc", "web", "-n", &ns]);
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(row[0], "web");
    assert_eq!(row[1], "LoadBalancer");
    assert_eq!(row[2], cluster_ip);
    assert_eq!(row[3], "<pending>", "EXTERNAL-IP column in:\n{table}");
}

#[tokio::test]
async fn dual_stack_service_gets_both_cluster_ips() {
    let cp = ControlPlane::get().await;
    let client = cp.client().await;
    let ns = namespace(&client, "dual").await;
    let services: Api<Service> = Api::namespaced(client, &ns);

    let lb = LoadBalancer::new("dual").families("RequireDualStack", &["IPv4", "IPv6"]);
    let created = services
        .create(&PostParams::default(), &lb.build())
        .await
        .expect("create dual-stack Service");

    let ips = created
        .spec
        .and_then(|s| s.cluster_ips)
        .expect("clusterIPs");
    assert_eq!(ips.len(), 2, "{ips:?}");
    assert!(ips[1].contains(':'), "second ClusterIP is IPv6: {ips:?}");
}
