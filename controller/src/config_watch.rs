//! Watches ferrolb's ConfigMap and swaps the allocator's pools when a valid
//! config arrives. A refused config changes nothing: the last good one keeps
//! serving, a Warning event on the ConfigMap names every error, and the
//! `config_stale` metric says so. Validation itself is the config crate's.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrolb_config::{Config, last_good_configmap};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::reconcile::Context;

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
            Ok(config_map) => apply(&ctx, &config_map, &current, &namespace, &name).await,
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
    namespace: &str,
    configmap: &str,
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
            if install(ctx, validated.config, &name, current) {
                keep_last_good(ctx, namespace, configmap, &data).await;
            }
        }
        Err(errors) => {
            ctx.metrics.config_rejected(true);
            warn!(configmap = %name, errors = errors.len(), "config rejected; the last good config keeps serving:\n{errors}");
            // The publisher cuts a long error list to the API server's limit.
            let note = format!("Config rejected, the last good config keeps serving: {errors}");
            ctx.events
                .publish(config_map, EventType::Warning, "ConfigRejected", note);
            if current.borrow().is_none() {
                serve_last_good(ctx, namespace, configmap, current).await;
            }
        }
    }
}

/// Puts `config` in force unless it already is; true if it changed.
fn install(
    ctx: &Context,
    config: Config,
    source: &str,
    current: &watch::Sender<Option<Arc<Config>>>,
) -> bool {
    if current.borrow().as_deref() == Some(&config) {
        return false;
    }
    let evicted = {
        let mut allocator = ctx.allocator();
        let evicted = allocator.set_pools(&config.pools);
        ctx.metrics.observe_pools(&allocator.stats());
        evicted
    };
    let pools: Vec<String> = config.pools.iter().map(|p| p.name.0.clone()).collect();
    info!(configmap = %source, pools = ?pools, "config applied");
    for e in &evicted {
        warn!(service = %e.service, reason = %e.reason, "address no longer allowed by the config; reassigning");
    }
    current.send_replace(Some(Arc::new(config)));
    // Pending Services may fit the new pools, and evicted ones need a new
    // address: reconcile everything.
    let _ = ctx.wake.send(());
    true
}

/// Copies an accepted config into the last-good ConfigMap, for a restart
/// while the operator's ConfigMap is invalid.
async fn keep_last_good(
    ctx: &Context,
    namespace: &str,
    configmap: &str,
    data: &BTreeMap<String, String>,
) {
    let name = last_good_configmap(configmap);
    let copy = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        data: Some(data.clone()),
        ..Default::default()
    };
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams::apply("ferrolb-controller").force();
    if let Err(e) = ctx
        .fence
        .guard(api.patch(&name, &params, &Patch::Apply(&copy)))
        .await
    {
        warn!(configmap = %name, error = %e, "cannot keep a copy of the last good config");
    }
}

/// With no config in force and the operator's ConfigMap invalid (a restart
/// after a bad edit), serves the last good config the controller kept.
async fn serve_last_good(
    ctx: &Context,
    namespace: &str,
    configmap: &str,
    current: &watch::Sender<Option<Arc<Config>>>,
) {
    let name = last_good_configmap(configmap);
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace);
    let data = match api.get_opt(&name).await {
        Ok(Some(copy)) => copy.data.unwrap_or_default(),
        Ok(None) => return,
        Err(e) => {
            warn!(configmap = %name, error = %e, "cannot read the last good config");
            return;
        }
    };
    match Config::from_configmap_data(&data) {
        Ok(validated) => {
            warn!(configmap = %name, "serving the last good config until {namespace}/{configmap} is fixed");
            install(
                ctx,
                validated.config,
                &format!("{namespace}/{name}"),
                current,
            );
        }
        Err(errors) => warn!(configmap = %name, "the last good config is invalid too:\n{errors}"),
    }
}
