//! The controller needs no more than deploy/ferrolb.yaml grants it: two
//! replicas run with the `controller` ServiceAccount's own token (not the
//! admin's) and make every kind of call they make in a cluster — the Lease
//! (create, renew, hand over), the ConfigMap watch and its last-good copy
//! (create, then patch), the Service watch and status patches, events on
//! Services and on the ConfigMap — and none is refused.

mod controller_support;

use std::time::Duration;

use controller_support::{Controller, create_all, wait_allocated, wait_event};
use ferrolb_e2e::objects::{LoadBalancer, apply_config, namespace};
use ferrolb_e2e::{ControlPlane, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

const CONFIG: &str = "\
address-pools:
- name: lan
  protocol: layer2
  addresses:
  - 198.51.100.10-198.51.100.20
";
const WIDER: &str = "\
address-pools:
- name: lan
  protocol: layer2
  addresses:
  - 198.51.100.10-198.51.100.30
";

/// A copy of the admin kubeconfig that authenticates with `token` instead.
fn kubeconfig_with_token(cp: &ControlPlane, token: &str) -> std::path::PathBuf {
    let admin = std::fs::read_to_string(&cp.kubeconfig).expect("read kubeconfig");
    let text: String = admin
        .lines()
        .map(|line| match line.split_once("token:") {
            Some((indent, _)) => format!("{indent}token: {token}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    assert!(text.contains(token), "no token line in the kubeconfig");
    let path = cp.kubeconfig.with_file_name("controller-sa.kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// Whether a log shows a request the API server refused for want of a
/// permission.
fn refused(log: &str) -> Option<&str> {
    log.lines()
        .find(|l| l.contains("forbidden") || l.contains("Forbidden"))
}

#[tokio::test]
async fn the_controller_does_all_it_does_with_its_own_service_account() {
    let cp = ControlPlane::own().await;
    let client = cp.client().await;
    cp.kubectl(&["create", "namespace", "ferrolb-system"]);
    let manifest = format!("{}/../deploy/ferrolb.yaml", env!("CARGO_MANIFEST_DIR"));
    cp.kubectl(&["apply", "--server-side", "-f", &manifest]);
    apply_config(&client, CONFIG).await;
    let token = cp.kubectl(&[
        "create",
        "token",
        "controller",
        "-n",
        "ferrolb-system",
        "--duration",
        "1h",
    ]);
    let as_controller = ControlPlane {
        kubeconfig: kubeconfig_with_token(&cp, token.trim()),
        kubectl: cp.kubectl.clone(),
    };
    // The token really is the ServiceAccount's.
    let whoami = as_controller.kubectl(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(whoami, "system:serviceaccount:ferrolb-system:controller");

    let mut replicas = [
        Controller::start(&as_controller, "sa-a"),
        Controller::start(&as_controller, "sa-b"),
    ];
    let leader = wait_for("a leader", Duration::from_secs(60), || async {
        match [replicas[0].leads().await, replicas[1].leads().await] {
            [Some(true), _] => Ok(0),
            [_, Some(true)] => Ok(1),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Services: watch, status patch, an event on the Service.
    let ns = namespace(&client, "privilege").await;
    create_all(&client, &ns, vec![LoadBalancer::new("web").build()]).await;
    wait_allocated(&cp, &format!("{ns}/web")).await;
    wait_event(&cp, &format!("{ns}/web"), "IPAllocated", "198.51.100.10").await;

    // The ConfigMap: its last-good copy created, then patched; a refused
    // config reported on the ConfigMap.
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "ferrolb-system");
    let copy = |wanted: &'static str| {
        let config_maps = config_maps.clone();
        async move {
            let copy = config_maps
                .get_opt("ferrolb-config-last-good")
                .await
                .map_err(|e| e.to_string())?;
            match copy
                .and_then(|c| c.data)
                .and_then(|d| d.get("config").cloned())
            {
                Some(text) if text == wanted => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    };
    wait_for("the last-good copy", Duration::from_secs(60), || {
        copy(CONFIG)
    })
    .await;
    apply_config(&client, WIDER).await;
    wait_for(
        "the last-good copy updated",
        Duration::from_secs(60),
        || copy(WIDER),
    )
    .await;
    apply_config(&client, "address-pools: [").await;
    wait_for(
        "a ConfigRejected event",
        Duration::from_secs(60),
        || async {
            let events = cp.kubectl(&["get", "events", "-n", "ferrolb-system"]);
            if events.contains("ConfigRejected") {
                Ok(())
            } else {
                Err(events)
            }
        },
    )
    .await;

    // The Lease: handed over on SIGTERM, taken by the other replica.
    assert!(replicas[leader].daemon.terminate(), "a clean stop exits 0");
    let log = replicas[leader].daemon.output();
    assert!(log.contains("released the lease"), "{log}");
    let standby = 1 - leader;
    wait_for("the standby to lead", Duration::from_secs(30), || async {
        match replicas[standby].leads().await {
            Some(true) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    create_all(&client, &ns, vec![LoadBalancer::new("second").build()]).await;
    wait_allocated(&cp, &format!("{ns}/second")).await;

    for r in &replicas {
        let log = r.daemon.output();
        assert_eq!(refused(&log), None, "{} was refused a call", r.identity);
    }
    replicas[standby].kill();
}
