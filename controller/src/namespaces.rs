//! The Namespaces' labels, which pools' `namespace-selectors` look at: a
//! metadata-only watch of every Namespace, kept in a store, that asks for a
//! reconcile of every Service when a namespace's labels change (a Service
//! may then gain or lose a pool). No allocation rules here.

use std::collections::{BTreeMap, HashMap};

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// The labels of every Namespace, as last seen.
#[derive(Clone)]
pub struct NamespaceLabels {
    store: Store<PartialObjectMeta<Namespace>>,
}

impl NamespaceLabels {
    /// Starts nothing: every namespace reads as unlabelled. For callers that
    /// serve no pool with namespace selectors (tests, one-off tools).
    pub fn unwatched() -> NamespaceLabels {
        let (store, _writer) = reflector::store();
        NamespaceLabels { store }
    }

    /// The labels and the watch that keeps them: run the future. When a
    /// namespace's labels change, `wake` asks for every Service's reconcile.
    pub fn watch(
        client: Client,
        wake: mpsc::UnboundedSender<()>,
    ) -> (NamespaceLabels, impl Future<Output = ()>) {
        let (store, writer) = reflector::store();
        let api = Api::<PartialObjectMeta<Namespace>>::all(client);
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        let follow = async move {
            let mut seen: HashMap<String, BTreeMap<String, String>> = HashMap::new();
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                let namespace = match event {
                    Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => n,
                    Ok(_) => continue,
                    Err(e) => {
                        warn!(error = %e, "namespace watch failed; retrying");
                        continue;
                    }
                };
                let labels = namespace.labels().clone();
                let name = namespace.name_any();
                let before = seen.insert(name.clone(), labels.clone());
                if before.is_some_and(|before| before != labels) {
                    info!(namespace = %name, "namespace labels changed: reconciling every Service");
                    let _ = wake.send(());
                }
            }
        };
        (NamespaceLabels { store }, follow)
    }

    /// Waits for the first complete list, so that no Service is judged
    /// against a namespace not yet seen.
    pub async fn wait_until_ready(&self) {
        // Fails only if the watch was dropped, which `unwatched` did on
        // purpose: then there is nothing to wait for.
        let _ = self.store.wait_until_ready().await;
    }

    /// The labels of namespace `name` (none if it is unknown).
    pub fn of(&self, name: &str) -> BTreeMap<String, String> {
        self.store
            .get(&ObjectRef::new(name))
            .map(|n| n.labels().clone())
            .unwrap_or_default()
    }
}
