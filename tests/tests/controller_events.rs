//! Events inform without flooding: a Service that stays pending gets one
//! `AllocationFailed` event for its cause, however often it is woken (its
//! repeats are counted as the event's series, not written each time), and a
//! note too long for the API server is cut with an ellipsis rather than
//! refused.

mod controller_support;

use controller_support::{Controller, configured, create_all, wait_allocated, wait_event};
use ferrolb_e2e::objects::{LoadBalancer, namespace};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams};

const CONFIG: &str = "\
address-pools:
- name: small
  protocol: layer2
  addresses:
  - 198.51.100.10/32
- name: big
  protocol: layer2
  addresses:
  - 198.51.100.100-198.51.100.150
";

/// The `AllocationFailed` events about Service `name` in `ns`, as the API
/// server stores them.
async fn failures(events: &Api<Event>, name: &str) -> Vec<Event> {
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("AllocationFailed")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

#[tokio::test]
async fn a_pending_service_gets_one_failure_event_however_often_it_is_woken() {
    let (cp, client) = configured(CONFIG).await;
    let controller = Controller::start(&cp, "events");
    let ns = namespace(&client, "events").await;
    let key = |name: &str| format!("{ns}/{name}");
    let small = |name: &str| {
        LoadBalancer::new(name)
            .annotation("ferrolb.io/address-pool", "small")
            .build()
    };

    create_all(&client, &ns, vec![small("holder")]).await;
    wait_allocated(&cp, &key("holder")).await;
    create_all(&client, &ns, vec![small("pending")]).await;
    wait_event(&cp, &key("pending"), "AllocationFailed", "small").await;
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    let first = failures(&events, "pending").await;
    assert_eq!(first.len(), 1, "{first:?}");

    // Every Service deleted from the big pool frees an address and wakes
    // every pending Service: each wake-up finds the same cause.
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    for round in 0..10 {
        let name = format!("churn-{round}");
        create_all(&client, &ns, vec![LoadBalancer::new(&name).build()]).await;
        wait_allocated(&cp, &key(&name)).await;
        services
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete Service");
    }
    // Each delete's wake-up was queued before the next Service was created;
    // a Service created after the last one and allocated shows the
    // controller has caught up with its queue.
    create_all(&client, &ns, vec![LoadBalancer::new("marker").build()]).await;
    wait_allocated(&cp, &key("marker")).await;
    controller
        .wait_metric("ferrolb_allocations_total", 12.0)
        .await;

    let after = failures(&events, "pending").await;
    assert_eq!(after.len(), 1, "one event per cause: {after:?}");
    assert_eq!(
        after[0].metadata.resource_version, first[0].metadata.resource_version,
        "the event was rewritten on a wake-up: {after:?}"
    );
    assert_eq!(
        controller
            .metric("ferrolb_allocation_failures_total{reason=\"pool-exhausted\"}")
            .await,
        Some(1.0),
        "a failure is counted once per cause, not per wake-up"
    );
}

#[tokio::test]
async fn a_note_longer_than_the_api_server_accepts_is_cut_with_an_ellipsis() {
    let (cp, client) = configured(CONFIG).await;
    let _controller = Controller::start(&cp, "events");
    let ns = namespace(&client, "notes").await;
    let garbage = "not-an-address-".repeat(150);
    create_all(
        &client,
        &ns,
        vec![
            LoadBalancer::new("long")
                .annotation("ferrolb.io/loadBalancerIPs", &garbage)
                .build(),
        ],
    )
    .await;
    let event = wait_event(
        &cp,
        &format!("{ns}/long"),
        "AllocationFailed",
        "not-an-address-not-an-address",
    )
    .await;
    assert!(event.message.ends_with('…'), "{}", event.message);
    assert!(event.message.len() <= 1024, "{} bytes", event.message.len());
    assert!(
        event.message.contains("ferrolb.io/loadBalancerIPs"),
        "{}",
        event.message
    );
}
