//! Leader election on a `coordination.k8s.io` Lease, so that two controller
//! replicas can run and only one allocates. A replica takes the Lease when its
//! record has not changed for a whole lease duration *as this replica saw
//! it* (client-go's rule: no clock comparison between machines), renews it
//! while it leads, and steps down when it could not renew in time.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a Lease is valid, how often it is renewed or retried, and how
/// long a leader may fail to renew before it steps down.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `spec.leaseDurationSeconds`.
    pub lease_duration: Duration,
    /// Steps down when no renewal succeeded for this long (< lease duration,
    /// so the old leader stops before a new one may start).
    pub renew_deadline: Duration,
    /// How often to renew or retry.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease_duration: Duration::from_secs(6),
            renew_deadline: Duration::from_secs(4),
            retry_period: Duration::from_secs(1),
        }
    }
}

/// One replica's view of the Lease it competes for.
pub struct Elector {
    leases: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The record last seen and when this replica first saw it.
    observed: Option<(Option<MicroTime>, Option<String>, Instant)>,
}

impl Elector {
    /// An elector for Lease `namespace/name`, competing as `identity`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Elector {
        Elector {
            leases: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
            observed: None,
        }
    }

    /// Competes until `release`: `leading` is `true` exactly while this
    /// replica holds the Lease. Returns [`Ended::Lost`] when leadership, once
    /// held, could not be renewed in time (a replica that lost it cannot tell
    /// what it missed, so the caller exits), or [`Ended::Released`] after
    /// `release`, having handed a held Lease over so that another replica
    /// takes it at its next try instead of after the lease duration.
    pub async fn run(mut self, leading: watch::Sender<bool>, release: CancellationToken) -> Ended {
        let mut last_renewal: Option<Instant> = None;
        loop {
            if release.is_cancelled() {
                if last_renewal.is_some() {
                    leading.send_replace(false);
                    self.hand_over().await;
                }
                return Ended::Released;
            }
            let now = Instant::now();
            match self.try_acquire_or_renew(now).await {
                Ok(true) => {
                    if last_renewal.is_none() {
                        info!(lease = %self.name, identity = %self.identity, "became leader");
                        leading.send_replace(true);
                    }
                    last_renewal = Some(now);
                }
                Ok(false) => {}
                Err(e) => warn!(lease = %self.name, error = %e, "lease update failed; retrying"),
            }
            if let Some(renewed) = last_renewal
                && renewed.elapsed() > self.timing.renew_deadline
            {
                warn!(lease = %self.name, identity = %self.identity, "could not renew the lease in time; stepping down");
                leading.send_replace(false);
                return Ended::Lost;
            }
            tokio::select! {
                () = tokio::time::sleep(self.timing.retry_period) => {}
                () = release.cancelled() => {}
            }
        }
    }

    /// Empties the Lease's holder if this replica still holds it.
    async fn hand_over(&self) {
        let result = async {
            let mut lease = self.leases.get(&self.name).await?;
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            self.leases
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        .await;
        match result {
            Ok(()) => info!(lease = %self.name, identity = %self.identity, "released the lease"),
            Err(e) => {
                warn!(lease = %self.name, error = %e, "could not release the lease; another replica takes over when it expires")
            }
        }
    }

    /// Takes or renews the Lease; `Ok(true)` when this replica now holds it.
    async fn try_acquire_or_renew(&mut self, now: Instant) -> Result<bool, kube::Error> {
        let stamp = MicroTime(Timestamp::now());
        let Some(mut lease) = self.leases.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(stamp.clone(), stamp, 0)),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                // Another replica created it first: it leads.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone();
        let record = (spec.renew_time.clone(), holder.clone());
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(renew, who, _)| (renew.clone(), who.clone()) != record);
        if changed {
            self.observed = Some((record.0, record.1, now));
        }
        let held_by_me = holder.as_deref() == Some(self.identity.as_str());
        let free = holder.as_deref().is_none_or(str::is_empty);
        let expired = self.observed.as_ref().is_some_and(|(_, _, seen)| {
            now.duration_since(*seen)
                > Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64)
        });
        if !(held_by_me || free || expired) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!held_by_me);
        let acquired = if held_by_me {
            spec.acquire_time.unwrap_or_else(|| stamp.clone())
        } else {
            stamp.clone()
        };
        lease.spec = Some(self.spec(acquired, stamp, transitions));
        // `replace` carries the resourceVersion we read: if another replica
        // wrote in between, the API server refuses ours (409) and we lost.
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: MicroTime, renewed: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease_duration.as_secs() as i32),
            acquire_time: Some(acquired),
            renew_time: Some(renewed),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }
}

/// How [`Elector::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Leadership was held and could not be renewed in time.
    Lost,
    /// The caller asked to stop; a held Lease was handed over.
    Released,
}
