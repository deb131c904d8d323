//! The speaker's view of the cluster: watches Services, EndpointSlices,
//! Nodes, the speakers' discovery Leases and ferrolb's ConfigMap, feeds the
//! address book to the membership, and after every change of a view or of
//! the membership asks [`plan`] what this node announces and says, then
//! carries that out: publishes the announcements, the events and one log
//! line per decision. A failing watch keeps its last view (see the fencing
//! rules in [`crate::liveness`]): the API server is off the failover path.
//! No packet code and no decision rules here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ferrolb_config::request::{self, Served};
use ferrolb_config::{Config, ServiceKey, last_good_configmap};
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::announcer::Announcements;
use crate::members::{MemberView, Members};
use crate::metrics::Metrics;
use crate::node_lease::MEMBER_ADDRESS;
use crate::ownership::{NodeView, ServiceView, plan};

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

/// How many watches feed the decisions.
const ALL_SOURCES: usize = 6;

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
}

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
}

/// Runs until `shutdown`, publishing this node's announcements.
pub async fn run(client: Client, settings: Settings, wiring: Wiring, shutdown: CancellationToken) {
    let Wiring {
        recorder,
        metrics,
        announcements,
        members,
        mut view,
        record_missing,
    } = wiring;
    let (changes, mut changed) = mpsc::unbounded_channel::<(Source, bool)>();
    let services = reflect::<Service>(
        Api::all(client.clone()),
        watcher::Config::default(),
        Source::Services,
        &changes,
        &shutdown,
    );
    let slices = reflect::<EndpointSlice>(
        Api::all(client.clone()),
        watcher::Config::default(),
        Source::Slices,
        &changes,
        &shutdown,
    );
    let nodes = reflect::<Node>(
        Api::all(client.clone()),
        watcher::Config::default(),
        Source::Nodes,
        &changes,
        &shutdown,
    );
    let lease_selector = format!("{}={}", LEASE_LABEL.0, LEASE_LABEL.1);
    let leases = reflect::<Lease>(
        Api::namespaced(client.clone(), &settings.namespace),
        watcher::Config::default().labels(&lease_selector),
        Source::Leases,
        &changes,
        &shutdown,
    );
    let config_maps = reflect::<ConfigMap>(
        Api::namespaced(client.clone(), &settings.namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", settings.config_map)),
        Source::Config,
        &changes,
        &shutdown,
    );
    let last_good = reflect::<ConfigMap>(
        Api::namespaced(client.clone(), &settings.namespace),
        watcher::Config::default().fields(&format!(
            "metadata.name={}",
            last_good_configmap(&settings.config_map)
        )),
        Source::LastGoodConfig,
        &changes,
        &shutdown,
    );

    let mut state = State {
        settings,
        recorder,
        metrics,
        config: None,
        config_text: None,
        owners: BTreeMap::new(),
        failing: BTreeSet::new(),
        synced: BTreeSet::new(),
        book: Vec::new(),
    };
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
        }
        if state.synced.contains(&Source::Leases) {
            state
                .follow_book(&leases.state(), &members, &record_missing)
                .await;
        }
        state.observe_config(&config_maps.state(), &last_good.state());
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
        let services = services.state();
        let views = service_views(&services, &slices.state());
        let node_views = node_views(&nodes.state());
        let plan = plan(
            &config,
            &views,
            &node_views,
            &members_view.live,
            &state.settings.node,
            &state.owners,
            members_view.reannounce,
        );
        state.metrics.set_announced(plan.announcements.len());
        announcements.send_if_modified(|current| {
            let changed = *current != plan.announcements;
            *current = plan.announcements.clone();
            changed
        });
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
            state.publish(service, event).await;
        }
        state.owners = plan.owners;
    }
}

struct State {
    settings: Settings,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    config: Option<Arc<Config>>,
    config_text: Option<BTreeMap<String, String>>,
    /// The last owner seen per Service, to emit events only on change.
    owners: BTreeMap<ServiceKey, Option<String>>,
    failing: BTreeSet<Source>,
    /// The watches whose initial list is complete: deciding before all are
    /// would see Services without the speakers that serve them.
    synced: BTreeSet<Source>,
    /// The address book last handed to the membership.
    book: Vec<(String, SocketAddr)>,
}

impl State {
    fn note(&mut self, source: Source, ok: bool) {
        let was_healthy = self.failing.is_empty();
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

    /// Follows the operator's ConfigMap; while it is invalid the config in
    /// force stays, and a speaker that starts with no config in force (a
    /// restart after a bad edit) takes the controller's last good copy.
    fn observe_config(&mut self, config_maps: &[Arc<ConfigMap>], last_good: &[Arc<ConfigMap>]) {
        let data = config_maps.first().and_then(|cm| cm.data.clone());
        if let Some(data) = data
            && self.config_text.as_ref() != Some(&data)
        {
            match Config::from_configmap_data(&data) {
                Ok(validated) => {
                    info!(pools = validated.config.pools.len(), "config applied");
                    self.config = Some(Arc::new(validated.config));
                }
                Err(errors) => {
                    warn!("config rejected; the last good config keeps serving:\n{errors}");
                }
            }
            self.config_text = Some(data);
        }
        if self.config.is_none()
            && let Some(data) = last_good.first().and_then(|cm| cm.data.clone())
            && let Ok(validated) = Config::from_configmap_data(&data)
        {
            warn!("serving the controller's last good config until the ConfigMap is fixed");
            self.config = Some(Arc::new(validated.config));
        }
    }

    /// Publishes a planned event. kube's recorder folds events with the
    /// same type, reason, action and reporter into one series whatever their
    /// note, so the plan makes `action` differ where the note's substance
    /// does.
    async fn publish(&self, service: &Service, planned: &crate::ownership::PlannedEvent) {
        let event = Event {
            type_: if planned.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: planned.reason.into(),
            note: Some(planned.note.clone()),
            action: planned.action.clone(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&event, &service.object_ref(&()))
            .await
        {
            warn!(reason = planned.reason, error = %e, "could not publish event");
        }
    }
}

/// Starts a reflector for `api`, reporting every change (and whether the
/// watch is healthy) on `changes`.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
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
    let stream = watcher(api, config).default_backoff().reflect(writer);
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

fn key_of(service: &Service) -> ServiceKey {
    ServiceKey::new(service.namespace().unwrap_or_default(), service.name_any())
}

/// The Services ferrolb serves that hold addresses, with their endpoints.
fn service_views(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Vec<ServiceView> {
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
            let addresses: Vec<IpAddr> = service
                .status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?
                .iter()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect();
            if addresses.is_empty() {
                return None;
            }
            let (has_serving_endpoints, ready_endpoint_nodes) = endpoints
                .get(&(request.key.namespace.clone(), request.key.name.clone()))
                .cloned()
                .unwrap_or_default();
            Some(ServiceView {
                key: request.key,
                addresses,
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
                ready: condition("Ready"),
                network_unavailable: condition("NetworkUnavailable"),
            }
        })
        .collect()
}
