//! The speaker's view of the cluster: watches Services, EndpointSlices,
//! Nodes, Namespaces (labels only), the speakers' discovery Leases and
//! ferrolb's ConfigMap, feeds the
//! address book to the membership and the speakers' MACs to the announcer,
//! and after every change of a view or of the membership asks [`plan`] what
//! this node announces and says, then carries that out: publishes the
//! announcements, the events and one log line per decision. A failing watch
//! keeps its last view (see the fencing rules in [`crate::liveness`]): the
//! API server is off the failover path. No packet code and no decision rules
//! here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_config::request::{self, Served, key_of};
use ferrolb_config::{Config, ServiceKey, last_good_configmap, trim};
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::announcer::{Announcements, WireEvent};
use crate::election::Rankings;
use crate::l2_status_writer::{self, Decided};
use crate::members::{MemberView, Members};
use crate::metrics::Metrics;
use crate::node_lease::{MACS_ANNOTATION, MEMBER_ADDRESS, parse_macs};
use crate::ownership::{
    NodeView, Plan, PlannedEvent, Refused, ServiceView, plan, refusals, unannounced,
};
use crate::respond::Speakers;
use crate::wire::MacAddr;

/// The label every speaker Lease carries, so speakers watch only those.
pub const LEASE_LABEL: (&str, &str) = ("app.kubernetes.io/component", "ferrolb-speaker");

/// The name of node `node`'s speaker Lease.
pub fn lease_name(node: &str) -> String {
    format!("ferrolb-speaker-{node}")
}

/// Where to find things and who this speaker is.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's name.
    pub node: String,
    /// Namespace of the ConfigMap and the Leases.
    pub namespace: String,
    /// Name of the ConfigMap.
    pub config_map: String,
    /// Where this speaker's membership listens (what its record must say).
    pub member: SocketAddr,
}

/// Objects per page of a watch's initial list: a page is held whole while
/// it is read, and any Service may carry 256 KiB of annotations.
/// Measured (`cargo bench -p ferrolb-e2e --bench memory`): 50 a page
/// peaked twice as high as 10 at a restart among 100 KiB Services; 10
/// costs a round trip per ten objects at start.
const LIST_PAGE: u32 = 10;

/// How many watches feed the decisions.
const ALL_SOURCES: usize = 7;

/// Which watch a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Services,
    Slices,
    Nodes,
    Leases,
    Config,
    /// The controller's copy of the last config it accepted.
    LastGoodConfig,
    /// Namespaces' labels, for pools' namespace selectors.
    Namespaces,
}

impl Source {
    const ALL: [Source; ALL_SOURCES] = [
        Source::Services,
        Source::Slices,
        Source::Nodes,
        Source::Leases,
        Source::Config,
        Source::LastGoodConfig,
        Source::Namespaces,
    ];

    /// How `/healthz` names the watch.
    fn as_label(self) -> &'static str {
        match self {
            Source::Services => "Service",
            Source::Slices => "EndpointSlice",
            Source::Nodes => "Node",
            Source::Leases => "speaker Lease",
            Source::Config => "ConfigMap",
            Source::LastGoodConfig => "last good ConfigMap",
            Source::Namespaces => "Namespace",
        }
    }
}

/// How long the MACs of a speaker that released its Lease count as a
/// handover: it answers for a bounded time after the release (the drain's
/// pause), well within this.
const HANDOVER_GRACE: Duration = Duration::from_secs(5);

/// What the loop needs besides the client: the membership and where to
/// publish.
pub struct Wiring {
    /// The event recorder.
    pub recorder: Recorder,
    /// The speaker's metrics.
    pub metrics: Arc<Metrics>,
    /// Where the announcements go.
    pub announcements: watch::Sender<Announcements>,
    /// The membership, to hand it the address book.
    pub members: Members,
    /// The membership's view.
    pub view: watch::Receiver<MemberView>,
    /// Notified when this speaker's own record is missing or wrong.
    pub record_missing: Arc<Notify>,
    /// Where the speakers' MACs go (for the announcer).
    pub speakers: watch::Sender<Speakers>,
    /// What the announcer saw on the wire, to raise events for.
    pub wire_events: mpsc::UnboundedReceiver<WireEvent>,
    /// Where the decisions go, for the status objects.
    pub decided: watch::Sender<Option<Decided>>,
}

/// Runs until `shutdown`, publishing this node's announcements and the
/// speakers' MACs, and raising the events for what the announcer reports.
pub async fn run(client: Client, settings: Settings, wiring: Wiring, shutdown: CancellationToken) {
    let Wiring {
        recorder,
        metrics,
        announcements,
        members,
        mut view,
        record_missing,
        speakers,
        mut wire_events,
        decided,
    } = wiring;
    metrics.expect_watches(&Source::ALL.map(Source::as_label));
    let (changes, mut changed) = mpsc::unbounded_channel::<(Source, bool)>();
    let stores = Views::start(&client, &settings, &changes, &shutdown);
    let mut state = State::new(settings, recorder, metrics);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            change = changed.recv() => {
                let Some((source, ok)) = change else { return };
                state.note(source, ok);
                // Take every change already queued, then decide once.
                while let Ok((source, ok)) = changed.try_recv() {
                    state.note(source, ok);
                }
            }
            changed = view.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            Some(event) = wire_events.recv() => {
                state.report(event, &stores.services.state()).await;
                continue;
            }
            // A handover grace ends: the speakers' view must say so even if
            // nothing else changes, or a speaker that joined would be taken
            // for one handing over for as long as the cluster stays quiet,
            // and its claims would never count as a split brain.
            () = until(state.next_handover_end()) => {}
        }
        let now = Instant::now();
        if state.synced.contains(&Source::Leases) {
            state
                .follow_book(&stores.leases.state(), &members, &record_missing)
                .await;
        }
        let known = state.observe_speakers(&stores.leases.state(), now);
        speakers.send_if_modified(|current| {
            let changed = *current != known;
            *current = known;
            changed
        });
        state.observe_config(&stores.config_maps.state(), &stores.last_good.state());
        let members_view = view.borrow_and_update().clone();
        state.metrics.set_members_live(members_view.live.len());
        // Decide only once every view is complete (a Service seen without
        // the speakers that serve it would be claimed) and the membership
        // has heard its peers (or it would claim everything for a moment).
        if state.synced.len() < ALL_SOURCES || !members_view.settled {
            continue;
        }
        let Some(config) = state.config.clone() else {
            continue;
        };
        state
            .decide(&config, &stores, &members_view, &announcements, &decided)
            .await;
    }
}

/// The API's objects, each kept by its own reflector.
struct Views {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    leases: Store<Lease>,
    config_maps: Store<ConfigMap>,
    last_good: Store<ConfigMap>,
}

impl Views {
    /// Starts every reflector, each trimming what it stores to what the
    /// decisions read, and reporting to `changes` when it lists or fails.
    fn start(
        client: &Client,
        settings: &Settings,
        changes: &mpsc::UnboundedSender<(Source, bool)>,
        shutdown: &CancellationToken,
    ) -> Views {
        let services = reflect::<Service>(
            Api::all(client.clone()),
            watcher::Config::default().page_size(LIST_PAGE),
            (trim::keep_read_fields, ours),
            Source::Services,
            changes,
            shutdown,
        );
        let slices = reflect::<EndpointSlice>(
            Api::all(client.clone()),
            watcher::Config::default().page_size(LIST_PAGE),
            (crate::trim::endpoint_slice, |_| true),
            Source::Slices,
            changes,
            shutdown,
        );
        let nodes = reflect::<Node>(
            Api::all(client.clone()),
            watcher::Config::default().page_size(LIST_PAGE),
            (crate::trim::node, |_| true),
            Source::Nodes,
            changes,
            shutdown,
        );
        // Labels only: a pool's namespace selectors need nothing else.
        let namespaces = reflect::<PartialObjectMeta<Namespace>>(
            Api::all(client.clone()),
            watcher::Config::default().page_size(LIST_PAGE),
            (
                |namespace| {
                    namespace.metadata.managed_fields = None;
                    namespace.metadata.annotations = None;
                },
                |_| true,
            ),
            Source::Namespaces,
            changes,
            shutdown,
        );
        let lease_selector = format!("{}={}", LEASE_LABEL.0, LEASE_LABEL.1);
        let leases = reflect::<Lease>(
            Api::namespaced(client.clone(), &settings.namespace),
            watcher::Config::default().labels(&lease_selector),
            (crate::trim::lease, |_| true),
            Source::Leases,
            changes,
            shutdown,
        );
        let config_maps = reflect::<ConfigMap>(
            Api::namespaced(client.clone(), &settings.namespace),
            watcher::Config::default().fields(&format!("metadata.name={}", settings.config_map)),
            (|_| {}, |_| true),
            Source::Config,
            changes,
            shutdown,
        );
        let last_good = reflect::<ConfigMap>(
            Api::namespaced(client.clone(), &settings.namespace),
            watcher::Config::default().fields(&format!(
                "metadata.name={}",
                last_good_configmap(&settings.config_map)
            )),
            (|_| {}, |_| true),
            Source::LastGoodConfig,
            changes,
            shutdown,
        );
        Views {
            services,
            slices,
            nodes,
            namespaces,
            leases,
            config_maps,
            last_good,
        }
    }
}

struct State {
    /// The election's rankings, kept from one decision to the next.
    rankings: Rankings,
    settings: Settings,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    config: Option<Arc<Config>>,
    config_text: Option<BTreeMap<String, String>>,
    /// The last owner seen per Service, to emit events only on change.
    owners: BTreeMap<ServiceKey, Option<String>>,
    /// The status addresses refused last time, to report each once.
    refused: BTreeSet<Refused>,
    failing: BTreeSet<Source>,
    /// The watches whose initial list is complete: deciding before all are
    /// would see Services without the speakers that serve them.
    synced: BTreeSet<Source>,
    /// The MACs each speaker's Lease publishes, by node.
    speaker_macs: BTreeMap<String, BTreeSet<MacAddr>>,
    /// MACs of speakers whose Lease was released or appeared, and when.
    handing_over: BTreeMap<MacAddr, Instant>,
    /// Whether the Leases were observed before: at the first look every
    /// speaker is new to this one, not joining.
    speakers_seen: bool,
    /// When each speaker's Lease appeared, for those that appeared after
    /// the first look and within [`HANDOVER_GRACE`].
    joined: BTreeMap<String, Instant>,
    /// The address book last handed to the membership.
    book: Vec<(String, SocketAddr)>,
}

impl State {
    fn new(settings: Settings, recorder: Recorder, metrics: Arc<Metrics>) -> State {
        State {
            settings,
            recorder,
            metrics,
            config: None,
            config_text: None,
            owners: BTreeMap::new(),
            refused: BTreeSet::new(),
            failing: BTreeSet::new(),
            synced: BTreeSet::new(),
            speaker_macs: BTreeMap::new(),
            rankings: Rankings::new(),
            handing_over: BTreeMap::new(),
            speakers_seen: false,
            joined: BTreeMap::new(),
            book: Vec::new(),
        }
    }

    /// Decides from complete views what this node announces, and carries
    /// it out: announcements, metrics, status objects, events.
    async fn decide(
        &mut self,
        config: &Config,
        stores: &Views,
        members_view: &MemberView,
        announcements: &watch::Sender<Announcements>,
        decided: &watch::Sender<Option<Decided>>,
    ) {
        let live = &members_view.live;
        let services = stores.services.state();
        let namespace_labels = |name: &str| {
            stores
                .namespaces
                .get(&reflector::ObjectRef::new(name))
                .and_then(|n| n.metadata.labels.clone())
                .unwrap_or_default()
        };
        let views = service_views(&services, &stores.slices.state(), &namespace_labels);
        let node_views = node_views(&stores.nodes.state());
        let plan = plan(
            config,
            &views,
            &node_views,
            live,
            &self.settings.node,
            &self.owners,
            members_view.reannounce,
            &mut self.rankings,
        );
        let refused = refusals(config, &views, &node_views);
        self.metrics
            .set_unannounced(unannounced(&plan.owners, &refused));
        self.report_refusals(refused, &services, live).await;
        self.metrics.set_announced(&plan.announcements);
        l2_status_writer::publish(decided, &plan, live);
        announcements.send_if_modified(|current| {
            let changed = *current != plan.announcements;
            *current = plan.announcements.clone();
            changed
        });
        self.carry_out_changes(&plan, &services).await;
        self.owners = plan.owners;
    }

    /// Logs each owner change of `plan` and publishes its event.
    async fn carry_out_changes(&mut self, plan: &Plan, services: &[Arc<Service>]) {
        for change in &plan.changes {
            let decision = &change.decision;
            let shown = decision
                .addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            match (&decision.election.owner, decision.election.reason()) {
                (Some(owner), _) if decision.election.is_me() => {
                    info!(service = %decision.service, ip = %shown, node = %owner, "owner changed: announcing from this node");
                }
                (Some(owner), _) => {
                    info!(service = %decision.service, ip = %shown, node = %owner, "owner changed: another node announces");
                }
                (None, Some(reason)) => {
                    warn!(service = %decision.service, ip = %shown, reason = reason.as_label(), "nobody announces: {reason}");
                }
                (None, None) => {}
            }
            let Some(event) = &change.event else { continue };
            let Some(service) = services.iter().find(|s| key_of(s) == decision.service) else {
                continue;
            };
            self.publish_planned(service, event).await;
        }
    }

    fn note(&mut self, source: Source, ok: bool) {
        let was_healthy = self.failing.is_empty();
        self.metrics.observe_watch(source.as_label(), ok);
        if ok {
            self.synced.insert(source);
            self.failing.remove(&source);
        } else {
            self.failing.insert(source);
        }
        self.metrics.set_api_healthy(self.failing.is_empty());
        if was_healthy && !self.failing.is_empty() {
            warn!(watch = ?source, "cannot watch the API server; deciding from the last views");
        } else if !was_healthy && self.failing.is_empty() {
            info!("watching the API server again");
        }
    }

    /// Hands the membership the speakers' addresses from their records,
    /// and asks for this speaker's own record again if it is missing or
    /// wrong. A record only says where a speaker listens: whatever it says,
    /// no one becomes live or dead by it.
    async fn follow_book(
        &mut self,
        leases: &[Arc<Lease>],
        members: &Members,
        record_missing: &Notify,
    ) {
        let mut book: Vec<(String, SocketAddr)> = leases
            .iter()
            .filter_map(|lease| {
                let name = lease
                    .name_any()
                    .strip_prefix(&lease_name(""))
                    .map(str::to_owned)?;
                let addr = lease.annotations().get(MEMBER_ADDRESS)?.parse().ok()?;
                Some((name, addr))
            })
            .collect();
        book.sort();
        let mine = book
            .iter()
            .find(|(name, _)| *name == self.settings.node)
            .map(|(_, addr)| *addr);
        if mine != Some(self.settings.member) {
            record_missing.notify_one();
        }
        if book != self.book {
            self.book = book.clone();
            members.book(book).await;
        }
    }

    /// When the earliest handover grace ends, if any runs.
    fn next_handover_end(&self) -> Option<Instant> {
        self.handing_over
            .values()
            .chain(self.joined.values())
            .min()
            .map(|at| *at + HANDOVER_GRACE)
    }

    /// The speakers' MACs from their Leases: this node's own, the others',
    /// and those of speakers that released their Lease (a clean stop) or
    /// whose Lease appeared (a start) within [`HANDOVER_GRACE`]. A Lease
    /// that merely expires stays listed: only a release marks a handover.
    fn observe_speakers(&mut self, leases: &[Arc<Lease>], now: Instant) -> Speakers {
        let mut current: BTreeMap<String, BTreeSet<MacAddr>> = BTreeMap::new();
        for lease in leases {
            let Some(node) = lease.spec.as_ref().and_then(|s| s.holder_identity.clone()) else {
                continue;
            };
            // Only the speaker of a node names its Lease after it.
            if lease.metadata.name.as_deref() != Some(lease_name(&node).as_str()) {
                continue;
            }
            let macs = lease
                .annotations()
                .get(MACS_ANNOTATION)
                .map(|v| parse_macs(v))
                .unwrap_or_default();
            current.insert(node, macs);
        }
        for (node, macs) in &self.speaker_macs {
            if !current.contains_key(node) {
                for mac in macs {
                    self.handing_over.insert(*mac, now);
                }
            }
        }
        if self.speakers_seen {
            for node in current.keys() {
                if !self.speaker_macs.contains_key(node) {
                    self.joined.entry(node.clone()).or_insert(now);
                }
            }
        }
        self.joined.retain(|node, at| {
            current.contains_key(node) && now.duration_since(*at) < HANDOVER_GRACE
        });
        // A MAC is joining while its speaker's Lease is new (it may publish
        // its MACs a renewal after creating the Lease); a MAC added to an
        // old Lease is not.
        for (node, macs) in &current {
            if !self.joined.contains_key(node) {
                continue;
            }
            let known = self.speaker_macs.get(node);
            for mac in macs.iter().filter(|m| known.is_none_or(|k| !k.contains(m))) {
                self.handing_over.insert(*mac, now);
            }
        }
        self.speakers_seen = self.synced.contains(&Source::Leases);
        self.handing_over
            .retain(|_, at| now.duration_since(*at) < HANDOVER_GRACE);
        self.speaker_macs = current;
        let mut speakers = Speakers::default();
        for (node, macs) in &self.speaker_macs {
            if *node == self.settings.node {
                speakers.own.extend(macs);
            } else {
                speakers.present.extend(macs);
            }
        }
        speakers.handing_over = self.handing_over.keys().copied().collect();
        speakers
    }

    /// Raises the event for what the announcer saw, on every Service with
    /// that address.
    async fn report(&self, event: WireEvent, services: &[Arc<Service>]) {
        let WireEvent::IpConflict {
            address,
            mac,
            announced,
        } = event;
        let (action, note) = if announced {
            (
                "Announce",
                format!(
                    "{mac}, which is no ferrolb speaker, also answers for {address}: two hosts use the address"
                ),
            )
        } else {
            (
                "Probe",
                format!(
                    "{address} is in use by {mac}, which is no ferrolb speaker: not announced until it is free"
                ),
            )
        };
        let holders = services
            .iter()
            .filter(|service| request::ingress(service).contains(&address));
        for service in holders {
            self.publish(
                service,
                EventType::Warning,
                "IPConflict",
                action,
                note.clone(),
            )
            .await;
        }
    }

    /// Follows the operator's ConfigMap; while it is invalid the config in
    /// force stays, and a speaker that starts with no config in force (a
    /// restart after a bad edit) takes the controller's last good copy —
    /// but only once the ConfigMap watch has listed: before that, "no
    /// ConfigMap" means "not arrived yet", not "missing".
    fn observe_config(&mut self, config_maps: &[Arc<ConfigMap>], last_good: &[Arc<ConfigMap>]) {
        let changes = next_config(
            &mut self.config,
            &mut self.config_text,
            self.synced.contains(&Source::Config),
            config_maps.first().and_then(|cm| cm.data.as_ref()),
            last_good.first().and_then(|cm| cm.data.as_ref()),
        );
        for change in changes {
            match change {
                ConfigChange::Applied { pools } => info!(pools, "config applied"),
                ConfigChange::Rejected(errors) => {
                    warn!("config rejected; the last good config keeps serving:\n{errors}");
                }
                ConfigChange::FellBack { missing } => warn!(
                    configmap = if missing { "missing" } else { "invalid" },
                    "serving the controller's last good config until the ConfigMap is fixed"
                ),
            }
        }
    }

    /// Counts the status addresses no node announces, and reports each
    /// once: a log line on every speaker, an `AddressNotAnnounced` event
    /// from the first live speaker by name. One that goes away and comes
    /// back is reported again.
    async fn report_refusals(
        &mut self,
        now: Vec<Refused>,
        services: &[Arc<Service>],
        live: &BTreeSet<String>,
    ) {
        let now: BTreeSet<Refused> = now.into_iter().collect();
        let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
        for refused in &now {
            *by_reason.entry(refused.reason).or_default() += 1;
        }
        self.metrics.set_refused(by_reason);
        let speaks = live.iter().next() == Some(&self.settings.node);
        for refused in now.difference(&self.refused) {
            warn!(service = %refused.service, ip = %refused.address, reason = refused.reason, "not announcing an address of the Service's status: {}", refused.why);
            let service = services.iter().find(|s| key_of(s) == refused.service);
            if let (true, Some(service)) = (speaks, service) {
                let note = format!("not announcing {}: {}", refused.address, refused.why);
                self.publish(
                    service,
                    EventType::Warning,
                    "AddressNotAnnounced",
                    refused.reason,
                    note,
                )
                .await;
            }
        }
        self.refused = now;
    }

    /// Publishes an event the plan asked for.
    async fn publish_planned(&self, service: &Service, planned: &PlannedEvent) {
        let type_ = if planned.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.publish(
            service,
            type_,
            planned.reason,
            &planned.action,
            planned.note.clone(),
        )
        .await;
    }

    /// Publishes an event. kube's recorder folds events with the same
    /// type, reason, action and reporter into one series whatever their
    /// note, so `action` must differ where the note's substance does: the
    /// owner's name is in the reporter already (only the owner reports
    /// `nodeAssigned`), and a no-announcer event carries its cause.
    async fn publish(
        &self,
        service: &Service,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&event, &service.object_ref(&()))
            .await
        {
            warn!(reason, error = %e, "could not publish event");
        }
    }
}

/// What one look at the ConfigMaps changed in the config in force.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConfigChange {
    /// The operator's ConfigMap was valid and is now in force.
    Applied { pools: usize },
    /// The operator's ConfigMap is invalid; the config in force stays.
    Rejected(String),
    /// No config was in force and the operator's ConfigMap, listed, is
    /// missing or invalid: the controller's last good copy is now in force.
    FellBack { missing: bool },
}

/// Updates `config` (and the text it came from) from the operator's
/// ConfigMap data and the controller's last good copy. `listed` says
/// whether the operator's ConfigMap watch has completed its first list: only
/// then does an absent ConfigMap mean it is missing.
fn next_config(
    config: &mut Option<Arc<Config>>,
    text: &mut Option<BTreeMap<String, String>>,
    listed: bool,
    operator: Option<&BTreeMap<String, String>>,
    last_good: Option<&BTreeMap<String, String>>,
) -> Vec<ConfigChange> {
    let mut changes = Vec::new();
    if let Some(data) = operator
        && text.as_ref() != Some(data)
    {
        match Config::from_configmap_data(data) {
            Ok(validated) => {
                changes.push(ConfigChange::Applied {
                    pools: validated.config.pools.len(),
                });
                *config = Some(Arc::new(validated.config));
            }
            Err(errors) => changes.push(ConfigChange::Rejected(errors.to_string())),
        }
        *text = Some(data.clone());
    }
    if config.is_none()
        && listed
        && let Some(data) = last_good
        && let Ok(validated) = Config::from_configmap_data(data)
    {
        changes.push(ConfigChange::FellBack {
            missing: operator.is_none(),
        });
        *config = Some(Arc::new(validated.config));
    }
    changes
}

/// How a watch's objects are stored: cut down by the first function, and
/// only those the second accepts.
type Storing<K> = (fn(&mut K), fn(&K) -> bool);

/// Starts a reflector for `api` that stores the objects `keep` accepts, cut
/// down by `trim`, reporting every change (and whether the watch is
/// healthy) on `changes`.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    (trim, keep): Storing<K>,
    source: Source,
    changes: &mpsc::UnboundedSender<(Source, bool)>,
    shutdown: &CancellationToken,
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(trim)
        .filter_map(move |item| {
            std::future::ready(match item {
                Ok(watcher::Event::InitApply(object)) if !keep(&object) => None,
                // An object no longer kept leaves the store as if deleted.
                Ok(watcher::Event::Apply(object)) if !keep(&object) => {
                    Some(Ok(watcher::Event::Delete(object)))
                }
                other => Some(other),
            })
        })
        .reflect(writer);
    tokio::spawn(forward(stream, source, changes.clone(), shutdown.clone()));
    reader
}

async fn forward<K>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    source: Source,
    changes: mpsc::UnboundedSender<(Source, bool)>,
    shutdown: CancellationToken,
) {
    let mut stream = std::pin::pin!(stream);
    loop {
        let item = tokio::select! {
            () = shutdown.cancelled() => return,
            item = stream.next() => item,
        };
        let Some(item) = item else { return };
        let ok = match item {
            // The store is complete only once the initial list is done.
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
            Ok(_) => true,
            Err(e) => {
                warn!(watch = ?source, error = %e, "watch failed; retrying");
                false
            }
        };
        if changes.send((source, ok)).is_err() {
            return;
        }
    }
}

/// Whether ferrolb serves `service` (or would, once its request is fixed):
/// the speaker stores no other Service, however many the cluster holds.
fn ours(service: &Service) -> bool {
    !matches!(request::read(service), Ok(Served::NotOurs(_)))
}

/// The Services ferrolb serves that hold addresses, with their endpoints
/// and their namespace's labels.
fn service_views(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    namespace_labels: &dyn Fn(&str) -> BTreeMap<String, String>,
) -> Vec<ServiceView> {
    let mut endpoints: BTreeMap<(String, String), (bool, BTreeSet<String>)> = BTreeMap::new();
    for slice in slices {
        let Some(service) = slice.labels().get("kubernetes.io/service-name") else {
            continue;
        };
        let entry = endpoints
            .entry((slice.namespace().unwrap_or_default(), service.clone()))
            .or_default();
        for endpoint in slice.endpoints.iter().flatten() {
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            // Unset conditions mean ready (and serving when ready), as the
            // EndpointSlice API defines them.
            let ready = conditions.ready.unwrap_or(true);
            let serving = conditions.serving.unwrap_or(ready);
            entry.0 |= serving;
            if ready && let Some(node) = &endpoint.node_name {
                entry.1.insert(node.clone());
            }
        }
    }
    services
        .iter()
        .filter_map(|service| {
            let Ok(Served::Ours(request)) = request::read(service) else {
                return None;
            };
            let addresses = request::ingress(service);
            if addresses.is_empty() {
                return None;
            }
            let (has_serving_endpoints, ready_endpoint_nodes) = endpoints
                .get(&(request.key.namespace.clone(), request.key.name.clone()))
                .cloned()
                .unwrap_or_default();
            Some(ServiceView {
                namespace_labels: namespace_labels(&request.key.namespace),
                key: request.key,
                addresses,
                pool: request.pool,
                labels: request.labels,
                traffic_policy: request.traffic_policy,
                has_serving_endpoints,
                ready_endpoint_nodes,
            })
        })
        .collect()
}

fn node_views(nodes: &[Arc<Node>]) -> Vec<NodeView> {
    nodes
        .iter()
        .map(|node| {
            let condition = |kind: &str| {
                node.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
                    .is_some_and(|c| c.status == "True")
            };
            NodeView {
                name: node.name_any(),
                labels: node.labels().clone(),
                network_unavailable: condition("NetworkUnavailable"),
                addresses: node
                    .status
                    .iter()
                    .flat_map(|s| s.addresses.iter().flatten())
                    .filter_map(|a| a.address.parse().ok())
                    .collect(),
            }
        })
        .collect()
}

/// Sleeps until `at`, or for ever without one.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(yaml: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("config".to_owned(), yaml.to_owned())])
    }

    const VALID: &str =
        "address-pools:\n- name: lan\n  protocol: layer2\n  addresses: [198.51.100.0/24]\n";
    const LAST_GOOD: &str =
        "address-pools:\n- name: old\n  protocol: layer2\n  addresses: [203.0.113.0/24]\n";
    const INVALID: &str = "address-pools:\n- name: lan\n  adresses: []\n";

    /// Replays one speaker start: the controller's last good copy is listed
    /// first, the operator's ConfigMap `delay` looks later (its watch not
    /// yet listed), then it arrives with `operator`.
    fn start(delay: usize, operator: Option<&str>) -> (Option<Arc<Config>>, Vec<ConfigChange>) {
        let (mut config, mut text) = (None, None);
        let last_good = data(LAST_GOOD);
        let mut changes = Vec::new();
        for _ in 0..delay {
            changes.extend(next_config(
                &mut config,
                &mut text,
                false,
                None,
                Some(&last_good),
            ));
        }
        let operator = operator.map(data);
        changes.extend(next_config(
            &mut config,
            &mut text,
            true,
            operator.as_ref(),
            Some(&last_good),
        ));
        (config, changes)
    }

    #[test]
    fn a_valid_configmap_that_arrives_late_never_falls_back() {
        for delay in 0..30 {
            let (config, changes) = start(delay, Some(VALID));
            assert_eq!(
                changes,
                vec![ConfigChange::Applied { pools: 1 }],
                "delay {delay}"
            );
            assert_eq!(config.unwrap().pools[0].name.to_string(), "lan");
        }
    }

    #[test]
    fn a_configmap_missing_after_its_first_list_falls_back_to_the_last_good_one() {
        let (config, changes) = start(3, None);
        assert_eq!(changes, vec![ConfigChange::FellBack { missing: true }]);
        assert_eq!(config.unwrap().pools[0].name.to_string(), "old");
    }

    #[test]
    fn an_invalid_configmap_is_rejected_and_the_last_good_one_serves() {
        let (config, changes) = start(2, Some(INVALID));
        assert!(
            matches!(changes[0], ConfigChange::Rejected(_)),
            "{changes:?}"
        );
        assert_eq!(changes[1], ConfigChange::FellBack { missing: false });
        assert_eq!(config.unwrap().pools[0].name.to_string(), "old");
    }

    #[test]
    fn an_invalid_edit_keeps_the_config_in_force_without_falling_back() {
        let (mut config, mut text) = (None, None);
        let last_good = data(LAST_GOOD);
        let valid = data(VALID);
        next_config(&mut config, &mut text, true, Some(&valid), Some(&last_good));
        let invalid = data(INVALID);
        let changes = next_config(
            &mut config,
            &mut text,
            true,
            Some(&invalid),
            Some(&last_good),
        );
        assert!(
            matches!(changes.as_slice(), [ConfigChange::Rejected(_)]),
            "{changes:?}"
        );
        assert_eq!(config.unwrap().pools[0].name.to_string(), "lan");
    }
}

#[cfg(test)]
mod node_view_tests {
    use super::*;
    use crate::ownership::decide;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
    use kube::api::ObjectMeta;

    fn node(name: &str, ready: &str) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// The control plane marks a node NotReady (or Unknown) when its kubelet
    /// stops reporting, for example while the node is cut from the API
    /// server. That node never sees the mark; if the others dropped it, two
    /// nodes would answer. A speaker live on the LAN keeps what it owns.
    #[test]
    fn a_node_marked_not_ready_keeps_its_address_while_its_speaker_is_live() {
        let config = Config::from_yaml(
            "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [198.51.100.0/24]\n",
        )
        .expect("valid")
        .config;
        let service = ServiceView {
            key: ServiceKey::new("default", "web"),
            addresses: vec!["198.51.100.10".parse().unwrap()],
            pool: None,
            labels: BTreeMap::new(),
            namespace_labels: BTreeMap::new(),
            traffic_policy: ferrolb_config::TrafficPolicy::Cluster,
            has_serving_endpoints: true,
            ready_endpoint_nodes: BTreeSet::new(),
        };
        let names = ["node-1", "node-2", "node-3"];
        let live: BTreeSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let ready = node_views(&names.map(|n| node(n, "True")));
        let owner = |nodes: &[NodeView]| {
            let owners: Vec<&str> = names
                .into_iter()
                .filter(|me| {
                    !decide(
                        &config,
                        std::slice::from_ref(&service),
                        nodes,
                        &live,
                        me,
                        &mut Rankings::new(),
                    )
                    .0
                    .is_empty()
                })
                .collect();
            assert_eq!(owners.len(), 1, "owners: {owners:?}");
            owners[0]
        };
        let before = owner(&ready);
        for status in ["False", "Unknown"] {
            let marked =
                node_views(&names.map(|n| node(n, if n == before { status } else { "True" })));
            assert_eq!(owner(&marked), before, "Ready={status}");
        }
    }
}
