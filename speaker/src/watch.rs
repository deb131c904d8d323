//! The speaker's view of the cluster: watches Services, EndpointSlices,
//! Nodes, the speakers' Leases and ferrolb's ConfigMap, and after every change
//! re-decides which addresses this node announces, publishing them to the
//! announcer. It owns the `nodeAssigned` events (emitted once per change of
//! owner, by the new owner) and keeps announcing what it announced while the
//! API server cannot be reached. No packet code here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_config::request::{self, Served};
use ferrolb_config::{Config, ServiceKey, last_good_configmap};
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::announcer::Announcements;
use crate::lease_liveness::Liveness;
use crate::metrics::Metrics;
use crate::ownership::{NodeView, ServiceView, decide};

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
}

/// How many sources feed the decisions: six watches and the own Lease.
const ALL_SOURCES: usize = 7;

/// Which watch a change came from; a failing one freezes decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Services,
    Slices,
    Nodes,
    Leases,
    Config,
    /// The controller's copy of the last config it accepted.
    LastGoodConfig,
    /// This speaker's own Lease renewals: the API server answers.
    OwnLease,
}

/// Runs until `shutdown`, publishing this node's announcements on
/// `announcements`.
pub async fn run(
    client: Client,
    settings: Settings,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    announcements: watch::Sender<Announcements>,
    mut renewing: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
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
        liveness: Liveness::new(),
        config: None,
        config_text: None,
        owners: BTreeMap::new(),
        failing: BTreeSet::new(),
        synced: BTreeSet::new(),
    };
    let mut next_expiry: Option<Instant> = None;
    loop {
        let expiry = async {
            match next_expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
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
            () = expiry => {}
            changed = renewing.changed() => {
                if changed.is_err() {
                    return;
                }
                let ok = *renewing.borrow_and_update();
                state.note(Source::OwnLease, ok);
            }
        }
        let now = Instant::now();
        state.observe_leases(&leases.state(), now);
        state.observe_config(&config_maps.state(), &last_good.state());
        if state.synced.len() < ALL_SOURCES || !state.failing.is_empty() {
            // The API server cannot be reached (a watch fails, or this
            // speaker's own Lease cannot be renewed): what is announced keeps
            // being announced, and no speaker is declared dead for lack of
            // news.
            next_expiry = None;
            continue;
        }
        let Some(config) = state.config.clone() else {
            continue;
        };
        // This speaker renews its Lease (or it would be frozen above), so it
        // is live whatever its own record, seen through the watch, says.
        let mut live = state.liveness.live(now.into_std());
        live.insert(state.settings.node.clone());
        next_expiry = state
            .liveness
            .next_expiry(now.into_std())
            .map(Instant::from_std);
        let services = services.state();
        let views = service_views(&services, &slices.state());
        let node_views = node_views(&nodes.state());
        let (desired, decisions) =
            decide(&config, &views, &node_views, &live, &state.settings.node);
        state.metrics.set_announced(desired.len());
        announcements.send_if_modified(|current| {
            let changed = *current != desired;
            *current = desired;
            changed
        });
        for decision in decisions {
            let previous = state
                .owners
                .insert(decision.service.clone(), decision.election.owner.clone());
            if previous.as_ref() == Some(&decision.election.owner) {
                continue;
            }
            let Some(service) = services.iter().find(|s| key_of(s) == decision.service) else {
                continue;
            };
            let shown = decision
                .addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            match (&decision.election.owner, decision.election.reason()) {
                (Some(owner), _) if decision.election.is_me() => {
                    info!(service = %decision.service, ip = %shown, node = %owner, "owner changed: announcing from this node");
                    state
                        .publish(
                            service,
                            EventType::Normal,
                            "nodeAssigned",
                            "Announce",
                            format!("announcing from node \"{owner}\""),
                        )
                        .await;
                }
                (Some(owner), _) => {
                    info!(service = %decision.service, ip = %shown, node = %owner, "owner changed: another node announces");
                }
                (None, Some(reason)) => {
                    warn!(service = %decision.service, ip = %shown, reason = reason.as_label(), "nobody announces: {reason}");
                    // One speaker speaks for all: the first live one by name.
                    if live.iter().next() == Some(&state.settings.node) {
                        state
                            .publish(
                                service,
                                EventType::Warning,
                                "NoAnnouncingNode",
                                reason.as_label(),
                                format!("no node announces {shown}: {reason}"),
                            )
                            .await;
                    }
                }
                (None, None) => {}
            }
        }
        let present: BTreeSet<ServiceKey> = services.iter().map(|s| key_of(s)).collect();
        state.owners.retain(|key, _| present.contains(key));
    }
}

struct State {
    settings: Settings,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    liveness: Liveness,
    config: Option<Arc<Config>>,
    config_text: Option<BTreeMap<String, String>>,
    /// The last owner seen per Service, to emit events only on change.
    owners: BTreeMap<ServiceKey, Option<String>>,
    failing: BTreeSet<Source>,
    /// The watches whose initial list is complete: deciding before all are
    /// would see Services without the speakers that serve them.
    synced: BTreeSet<Source>,
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
            warn!(watch = ?source, "cannot watch the API server; keeping the current announcements");
        } else if !was_healthy && self.failing.is_empty() {
            info!("watching the API server again");
        }
    }

    fn observe_leases(&mut self, leases: &[Arc<Lease>], now: Instant) {
        let wall = Timestamp::now();
        let mut present = BTreeSet::new();
        for lease in leases {
            let Some(spec) = &lease.spec else { continue };
            let (Some(node), Some(renewed)) = (&spec.holder_identity, &spec.renew_time) else {
                continue;
            };
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
            let age = wall
                .duration_since(renewed.0)
                .try_into()
                .unwrap_or(Duration::ZERO);
            self.liveness
                .observe(node, &renewed.0.to_string(), duration, age, now.into_std());
            present.insert(node.clone());
        }
        for gone in self.liveness.live(now.into_std()).difference(&present) {
            self.liveness.forget(gone);
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
