//! The speaker's `/metrics` (Prometheus text) and `/healthz`. The announcer
//! keeps plain counters; this module renders them with the speaker's own
//! gauges when scraped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use ferrolb_config::ServiceKey;

use crate::announcer::Counters;
use crate::seal::Rejection;

/// What the speaker exports.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Arc<Counters>,
    announced: AtomicUsize,
    api_healthy: AtomicBool,
    members_live: AtomicUsize,
    /// Rejected membership datagrams, indexed like [`Rejection::ALL`].
    rejected: [AtomicU64; Rejection::ALL.len()],
    refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Services with addresses no node announces.
    unannounced: Mutex<BTreeSet<ServiceKey>>,
}

impl Metrics {
    /// Metrics over the announcer's `counters`.
    pub fn new(counters: Arc<Counters>) -> Metrics {
        Metrics {
            counters,
            announced: AtomicUsize::new(0),
            api_healthy: AtomicBool::new(true),
            members_live: AtomicUsize::new(0),
            rejected: Default::default(),
            refused: Mutex::default(),
            unannounced: Mutex::default(),
        }
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

    /// Records how many addresses this node announces.
    pub fn set_announced(&self, count: usize) {
        self.announced.store(count, Ordering::Relaxed);
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
        let snapshot = self.counters.snapshot();
        let mut out = String::new();
        let mut family =
            |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, u64)>| {
                let _ = writeln!(out, "# HELP ferrolb_speaker_{name} {help}");
                let _ = writeln!(out, "# TYPE ferrolb_speaker_{name} {kind}");
                for (labels, value) in rows {
                    let _ = writeln!(out, "ferrolb_speaker_{name}{labels} {value}");
                }
            };
        let per_address = |pick: fn(&crate::announcer::AddressCounts) -> u64| {
            snapshot
                .addresses
                .iter()
                .map(move |(ip, c)| (format!("{{address=\"{ip}\"}}"), pick(c)))
                .collect::<Vec<_>>()
        };
        family(
            "requests_received_total",
            "counter",
            "ARP requests and Neighbor Solicitations received for an announced address",
            &mut per_address(|c| c.requests_received).into_iter(),
        );
        family(
            "responses_sent_total",
            "counter",
            "ARP replies and Neighbor Advertisements sent",
            &mut per_address(|c| c.responses_sent).into_iter(),
        );
        family(
            "gratuitous_sent_total",
            "counter",
            "Gratuitous ARP and unsolicited Neighbor Advertisements sent",
            &mut per_address(|c| c.gratuitous_sent).into_iter(),
        );
        family(
            "conflicts_total",
            "counter",
            "Frames from another MAC claiming an announced address",
            &mut per_address(|c| c.conflicts).into_iter(),
        );
        family(
            "dropped_frames_total",
            "counter",
            "Received frames not answered, by reason",
            &mut snapshot
                .drops
                .iter()
                .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n)),
        );
        family(
            "send_errors_total",
            "counter",
            "Frames the kernel refused to send",
            &mut std::iter::once((String::new(), snapshot.send_errors)),
        );
        family(
            "announced_addresses",
            "gauge",
            "Addresses this node announces",
            &mut std::iter::once((String::new(), self.announced.load(Ordering::Relaxed) as u64)),
        );
        let refused = self.refused.lock().map(|r| r.clone()).unwrap_or_default();
        family(
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
        family(
            "service_unannounced",
            "gauge",
            "1 for each Service with addresses in its status that no node announces",
            &mut unannounced
                .iter()
                .map(|service| (format!("{{service=\"{service}\"}}"), 1)),
        );
        family(
            "api_healthy",
            "gauge",
            "1 while every watch on the API server is healthy",
            &mut std::iter::once((
                String::new(),
                u64::from(self.api_healthy.load(Ordering::Relaxed)),
            )),
        );
        family(
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
        family(
            "members_live",
            "gauge",
            "Speakers the LAN membership holds live, this one included",
            &mut std::iter::once((
                String::new(),
                self.members_live.load(Ordering::Relaxed) as u64,
            )),
        );
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
        out
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until `shutdown`.
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
        .route("/healthz", get(|| async { "ok" }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

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
