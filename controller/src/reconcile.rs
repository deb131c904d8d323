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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferrolb_config::ServiceKey;
use ferrolb_config::request::{self, Served};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::allocator::Allocator;
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
    /// Publishes events on Services and the ConfigMap.
    pub events: EventPublisher,
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

    /// Publishes an event while this replica leads, logging rather than
    /// failing when it cannot. Returns whether it is a new event (not a
    /// repeat counted in an existing one's series).
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> bool {
        let regarding = object.object_ref(&());
        match self
            .fence
            .guard(self.events.publish(&regarding, type_, reason, note))
            .await
        {
            Ok(publication) => publication == Publication::New,
            Err(e) => {
                warn!(reason, error = %e, "could not publish event");
                false
            }
        }
    }
}

/// How long an event may be repeated as a series rather than anew.
const REPEAT_WINDOW: Duration = Duration::from_secs(6 * 60);

/// How often a repeated event's series count is written: repeats in
/// between are counted here, not each written (a pending Service is woken
/// whenever any address is freed, and one write per wake-up per pending
/// Service would load the API server for nothing).
const SERIES_INTERVAL: Duration = Duration::from_secs(60);

/// The longest note the API server accepts, in bytes.
pub const NOTE_LIMIT: usize = 1024;

/// `note` cut to the API server's limit, ending with an ellipsis when cut.
pub fn cut_note(mut note: String) -> String {
    const ELLIPSIS: char = '…';
    if note.len() <= NOTE_LIMIT {
        return note;
    }
    let mut cut = NOTE_LIMIT - ELLIPSIS.len_utf8();
    while !note.is_char_boundary(cut) {
        cut -= 1;
    }
    note.truncate(cut);
    note.push(ELLIPSIS);
    note
}

/// Whether a published event was new or a repeat of a recent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    /// Created as a new event.
    New,
    /// Counted in the series of an identical recent event.
    Repeated,
}

/// What makes two events the same event, repeated: the object, the type,
/// the reason and the note (as client-go's recorder keys them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    warning: bool,
    reason: String,
    note: String,
}

/// An event published in the last [`REPEAT_WINDOW`].
struct Published {
    namespace: String,
    name: String,
    count: i32,
    last: tokio::time::Instant,
    /// When the series count was last written.
    written: tokio::time::Instant,
}

/// Publishes `events.k8s.io/v1` events: an event identical to one published
/// recently bumps its series count (written at most every
/// [`SERIES_INTERVAL`]); one whose note differs is a new event. Notes are cut
/// to the API server's limit.
///
/// kube's `Recorder` keys repeats without the note, so a second, different
/// message (a config refused for another reason, an address that moved
/// again) would show as "x2" of the first message: the user would read a
/// stale reason.
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    recent: Mutex<Recent>,
}

/// The events published in the last [`REPEAT_WINDOW`], and when the old
/// ones were last forgotten (once a minute, not on every publish: with ten
/// thousand Services a sweep per event would cost more than the event).
struct Recent {
    events: HashMap<EventKey, Published>,
    swept: tokio::time::Instant,
}

impl EventPublisher {
    /// A publisher reporting as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> EventPublisher {
        EventPublisher {
            client,
            reporter,
            recent: Mutex::new(Recent {
                events: HashMap::new(),
                swept: tokio::time::Instant::now(),
            }),
        }
    }

    /// Publishes one event about `regarding`.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> Result<Publication, kube::Error> {
        let note = cut_note(note);
        let key = EventKey {
            kind: regarding.kind.clone(),
            namespace: regarding.namespace.clone(),
            name: regarding.name.clone(),
            uid: regarding.uid.clone(),
            warning: matches!(type_, EventType::Warning),
            reason: reason.to_owned(),
            note: note.clone(),
        };
        let now = tokio::time::Instant::now();
        let repeat = {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if now.duration_since(recent.swept) > Duration::from_secs(60) {
                recent
                    .events
                    .retain(|_, p| now.duration_since(p.last) < REPEAT_WINDOW);
                recent.swept = now;
            }
            recent
                .events
                .get_mut(&key)
                .filter(|p| now.duration_since(p.last) < REPEAT_WINDOW)
                .map(|p| {
                    p.count += 1;
                    p.last = now;
                    let due = now.duration_since(p.written) >= SERIES_INTERVAL;
                    if due {
                        p.written = now;
                    }
                    (p.namespace.clone(), p.name.clone(), p.count, due)
                })
        };
        let stamp = MicroTime(Timestamp::now());
        if let Some((namespace, name, count, due)) = repeat {
            if !due {
                return Ok(Publication::Repeated);
            }
            let series =
                json!({ "series": EventSeries { count, last_observed_time: stamp.clone() } });
            match Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                // The API server expired it: publish it anew.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                other => return other.map(|_| Publication::Repeated),
            }
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let name = format!(
            "{}.{:x}",
            regarding
                .name
                .as_deref()
                .unwrap_or(&self.reporter.controller),
            stamp.0.as_nanosecond()
        );
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some("Allocate".into()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            type_: Some(if key.warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(stamp),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..Default::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        let published = Published {
            namespace,
            name,
            count: 1,
            last: now,
            written: now,
        };
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .insert(key, published);
        Ok(Publication::New)
    }
}

/// The key of a Service object.
pub fn key_of(service: &Service) -> ServiceKey {
    ServiceKey::new(service.namespace().unwrap_or_default(), service.name_any())
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

/// Rebuilds the allocator from the addresses already in Services' statuses,
/// oldest Service first (so the older one keeps a contested address), before
/// anything new is allocated. Returns how many Services kept their addresses.
pub async fn restore(ctx: &Context) -> Result<usize, kube::Error> {
    let mut services = Api::<Service>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    services.sort_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref(), key_of(a))
            .cmp(&(b.metadata.creation_timestamp.as_ref(), key_of(b)))
    });
    let mut kept = 0;
    let mut allocator = ctx.allocator();
    for service in &services {
        let observed = status::observed(service);
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
    let observed = status::observed(&service);
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
            ctx.publish(service.as_ref(), EventType::Normal, "IPAllocated", note)
                .await;
        }
        Some(Notice::Extended { added, kept, pool }) => {
            let (added, kept) = (join(&added), join(&kept));
            info!(service = %key, ip = %added, kept = %kept, pool = %pool, "allocated the other family");
            ctx.metrics.allocated();
            let note = format!("Assigned {added} from pool {pool}, beside {kept}");
            ctx.publish(service.as_ref(), EventType::Normal, "IPAllocated", note)
                .await;
        }
        Some(Notice::Moved { from, to, pool }) => {
            let (from, to) = (join(&from), join(&to));
            warn!(service = %key, from = %from, to = %to, pool = %pool, "address changed");
            ctx.metrics.allocated();
            let note = format!(
                "Address changed from {from} to {to} (pool {pool}): the old address is no longer allowed"
            );
            ctx.publish(service.as_ref(), EventType::Warning, "IPChanged", note)
                .await;
        }
        Some(Notice::Failed { reason, message }) => {
            // Counted and logged once per cause: a pending Service is
            // reconciled on every wake-up, and the repeat only adds to the
            // event's series.
            let new_cause = ctx
                .publish(
                    service.as_ref(),
                    EventType::Warning,
                    "AllocationFailed",
                    message.clone(),
                )
                .await;
            if new_cause {
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

/// Runs the Service controller until `shutdown`.
pub async fn run(
    ctx: Arc<Context>,
    mut wake: mpsc::UnboundedReceiver<()>,
    shutdown: CancellationToken,
) {
    let api = Api::<Service>::all(ctx.client.clone());
    let (reader, writer) = reflector::store();
    let (store, events_ctx) = (reader.clone(), ctx.clone());
    let services = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(forget_unread)
        .reflect(writer)
        .inspect_ok(move |event| release_deleted(&events_ctx, &store, event))
        .applied_objects();
    Controller::for_stream(services, reader)
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

/// Drops what the controller never reads from the Services it keeps in
/// memory: the managed-fields bookkeeping and kubectl's copy of the last
/// applied manifest are most of a Service's size, and the store holds every
/// Service of the cluster.
fn forget_unread(service: &mut Service) {
    service.managed_fields_mut().clear();
    if let Some(annotations) = service.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

fn join(addresses: &[std::net::IpAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_within_the_limit_is_kept_whole() {
        let note = "x".repeat(NOTE_LIMIT);
        assert_eq!(cut_note(note.clone()), note);
    }

    #[test]
    fn a_long_note_is_cut_to_the_limit_with_an_ellipsis_on_a_char_boundary() {
        // Multi-byte characters straddle the cut.
        let note = "é".repeat(NOTE_LIMIT);
        let cut = cut_note(note);
        assert!(cut.len() <= NOTE_LIMIT, "{} bytes", cut.len());
        assert!(cut.len() >= NOTE_LIMIT - 4);
        assert!(cut.ends_with("é…"));
    }
}
