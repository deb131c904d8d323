//! This speaker's discovery record: a Lease per node, annotated with where
//! its membership listens, so that the speakers find each other through the
//! API. It is written when the speaker starts (and again only if it goes
//! missing or says something else), never renewed: liveness comes from the
//! LAN membership, so at idle the speakers write nothing. It is deleted on a
//! clean stop. Other annotations (e.g. the node's MACs) may share the
//! record; this module only owns `ferrolb.io/member-address`.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::watch::{LEASE_LABEL, lease_name};

/// The annotation holding a speaker's membership address (`ip:port`).
pub const MEMBER_ADDRESS: &str = "ferrolb.io/member-address";

/// The field manager of this module's writes.
const MANAGER: &str = "ferrolb-speaker";

/// Writes node `node`'s record saying its membership listens on `member`,
/// then again each time `missing` is notified (the record vanished or says
/// something else), until `shutdown`. Failures are retried with backoff.
pub async fn publish(
    client: Client,
    namespace: String,
    node: String,
    member: SocketAddr,
    missing: std::sync::Arc<Notify>,
    shutdown: CancellationToken,
) {
    let leases = Api::<Lease>::namespaced(client, &namespace);
    let name = lease_name(&node);
    loop {
        let mut backoff = Duration::from_millis(250);
        loop {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some([(LEASE_LABEL.0.to_owned(), LEASE_LABEL.1.to_owned())].into()),
                    annotations: Some([(MEMBER_ADDRESS.to_owned(), member.to_string())].into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.clone()),
                    acquire_time: Some(MicroTime(Timestamp::now())),
                    ..Default::default()
                }),
            };
            let params = PatchParams::apply(MANAGER).force();
            let apply = Patch::Apply(&lease);
            let write = leases.patch(&name, &params, &apply);
            let outcome = tokio::select! {
                () = shutdown.cancelled() => return,
                r = tokio::time::timeout(Duration::from_secs(5), write) => r,
            };
            match outcome {
                Ok(Ok(_)) => {
                    info!(lease = %name, %member, "discovery record written");
                    break;
                }
                Ok(Err(e)) => {
                    warn!(lease = %name, error = %e, "cannot write the discovery record; retrying")
                }
                Err(_) => warn!(lease = %name, "no answer writing the discovery record; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = missing.notified() => {}
        }
    }
}

/// Deletes node `node`'s record: a restart of another speaker will not
/// look for this one. (Its peers learn of the stop from the membership.)
pub async fn release(client: Client, namespace: &str, node: &str) {
    let name = lease_name(node);
    match Api::<Lease>::namespaced(client, namespace)
        .delete(&name, &DeleteParams::default())
        .await
    {
        Ok(_) => info!(lease = %name, "discovery record deleted"),
        Err(e) => warn!(lease = %name, error = %e, "cannot delete the discovery record"),
    }
}
