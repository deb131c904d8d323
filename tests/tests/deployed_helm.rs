//! Deployed on real nodes with Helm: `helm install` of the chart
//! `deploy/helm/ferrolb`, with the pool given as a value, brings ferrolb up
//! and a LoadBalancer Service gets an address the client reaches; `helm
//! upgrade` of a value both pod templates carry rolls the controller
//! Deployment and the speaker DaemonSet, both rollouts complete, the
//! membership key the chart generated stays, and the client loses no
//! request. What both binaries serve on `/metrics` there holds every metric
//! the alerting rules and the README's metrics table name, and the table
//! names every metric they serve.

use std::collections::BTreeSet;
use std::process::Command;
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
    // A Service naming a pool that does not exist: counted as a failure,
    // so the failure counter has a series to scrape.
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: nowhere, namespace: default, \
         annotations: {ferrolb.io/address-pool: nowhere}}\n\
         spec: {type: LoadBalancer, ports: [{port: 80}]}\n",
    );
    let ip = cluster.deploy_backend("web", 2, &[], "Cluster");
    let body = cluster.curl_until(&ip, Duration::from_secs(30), |_| true);
    println!("helm install: web got {ip}; the client reaches it: {body}");

    metrics_match_rules_and_readme(&cluster);

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
        // Annotations are strings; the values schema refuses a number.
        "--set-string",
        &format!("controller.podAnnotations.{REVISION}=2"),
        "--set-string",
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

/// The metric names in `text`: of each sample, and each `# TYPE` family with
/// its counter's `_total` (OpenMetrics names the family without it).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(family) = line.strip_prefix("# TYPE ") {
            let mut words = family.split_whitespace();
            if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                names.insert(name.to_owned());
                if kind == "counter" {
                    names.insert(format!("{}_total", name.trim_end_matches("_total")));
                }
            }
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            if !name.is_empty() {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Every `ferrolb_…` name in `text`.
fn ferrolb_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("ferrolb_"))
        .map(str::to_owned)
        .collect()
}

/// What a speaker and every controller replica serve, scraped from their
/// nodes: the `ferrolb_` metric names.
fn served(cluster: &RealCluster) -> BTreeSet<String> {
    let scrape = |node: &str, url: &str| {
        let netns = &cluster
            .nodes
            .iter()
            .find(|n| n.name == node)
            .unwrap_or_else(|| panic!("no node {node}"))
            .netns;
        let out = Command::new("ip")
            .args(["netns", "exec", netns, "curl", "-sSf", "-m", "5", url])
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl {url} on {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut served = metric_names(&scrape(
        &cluster.nodes[0].name,
        "http://127.0.0.1:7473/metrics",
    ));
    let controllers = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "ferrolb-system",
        "-l",
        "app.kubernetes.io/component=controller",
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName} {.status.podIP}{\"\\n\"}{end}",
    ]);
    for line in controllers.lines().filter(|l| !l.is_empty()) {
        let (node, ip) = line.split_once(' ').expect("node and pod IP");
        served.extend(metric_names(&scrape(
            node,
            &format!("http://{ip}:7472/metrics"),
        )));
    }
    served.retain(|n| n.starts_with("ferrolb_"));
    served
}

/// Compares what the binaries serve with the rules file and the README's
/// metrics table.
fn metrics_match_rules_and_readme(cluster: &RealCluster) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = std::fs::read_to_string(chart().join("rules/ferrolb.rules.yaml")).expect("rules");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let table = readme
        .split("## Metrics and alerts")
        .nth(1)
        .and_then(|s| s.split("The alerting rules").next())
        .expect("the README's metrics table");
    let named: BTreeSet<String> = ferrolb_names(&rules)
        .into_iter()
        .chain(ferrolb_names(table))
        .collect();
    // A labelled family shows once it has a series: scrape until the
    // failure counted above has reached the leader's metrics.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let served = loop {
        let served = served(cluster);
        if named.is_subset(&served) || std::time::Instant::now() > deadline {
            break served;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("served: {served:?}");
    let missing: Vec<_> = named.difference(&served).collect();
    assert!(missing.is_empty(), "named but not served: {missing:?}");
    // Every served family is in the table (a counter's family name without
    // `_total` is not a separate metric).
    let in_table = ferrolb_names(table);
    let unlisted: Vec<_> = served
        .iter()
        .filter(|n| !in_table.contains(*n) && !in_table.contains(&format!("{n}_total")))
        .collect();
    assert!(
        unlisted.is_empty(),
        "served but not in the README: {unlisted:?}"
    );
}
