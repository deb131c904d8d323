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
    ferrolb_e2e::cluster::install_crds(&cp);
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
        ("watch", "servicel2statuses.ferrolb.io", None),
        ("create", "servicel2statuses.ferrolb.io", Some("default")),
        ("patch", "servicel2statuses.ferrolb.io", Some("default")),
        ("delete", "servicel2statuses.ferrolb.io", Some("default")),
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
    assert!(!can(
        "controller",
        "patch",
        "servicel2statuses.ferrolb.io",
        Some("default")
    ));
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

/// A speaker's token names its node; the admission policy the manifest
/// ships lets it create and update only the `ServiceL2Status` objects that
/// name that node, and still remove any (an owner that died cannot remove
/// its own).
#[tokio::test]
async fn a_speaker_writes_only_status_objects_naming_its_own_node() {
    let cp = ControlPlane::own().await;
    cp.kubectl(&["create", "namespace", "ferrolb-system"]);
    cp.kubectl(&["apply", "--server-side", "-f", &manifest()]);
    ferrolb_e2e::cluster::install_crds(&cp);
    let nodes = kube::Api::<k8s_openapi::api::core::v1::Node>::all(cp.client().await);
    for (name, address) in [("node-1", "198.51.100.1"), ("node-2", "198.51.100.2")] {
        nodes
            .create(
                &Default::default(),
                &ferrolb_e2e::objects::node(name, address),
            )
            .await
            .expect("register node");
    }
    let token = cp.kubectl(&[
        "create",
        "token",
        "speaker",
        "-n",
        "ferrolb-system",
        "--bound-object-kind",
        "Node",
        "--bound-object-name",
        "node-1",
    ]);
    // What the speaker of node-1 applies, naming `node` in the status and
    // in the label.
    let apply_as_speaker = |status_node: &str, label_node: &str| {
        let object = format!(
            r#"{{"apiVersion":"ferrolb.io/v1alpha1","kind":"ServiceL2Status","metadata":{{"name":"web","namespace":"default","labels":{{"ferrolb.io/node":"{label_node}"}}}},"status":{{"node":"{status_node}","interfaces":["eth0"],"addresses":["198.51.100.10"]}}}}"#
        );
        let mut child = cp
            .kubectl_command()
            .args(["--token", token.trim(), "--user="])
            .args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager",
                "ferrolb-speaker",
                "-f",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(object.as_bytes())
            .expect("write object");
        let out = child.wait_with_output().expect("kubectl apply");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let denied = "a speaker writes only status objects naming its own node (\"node-1\")";
    for (status, label) in [
        ("node-2", "node-2"),
        ("node-1", "node-2"),
        ("node-2", "node-1"),
    ] {
        let (ok, said) = apply_as_speaker(status, label);
        assert!(!ok && said.contains(denied), "{status}/{label}: {said}");
    }
    let (ok, said) = apply_as_speaker("node-1", "node-1");
    assert!(ok, "{said}");
    // node-2's speaker (here: the admin) takes the object over; node-1's
    // takes it back, and may remove it.
    let admin_apply = cp.kubectl(&[
        "label",
        "servicel2status",
        "-n",
        "default",
        "web",
        "ferrolb.io/node=node-2",
        "--overwrite",
    ]);
    assert!(admin_apply.contains("labeled"), "{admin_apply}");
    let (ok, said) = apply_as_speaker("node-1", "node-1");
    assert!(ok, "{said}");
    let (ok, said) = apply_as_speaker("node-2", "node-2");
    assert!(!ok && said.contains(denied), "{said}");
    let removed = cp
        .kubectl_command()
        .args(["--token", token.trim(), "--user="])
        .args(["delete", "servicel2status", "-n", "default", "web"])
        .output()
        .expect("kubectl delete");
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
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
