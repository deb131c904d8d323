//! Deployed on real nodes with Helm: `helm install` of the chart
//! `deploy/helm/ferrolb`, with the pool given as a value, brings ferrolb up
//! and a LoadBalancer Service gets an address the client reaches; `helm
//! upgrade` of a value both pod templates carry rolls the controller
//! Deployment and the speaker DaemonSet, both rollouts complete, the
//! membership key the chart generated stays, and the client loses no
//! request.

use std::time::Duration;

use ferrolb_e2e::control_plane::unique;
use ferrolb_e2e::helm::{chart, helm_ok};
use ferrolb_e2e::real_cluster::{RealCluster, longest_gap};

const REVISION: &str = "example\\.com/revision";

#[test]
fn helm_install_serves_an_address_and_helm_upgrade_rolls_both_workloads() {
    let cluster = RealCluster::up(2, "nftables");
    let kubeconfig = cluster.kubeconfig.to_str().expect("utf-8 path").to_owned();
    let chart = chart();
    let chart = chart.to_str().expect("utf-8 path");
    let values = std::env::temp_dir().join(unique("ferrolb-values") + ".yaml");
    std::fs::write(
        &values,
        format!(
            "configInline:\n  address-pools:\n  - name: lan\n    protocol: layer2\n    addresses: [{}]\n",
            cluster.pool
        ),
    )
    .expect("write values");
    let helm = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--kubeconfig", &kubeconfig, "-n", "ferrolb-system"]);
        helm_ok(&all)
    };

    helm(&[
        "install",
        "ferrolb",
        chart,
        "--create-namespace",
        "-f",
        values.to_str().expect("utf-8 path"),
        "--wait",
        "--timeout",
        "180s",
    ]);
    let ip = cluster.deploy_backend("web", 2, &[], "Cluster");
    let body = cluster.curl_until(&ip, Duration::from_secs(30), |_| true);
    println!("helm install: web got {ip}; the client reaches it: {body}");

    let key = || {
        cluster.kubectl_ok(&[
            "get",
            "secret",
            "-n",
            "ferrolb-system",
            "ferrolb-memberlist",
            "-o",
            "jsonpath={.data.secretkey}",
        ])
    };
    let key_before = key();
    assert!(!key_before.is_empty(), "the chart made no membership key");
    let generation = |what: &str, field: &str| -> i64 {
        cluster
            .kubectl_ok(&[
                "get",
                "-n",
                "ferrolb-system",
                what,
                "-o",
                &format!("jsonpath={{{field}}}"),
            ])
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{what} {field}: {e}"))
    };
    let workloads = [
        ("deployment/controller", "controller"),
        ("daemonset/speaker", "speaker"),
    ];
    let before: Vec<i64> = workloads
        .iter()
        .map(|(what, _)| generation(what, ".metadata.generation"))
        .collect();

    let client = cluster.requester(&ip);
    client.wait_requests(20, Duration::from_secs(30));
    let from = client.answers().len();
    helm(&[
        "upgrade",
        "ferrolb",
        chart,
        "--reuse-values",
        "--set",
        &format!("controller.podAnnotations.{REVISION}=2"),
        "--set",
        &format!("speaker.podAnnotations.{REVISION}=2"),
        "--wait",
        "--timeout",
        "180s",
    ]);
    for ((what, component), before) in workloads.iter().zip(&before) {
        cluster.rollout_status(what);
        let after = generation(what, ".metadata.generation");
        assert!(
            after > *before,
            "helm upgrade did not change {what}'s pod template"
        );
        assert_eq!(generation(what, ".status.observedGeneration"), after);
        // Every running pod is of the new template.
        let pods = cluster.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            "ferrolb-system",
            "-l",
            &format!("app.kubernetes.io/component={component}"),
            "-o",
            "jsonpath={range .items[?(@.status.phase==\"Running\")]}{.metadata.name}={.metadata.annotations.example\\.com/revision}{\"\\n\"}{end}",
        ]);
        let pods: Vec<&str> = pods.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(pods.len(), 2, "{component} pods: {pods:?}");
        assert!(
            pods.iter().all(|p| p.ends_with("=2")),
            "{component} pods not rolled: {pods:?}"
        );
    }
    client.wait_requests(20, Duration::from_secs(30));
    let answers = client.answers();
    let failed = answers[from..].iter().filter(|a| a.body.is_none()).count();
    println!(
        "helm upgrade: both rollouts complete; {} requests meanwhile, {failed} failed, longest gap {:.2} s",
        answers.len() - from,
        longest_gap(&answers, from).as_secs_f64()
    );
    let status = helm(&["status", "ferrolb", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("helm status JSON");
    assert_eq!(status["version"], 2, "{status}");
    assert_eq!(status["info"]["status"], "deployed", "{status}");
    assert_eq!(key(), key_before, "the upgrade changed the membership key");
    assert_eq!(failed, 0, "requests failed during helm upgrade");
    let _ = std::fs::remove_file(&values);
}
