//! Deployed on real nodes: moving from MetalLB keeps every address. Services
//! hold addresses exactly as MetalLB left them (status, its
//! `ip-allocated-from-pool` annotation, one requesting its address through
//! MetalLB's `loadBalancerIPs` annotation, one in a pool pinned to its
//! namespace's labels); ferrolb is installed with the ConfigMap that
//! `convert-metallb` made of MetalLB's objects, and takes over with every
//! address unchanged (kubectl) and answered from the client (ARP and TCP),
//! while a new Service gets an address none of them holds.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use ferrolb_e2e::daemons::binary;
use ferrolb_e2e::real_cluster::{RealCluster, backend_manifest, field};

/// A second LoadBalancer Service in front of backend `app`, with these
/// annotations.
fn another_service(namespace: &str, name: &str, app: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
  annotations: {{{annotations}}}
spec:
  type: LoadBalancer
  selector: {{app: {app}}}
  ports: [{{port: 80, targetPort: 8080}}]
"
    )
}

/// Writes what MetalLB's controller writes for a Service it allocated `ip`
/// from `pool`: the status, and the annotation naming the pool.
fn as_metallb_left_it(cluster: &RealCluster, namespace: &str, service: &str, ip: &str, pool: &str) {
    cluster.kubectl_ok(&[
        "annotate",
        "-n",
        namespace,
        "svc",
        service,
        &format!("metallb.io/ip-allocated-from-pool={pool}"),
    ]);
    cluster.kubectl_ok(&[
        "patch",
        "-n",
        namespace,
        "svc",
        service,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{ip}","ipMode":"VIP"}}]}}}}}}"#
        ),
    ]);
}

fn ingress(cluster: &RealCluster, namespace: &str, service: &str) -> String {
    cluster.kubectl_ok(&[
        "get",
        "-n",
        namespace,
        "svc",
        service,
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].ip}",
    ])
}

/// Runs a ferrolb-controller subcommand; its stdout, stderr and success.
fn ferrolb_controller(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(binary("ferrolb-controller"))
        .args(args)
        .output()
        .expect("run ferrolb-controller");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn ferrolb_takes_over_metallbs_services_without_moving_an_address() {
    let cluster = RealCluster::up(2, "nftables");
    // The cluster's LAN pool, split as a MetalLB operator might have: an
    // open pool and one pinned to the namespaces labelled tenant=a.
    let (first, _) = cluster.pool.split_once('-').expect("pool a-b");
    let base: Ipv4Addr = first.parse().expect("pool start");
    let at = |offset: u32| Ipv4Addr::from(u32::from(base) + offset).to_string();
    let (lan, team) = (
        format!("{}-{}", at(0), at(7)),
        format!("{}-{}", at(8), at(15)),
    );
    // Never the lowest free address of their pool: an address ferrolb
    // chose itself would differ.
    let (auto_ip, requested_ip, team_ip) = (at(3), at(6), at(12));

    cluster.kubectl_ok(&["create", "namespace", "team-a"]);
    cluster.kubectl_ok(&["label", "namespace", "team-a", "tenant=a"]);
    cluster.apply(&backend_manifest("default", "web-auto", 1, &[], "Cluster"));
    cluster.apply(&another_service(
        "default",
        "web-requested",
        "web-auto",
        &format!("metallb.universe.tf/loadBalancerIPs: \"{requested_ip}\""),
    ));
    cluster.apply(&backend_manifest("team-a", "team-web", 1, &[], "Cluster"));
    for (namespace, deployment) in [("default", "web-auto"), ("team-a", "team-web")] {
        cluster.kubectl_ok(&[
            "rollout",
            "status",
            "-n",
            namespace,
            &format!("deployment/{deployment}"),
            "--timeout=120s",
        ]);
    }
    as_metallb_left_it(&cluster, "default", "web-auto", &auto_ip, "lan");
    as_metallb_left_it(&cluster, "default", "web-requested", &requested_ip, "lan");
    as_metallb_left_it(&cluster, "team-a", "team-web", &team_ip, "team");
    let before = [
        ("default", "web-auto", auto_ip.clone()),
        ("default", "web-requested", requested_ip.clone()),
        ("team-a", "team-web", team_ip.clone()),
    ];
    for (namespace, service, ip) in &before {
        assert_eq!(
            &ingress(&cluster, namespace, service),
            ip,
            "{namespace}/{service}"
        );
    }

    // MetalLB's objects as `kubectl get ipaddresspools,l2advertisements -A
    // -o yaml` would list them, converted.
    let metallb = format!(
        "apiVersion: v1
kind: List
items:
- apiVersion: metallb.io/v1beta1
  kind: IPAddressPool
  metadata: {{name: lan, namespace: metallb-system}}
  spec:
    addresses: [{lan}]
    autoAssign: true
    avoidBuggyIPs: false
- apiVersion: metallb.io/v1beta1
  kind: IPAddressPool
  metadata: {{name: team, namespace: metallb-system}}
  spec:
    addresses: [{team}]
    serviceAllocation:
      priority: 10
      namespaceSelectors:
      - matchLabels: {{tenant: a}}
- apiVersion: metallb.io/v1beta1
  kind: L2Advertisement
  metadata: {{name: l2, namespace: metallb-system}}
  spec: {{}}
"
    );
    let dir = std::env::temp_dir().join(ferrolb_e2e::control_plane::unique("migration"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let crs = dir.join("metallb.yaml");
    std::fs::write(&crs, metallb).expect("write CRs");
    let (configmap, stderr, ok) = ferrolb_controller(&["convert-metallb", crs.to_str().unwrap()]);
    assert!(ok, "convert-metallb failed: {stderr}");
    let converted = dir.join("ferrolb-config.yaml");
    std::fs::write(&converted, &configmap).expect("write ConfigMap");
    let (report, stderr, ok) = ferrolb_controller(&["check-config", converted.to_str().unwrap()]);
    assert!(
        ok,
        "check-config refuses the converted config: {report}{stderr}"
    );
    println!("{configmap}{report}");
    let _ = std::fs::remove_dir_all(&dir);

    let installed = Instant::now();
    cluster.install_ferrolb_with(&configmap);

    // Every address is answered from the client: by exactly one node over
    // ARP, and by the backend over TCP.
    for (namespace, service, ip) in &before {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let owners = cluster.announcing_nodes(ip);
            if owners.len() == 1 && !owners[0].starts_with('?') {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{namespace}/{service}: {ip} is answered by {owners:?}, not by one node"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let body = cluster.curl_until(ip, Duration::from_secs(30), |_| true);
        let app = if *namespace == "team-a" {
            "team"
        } else {
            "web"
        };
        assert!(
            field(&body, "pod").is_some_and(|pod| pod.starts_with(app)),
            "{namespace}/{service} at {ip}: {body}"
        );
    }
    println!(
        "every address answered {:.1} s after the install began",
        installed.elapsed().as_secs_f64()
    );
    // The controller serves: a new Service gets the lowest address of the
    // open pool that none of the taken-over Services holds.
    cluster.apply(&another_service("default", "web-new", "web-auto", ""));
    assert_eq!(
        cluster.external_ip("web-new"),
        at(0),
        "a new Service's address"
    );
    // And none moved, then or since: the controller has reconciled every
    // Service and wrote no status of theirs.
    for (namespace, service, ip) in &before {
        assert_eq!(
            &ingress(&cluster, namespace, service),
            ip,
            "{namespace}/{service} changed address"
        );
    }
    let events = cluster.kubectl_ok(&[
        "get",
        "events",
        "-A",
        "-o",
        "custom-columns=REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message",
    ]);
    for reason in ["IPChanged", "IPAllocated", "AllocationFailed"] {
        assert!(
            !events
                .lines()
                .any(|l| l.starts_with(reason) && !l.contains("web-new")),
            "ferrolb should have kept every address as it was:\n{events}"
        );
    }
    println!(
        "{}",
        cluster.kubectl_ok(&["get", "svc", "-A", "-o", "wide"])
    );
}
