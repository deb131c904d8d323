//! Only the leader writes, and only what it planned from current state: the
//! reconcile the binary runs, called on a Service object older than the
//! stored one, has its status write refused by the API server (409) and
//! changes nothing; called while the fence is closed (this replica does not
//! lead, or its renew deadline passed) it makes no API call at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolb_config::Config;
use ferrolb_controller::allocator::Allocator;
use ferrolb_controller::events::Events;
use ferrolb_controller::leader::{Fence, FenceError};
use ferrolb_controller::metrics::Metrics;
use ferrolb_controller::namespaces::NamespaceLabels;
use ferrolb_controller::reconcile::{Context, ReconcileError, reconcile};
use ferrolb_e2e::ControlPlane;
use ferrolb_e2e::objects::{LoadBalancer, namespace};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;

const CONFIG: &str = "\
address-pools:
- name: lan
  protocol: layer2
  addresses:
  - 198.51.100.10-198.51.100.20
";

fn context(client: kube::Client, fence: Fence) -> Arc<Context> {
    let config = Config::from_yaml(CONFIG).expect("valid config").config;
    let (wake, _) = tokio::sync::mpsc::unbounded_channel();
    let metrics = Arc::new(Metrics::new());
    let (events, writer) = Events::new(
        client.clone(),
        Reporter {
            controller: "ferrolb-controller".into(),
            instance: Some("fencing-test".into()),
        },
        fence.clone(),
        metrics.clone(),
    );
    tokio::spawn(writer.run());
    Arc::new(Context {
        client: client.clone(),
        allocator: Mutex::new(Allocator::new(&config.pools)),
        events,
        fence,
        metrics,
        wake,
        namespaces: NamespaceLabels::unwatched(),
    })
}

fn ingress(service: &Service) -> Option<serde_json::Value> {
    let lb = service.status.as_ref()?.load_balancer.as_ref()?;
    lb.ingress
        .as_ref()
        .map(|i| serde_json::to_value(i).expect("serialise"))
}

/// A Service created in a fresh namespace, and a copy of it as a cache
/// would still hold it after someone changed its labels.
async fn stale_and_current(client: &kube::Client) -> (Api<Service>, Service, Service) {
    let ns = namespace(client, "fencing").await;
    let api = Api::<Service>::namespaced(client.clone(), &ns);
    let stale = api
        .create(&PostParams::default(), &LoadBalancer::new("web").build())
        .await
        .expect("create Service");
    let label = serde_json::json!({ "metadata": { "labels": { "edited": "yes" } } });
    let current = api
        .patch("web", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("label Service");
    assert_ne!(
        stale.metadata.resource_version,
        current.metadata.resource_version
    );
    (api, stale, current)
}

#[tokio::test]
async fn a_status_write_planned_from_a_stale_service_is_refused_and_planned_again() {
    let cp = ControlPlane::own().await;
    let client = cp.client().await;
    let (api, stale, current) = stale_and_current(&client).await;
    let ctx = context(client.clone(), Fence::always_open(Duration::from_secs(2)));

    let refused = reconcile(Arc::new(stale), ctx.clone()).await;
    assert!(
        matches!(&refused, Err(e) if e.is_conflict()),
        "a write planned from a stale Service must be refused: {refused:?}"
    );
    let stored = api.get("web").await.expect("get Service");
    assert_eq!(ingress(&stored), None, "the stale write landed");
    let events = Api::<Event>::namespaced(client.clone(), &stored.namespace().unwrap())
        .list(&ListParams::default())
        .await
        .expect("list events");
    assert!(
        events.items.is_empty(),
        "a refused write announced something: {:?}",
        events.items
    );

    // Planned again from the current object, it lands.
    reconcile(Arc::new(current), ctx)
        .await
        .expect("reconcile the current Service");
    let stored = api.get("web").await.expect("get Service");
    assert_eq!(
        ingress(&stored),
        Some(serde_json::json!([{ "ip": "198.51.100.10", "ipMode": "VIP" }]))
    );
}

#[tokio::test]
async fn a_replica_that_does_not_lead_writes_nothing() {
    let cp = ControlPlane::own().await;
    let client = cp.client().await;
    let (api, _, current) = stale_and_current(&client).await;
    let ctx = context(client.clone(), Fence::closed(Duration::from_secs(2)));

    let refused = reconcile(Arc::new(current), ctx).await;
    assert!(
        matches!(
            &refused,
            Err(ReconcileError::WriteStatus {
                source: FenceError::NotLeading,
                ..
            })
        ),
        "{refused:?}"
    );
    let stored = api.get("web").await.expect("get Service");
    assert_eq!(ingress(&stored), None);
}
