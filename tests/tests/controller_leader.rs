//! Two controller replicas: exactly one leads and allocates, both are Ready
//! (so the Deployment can roll), and `ferrolb_controller_leader` says which
//! leads. When the leader dies the other takes the Lease once it expires:
//! between the lease duration minus one retry period and the lease duration
//! plus one retry period after the death (`leader.rs` gives the argument);
//! when the leader is stopped it hands the Lease over, and the other leads
//! well before the lease could have expired.

mod controller_support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use controller_support::{
    Controller, configured, create_all, service_events, wait_allocated, wait_event,
};
use ferrolb_e2e::objects::{LoadBalancer, namespace};
use ferrolb_e2e::wait_for;
use serde::Deserialize;

const CONFIG: &str = "\
address-pools:
- name: lan
  protocol: layer2
  addresses:
  - 198.51.100.10-198.51.100.20
";

/// The controller's Lease timing (`leader.rs`): lease duration and retry
/// period.
const LEASE: Duration = Duration::from_secs(15);
const RETRY: Duration = Duration::from_secs(3);
/// What the measurement adds to a takeover: one Lease request on a loaded
/// machine (CI runs the other tests beside this one on two cores) and this
/// test's 100 ms polling of `/metrics`.
const MEASURE: Duration = Duration::from_secs(2);

/// Waits until exactly one replica leads and both are Ready (a healthy
/// standby is Ready), and returns the leader's index.
async fn the_leader(replicas: &[Controller; 2]) -> usize {
    wait_for(
        "one leader, both ready",
        Duration::from_secs(60),
        || async {
            let leading = [replicas[0].leads().await, replicas[1].leads().await];
            let ready = [replicas[0].readyz().await, replicas[1].readyz().await];
            match (leading, ready) {
                ([Some(true), Some(false)], [Some(200), Some(200)]) => Ok(0),
                ([Some(false), Some(true)], [Some(200), Some(200)]) => Ok(1),
                other => Err(format!("leading, /readyz: {other:?}")),
            }
        },
    )
    .await
}

/// Waits until replica `r` leads; returns when that was first seen.
async fn wait_leading(r: &Controller) -> Instant {
    wait_for("the standby to lead", Duration::from_secs(60), || async {
        match r.leads().await {
            Some(true) => Ok(Instant::now()),
            other => Err(format!("leading: {other:?}")),
        }
    })
    .await
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}

#[tokio::test]
async fn one_replica_allocates_and_the_other_takes_over_when_it_dies() {
    let (cp, client) = configured(CONFIG).await;
    let mut replicas = [
        Controller::start(&cp, "replica-a"),
        Controller::start(&cp, "replica-b"),
    ];
    let ns = namespace(&client, "leader").await;
    let key = |name: &str| format!("{ns}/{name}");

    // One leads; both are ready.
    let leader = the_leader(&replicas).await;
    let standby = 1 - leader;

    create_all(&client, &ns, vec![LoadBalancer::new("first").build()]).await;
    assert_eq!(
        wait_allocated(&cp, &key("first")).await,
        vec![ip("198.51.100.10")]
    );
    let allocated = wait_event(&cp, &key("first"), "IPAllocated", "198.51.100.10").await;
    assert_eq!(allocated.instance, replicas[leader].identity);
    replicas[leader]
        .wait_metric("ferrolb_allocations_total", 1.0)
        .await;
    assert_eq!(
        replicas[standby].metric("ferrolb_allocations_total").await,
        Some(0.0),
        "the standby allocated"
    );
    assert_eq!(replicas[standby].readyz().await, Some(200));

    // The leader dies without a word; the standby waits out the Lease it
    // last saw renewed, then leads.
    replicas[leader].kill();
    let killed = Instant::now();
    let takeover = wait_leading(&replicas[standby]).await - killed;
    eprintln!("takeover after {takeover:.1?} (lease {LEASE:?}, retry {RETRY:?})");
    assert!(
        takeover >= LEASE - RETRY,
        "took over after {takeover:?}, before the Lease could expire"
    );
    assert!(
        takeover <= LEASE + RETRY + MEASURE,
        "took over after {takeover:?}: more than a lease and a retry period"
    );

    create_all(&client, &ns, vec![LoadBalancer::new("second").build()]).await;
    assert_eq!(
        wait_allocated(&cp, &key("second")).await,
        vec![ip("198.51.100.11")],
        "the new leader knows .10 is taken"
    );
    let allocated = wait_event(&cp, &key("second"), "IPAllocated", "198.51.100.11").await;
    assert_eq!(allocated.instance, replicas[standby].identity);
    assert!(
        service_events(&cp, &key("first"), "IPChanged").is_empty(),
        "the takeover moved first"
    );
}

#[tokio::test]
async fn a_leader_that_is_stopped_hands_the_lease_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::Api;
    let (cp, client) = configured(CONFIG).await;
    let mut replicas = [
        Controller::start(&cp, "replica-a"),
        Controller::start(&cp, "replica-b"),
    ];
    let leader = the_leader(&replicas).await;
    let standby = 1 - leader;

    // A rolling update: the kubelet sends SIGTERM. The leader stops
    // allocating, then empties the Lease, so the standby need not wait for
    // it to expire.
    let stopped = Instant::now();
    assert!(replicas[leader].daemon.terminate(), "a clean stop exits 0");
    assert!(
        replicas[leader]
            .daemon
            .output()
            .contains("released the lease"),
        "{}",
        replicas[leader].daemon.output()
    );
    // The Lease is empty from here on; the standby's next read takes it.
    let released = Instant::now();
    let leases = Api::<Lease>::namespaced(client.clone(), "ferrolb-system");
    let holder = wait_for(
        "the standby to hold the Lease",
        Duration::from_secs(30),
        || async {
            let lease = leases
                .get("ferrolb-controller")
                .await
                .map_err(|e| e.to_string())?;
            match lease.spec.and_then(|s| s.holder_identity) {
                Some(h) if h == replicas[standby].identity => Ok(h),
                other => Err(format!("holder {other:?}")),
            }
        },
    )
    .await;
    assert_eq!(holder, replicas[standby].identity);
    let leading = wait_leading(&replicas[standby]).await;
    let (takeover, after_release) = (leading - stopped, leading - released);
    eprintln!(
        "handover after {takeover:.1?} from SIGTERM, {after_release:.1?} from the release (lease {LEASE:?})"
    );
    assert!(
        takeover < LEASE,
        "handed over after {takeover:?}: no faster than an expiry"
    );
    assert!(
        after_release <= RETRY + MEASURE,
        "took the released Lease after {after_release:?}: the standby reads it every {RETRY:?}"
    );
    // A new leader is ready once it has rebuilt its allocator from the
    // Services' statuses (after the config and the Namespaces are read).
    wait_for(
        "the new leader to be ready",
        Duration::from_secs(5),
        || async {
            match replicas[standby].readyz().await {
                Some(200) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

/// What the Deployment's kubelet probes is what these tests check.
#[test]
fn the_deployment_probes_readyz_on_the_metrics_port() {
    let path = format!("{}/../deploy/ferrolb.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("read deploy/ferrolb.yaml");
    let deployment: serde_json::Value = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_json::Value::deserialize(doc).expect("YAML document"))
        .find(|doc| doc["kind"] == "Deployment" && doc["metadata"]["name"] == "controller")
        .expect("the controller Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2, "two replicas, one leads");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let probe = &container["readinessProbe"]["httpGet"];
    assert_eq!(probe["path"], "/readyz", "{container}");
    assert_eq!(probe["port"], "metrics");
    assert!(
        container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == 7472),
        "{container}"
    );
}
