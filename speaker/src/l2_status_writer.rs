//! Writes the `ServiceL2Status` objects (`kubectl get servicel2statuses`,
//! CRD in `deploy/crds/`): follows this node's decisions, its interfaces
//! and the objects themselves, asks [`plan_statuses`] what it owes, and
//! carries that out — a server-side apply or a delete. No rules here: which
//! object to write, and when, is [`crate::l2_status`]'s. A write that fails
//! is retried with backoff; announcing never waits for it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use ferrolb_config::ServiceKey;
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::announcer::Announcements;
use crate::interfaces::InterfaceFacts;
use crate::l2_status::{Facts, L2Status, StatusBook, StatusWrite, plan_statuses};
use crate::ownership::Decision;

/// The label naming the announcing node, to list one node's objects
/// (`kubectl get l2s -A -l ferrolb.io/node=NODE`).
pub const NODE_LABEL: &str = "ferrolb.io/node";

/// The field manager of every speaker's writes: one manager, so a new
/// owner's apply replaces every field the old owner set.
const FIELD_MANAGER: &str = "ferrolb-speaker";

/// A `ServiceL2Status` object (group `ferrolb.io`, version `v1alpha1`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceL2Status {
    /// The object's metadata.
    pub metadata: ObjectMeta,
    /// What it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusFields>,
}

/// The `status` of a [`ServiceL2Status`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusFields {
    /// The announcing node.
    pub node: String,
    /// Its interfaces that answer for the addresses.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// The addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
}

impl Resource for ServiceL2Status {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "ServiceL2Status".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "ferrolb.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "servicel2statuses".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What the decisions say, as the watch loop last published it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decided {
    /// Every Service's decision.
    pub decisions: Vec<Decision>,
    /// The live speakers.
    pub live: BTreeSet<String>,
    /// What this node announces.
    pub announcements: Announcements,
}

/// Where the writer's inputs come from.
pub struct Inputs {
    /// The decisions; `None` until the first one.
    pub decided: watch::Receiver<Option<Decided>>,
    /// This node's interfaces as the announcer last scanned them.
    pub interfaces: watch::Receiver<Vec<InterfaceFacts>>,
}

/// How long a failed write waits before it is tried again, at first and
/// at most.
const RETRY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// Runs until `shutdown`, keeping the status objects of the Services node
/// `node` has something to say about.
pub async fn run(client: Client, node: String, inputs: Inputs, shutdown: CancellationToken) {
    let Inputs {
        mut decided,
        mut interfaces,
    } = inputs;
    let (objects, writer) = reflector::store();
    let stream = watcher(
        Api::<ServiceL2Status>::all(client.clone()),
        Default::default(),
    )
    .default_backoff()
    .reflect(writer);
    let mut stream = std::pin::pin!(stream);
    let mut synced = false;
    let mut book = StatusBook::new();
    let mut retry: Option<(Instant, Duration)> = None;
    loop {
        let retry_at = retry.map(|(at, _)| at);
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = stream.next() => match event {
                None => return,
                Some(Ok(watcher::Event::InitDone)) => synced = true,
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    warn!(%error, "cannot watch the ServiceL2Status objects (is deploy/crds/ applied?); retrying");
                    continue;
                }
            },
            changed = decided.changed() => if changed.is_err() { return },
            changed = interfaces.changed() => if changed.is_err() { return },
            () = sleep_until(retry_at) => {}
        }
        let Some(now) = decided.borrow_and_update().clone() else {
            continue;
        };
        let scanned = interfaces.borrow_and_update().clone();
        // Before the first scan there is no interface to name.
        if !synced || scanned.is_empty() {
            continue;
        }
        let facts = Facts {
            me: &node,
            live: &now.live,
            decisions: &now.decisions,
            announcements: &now.announcements,
            interfaces: &scanned,
        };
        let writes = plan_statuses(&facts, &observed(&objects), &mut book);
        let mut failed = false;
        for write in writes {
            if let Err(error) = carry_out(&client, &node, &write).await {
                warn!(service = %write.service(), %error, "could not write the status object; retrying");
                book.forget(write.service());
                failed = true;
            }
        }
        retry = failed.then(|| {
            let backoff = retry.map_or(RETRY.0, |(_, last)| (last * 2).min(RETRY.1));
            (Instant::now() + backoff, backoff)
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The objects as last seen, by Service: an object is named after its
/// Service, in its namespace. One that does not parse reads as absent.
fn observed(store: &Store<ServiceL2Status>) -> BTreeMap<ServiceKey, L2Status> {
    store
        .state()
        .iter()
        .filter_map(|object| {
            let fields = object.status.as_ref()?;
            let addresses: Option<Vec<IpAddr>> =
                fields.addresses.iter().map(|a| a.parse().ok()).collect();
            Some((
                ServiceKey::new(object.namespace()?, object.name_any()),
                L2Status {
                    node: fields.node.clone(),
                    interfaces: fields.interfaces.clone(),
                    addresses: addresses?,
                },
            ))
        })
        .collect()
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    /// The Service could not be read for its uid.
    #[error("reading Service {service}: {source}")]
    ReadService {
        service: ServiceKey,
        source: kube::Error,
    },
    /// The apply or delete was refused or did not arrive.
    #[error("{verb} of the status object of {service}: {source}")]
    Write {
        verb: &'static str,
        service: ServiceKey,
        source: kube::Error,
    },
}

/// Applies one write. A Service that is gone needs no object: its owner
/// reference would remove it anyway.
async fn carry_out(client: &Client, node: &str, write: &StatusWrite) -> Result<(), WriteError> {
    let service = write.service();
    let api = Api::<ServiceL2Status>::namespaced(client.clone(), &service.namespace);
    match write {
        StatusWrite::Remove { .. } => {
            match api.delete(&service.name, &DeleteParams::default()).await {
                Ok(_) => info!(%service, "status object removed: no node announces the Service"),
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(source) => {
                    return Err(WriteError::Write {
                        verb: "delete",
                        service: service.clone(),
                        source,
                    });
                }
            }
        }
        StatusWrite::Write { status, .. } => {
            let services = Api::<Service>::namespaced(client.clone(), &service.namespace);
            let Some(owner) = services.get_opt(&service.name).await.map_err(|source| {
                WriteError::ReadService {
                    service: service.clone(),
                    source,
                }
            })?
            else {
                return Ok(());
            };
            let object = desired(service, node, status, &owner);
            api.patch(
                &service.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .map_err(|source| WriteError::Write {
                verb: "apply",
                service: service.clone(),
                source,
            })?;
            info!(%service, node, interfaces = ?status.interfaces, "status object written: this node announces the Service");
        }
    }
    Ok(())
}

/// The object saying `status` about `service`, owned by the Service.
fn desired(
    service: &ServiceKey,
    node: &str,
    status: &L2Status,
    owner: &Service,
) -> serde_json::Value {
    let reference = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.name.clone(),
        uid: owner.uid().unwrap_or_default(),
        ..OwnerReference::default()
    };
    serde_json::json!({
        "apiVersion": ServiceL2Status::api_version(&()),
        "kind": ServiceL2Status::kind(&()),
        "metadata": {
            "name": service.name,
            "namespace": service.namespace,
            "labels": {
                NODE_LABEL: node,
                "app.kubernetes.io/managed-by": "ferrolb-speaker",
            },
            "ownerReferences": [reference],
        },
        "status": {
            "node": status.node,
            "interfaces": status.interfaces,
            "addresses": status.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
    })
}

/// Hands the writer the decisions of one pass of the watch loop, waking
/// it only when they differ from the last ones.
pub fn publish(
    decided: &watch::Sender<Option<Decided>>,
    plan: &crate::ownership::Plan,
    live: &BTreeSet<String>,
) {
    decided.send_if_modified(|current| {
        let unchanged = current.as_ref().is_some_and(|c| {
            c.decisions == plan.decisions
                && c.live == *live
                && c.announcements == plan.announcements
        });
        if !unchanged {
            *current = Some(Decided {
                decisions: plan.decisions.clone(),
                live: live.clone(),
                announcements: plan.announcements.clone(),
            });
        }
        !unchanged
    });
}
