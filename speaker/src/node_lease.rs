//! This speaker's per-node Lease: renewed while the speaker runs, so that the
//! other speakers count it live, and deleted on a clean stop, so that they
//! take its addresses over at once instead of after the lease duration. It
//! also publishes the MACs this speaker answers from ([`MACS_ANNOTATION`]),
//! so the others tell a split brain or a handover from a foreign host.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::interfaces::{self, Eligibility, InterfaceFacts};
use crate::watch::{LEASE_LABEL, lease_name};
use crate::wire::MacAddr;

/// The Lease annotation listing, comma-separated, the MACs of the
/// interfaces this speaker may answer on.
pub const MACS_ANNOTATION: &str = "ferrolb.io/macs";

/// The MACs a speaker may answer from: every interface it would serve.
pub fn answering_macs(interfaces: &[InterfaceFacts]) -> BTreeSet<MacAddr> {
    interfaces
        .iter()
        .filter(|f| !matches!(interfaces::eligibility(f), Eligibility::Unsuitable(_)))
        .filter_map(|f| f.mac)
        .collect()
}

/// The annotation's value for `macs`.
pub fn format_macs(macs: &BTreeSet<MacAddr>) -> String {
    macs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The MACs an annotation value lists; entries that are no MAC are skipped.
pub fn parse_macs(value: &str) -> BTreeSet<MacAddr> {
    value
        .split(',')
        .filter_map(|m| m.trim().parse().ok())
        .collect()
}

/// Renews node `node`'s Lease every `renew` until `shutdown`; the Lease says
/// it is valid for `duration`. API errors are retried at the next renewal.
///
/// `renewing` says whether this speaker can reach the API server: true after
/// a renewal succeeds, false as soon as one fails (a request that hangs
/// counts as failed after `renew`), which is well before any Lease seen at
/// the same time could expire. A silent API server raises no watch error, so
/// this is how the speaker learns that its view of the others is stale.
#[allow(clippy::too_many_arguments)] // the Lease's facts and the channels it feeds
pub async fn renew(
    client: Client,
    namespace: &str,
    node: &str,
    duration: Duration,
    renew: Duration,
    renewing: watch::Sender<bool>,
    interfaces: watch::Receiver<Vec<InterfaceFacts>>,
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
        let macs = format_macs(&answering_macs(&interfaces.borrow()));
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(LEASE_LABEL.0.to_owned(), LEASE_LABEL.1.to_owned())].into()),
                annotations: Some([(MACS_ANNOTATION.to_owned(), macs)].into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_macs_annotation_reads_back_what_was_written() {
        let macs: BTreeSet<MacAddr> = ["02:fb:00:00:00:01", "02:fb:00:00:00:02"]
            .iter()
            .map(|m| m.parse().unwrap())
            .collect();
        let written = format_macs(&macs);
        assert_eq!(written, "02:fb:00:00:00:01,02:fb:00:00:00:02");
        assert_eq!(parse_macs(&written), macs);
        assert_eq!(
            parse_macs("02:fb:00:00:00:01, nonsense,"),
            macs.into_iter().take(1).collect()
        );
    }
}
