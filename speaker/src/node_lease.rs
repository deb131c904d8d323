//! This speaker's per-node Lease: renewed while the speaker runs, so that the
//! other speakers count it live, and deleted on a clean stop, so that they
//! take its addresses over at once instead of after the lease duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::watch::{LEASE_LABEL, lease_name};

/// Renews node `node`'s Lease every `renew` until `shutdown`; the Lease says
/// it is valid for `duration`. API errors are retried at the next renewal.
///
/// `renewing` says whether this speaker can reach the API server: true after
/// a renewal succeeds, false as soon as one fails (a request that hangs
/// counts as failed after `renew`), which is well before any Lease seen at
/// the same time could expire. A silent API server raises no watch error, so
/// this is how the speaker learns that its view of the others is stale.
pub async fn renew(
    client: Client,
    namespace: &str,
    node: &str,
    duration: Duration,
    renew: Duration,
    renewing: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let leases = Api::<Lease>::namespaced(client, namespace);
    let name = lease_name(node);
    let mut failing = false;
    let mut tick = tokio::time::interval(renew);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(LEASE_LABEL.0.to_owned(), LEASE_LABEL.1.to_owned())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node.to_owned()),
                lease_duration_seconds: Some(duration.as_secs().max(1) as i32),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..Default::default()
            }),
        };
        let params = PatchParams::apply("ferrolb-speaker").force();
        let apply = Patch::Apply(&lease);
        let patch = leases.patch(&name, &params, &apply);
        let outcome = match tokio::time::timeout(renew, patch).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {renew:?}")),
        };
        match outcome {
            Ok(()) => {
                if failing {
                    info!(lease = %name, "renewing the lease again");
                    failing = false;
                }
                renewing.send_if_modified(|ok| !std::mem::replace(ok, true));
            }
            Err(e) => {
                if !failing {
                    warn!(lease = %name, error = %e, "cannot renew the lease; retrying");
                }
                failing = true;
                renewing.send_if_modified(|ok| std::mem::replace(ok, false));
            }
        }
    }
}

/// Deletes node `node`'s Lease: the other speakers forget this one at once.
pub async fn release(client: Client, namespace: &str, node: &str) {
    let name = lease_name(node);
    match Api::<Lease>::namespaced(client, namespace)
        .delete(&name, &DeleteParams::default())
        .await
    {
        Ok(_) => info!(lease = %name, "lease released; other speakers take over"),
        Err(e) => {
            warn!(lease = %name, error = %e, "cannot release the lease; others take over when it expires")
        }
    }
}
