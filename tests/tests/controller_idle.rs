//! An idle controller costs the API server almost nothing: with one replica
//! and nothing to allocate, its requests (the Lease renewals, and whatever
//! else it does) stay at or below 0.5 per second, as counted by
//! kube-apiserver's own `apiserver_request_total`.

mod controller_support;

use std::time::Duration;

use controller_support::{Controller, configured};
use ferrolb_e2e::ControlPlane;

/// How long each count runs: ten Lease renewals at the controller's pace.
const WINDOW: Duration = Duration::from_secs(30);

/// The API server's count of resource requests (not `/metrics`, `/readyz`
/// and the like, which this test's own polling makes), in total and for
/// Leases.
fn resource_requests(cp: &ControlPlane) -> (f64, f64) {
    let text = cp.kubectl(&["get", "--raw", "/metrics"]);
    let mut all = 0.0;
    let mut leases = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let resource = labels
            .split("\",")
            .find_map(|l| l.strip_prefix("resource=\""))
            .unwrap_or_default()
            .trim_end_matches('"');
        if resource.is_empty() {
            continue;
        }
        let value: f64 = value.trim().parse().expect("a counter value");
        all += value;
        if resource == "leases" {
            leases += value;
        }
    }
    (all, leases)
}

/// Requests per second over [`WINDOW`]: all resource requests, and Leases.
async fn rate(cp: &ControlPlane) -> (f64, f64) {
    let before = resource_requests(cp);
    tokio::time::sleep(WINDOW).await;
    let after = resource_requests(cp);
    let secs = WINDOW.as_secs_f64();
    ((after.0 - before.0) / secs, (after.1 - before.1) / secs)
}

#[tokio::test]
async fn one_idle_replica_makes_at_most_half_a_request_per_second() {
    let (cp, _client) = configured(
        "address-pools:\n- name: lan\n  protocol: layer2\n  addresses: [198.51.100.10/32]\n",
    )
    .await;
    // The API server's own background requests, counted the same way.
    let (base, base_leases) = rate(&cp).await;

    let controller = Controller::start(&cp, "idle");
    controller
        .wait_metric("ferrolb_controller_leader", 1.0)
        .await;
    // Start-up (lists, watches, the last-good copy) is not idling.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (with, with_leases) = rate(&cp).await;

    let controller_rate = with - base;
    eprintln!(
        "API server resource requests/s: {base:.2} without the controller \
         ({base_leases:.2} on Leases), {with:.2} with one idle replica \
         ({with_leases:.2} on Leases): the controller adds {controller_rate:.2}/s"
    );
    assert!(
        controller_rate <= 0.5,
        "an idle controller makes {controller_rate:.2} requests/s"
    );
    assert!(
        with_leases - base_leases > 0.0,
        "the leader renews its Lease: the count must see it"
    );
}
