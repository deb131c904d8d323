//! The controller's Prometheus metrics and its `/metrics`, `/healthz` and
//! `/readyz` endpoints. Cores never touch this: the shell feeds it what the
//! allocator returns.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::allocator::PoolStats;
use crate::leader::Role;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
    family: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    // Pool sizes are u128 (a /64 holds 2^64 addresses); Prometheus values are
    // float64, which holds them without overflow.
    size: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    in_use: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    available: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    allocations: Counter,
    failures: Family<ReasonLabels, Counter>,
    config_stale: Gauge,
    config_rejections: Counter,
    events_dropped: Counter,
    leader: Gauge,
    /// What the elector last found this replica to be.
    role: Mutex<Role>,
    /// The allocator was rebuilt from the Services' statuses.
    restored: AtomicBool,
    // Serialises `observe_pools`, which clears and refills the families.
    pools_lock: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every ferrolb controller metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ferrolb");
        let size = Family::default();
        let in_use = Family::default();
        let available = Family::default();
        let allocations = Counter::default();
        let failures = Family::default();
        let config_stale = Gauge::default();
        let config_rejections = Counter::default();
        let leader = Gauge::default();
        let events_dropped = Counter::default();
        registry.register(
            "controller_events_dropped",
            "Events not published because the queue of events to write was full",
            events_dropped.clone(),
        );
        registry.register(
            "controller_leader",
            "1 while this replica holds the leader Lease and may write, else 0",
            leader.clone(),
        );
        registry.register(
            // A gauge: `_total` is for counters.
            "pool_addresses",
            "Addresses a pool may hand out",
            size.clone(),
        );
        registry.register(
            "pool_addresses_in_use",
            "Addresses of a pool held by at least one Service",
            in_use.clone(),
        );
        registry.register(
            "pool_addresses_available",
            "Addresses of a pool still free",
            available.clone(),
        );
        registry.register(
            "allocations",
            "Addresses given to Services",
            allocations.clone(),
        );
        registry.register(
            "allocation_failures",
            "Services refused an address, by reason",
            failures.clone(),
        );
        registry.register(
            "config_stale",
            "1 while the ConfigMap holds a config that was refused and the last good one serves",
            config_stale.clone(),
        );
        registry.register(
            "config_rejections",
            "ConfigMap versions refused as invalid",
            config_rejections.clone(),
        );
        Metrics {
            registry,
            size,
            in_use,
            available,
            allocations,
            failures,
            config_stale,
            config_rejections,
            events_dropped,
            leader,
            role: Mutex::new(Role::Candidate),
            restored: AtomicBool::new(false),
            pools_lock: Mutex::new(()),
        }
    }

    /// Replaces the pool gauges with the allocator's counters.
    pub fn observe_pools(&self, stats: &[PoolStats]) {
        let _guard = self.pools_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.size.clear();
        self.in_use.clear();
        self.available.clear();
        for pool in stats {
            for (family, counts) in [("ipv4", pool.ipv4), ("ipv6", pool.ipv6)] {
                if counts.size == 0 {
                    continue;
                }
                let labels = PoolLabels {
                    pool: pool.pool.0.clone(),
                    family,
                };
                self.size.get_or_create(&labels).set(counts.size as f64);
                self.in_use.get_or_create(&labels).set(counts.in_use as f64);
                self.available
                    .get_or_create(&labels)
                    .set(counts.available as f64);
            }
        }
    }

    /// Counts a Service given addresses.
    pub fn allocated(&self) {
        self.allocations.inc();
    }

    /// Counts a Service refused an address.
    pub fn failed(&self, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records whether the ConfigMap's current content was refused.
    pub fn config_rejected(&self, rejected: bool) {
        self.config_stale.set(i64::from(rejected));
        if rejected {
            self.config_rejections.inc();
        }
    }

    /// Counts an event dropped because the queue was full.
    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// Records this replica's role (and the `controller_leader` gauge).
    pub fn set_role(&self, role: Role) {
        *self.role.lock().unwrap_or_else(|e| e.into_inner()) = role;
        self.leader.set(i64::from(role == Role::Leader));
    }

    /// Records that the allocator was rebuilt from the Services' statuses.
    pub fn set_restored(&self, restored: bool) {
        self.restored.store(restored, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200: a standby that reaches the API server
    /// is ready (so a two-replica Deployment can roll), a leader once it has
    /// rebuilt its allocator.
    pub fn is_ready(&self) -> bool {
        match *self.role.lock().unwrap_or_else(|e| e.into_inner()) {
            Role::Candidate => false,
            Role::Standby => true,
            Role::Leader => self.restored.load(Ordering::Relaxed),
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

async fn ready(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::Allocator;
    use ferrolb_config::Config;

    #[test]
    fn a_whole_ipv6_64_is_exported_without_overflow() {
        let config = Config::from_yaml(
            "address-pools:\n- name: v6\n  protocol: layer2\n  addresses: [2001:db8:1::/64]\n",
        )
        .expect("valid")
        .config;
        let metrics = Metrics::new();
        metrics.observe_pools(&Allocator::new(&config.pools).stats());
        let text = metrics.render();
        assert!(
            text.contains(
                "ferrolb_pool_addresses{pool=\"v6\",family=\"ipv6\"} 18446744073709553000.0"
            ),
            "{text}"
        );
    }

    async fn readyz(metrics: &Arc<Metrics>) -> StatusCode {
        ready(State(metrics.clone())).await.into_response().status()
    }

    #[tokio::test]
    async fn a_healthy_standby_is_ready_and_says_it_does_not_lead() {
        let metrics = Arc::new(Metrics::new());
        assert_eq!(readyz(&metrics).await, StatusCode::SERVICE_UNAVAILABLE);
        metrics.set_role(Role::Standby);
        assert_eq!(readyz(&metrics).await, StatusCode::OK);
        assert!(
            metrics.render().contains("ferrolb_controller_leader 0\n"),
            "{}",
            metrics.render()
        );
    }

    #[tokio::test]
    async fn a_leader_is_ready_once_it_rebuilt_its_allocator() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_role(Role::Leader);
        assert_eq!(readyz(&metrics).await, StatusCode::SERVICE_UNAVAILABLE);
        metrics.set_restored(true);
        assert_eq!(readyz(&metrics).await, StatusCode::OK);
        assert!(metrics.render().contains("ferrolb_controller_leader 1\n"));
    }

    #[test]
    fn failures_are_counted_by_reason() {
        let metrics = Metrics::new();
        metrics.failed("pool-exhausted");
        metrics.failed("pool-exhausted");
        let text = metrics.render();
        assert!(
            text.contains("ferrolb_allocation_failures_total{reason=\"pool-exhausted\"} 2"),
            "{text}"
        );
    }
}
