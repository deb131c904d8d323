//! The Helm chart `deploy/helm/ferrolb` as an operator uses it, checked by
//! the real `helm` client: `helm lint` passes; what `helm template` renders,
//! with its defaults and with every value set, the API server accepts (a
//! server-side dry run); the values land where they are meant to; its pools
//! are a config ferrolb accepts; its PrometheusRule carries the rules file
//! unchanged; a mistyped value is refused, naming it.

use ferrolb_e2e::ControlPlane;
use ferrolb_e2e::control_plane::unique;
use ferrolb_e2e::helm::{chart, helm, helm_ok, pipe_ok};
use serde::Deserialize;
use serde_json::{Value, json};

/// Every value the chart offers, set away from its default.
const VALUES: &str = r#"
configInline:
  address-pools:
  - name: lan
    protocol: layer2
    addresses: [198.51.100.10-198.51.100.20, 2001:db8:1::/120]
image: {repository: registry.example/ferrolb, tag: "9.9.9", pullPolicy: Always}
imagePullSecrets: [{name: registry}]
memberlist: {secretName: lan-key, port: 7947}
controller:
  replicas: 3
  resources: {requests: {cpu: 20m, memory: 40Mi}, limits: {memory: 100Mi}}
  nodeSelector: {kubernetes.io/os: linux}
  tolerations: [{key: dedicated, operator: Equal, value: lb, effect: NoSchedule}]
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 1
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector: {matchLabels: {app.kubernetes.io/component: controller}}
  podAnnotations: {example.com/revision: "2"}
  env: [{name: RUST_LOG, value: debug}]
speaker:
  resources: {requests: {cpu: 5m, memory: 20Mi}, limits: {memory: 64Mi}}
  nodeSelector: {example.com/lan: "true"}
  tolerations: [{operator: Exists}]
  podAnnotations: {example.com/revision: "2"}
  env: [{name: RUST_LOG, value: info}]
  terminationGracePeriodSeconds: 20
metrics:
  controllerPort: 9472
  speakerPort: 9473
  serviceMonitor: {enabled: true, interval: 15s, labels: {release: prometheus}}
  prometheusRule: {enabled: true, labels: {release: prometheus}}
"#;

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("YAML document"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {container}"))
}

/// A server-side dry run of `docs` in namespace `ns`: every object is
/// accepted.
fn dry_run(cp: &ControlPlane, ns: &str, docs: &[Value]) -> String {
    let input = docs
        .iter()
        .map(|d| serde_json::to_string(d).expect("JSON"))
        .collect::<Vec<_>>()
        .join("\n---\n");
    let mut cmd = cp.kubectl_command();
    cmd.args(["apply", "--dry-run=server", "-n", ns, "-f", "-"]);
    pipe_ok(cmd, &input)
}

#[tokio::test]
async fn the_chart_lints_and_the_api_server_accepts_what_it_renders() {
    let values = std::env::temp_dir().join(unique("ferrolb-values") + ".yaml");
    std::fs::write(&values, VALUES).expect("write values");
    let values_arg = values.to_str().expect("utf-8 path");
    let chart = chart();
    let chart = chart.to_str().expect("utf-8 path");

    for extra in [&[][..], &["-f", values_arg][..]] {
        let mut args = vec!["lint", "--strict", chart];
        args.extend(extra);
        let linted = helm_ok(&args);
        assert!(linted.contains("0 chart(s) failed"), "{linted}");
    }

    // The values schema refuses what the templates would silently ignore.
    for (value, refusal) in [
        (
            "controler.replicas=3",
            "additional properties 'controler' not allowed",
        ),
        ("metrics.speakerPort=70000", "/metrics/speakerPort"),
    ] {
        let out = helm()
            .args(["template", "ferrolb", chart, "--set", value])
            .output()
            .expect("run helm");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(refusal),
            "helm template --set {value}: {stderr}"
        );
    }

    let cp = ControlPlane::get().await;
    // Released into a namespace of its own name: nothing may assume
    // ferrolb-system.
    let ns = unique("lb");
    cp.kubectl(&["create", "namespace", &ns]);

    let defaults = documents(&helm_ok(&[
        "template",
        "ferrolb",
        chart,
        "-n",
        &ns,
        "--include-crds",
    ]));
    let accepted = dry_run(cp, &ns, &defaults);
    for object in [
        "deployment.apps/controller created (server dry run)",
        "daemonset.apps/speaker created (server dry run)",
        "secret/ferrolb-memberlist created (server dry run)",
        "customresourcedefinition.apiextensions.k8s.io/servicel2statuses.ferrolb.io created (server dry run)",
        "validatingadmissionpolicy.admissionregistration.k8s.io/ferrolb-speaker-writes-its-own-node created (server dry run)",
    ] {
        assert!(accepted.contains(object), "{accepted}");
    }
    // No pools given: the operator's ConfigMap is not the chart's.
    assert!(!defaults.iter().any(|d| d["kind"] == "ConfigMap"));

    let docs = documents(&helm_ok(&[
        "template", "ferrolb", chart, "-n", &ns, "-f", values_arg,
    ]));
    let (monitoring, plain): (Vec<Value>, Vec<Value>) = docs.into_iter().partition(|d| {
        d["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
    });
    let accepted = dry_run(cp, &ns, &plain);
    for object in [
        "service/controller-metrics created (server dry run)",
        "service/speaker-metrics created (server dry run)",
        "configmap/ferrolb-config created (server dry run)",
        "secret/lan-key created (server dry run)",
    ] {
        assert!(accepted.contains(object), "{accepted}");
    }

    // The pools are a config ferrolb accepts, as written.
    let config = find(&plain, "ConfigMap", "ferrolb-config")["data"]["config"]
        .as_str()
        .expect("config text");
    let pools = ferrolb_config::Config::from_yaml(config)
        .unwrap_or_else(|e| panic!("ferrolb refuses the chart's config: {e}\n{config}"))
        .config
        .pools;
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].name.0, "lan");

    let controller = find(&plain, "Deployment", "controller");
    let speaker = find(&plain, "DaemonSet", "speaker");
    assert_eq!(controller["spec"]["replicas"], 3);
    for (workload, port, values) in [
        (
            controller,
            9472,
            &json!({"nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "lb", "effect": "NoSchedule"}],
            "resources": {"requests": {"cpu": "20m", "memory": "40Mi"}, "limits": {"memory": "100Mi"}},
            "log": "debug"}),
        ),
        (
            speaker,
            9473,
            &json!({"nodeSelector": {"example.com/lan": "true"},
            "tolerations": [{"operator": "Exists"}],
            "resources": {"requests": {"cpu": "5m", "memory": "20Mi"}, "limits": {"memory": "64Mi"}},
            "log": "info"}),
        ),
    ] {
        let pod = &workload["spec"]["template"];
        let container = &pod["spec"]["containers"][0];
        assert_eq!(pod["metadata"]["annotations"]["example.com/revision"], "2");
        assert_eq!(pod["spec"]["nodeSelector"], values["nodeSelector"]);
        assert_eq!(pod["spec"]["tolerations"], values["tolerations"]);
        assert_eq!(
            pod["spec"]["imagePullSecrets"],
            json!([{"name": "registry"}])
        );
        assert_eq!(container["resources"], values["resources"]);
        assert_eq!(container["image"], "registry.example/ferrolb:9.9.9");
        assert_eq!(container["imagePullPolicy"], "Always");
        assert_eq!(env(container, "RUST_LOG")["value"], values["log"]);
        assert_eq!(
            env(container, "FERROLB_METRICS_ADDRESS")["value"],
            format!("0.0.0.0:{port}")
        );
        assert_eq!(
            env(container, "FERROLB_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(container["ports"][0]["containerPort"], port);
        // The ServiceMonitor finds these pods through their metrics Service.
        let component = &pod["metadata"]["labels"]["app.kubernetes.io/component"];
        let name = component.as_str().expect("component label");
        let service = find(&plain, "Service", &format!("{name}-metrics"));
        assert_eq!(service["spec"]["selector"], pod["metadata"]["labels"]);
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
        assert_eq!(container["ports"][0]["name"], "metrics");
        let monitor = find(&monitoring, "ServiceMonitor", &format!("ferrolb-{name}"));
        assert_eq!(
            monitor["spec"]["selector"]["matchLabels"],
            service["metadata"]["labels"]
        );
        assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
        assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    }
    let speaker_container = &speaker["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env(speaker_container, "FERROLB_MEMBER_PORT")["value"],
        "7947"
    );
    assert_eq!(
        env(speaker_container, "FERROLB_MEMBERLIST_SECRET")["valueFrom"]["secretKeyRef"]["name"],
        "lan-key"
    );
    assert_eq!(
        speaker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        20
    );
    // RBAC binds the service accounts of the release's namespace, and the
    // status objects' admission policy knows its speaker by that namespace.
    let binding = find(&plain, "ClusterRoleBinding", "ferrolb:speaker");
    assert_eq!(binding["subjects"][0]["namespace"], ns.as_str());
    let policy = find(
        &plain,
        "ValidatingAdmissionPolicy",
        "ferrolb-speaker-writes-its-own-node",
    );
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        format!("request.userInfo.username == 'system:serviceaccount:{ns}:speaker'")
    );

    // The PrometheusRule is the plain rules file, unchanged.
    let rules_file = std::fs::read_to_string(chart_file("rules/ferrolb.rules.yaml"))
        .expect("read the rules file");
    let rule = find(&monitoring, "PrometheusRule", "ferrolb");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(rule["spec"], documents(&rules_file)[0]);
    let _ = std::fs::remove_file(&values);
}

fn chart_file(path: &str) -> std::path::PathBuf {
    chart().join(path)
}
