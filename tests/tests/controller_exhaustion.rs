//! A full pool leaves the next Service `<pending>` with an `AllocationFailed`
//! event saying why; an address comes back when its Service is deleted or
//! stops being ferrolb's (type ClusterIP), and the pending Service then gets
//! it.

mod controller_support;

use std::collections::BTreeSet;
use std::net::IpAddr;

use controller_support::{
    Controller, PATIENCE, configured, create_all, external_ips, service_events, wait_allocated,
    wait_event,
};
use ferrolb_e2e::objects::{LoadBalancer, namespace};
use ferrolb_e2e::{ControlPlane, wait_for};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

const CONFIG: &str = "\
address-pools:
- name: tiny
  protocol: layer2
  addresses:
  - 198.51.100.10-198.51.100.12
";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}

#[tokio::test]
async fn a_full_pool_leaves_services_pending_until_an_address_is_freed() {
    let (cp, client) = configured(CONFIG).await;
    let controller = Controller::start(&cp, "exhaustion");
    let ns = namespace(&client, "full").await;
    let key = |name: &str| format!("{ns}/{name}");
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);

    create_all(
        &client,
        &ns,
        ["a", "b", "c"]
            .iter()
            .map(|n| LoadBalancer::new(n).build())
            .collect(),
    )
    .await;
    let mut held = BTreeSet::new();
    for name in ["a", "b", "c"] {
        let got = wait_allocated(&cp, &key(name)).await;
        assert_eq!(got.len(), 1, "{name}: {got:?}");
        held.insert(got[0]);
    }
    assert_eq!(
        held,
        BTreeSet::from([
            ip("198.51.100.10"),
            ip("198.51.100.11"),
            ip("198.51.100.12")
        ])
    );

    // The fourth finds the pool full; so does one naming the pool.
    create_all(
        &client,
        &ns,
        vec![
            LoadBalancer::new("waiting").build(),
            LoadBalancer::new("waiting-for-tiny")
                .annotation("ferrolb.io/address-pool", "tiny")
                .build(),
        ],
    )
    .await;
    let failed = wait_event(
        &cp,
        &key("waiting"),
        "AllocationFailed",
        "no auto-assign pool has a free IPv4 address",
    )
    .await;
    assert_eq!(failed.type_, "Warning");
    wait_event(
        &cp,
        &key("waiting-for-tiny"),
        "AllocationFailed",
        "pool tiny has no free IPv4 address",
    )
    .await;
    let shown = external_ips(&cp);
    assert_eq!(shown[&key("waiting")], "<pending>");
    assert_eq!(shown[&key("waiting-for-tiny")], "<pending>");
    let described = cp.kubectl(&["describe", "svc", "waiting", "-n", &ns]);
    assert!(
        described.contains("AllocationFailed")
            && described.contains("no auto-assign pool has a free IPv4 address"),
        "kubectl describe svc:\n{described}"
    );
    controller
        .wait_metric(
            "ferrolb_pool_addresses_available{pool=\"tiny\",family=\"ipv4\"}",
            0.0,
        )
        .await;

    // Deleting b frees its address, and one of the two waiting Services
    // gets it (both may: which one is the controller's choice).
    let b = addr(&cp, &key("b"));
    services
        .delete("b", &DeleteParams::default())
        .await
        .expect("delete b");
    let winner = wait_for(
        "b's address to go to a waiting Service",
        PATIENCE,
        || async {
            let shown = external_ips(&cp);
            let with_b: Vec<&str> = ["waiting", "waiting-for-tiny"]
                .into_iter()
                .filter(|n| shown.get(&key(n)).map(String::as_str) == Some(b.to_string().as_str()))
                .collect();
            match with_b[..] {
                [one] => Ok(one),
                _ => Err(format!("{shown:?}")),
            }
        },
    )
    .await;
    let loser = if winner == "waiting" {
        "waiting-for-tiny"
    } else {
        "waiting"
    };
    let allocated = wait_event(&cp, &key(winner), "IPAllocated", &b.to_string()).await;
    assert_eq!(allocated.message, format!("Assigned {b} from pool tiny"));
    assert_eq!(external_ips(&cp)[&key(loser)], "<pending>");

    // c becomes a ClusterIP Service: its address is no longer shown, and
    // the last waiting Service takes it.
    let c = addr(&cp, &key("c"));
    services
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "type": "ClusterIP" } })),
        )
        .await
        .expect("make c a ClusterIP Service");
    wait_for(
        "c's address to go to the last waiting Service",
        PATIENCE,
        || async {
            let shown = external_ips(&cp);
            if shown.get(&key(loser)).map(String::as_str) == Some(c.to_string().as_str()) {
                Ok(())
            } else {
                Err(format!("{shown:?}"))
            }
        },
    )
    .await;
    let shown = external_ips(&cp);
    assert_eq!(
        shown[&key("c")],
        "<none>",
        "a ClusterIP Service shows no external address"
    );
    let c_status = services.get_status("c").await.expect("get c");
    assert!(
        c_status
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .is_none_or(|i| i.is_empty()),
        "c keeps an ingress"
    );

    // a keeps its address throughout, and nothing moved.
    assert_eq!(
        shown[&key("a")].parse::<IpAddr>().ok(),
        held.iter().find(|ip| **ip != b && **ip != c).copied()
    );
    for name in ["a", "waiting", "waiting-for-tiny"] {
        assert!(
            service_events(&cp, &key(name), "IPChanged").is_empty(),
            "{name} moved"
        );
    }
}

/// The single address `kubectl get svc` shows for Service `key`.
fn addr(cp: &ControlPlane, key: &str) -> IpAddr {
    let cell = external_ips(cp).remove(key).unwrap_or_default();
    cell.parse()
        .unwrap_or_else(|_| panic!("{key} shows {cell:?}, not one address"))
}

#[tokio::test]
async fn a_service_of_another_class_is_never_given_an_address() {
    let (cp, client) = configured(CONFIG).await;
    let _controller = Controller::start(&cp, "classes");
    let ns = namespace(&client, "class").await;
    let key = |name: &str| format!("{ns}/{name}");
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);

    create_all(
        &client,
        &ns,
        vec![
            LoadBalancer::new("theirs")
                .class("example.com/other")
                .build(),
            LoadBalancer::new("ours").class("ferrolb.io/layer2").build(),
        ],
    )
    .await;
    assert_eq!(
        wait_allocated(&cp, &key("ours")).await,
        vec![ip("198.51.100.10")]
    );

    // The API server forbids changing the class of a LoadBalancer Service;
    // a Service changes class by leaving LoadBalancer first. That frees its
    // address, which the other class's Service never takes.
    let refused = services
        .patch(
            "ours",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({ "spec": { "loadBalancerClass": "example.com/other" } }),
            ),
        )
        .await;
    assert!(
        refused.is_err(),
        "the API server changed a class: {refused:?}"
    );
    services
        .patch(
            "ours",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({ "spec": { "type": "ClusterIP", "loadBalancerClass": null } }),
            ),
        )
        .await
        .expect("make ours a ClusterIP Service");
    services
        .patch(
            "ours",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "spec": { "type": "LoadBalancer", "loadBalancerClass": "example.com/other" }
            })),
        )
        .await
        .expect("make ours a LoadBalancer of another class");

    // A new ferrolb Service gets the lowest address again: .10 was freed.
    create_all(&client, &ns, vec![LoadBalancer::new("next").build()]).await;
    assert_eq!(
        wait_allocated(&cp, &key("next")).await,
        vec![ip("198.51.100.10")]
    );
    let shown = external_ips(&cp);
    assert_eq!(shown[&key("theirs")], "<pending>");
    assert_eq!(shown[&key("ours")], "<pending>");
    let theirs = format!("Service {}", key("theirs"));
    assert!(
        controller_support::events(&cp)
            .iter()
            .all(|e| e.object != theirs),
        "ferrolb spoke about a Service of another class"
    );
}

const DUAL: &str = "\
address-pools:
- name: dual
  protocol: layer2
  addresses:
  - 198.51.100.10-198.51.100.11
  - 2001:db8:2::10/128
";

#[tokio::test]
async fn a_prefer_dual_stack_service_gains_its_second_family_when_one_is_freed() {
    let (cp, client) = configured(DUAL).await;
    let _controller = Controller::start(&cp, "dual");
    let ns = namespace(&client, "dual").await;
    let key = |name: &str| format!("{ns}/{name}");
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);

    // The pool's only IPv6 address is taken: a PreferDualStack Service
    // settles for IPv4 alone.
    create_all(
        &client,
        &ns,
        vec![
            LoadBalancer::new("v6")
                .families("SingleStack", &["IPv6"])
                .build(),
        ],
    )
    .await;
    assert_eq!(
        wait_allocated(&cp, &key("v6")).await,
        vec![ip("2001:db8:2::10")]
    );
    create_all(
        &client,
        &ns,
        vec![
            LoadBalancer::new("prefer")
                .families("PreferDualStack", &["IPv4", "IPv6"])
                .build(),
        ],
    )
    .await;
    assert_eq!(
        wait_allocated(&cp, &key("prefer")).await,
        vec![ip("198.51.100.10")]
    );

    // Once it is free the Service gains it and keeps its IPv4 address: an
    // address added, none taken away, so no Warning.
    services
        .delete("v6", &DeleteParams::default())
        .await
        .expect("delete v6");
    wait_for("prefer to gain IPv6", PATIENCE, || async {
        let shown = external_ips(&cp);
        let ips =
            controller_support::addresses(shown.get(&key("prefer")).map_or("", String::as_str));
        if ips == [ip("198.51.100.10"), ip("2001:db8:2::10")] {
            Ok(())
        } else {
            Err(format!("{shown:?}"))
        }
    })
    .await;
    wait_event(
        &cp,
        &key("prefer"),
        "IPAllocated",
        "Assigned 2001:db8:2::10 from pool dual",
    )
    .await;
    let warnings: Vec<_> = controller_support::events(&cp)
        .into_iter()
        .filter(|e| e.object == format!("Service {}", key("prefer")) && e.type_ == "Warning")
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}
