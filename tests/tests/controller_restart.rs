//! The controller's state lives in the Services' statuses: killing and
//! restarting it changes no address, even when pending Services are waiting
//! for one (MetalLB once let a pending Service take an allocated one's address
//! on restart). A refused config changes nothing and says so on the ConfigMap
//! and in `/metrics`; a valid one that shrinks a pool moves the Services
//! outside it, with a Warning, and `check-config --preview` says so first.

mod controller_support;

use std::collections::BTreeMap;
use std::net::IpAddr;

use controller_support::{
    Controller, EventRow, PATIENCE, configured, create_all, events, external_ips, temp_file,
    wait_allocated, wait_event,
};
use ferrolb_e2e::daemons::binary;
use ferrolb_e2e::objects::{LoadBalancer, apply_config, namespace};
use ferrolb_e2e::{ControlPlane, wait_for};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};

const IPS: &str = "ferrolb.io/loadBalancerIPs";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}

const FULL: &str = "\
address-pools:
- name: small
  protocol: layer2
  addresses:
  - 198.51.100.10-198.51.100.13
";

#[tokio::test]
async fn a_restarted_controller_moves_no_address_even_with_services_waiting() {
    let (cp, client) = configured(FULL).await;
    let mut controller = Controller::start(&cp, "restart");
    let ns = namespace(&client, "restart").await;
    let key = |name: &str| format!("{ns}/{name}");

    // The oldest Service, first in every list, cannot be served at first
    // (its request does not parse); it will be waiting by the time of the
    // crash, older than every Service holding an address.
    create_all(
        &client,
        &ns,
        vec![
            LoadBalancer::new("aaa-oldest")
                .annotation(IPS, "not-an-ip")
                .build(),
        ],
    )
    .await;
    wait_event(&cp, &key("aaa-oldest"), "AllocationFailed", "not-an-ip").await;

    // Fill the pool, then leave Services waiting: one automatic, and one
    // asking for an address another Service holds.
    create_all(
        &client,
        &ns,
        (1..=4)
            .map(|i| LoadBalancer::new(&format!("held-{i}")).build())
            .collect(),
    )
    .await;
    let mut before: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for i in 1..=4 {
        let k = key(&format!("held-{i}"));
        before.insert(k.clone(), wait_allocated(&cp, &k).await);
    }
    let contested = before[&key("held-1")][0].to_string();
    create_all(
        &client,
        &ns,
        vec![
            LoadBalancer::new("waiting").build(),
            LoadBalancer::new("wants-held-1")
                .annotation("ferrolb.io/loadBalancerIPs", &contested)
                .build(),
        ],
    )
    .await;
    wait_event(
        &cp,
        &key("waiting"),
        "AllocationFailed",
        "no auto-assign pool has a free",
    )
    .await;
    wait_event(
        &cp,
        &key("wants-held-1"),
        "AllocationFailed",
        "is in use by",
    )
    .await;
    Api::<Service>::namespaced(client.clone(), &ns)
        .patch(
            "aaa-oldest",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "metadata": { "annotations": { IPS: null } } })),
        )
        .await
        .expect("fix aaa-oldest's request");
    wait_event(
        &cp,
        &key("aaa-oldest"),
        "AllocationFailed",
        "no auto-assign pool has a free",
    )
    .await;

    // Crash, and while it is down more Services arrive; then it restarts
    // (the same pod name, as the kubelet restarts a crashed container).
    controller.kill();
    create_all(
        &client,
        &ns,
        (1..=3)
            .map(|i| LoadBalancer::new(&format!("arrived-{i}")).build())
            .collect(),
    )
    .await;
    let restarted = Controller::start(&cp, "restart");
    for i in 1..=3 {
        wait_event(
            &cp,
            &key(&format!("arrived-{i}")),
            "AllocationFailed",
            "no auto-assign pool has a free",
        )
        .await;
    }
    restarted
        .wait_metric(
            "ferrolb_pool_addresses_in_use{pool=\"small\",family=\"ipv4\"}",
            4.0,
        )
        .await;
    let after = external_ips(&cp);
    for (k, ips) in &before {
        let shown: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(after[k], shown.join(","), "{k} changed address on restart");
    }
    for name in [
        "waiting",
        "wants-held-1",
        "arrived-1",
        "arrived-2",
        "arrived-3",
    ] {
        assert_eq!(after[&key(name)], "<pending>", "{name} took an address");
    }
    assert!(
        !events(&cp).iter().any(|e| e.reason == "IPChanged"),
        "an address moved"
    );
}

const GOOD: &str = "\
address-pools:
- name: main
  protocol: layer2
  addresses:
  - 198.51.100.10-198.51.100.19
";

const TYPO: &str = "\
address-pools:
- name: main
  protocol: layer2
  adresses:
  - 198.51.100.10-198.51.100.19
";

const OVERLAP: &str = "\
address-pools:
- name: main
  protocol: layer2
  addresses:
  - 198.51.100.10-198.51.100.19
- name: extra
  protocol: layer2
  addresses:
  - 198.51.100.16/28
";

const SHRUNK: &str = "\
address-pools:
- name: main
  protocol: layer2
  addresses:
  - 198.51.100.10-198.51.100.15
";

#[tokio::test]
async fn a_refused_config_keeps_every_address_and_a_shrunk_pool_moves_only_who_is_outside() {
    let (cp, client) = configured(GOOD).await;
    let controller = Controller::start(&cp, "config");
    let ns = namespace(&client, "config").await;
    let key = |name: &str| format!("{ns}/{name}");
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);

    // "high" asks for .18, then stops asking: it keeps what it holds.
    create_all(
        &client,
        &ns,
        vec![
            LoadBalancer::new("low")
                .annotation(IPS, "198.51.100.10")
                .build(),
            LoadBalancer::new("high")
                .annotation(IPS, "198.51.100.18")
                .build(),
        ],
    )
    .await;
    assert_eq!(
        wait_allocated(&cp, &key("low")).await,
        vec![ip("198.51.100.10")]
    );
    assert_eq!(
        wait_allocated(&cp, &key("high")).await,
        vec![ip("198.51.100.18")]
    );
    services
        .patch(
            "high",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "metadata": { "annotations": { IPS: null } } })),
        )
        .await
        .expect("drop high's request");
    create_all(
        &client,
        &ns,
        vec![
            LoadBalancer::new("a1").build(),
            LoadBalancer::new("a2").build(),
        ],
    )
    .await;
    let mut autos = [
        wait_allocated(&cp, &key("a1")).await[0],
        wait_allocated(&cp, &key("a2")).await[0],
    ];
    autos.sort();
    assert_eq!(autos, [ip("198.51.100.11"), ip("198.51.100.12")]);

    // A typo: refused, named on the ConfigMap, flagged in /metrics; the last
    // good config keeps serving, new Services included.
    apply_config(&client, TYPO).await;
    let rejected = wait_config_event(&cp, "unknown field `adresses`").await;
    assert_eq!(rejected.type_, "Warning");
    controller.wait_metric("ferrolb_config_stale", 1.0).await;
    create_all(&client, &ns, vec![LoadBalancer::new("during-typo").build()]).await;
    assert_eq!(
        wait_allocated(&cp, &key("during-typo")).await,
        vec![ip("198.51.100.13")],
        "the last good config serves"
    );
    let before = external_ips(&cp);

    // Overlapping ranges: refused the same way, and nothing moves.
    apply_config(&client, OVERLAP).await;
    wait_config_event(&cp, "overlaps 198.51.100.10-198.51.100.19 of pool \"main\"").await;
    controller
        .wait_metric("ferrolb_config_rejections_total", 2.0)
        .await;
    controller.wait_metric("ferrolb_config_stale", 1.0).await;
    assert_eq!(
        external_ips(&cp),
        before,
        "an address changed under a refused config"
    );

    // Shrinking the pool to .10–.15: the preview names the one Service that
    // would move, and applies nothing.
    let file = temp_file("shrunk", SHRUNK);
    let out = std::process::Command::new(binary("ferrolb-controller"))
        .arg("check-config")
        .arg("--preview")
        .arg(&file)
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .expect("run check-config");
    let _ = std::fs::remove_file(&file);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<&str> = printed
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(&format!("{ns}/")))
        .collect();
    assert_eq!(
        listed,
        vec![format!("{ns}/high: moves 198.51.100.18 -> 198.51.100.14")],
        "check-config --preview printed:\n{printed}"
    );
    assert!(printed.contains("Applying it would change:"), "{printed}");
    assert_eq!(external_ips(&cp), before, "the preview changed an address");

    // Applying it: the config is no longer stale, "high" moves where the
    // preview said with a Warning naming both addresses, nobody else moves.
    apply_config(&client, SHRUNK).await;
    controller.wait_metric("ferrolb_config_stale", 0.0).await;
    let changed = wait_event(&cp, &key("high"), "IPChanged", "198.51.100.14").await;
    assert_eq!(changed.type_, "Warning");
    assert!(
        changed
            .message
            .starts_with("Address changed from 198.51.100.18 to 198.51.100.14"),
        "{}",
        changed.message
    );
    let after = wait_for("high to show its new address", PATIENCE, || async {
        let shown = external_ips(&cp);
        if shown[&key("high")] == "198.51.100.14" {
            Ok(shown)
        } else {
            Err(format!("{shown:?}"))
        }
    })
    .await;
    for (k, shown) in &before {
        if *k != key("high") {
            assert_eq!(&after[k], shown, "{k} moved");
        }
    }
    let described = cp.kubectl(&["describe", "svc", "high", "-n", &ns]);
    assert!(
        described.contains("IPChanged") && described.contains("198.51.100.18 to 198.51.100.14"),
        "kubectl describe svc high:\n{described}"
    );
    controller
        .wait_metric("ferrolb_pool_addresses{pool=\"main\",family=\"ipv4\"}", 6.0)
        .await;
}

/// Waits for a `ConfigRejected` event on ferrolb's ConfigMap whose message
/// contains `needle`.
async fn wait_config_event(cp: &ControlPlane, needle: &str) -> EventRow {
    wait_for(
        &format!("a ConfigRejected event saying {needle:?}"),
        PATIENCE,
        || async {
            let on_config_map: Vec<EventRow> = events(cp)
                .into_iter()
                .filter(|e| e.object == "ConfigMap ferrolb-system/ferrolb-config")
                .collect();
            on_config_map
                .iter()
                .find(|e| e.reason == "ConfigRejected" && e.message.contains(needle))
                .cloned()
                .ok_or_else(|| format!("{on_config_map:?}"))
        },
    )
    .await
}
