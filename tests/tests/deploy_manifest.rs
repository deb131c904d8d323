//! `deploy/ferrolb.yaml` as an operator applies it: the API server accepts
//! every object, and the RBAC it grants covers every call the controller and
//! the speaker make, and nothing cluster-wide beyond what they read.

use ferrolb_e2e::ControlPlane;

fn manifest() -> String {
    format!("{}/../deploy/ferrolb.yaml", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn the_api_server_accepts_the_manifest_and_its_rbac_covers_what_ferrolb_does() {
    let cp = ControlPlane::own().await;
    // Namespaced objects need their namespace to exist even for a dry run.
    cp.kubectl(&["create", "namespace", "ferrolb-system"]);
    let applied = cp.kubectl(&["apply", "--server-side", "-f", &manifest()]);
    assert!(
        applied.contains("daemonset.apps/speaker serverside-applied"),
        "{applied}"
    );

    let can = |who: &str, verb: &str, resource: &str, namespace: Option<&str>| {
        let user = format!("system:serviceaccount:ferrolb-system:{who}");
        // `configmaps/<name>` names one object; `services/status` is a
        // subresource.
        let named = resource.starts_with("configmaps/");
        let (resource, subresource) = match resource.split_once('/') {
            Some(_) if named => (resource, ""),
            Some(split) => split,
            None => (resource, ""),
        };
        let mut args = vec!["auth", "can-i", verb, resource, "--as", &user];
        if !subresource.is_empty() {
            args.extend(["--subresource", subresource]);
        }
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        let out = cp
            .kubectl_command()
            .args(&args)
            .output()
            .expect("kubectl auth can-i");
        // "no" exits 1 as an error does: only the answer tells them apart,
        // and a check that could not be made is a failure, not a "no".
        match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => true,
            "no" => false,
            other => panic!(
                "kubectl {args:?} answered {other:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    };
    let ns = Some("ferrolb-system");
    for (verb, resource, namespace) in [
        ("watch", "services", None),
        ("watch", "namespaces", None),
        ("patch", "services/status", Some("default")),
        ("create", "events.events.k8s.io", Some("default")),
        ("watch", "configmaps", ns),
        ("update", "leases.coordination.k8s.io", ns),
        ("create", "leases.coordination.k8s.io", ns),
        ("patch", "events.events.k8s.io", Some("default")),
        ("create", "configmaps", ns),
    ] {
        assert!(
            can("controller", verb, resource, namespace),
            "controller cannot {verb} {resource}"
        );
    }
    for (verb, resource, namespace) in [
        ("watch", "services", None),
        ("watch", "nodes", None),
        ("get", "nodes", None),
        ("watch", "namespaces", None),
        ("watch", "endpointslices.discovery.k8s.io", None),
        ("create", "events.events.k8s.io", Some("default")),
        ("watch", "configmaps", ns),
        ("patch", "leases.coordination.k8s.io", ns),
        ("delete", "leases.coordination.k8s.io", ns),
    ] {
        assert!(
            can("speaker", verb, resource, namespace),
            "speaker cannot {verb} {resource}"
        );
    }
    // Least privilege: no writes outside what each needs.
    assert!(!can("speaker", "patch", "services/status", Some("default")));
    assert!(!can("speaker", "patch", "configmaps", ns));
    // The membership key reaches the speaker through its environment
    // (secretKeyRef): it needs no access to Secrets at all.
    assert!(!can("speaker", "get", "secrets", ns));
    assert!(!can("controller", "update", "nodes", None));
    // Namespaces are read for their labels, never written.
    assert!(!can("controller", "patch", "namespaces", None));
    assert!(!can("speaker", "patch", "namespaces", None));
    // Status is patched (with the resourceVersion it was planned from),
    // never replaced; the only ConfigMap it writes is its last-good copy.
    assert!(!can(
        "controller",
        "update",
        "services/status",
        Some("default")
    ));
    assert!(can(
        "controller",
        "patch",
        "configmaps/ferrolb-config-last-good",
        ns
    ));
    assert!(!can("controller", "patch", "configmaps/ferrolb-config", ns));
    assert!(!can("controller", "watch", "configmaps", Some("default")));
    assert!(!can(
        "speaker",
        "update",
        "leases.coordination.k8s.io",
        Some("kube-node-lease")
    ));
}

/// Both workloads run under the container runtime's default seccomp
/// profile.
#[test]
fn both_workloads_run_with_the_default_seccomp_profile() {
    use serde::Deserialize;
    let text = std::fs::read_to_string(manifest()).expect("read deploy/ferrolb.yaml");
    let workloads: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_json::Value::deserialize(doc).expect("YAML document"))
        .filter(|doc| doc["kind"] == "Deployment" || doc["kind"] == "DaemonSet")
        .collect();
    assert_eq!(workloads.len(), 2);
    for workload in &workloads {
        assert_eq!(
            workload["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault",
            "{}",
            workload["metadata"]["name"]
        );
    }
}
