//! Watches ferrolb's ConfigMap and swaps the allocator's pools when a valid
//! config arrives. A refused config changes nothing: the last good one keeps
//! serving, a Warning event on the ConfigMap names every error, and the
//! `config_stale` metric says so. Validation itself is the config crate's.

use std::sync::Arc;

use ferrolb_config::Config;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::reconcile::Context;

/// Events carry at most this much of the error list (the API server caps an
/// event's note at 1 KiB).
const NOTE_LIMIT: usize = 1000;

/// Watches ConfigMap `namespace/name` for ever. `current` holds the config
/// in force (`None` until a first valid one arrives).
pub async fn run(
    ctx: Arc<Context>,
    namespace: String,
    name: String,
    current: watch::Sender<Option<Arc<Config>>>,
) {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace);
    let selector = format!("metadata.name={name}");
    let mut events = watcher(api, watcher::Config::default().fields(&selector))
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(config_map) => apply(&ctx, &config_map, &current).await,
            Err(e) => {
                warn!(configmap = %name, error = %e, "watching the ConfigMap failed; retrying")
            }
        }
    }
}

async fn apply(
    ctx: &Context,
    config_map: &ConfigMap,
    current: &watch::Sender<Option<Arc<Config>>>,
) {
    let name = format!(
        "{}/{}",
        config_map.metadata.namespace.as_deref().unwrap_or_default(),
        config_map.metadata.name.as_deref().unwrap_or_default()
    );
    let data = config_map.data.clone().unwrap_or_default();
    match Config::from_configmap_data(&data) {
        Ok(validated) => {
            ctx.metrics.config_rejected(false);
            for warning in &validated.warnings {
                warn!(configmap = %name, "{warning}");
            }
            let config = validated.config;
            if current.borrow().as_deref() == Some(&config) {
                return;
            }
            let evicted = {
                let mut allocator = ctx.allocator();
                let evicted = allocator.set_pools(&config.pools);
                ctx.metrics.observe_pools(&allocator.stats());
                evicted
            };
            let pools: Vec<String> = config.pools.iter().map(|p| p.name.0.clone()).collect();
            info!(configmap = %name, pools = ?pools, "config applied");
            for e in &evicted {
                warn!(service = %e.service, reason = %e.reason, "address no longer allowed by the config; reassigning");
            }
            current.send_replace(Some(Arc::new(config)));
            // Pending Services may fit the new pools, and evicted ones need a
            // new address: reconcile everything.
            let _ = ctx.wake.send(());
        }
        Err(errors) => {
            ctx.metrics.config_rejected(true);
            warn!(configmap = %name, errors = errors.len(), "config rejected; the last good config keeps serving:\n{errors}");
            let mut note = format!("Config rejected, the last good config keeps serving: {errors}");
            if note.len() > NOTE_LIMIT {
                let mut cut = NOTE_LIMIT;
                while !note.is_char_boundary(cut) {
                    cut -= 1;
                }
                note.truncate(cut);
                note.push('…');
            }
            ctx.publish(config_map, EventType::Warning, "ConfigRejected", note)
                .await;
        }
    }
}
