//! This speaker's discovery record: a Lease per node, annotated with where
//! its membership listens ([`MEMBER_ADDRESS`]) and the MACs it answers from
//! ([`MACS_ANNOTATION`], so the others tell a split brain or a handover from a
//! foreign host). It is written when the speaker starts, and again only when
//! what it says changes or it goes missing; it is never renewed: liveness
//! comes from the LAN membership, so at idle the speakers write nothing. It
//! is deleted on a clean stop.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::interfaces::{self, Eligibility, InterfaceFacts};
use crate::watch::{LEASE_LABEL, lease_name};
use crate::wire::MacAddr;

/// The annotation holding a speaker's membership address (`ip:port`).
pub const MEMBER_ADDRESS: &str = "ferrolb.io/member-address";

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

/// The field manager of this module's writes.
const MANAGER: &str = "ferrolb-speaker";

/// Writes node `node`'s record saying its membership listens on `member`
/// and which MACs it answers from, then again each time `missing` is
/// notified (the record vanished or says something else) or the MACs
/// change, until `shutdown`. Failures are retried with backoff.
pub async fn publish(
    client: Client,
    namespace: String,
    node: String,
    member: SocketAddr,
    mut interfaces: watch::Receiver<Vec<InterfaceFacts>>,
    missing: std::sync::Arc<Notify>,
    shutdown: CancellationToken,
) {
    let leases = Api::<Lease>::namespaced(client, &namespace);
    let name = lease_name(&node);
    loop {
        let mut backoff = Duration::from_millis(250);
        // The MACs this write says: compared with later scans, not with
        // whatever the scan says once the write is done.
        let mut written;
        loop {
            written = answering_macs(&interfaces.borrow_and_update());
            let macs = format_macs(&written);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some([(LEASE_LABEL.0.to_owned(), LEASE_LABEL.1.to_owned())].into()),
                    annotations: Some(
                        [
                            (MEMBER_ADDRESS.to_owned(), member.to_string()),
                            (MACS_ANNOTATION.to_owned(), macs),
                        ]
                        .into(),
                    ),
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
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = missing.notified() => break,
                changed = interfaces.changed() => {
                    if changed.is_err() {
                        // The announcer stopped; nothing more to say.
                        std::future::pending::<()>().await;
                    }
                    if answering_macs(&interfaces.borrow()) != written {
                        break;
                    }
                }
            }
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
