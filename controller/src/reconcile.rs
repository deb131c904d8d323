//! The Service controller: one level-triggered reconcile per Service that
//! reads its request, asks [`plan`](crate::plan::plan) under the allocator
//! lock, then writes the status and events the plan calls for. It owns the
//! start-up rebuild of the allocator from existing statuses, and releasing
//! the addresses of deleted Services.
//!
//! Every write goes through the leader's [`Fence`] (none once this replica's
//! renew deadline has passed), and a status write carries the
//! `resourceVersion` of the Service it was planned from, so one planned from
//! a stale cache is refused (409) and planned again, never applied.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use ferrolb_config::request::key_of;
use ferrolb_config::request::{self, Served};
use ferrolb_config::{ServiceKey, trim};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::allocator::Allocator;
use crate::events::{Events, Publication};
use crate::leader::{Fence, FenceError};
use crate::metrics::Metrics;
use crate::namespaces::NamespaceLabels;
use crate::plan::{Desire, Notice, plan};
use crate::status;

/// Why a reconcile failed; the Service is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Writing the Service's status failed or was not made: this replica
    /// does not lead, the API server did not answer in time, or it refused
    /// a write planned from a Service that changed since (409).
    #[error("writing the status of {service}: {source}")]
    WriteStatus {
        /// The Service.
        service: ServiceKey,
        /// Why.
        source: FenceError,
    },
}

impl ReconcileError {
    /// Whether the write was planned from stale state and refused (409).
    pub fn is_conflict(&self) -> bool {
        match self {
            ReconcileError::WriteStatus { source, .. } => source.is_conflict(),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Which Service holds which address. Locked only around pure calls.
    pub allocator: Mutex<Allocator>,
    /// Tells events on Services and the ConfigMap.
    pub events: Events,
    /// Lets writes through only while this replica leads.
    pub fence: Fence,
    /// The exported metrics.
    pub metrics: Arc<Metrics>,
    /// Asks for a reconcile of every Service (addresses were freed, or the
    /// pools changed).
    pub wake: mpsc::UnboundedSender<()>,
    /// The Namespaces' labels, for pools' namespace selectors.
    pub namespaces: NamespaceLabels,
}

impl Context {
    /// The allocator; a panic elsewhere while it was held leaves it
    /// consistent (every mutation is a pure call that completed or not).
    pub fn allocator(&self) -> MutexGuard<'_, Allocator> {
        self.allocator.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What ferrolb makes of a Service object, in a namespace with these
/// labels.
pub fn desire(
    service: &Service,
    namespace_labels: impl FnOnce(&str) -> BTreeMap<String, String>,
) -> Desire {
    match request::read(service) {
        Ok(Served::Ours(mut request)) => {
            request.namespace_labels = namespace_labels(&request.key.namespace);
            Desire::Serve(request)
        }
        Ok(Served::NotOurs(_)) => Desire::NotServed(key_of(service)),
        Err(e) => Desire::Invalid(key_of(service), e.to_string()),
    }
}

/// Sorts Services oldest first (by name within a second), the order in
/// which a contested address goes to the older Service.
pub fn oldest_first(services: &mut [Service]) {
    services.sort_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref(), key_of(a))
            .cmp(&(b.metadata.creation_timestamp.as_ref(), key_of(b)))
    });
}

/// Rebuilds the allocator from the addresses already in Services' statuses,
/// oldest Service first (so the older one keeps a contested address), before
/// anything new is allocated. Returns how many Services kept their addresses.
pub async fn restore(ctx: &Context) -> Result<usize, kube::Error> {
    let mut services = list_services(&ctx.client).await?;
    oldest_first(&mut services);
    let mut kept = 0;
    let mut allocator = ctx.allocator();
    for service in &services {
        let observed = request::ingress(service);
        let Desire::Serve(request) = desire(service, |n| ctx.namespaces.of(n)) else {
            continue;
        };
        if observed.is_empty() {
            continue;
        }
        match allocator.restore(&request, &observed) {
            Ok(_) => kept += 1,
            // The reconcile that follows assigns it again and says why.
            Err(e) => {
                warn!(service = %request.key, error = %e, "cannot keep the address in its status")
            }
        }
    }
    ctx.metrics.observe_pools(&allocator.stats());
    Ok(kept)
}

/// Reconciles one Service.
#[instrument(skip_all, fields(service = %key_of(&service)))]
pub async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let key = key_of(&service);
    let desire = desire(&service, |n| ctx.namespaces.of(n));
    let observed = request::ingress(&service);
    let (plan, stats) = {
        let mut allocator = ctx.allocator();
        let plan = plan(&desire, &observed, &mut allocator);
        (plan, allocator.stats())
    };
    ctx.metrics.observe_pools(&stats);

    // A Service of another class keeps whatever status its own controller
    // wrote; ferrolb clears only what it held.
    let ours = matches!(desire, Desire::Serve(_) | Desire::Invalid(..)) || plan.freed;
    let desired = status::desired(&plan.addresses);
    let mut wrote = false;
    if ours && status::differs(&service, &desired) {
        // The write carries the resourceVersion it was planned from: if the
        // Service changed since (or a newer leader wrote it), the API server
        // refuses it and the reconcile runs again on the fresh object.
        let patch = json!({
            "metadata": { "resourceVersion": service.metadata.resource_version },
            "status": { "loadBalancer": { "ingress": desired.ingress } },
        });
        let api = Api::<Service>::namespaced(ctx.client.clone(), &key.namespace);
        ctx.fence
            .guard(api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch)))
            .await
            .map_err(|source| ReconcileError::WriteStatus {
                service: key.clone(),
                source,
            })?;
        wrote = true;
    }
    if plan.freed {
        if let Desire::NotServed(_) = desire {
            info!(service = %key, "released: no longer a ferrolb LoadBalancer");
        }
        let _ = ctx.wake.send(());
    }
    match plan.notice {
        // What a Service gained is news only when this write gave it.
        Some(Notice::Allocated { .. } | Notice::Extended { .. } | Notice::Moved { .. })
            if !wrote => {}
        Some(Notice::Allocated { addresses, pool }) => {
            let shown = join(&addresses);
            info!(service = %key, ip = %shown, pool = %pool, "allocated");
            ctx.metrics.allocated();
            let note = format!("Assigned {shown} from pool {pool}");
            ctx.events
                .publish(service.as_ref(), EventType::Normal, "IPAllocated", note);
        }
        Some(Notice::Extended { added, kept, pool }) => {
            let (added, kept) = (join(&added), join(&kept));
            info!(service = %key, ip = %added, kept = %kept, pool = %pool, "allocated the other family");
            ctx.metrics.allocated();
            let note = format!("Assigned {added} from pool {pool}, beside {kept}");
            ctx.events
                .publish(service.as_ref(), EventType::Normal, "IPAllocated", note);
        }
        Some(Notice::Moved { from, to, pool }) => {
            let (from, to) = (join(&from), join(&to));
            warn!(service = %key, from = %from, to = %to, pool = %pool, "address changed");
            ctx.metrics.allocated();
            let note = format!(
                "Address changed from {from} to {to} (pool {pool}): the old address is no longer allowed"
            );
            ctx.events
                .publish(service.as_ref(), EventType::Warning, "IPChanged", note);
        }
        Some(Notice::Failed { reason, message }) => {
            // Counted and logged once per cause: a pending Service is
            // reconciled on every wake-up, and the repeat only adds to the
            // event's series.
            let new_cause = ctx.events.publish(
                service.as_ref(),
                EventType::Warning,
                "AllocationFailed",
                message.clone(),
            );
            if new_cause == Publication::New {
                warn!(service = %key, reason, "{message}");
                ctx.metrics.failed(reason);
            }
        }
        None => {}
    }
    Ok(Action::await_change())
}

/// Retries a failed reconcile after a pause; a write refused as planned
/// from stale state is re-planned soon (the watch brings the fresh object,
/// which also triggers a reconcile).
pub fn error_policy(_service: Arc<Service>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    if error.is_conflict() {
        info!(error = %error, "the Service changed since it was read; planning again");
        return Action::requeue(Duration::from_millis(200));
    }
    warn!(error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Releases what deleted Services held. A delete seen as an event is
/// released at once; one missed while the watch was down shows up as a
/// Service absent from the fresh list, and is released then.
fn release_deleted(ctx: &Context, store: &Store<Service>, event: &watcher::Event<Service>) {
    let released = match event {
        watcher::Event::Delete(service) => {
            let key = key_of(service);
            let freed = ctx.allocator().release(&key).is_some();
            if freed {
                info!(service = %key, "released: Service deleted");
            }
            freed
        }
        watcher::Event::InitDone => {
            let present: BTreeSet<ServiceKey> = store.state().iter().map(|s| key_of(s)).collect();
            let mut allocator = ctx.allocator();
            let gone: Vec<ServiceKey> = allocator
                .allocations()
                .map(|(key, _)| key.clone())
                .filter(|key| !present.contains(key))
                .collect();
            for key in &gone {
                allocator.release(key);
                info!(service = %key, "released: Service no longer exists");
            }
            !gone.is_empty()
        }
        _ => false,
    };
    if released {
        ctx.metrics.observe_pools(&ctx.allocator().stats());
        let _ = ctx.wake.send(());
    }
}

/// Reconciles at once. Each makes at most one status write; a bound keeps a
/// cold start of thousands of pending Services from opening as many
/// connections and queueing as many requests at the API server, where they
/// would slow every other client, while enough are in flight to keep the API
/// server busy.
const RECONCILES_IN_FLIGHT: u16 = 32;

/// Runs the Service controller until `shutdown`.
pub async fn run(
    ctx: Arc<Context>,
    mut wake: mpsc::UnboundedReceiver<()>,
    shutdown: CancellationToken,
) {
    let api = Api::<Service>::all(ctx.client.clone());
    let (reader, writer) = reflector::store();
    let (store, events_ctx) = (reader.clone(), ctx.clone());
    let services = watcher(api, watcher::Config::default().page_size(LIST_PAGE))
        .default_backoff()
        .modify(trim::keep_read_fields)
        .reflect(writer)
        .inspect_ok(move |event| release_deleted(&events_ctx, &store, event))
        .applied_objects();
    Controller::for_stream(services, reader)
        .with_config(controller::Config::default().concurrency(RECONCILES_IN_FLIGHT))
        .reconcile_all_on(futures::stream::poll_fn(move |cx| wake.poll_recv(cx)))
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "controller error");
            }
        })
        .await;
}

/// Services per page of a list: a page is held whole while it is read,
/// and any Service may carry 256 KiB of annotations.
/// Measured (`cargo bench -p ferrolb-e2e --bench memory`): 50 a page
/// peaked twice as high as 10 at a restart among 100 KiB Services; 10
/// costs a round trip per ten objects at start.
const LIST_PAGE: u32 = 10;

/// Every Service of the cluster, listed a page at a time and each cut down
/// to what ferrolb reads ([`trim::keep_read_fields`]), so a cluster full of
/// large Services never sits in memory whole.
pub async fn list_services(client: &Client) -> Result<Vec<Service>, kube::Error> {
    let api = Api::<Service>::all(client.clone());
    let mut services = Vec::new();
    let mut params = ListParams::default().limit(LIST_PAGE);
    loop {
        let page = api.list(&params).await?;
        services.extend(page.items.into_iter().map(|mut service| {
            trim::keep_read_fields(&mut service);
            service
        }));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(services),
        }
    }
}

fn join(addresses: &[std::net::IpAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
