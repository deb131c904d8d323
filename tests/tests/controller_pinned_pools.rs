//! Pools pinned to namespaces by their labels (`service-allocation`), through
//! the controller the binary runs: a Service naming a pool that does not
//! admit its namespace stays pending and says why; labelling the namespace
//! gives it an address with no change to the Service itself; removing the
//! label takes it away again, as a removed pool would, while a Service of
//! an open pool keeps its address throughout.

mod controller_support;

use controller_support::{
    Controller, PATIENCE, configured, create_all, external_ips, wait_allocated, wait_event,
};
use ferrolb_e2e::objects::{LoadBalancer, namespace};
use ferrolb_e2e::wait_for;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const CONFIG: &str = "\
address-pools:
- name: team
  protocol: layer2
  addresses: [198.51.100.8/30]
  service-allocation:
    priority: 5
    namespace-selectors:
    - match-labels: {tenant: a}
- name: shared
  protocol: layer2
  addresses: [198.51.100.16/30]
";

#[tokio::test]
async fn a_namespace_label_opens_and_closes_a_pinned_pool() {
    let (cp, client) = configured(CONFIG).await;
    let ns = namespace(&client, "tenant").await;
    let _controller = Controller::start(&cp, "pinned");
    create_all(
        &client,
        &ns,
        vec![
            LoadBalancer::new("open").build(),
            LoadBalancer::new("pinned")
                .annotation("ferrolb.io/address-pool", "team")
                .build(),
        ],
    )
    .await;
    let (open, pinned) = (format!("{ns}/open"), format!("{ns}/pinned"));
    // Unlabelled: the open Service skips the pinned pool, the pinned one
    // waits and says why.
    assert_eq!(
        wait_allocated(&cp, &open).await,
        ["198.51.100.16".parse::<std::net::IpAddr>().unwrap()]
    );
    let refused = wait_event(&cp, &pinned, "AllocationFailed", "does not admit").await;
    assert_eq!(
        refused.message,
        format!(
            "pool team does not admit {pinned}: its service-allocation names other namespaces or Services"
        )
    );

    let label = |value: Option<&str>| {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns = ns.clone();
        let patch = json!({ "metadata": { "labels": { "tenant": value } } });
        async move {
            namespaces
                .patch(&ns, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("label the namespace");
        }
    };
    label(Some("a")).await;
    assert_eq!(
        wait_allocated(&cp, &pinned).await,
        ["198.51.100.8".parse::<std::net::IpAddr>().unwrap()]
    );

    label(None).await;
    wait_for(
        &format!("{pinned} to lose its address"),
        PATIENCE,
        || async {
            let cell = external_ips(&cp).remove(&pinned).unwrap_or_default();
            if cell == "<pending>" {
                Ok(())
            } else {
                Err(cell)
            }
        },
    )
    .await;
    assert_eq!(
        external_ips(&cp).remove(&open).as_deref(),
        Some("198.51.100.16"),
        "the open pool's Service keeps its address"
    );
}
