//! The speaker's `/metrics` (Prometheus text), `/healthz` (readiness: see
//! [`crate::health`]) and `/livez`. The announcer
//! keeps plain counters; this module renders them with the speaker's own
//! gauges when scraped.

use crate::announcer::CountersSnapshot;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use ferrolb_config::ServiceKey;

use crate::announcer::{Announcements, Counters};
use crate::health::{self, Problem, Watches};
use crate::seal::Rejection;

/// What the speaker exports.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Arc<Counters>,
    /// The addresses this node announces: only theirs are exported.
    announced: Mutex<BTreeSet<IpAddr>>,
    api_healthy: AtomicBool,
    members_live: AtomicUsize,
    /// Rejected membership datagrams, indexed like [`Rejection::ALL`].
    rejected: [AtomicU64; Rejection::ALL.len()],
    refused: Mutex<BTreeMap<&'static str, u64>>,
    /// What the watches did, for `/healthz`.
    watches: Mutex<Watches>,
    /// Services with addresses no node announces.
    unannounced: Mutex<BTreeSet<ServiceKey>>,
}

impl Metrics {
    /// Metrics over the announcer's `counters`.
    pub fn new(counters: Arc<Counters>) -> Metrics {
        Metrics {
            counters,
            announced: Mutex::default(),
            api_healthy: AtomicBool::new(true),
            members_live: AtomicUsize::new(0),
            rejected: Default::default(),
            refused: Mutex::default(),
            watches: Mutex::default(),
            unannounced: Mutex::default(),
        }
    }

    /// Starts following the health of the watches `names`: unhealthy until
    /// each has listed.
    pub fn expect_watches(&self, names: &[&'static str]) {
        *self.watches.lock().unwrap_or_else(PoisonError::into_inner) = Watches::new(names);
    }

    /// Records that watch `name` delivered (`ok`) or failed just now.
    pub fn observe_watch(&self, name: &'static str, ok: bool) {
        self.watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(name, ok, Instant::now().into_std());
    }

    /// What keeps the speaker from doing its job now: watches that have not
    /// listed or keep failing, interfaces whose sockets failed.
    pub fn problems(&self) -> Vec<Problem> {
        let watches = self
            .watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        health::problems(
            &watches,
            &self.counters.snapshot().failed_sockets,
            Instant::now().into_std(),
        )
    }

    /// Counts one rejected membership datagram.
    pub fn count_rejected(&self, reason: Rejection) {
        if let Some(i) = Rejection::ALL.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records how many members the LAN membership holds live.
    pub fn set_members_live(&self, count: usize) {
        self.members_live.store(count, Ordering::Relaxed);
    }

    /// Records which addresses this node announces. The per-address series
    /// of any other address end at the next scrape; those of an announced
    /// address go on, never backwards.
    pub fn set_announced(&self, announcements: &Announcements) {
        let addresses = announcements.iter().map(|(address, _)| address).collect();
        *self
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = addresses;
    }

    /// Records whether every watch on the API server is healthy.
    pub fn set_api_healthy(&self, healthy: bool) {
        self.api_healthy.store(healthy, Ordering::Relaxed);
    }

    /// Records how many status addresses no node announces, by reason.
    pub fn set_refused(&self, by_reason: BTreeMap<&'static str, u64>) {
        if let Ok(mut refused) = self.refused.lock() {
            *refused = by_reason;
        }
    }

    /// Records the Services whose addresses no node announces.
    pub fn set_unannounced(&self, services: BTreeSet<ServiceKey>) {
        if let Ok(mut unannounced) = self.unannounced.lock() {
            *unannounced = services;
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let announced = self
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.counters
            .retain_addresses(|address| announced.contains(address));
        let snapshot = self.counters.snapshot();
        let mut out = Exposition::default();
        out.wire(&snapshot, &announced);
        self.decisions(&mut out);
        self.membership(&mut out);
        out.cluster(&snapshot);
        out.text
    }

    /// What the decisions found: the Services' addresses refused or
    /// announced by no node.
    fn decisions(&self, out: &mut Exposition) {
        let refused = self.refused.lock().map(|r| r.clone()).unwrap_or_default();
        out.family(
            "refused_addresses",
            "gauge",
            "Addresses in Services' status that no node announces, by reason",
            &mut refused
                .iter()
                .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n)),
        );
        // One series per Service in trouble, none for the others: bounded by
        // the Services no node announces. One label, `namespace/name` as
        // MetalLB's `service` label reads: a `namespace` label would clash
        // with the one Prometheus gives the scraped pod.
        let unannounced = self
            .unannounced
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default();
        out.family(
            "service_unannounced",
            "gauge",
            "1 for each Service with addresses in its status that no node announces",
            &mut unannounced
                .iter()
                .map(|service| (format!("{{service=\"{service}\"}}"), 1)),
        );
    }

    /// The API watches' health and the LAN membership.
    fn membership(&self, out: &mut Exposition) {
        out.family(
            "api_healthy",
            "gauge",
            "1 while every watch on the API server is healthy",
            &mut std::iter::once((
                String::new(),
                u64::from(self.api_healthy.load(Ordering::Relaxed)),
            )),
        );
        out.family(
            "member_messages_rejected_total",
            "counter",
            "Membership datagrams dropped, by reason (bad_tag: wrong key; replayed)",
            &mut Rejection::ALL.iter().zip(&self.rejected).map(|(r, n)| {
                (
                    format!("{{reason=\"{}\"}}", r.as_label()),
                    n.load(Ordering::Relaxed),
                )
            }),
        );
        out.family(
            "members_live",
            "gauge",
            "Speakers the LAN membership holds live, this one included",
            &mut std::iter::once((
                String::new(),
                self.members_live.load(Ordering::Relaxed) as u64,
            )),
        );
    }
}

/// Prometheus text exposition, written family by family.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// One `ferrolb_speaker_` family of `kind` with its rows.
    fn family(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        rows: &mut dyn Iterator<Item = (String, u64)>,
    ) {
        let out = &mut self.text;
        let _ = writeln!(out, "# HELP ferrolb_speaker_{name} {help}");
        let _ = writeln!(out, "# TYPE ferrolb_speaker_{name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "ferrolb_speaker_{name}{labels} {value}");
        }
    }

    /// What the announcers counted on the wire, per address and in all.
    fn wire(&mut self, snapshot: &CountersSnapshot, announced: &BTreeSet<IpAddr>) {
        let per_address = |pick: fn(&crate::announcer::AddressCounts) -> u64| {
            snapshot
                .addresses
                .iter()
                .map(move |(ip, c)| (format!("{{address=\"{ip}\"}}"), pick(c)))
                .collect::<Vec<_>>()
        };
        self.family(
            "requests_received_total",
            "counter",
            "ARP requests and Neighbor Solicitations received for an announced address",
            &mut per_address(|c| c.requests_received).into_iter(),
        );
        self.family(
            "responses_sent_total",
            "counter",
            "ARP replies and Neighbor Advertisements sent",
            &mut per_address(|c| c.responses_sent).into_iter(),
        );
        self.family(
            "gratuitous_sent_total",
            "counter",
            "Gratuitous ARP and unsolicited Neighbor Advertisements sent",
            &mut per_address(|c| c.gratuitous_sent).into_iter(),
        );
        self.family(
            "conflicts_total",
            "counter",
            "Frames from another MAC claiming an announced address",
            &mut per_address(|c| c.conflicts).into_iter(),
        );
        self.family(
            "dropped_frames_total",
            "counter",
            "Received frames not answered, by reason",
            &mut snapshot
                .drops
                .iter()
                .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n)),
        );
        self.family(
            "send_errors_total",
            "counter",
            "Frames the kernel refused to send",
            &mut std::iter::once((String::new(), snapshot.send_errors)),
        );
        self.family(
            "announced_addresses",
            "gauge",
            "Addresses this node announces",
            &mut std::iter::once((String::new(), announced.len() as u64)),
        );
    }

    /// The split brains and conflicts, named as the alerts know them.
    fn cluster(&mut self, snapshot: &CountersSnapshot) {
        let out = &mut self.text;
        // Named as the failover and conflict alerts know them, without the
        // per-binary prefix: a split brain or a conflict is the cluster's.
        for (name, help, value) in [
            (
                "ferrolb_split_brain_total",
                "Times another speaker announced an address this node announced: seen on the wire, or learned when the LAN had held this node down",
                snapshot.split_brains,
            ),
            (
                "ferrolb_ip_conflicts_total",
                "Stations that are no ferrolb speaker seen using an address this node announces or probed, once per address and MAC",
                snapshot.ip_conflicts,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

async fn healthz(State(metrics): State<Arc<Metrics>>) -> axum::response::Response {
    let problems = metrics.problems();
    if problems.is_empty() {
        return "ok".into_response();
    }
    let text: String = problems.iter().map(|p| format!("{p}\n")).collect();
    (StatusCode::SERVICE_UNAVAILABLE, text).into_response()
}

/// Serves `/metrics`, `/healthz` and `/livez` on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    m.render(),
                )
                    .into_response()
            }),
        )
        // Readiness: the sockets and the watches work.
        .route("/healthz", get(healthz))
        // Liveness: the process answers. Neither an API outage nor a
        // failing interface is cured by a restart, and a restart would take
        // every address this node announces dark.
        .route("/livez", get(|| async { "ok" }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn series(metrics: &Metrics, address: &str) -> Vec<String> {
        metrics
            .render()
            .lines()
            .filter(|l| l.contains(&format!("address=\"{address}\"")))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn an_address_no_longer_announced_loses_its_series_and_a_kept_one_counts_on() {
        let counters = Arc::new(Counters::default());
        let metrics = Metrics::new(Arc::clone(&counters));
        let mut announced = Announcements::new();
        announced.announce(ip("198.51.100.10"), Vec::<String>::new());
        announced.announce(ip("198.51.100.11"), Vec::<String>::new());
        metrics.set_announced(&announced);
        for address in ["198.51.100.10", "198.51.100.11"] {
            counters.address(ip(address), |c| c.responses_sent += 2);
        }
        assert_eq!(series(&metrics, "198.51.100.11").len(), 4);
        announced.withdraw(ip("198.51.100.11"));
        metrics.set_announced(&announced);
        assert_eq!(series(&metrics, "198.51.100.11"), Vec::<String>::new());
        counters.address(ip("198.51.100.10"), |c| c.responses_sent += 1);
        assert!(
            series(&metrics, "198.51.100.10").contains(
                &"ferrolb_speaker_responses_sent_total{address=\"198.51.100.10\"} 3".to_owned()
            ),
            "{:?}",
            series(&metrics, "198.51.100.10")
        );
        assert!(
            metrics
                .render()
                .contains("ferrolb_speaker_announced_addresses 1\n")
        );
        // A frame counted late for the withdrawn address is forgotten too.
        counters.address(ip("198.51.100.11"), |c| c.responses_sent += 1);
        assert_eq!(series(&metrics, "198.51.100.11"), Vec::<String>::new());
    }

    async fn status(metrics: &Arc<Metrics>) -> (StatusCode, String) {
        let response = healthz(State(Arc::clone(metrics))).await;
        let code = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_fails_until_the_watches_list_and_while_an_interfaces_sockets_fail() {
        let counters = Arc::new(Counters::default());
        let metrics = Arc::new(Metrics::new(Arc::clone(&counters)));
        metrics.expect_watches(&["Service", "Node"]);
        assert_eq!(
            status(&metrics).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the Node watch has not listed yet\nthe Service watch has not listed yet\n"
                    .to_owned()
            )
        );
        metrics.observe_watch("Service", true);
        metrics.observe_watch("Node", true);
        assert_eq!(status(&metrics).await, (StatusCode::OK, "ok".to_owned()));
        let error = crate::socket::SocketError::Receive {
            interface: "eth1".into(),
            source: std::io::Error::from_raw_os_error(100), // ENETDOWN
        };
        counters.sockets("eth1", Some(&error));
        let (code, body) = status(&metrics).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("the sockets on eth1 failed: "), "{body}");
        counters.sockets("eth1", None);
        assert_eq!(status(&metrics).await, (StatusCode::OK, "ok".to_owned()));
    }

    #[test]
    fn a_service_nobody_announces_has_a_series_until_someone_does() {
        let metrics = Metrics::default();
        metrics.set_unannounced(BTreeSet::from([ServiceKey::new("default", "web")]));
        let text = metrics.render();
        assert!(
            text.contains("# TYPE ferrolb_speaker_service_unannounced gauge\n")
                && text
                    .contains("ferrolb_speaker_service_unannounced{service=\"default/web\"} 1\n"),
            "{text}"
        );
        metrics.set_unannounced(BTreeSet::new());
        assert!(
            !metrics
                .render()
                .contains("ferrolb_speaker_service_unannounced{"),
        );
    }
}
