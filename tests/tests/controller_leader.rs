//! Two controller replicas: exactly one leads and allocates (the other's
//! `/readyz` answers 503); when the leader dies the other takes the Lease
//! once it expires (6 s) and allocates the next Service.

mod controller_support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use controller_support::{
    Controller, configured, create_all, service_events, wait_allocated, wait_event,
};
use ferrolb_e2e::objects::{LoadBalancer, namespace};
use ferrolb_e2e::wait_for;

const CONFIG: &str = "\
address-pools:
- name: lan
  protocol: layer2
  addresses:
  - 198.51.100.10-198.51.100.20
";

/// Waits until exactly one replica is ready (the other's `/readyz` answers
/// 503 while it waits to lead) and returns its index.
async fn the_leader(replicas: &[Controller; 2]) -> usize {
    wait_for("one ready replica", Duration::from_secs(60), || async {
        match [replicas[0].readyz().await, replicas[1].readyz().await] {
            [Some(200), Some(503)] => Ok(0),
            [Some(503), Some(200)] => Ok(1),
            other => Err(format!("/readyz answers {other:?}")),
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

    // One becomes ready; the other stays unready while it waits to lead.
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
    assert_eq!(replicas[standby].readyz().await, Some(503));

    // The leader dies without a word; the standby waits out the Lease it
    // last saw renewed, then leads.
    replicas[leader].kill();
    let killed = Instant::now();
    wait_for("the standby to lead", Duration::from_secs(30), || async {
        match replicas[standby].readyz().await {
            Some(200) => Ok(()),
            other => Err(format!("/readyz answers {other:?}")),
        }
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!("takeover after {takeover:.1?}");
    assert!(
        takeover >= Duration::from_secs(2),
        "took over after {takeover:?}, before the 6 s Lease could expire"
    );
    assert!(
        takeover <= Duration::from_secs(20),
        "took over after {takeover:?}"
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
    assert!(replicas[leader].daemon.terminate(), "a clean stop exits 0");
    assert!(
        replicas[leader]
            .daemon
            .output()
            .contains("released the lease"),
        "{}",
        replicas[leader].daemon.output()
    );
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
    wait_for(
        "the standby to be ready",
        Duration::from_secs(30),
        || async {
            match replicas[standby].readyz().await {
                Some(200) => Ok(()),
                other => Err(format!("/readyz answers {other:?}")),
            }
        },
    )
    .await;
}
