//! Leader election on a `coordination.k8s.io` Lease, and the [`Fence`] that
//! lets only the leader write. A replica takes the Lease when its record has
//! not changed for a whole lease duration *as this replica saw it*
//! (client-go's rule: no clock comparison between machines), renews it while
//! it leads, and stops writing the moment it has not renewed within its
//! renew deadline, whether or not the API server has answered.
//!
//! # Timing argument
//!
//! With `L` the lease duration (15 s), `D` the renew deadline (10 s), `P`
//! the retry period (3 s) and `C` the bound on every API call (2 s):
//!
//! - A renewal that *starts* at `t` and succeeds opens the fence until
//!   `t + D`. Every write the leader makes (status, event, last-good copy)
//!   goes through [`Fence::guard`], which refuses to start after `t + D` and
//!   abandons a call still running at `t + D`; so the leader's last write
//!   leaves it no later than `t + D`, measured on its own monotonic clock.
//! - The renewal reached the API server after `t`, so a standby saw the
//!   renewed record at `s ≥ t`, and takes the Lease only once the record has
//!   not changed for `L` after that: not before `t + L`.
//! - `L − D = 5 s` is the margin for what the argument cannot see: the rate
//!   difference of the two replicas' monotonic clocks (well under 0.1 %, i.e.
//!   15 ms over a lease) and a request the old leader abandoned that the
//!   network still delivers late. Such a late write is the one residue no
//!   lease can fence; it carries the `resourceVersion` it was planned from
//!   (see `reconcile`), so it is refused if the new leader wrote the object
//!   since.
//! - Cost: the leader renews with one `PUT` of the record it last wrote (no
//!   `GET` first), every `P`: 1/3 request/s at idle with one replica
//!   (client-go's defaults, 15 s/10 s/2 s, cost a `GET` and a `PUT` every 2 s).
//!   A renewal that fails is retried every `P`, with calls bounded by `C`, so
//!   the leader tries three times before its deadline.
//! - A standby reads the Lease every `P`, and once more right when the record
//!   it last saw change would expire: a killed leader is replaced between
//!   `L − P` and `L + P` after it died (plus one request); a leader that
//!   stops hands the Lease over by emptying its holder, and a standby takes
//!   it at its next read, within `P`.

use std::future::Future;
use std::sync::{Arc, Mutex};
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

/// How long a Lease is valid, how often it is renewed or retried, how long
/// a leader may fail to renew before it stops writing, and how long any API
/// call may take. The module doc gives the argument for the defaults.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `spec.leaseDurationSeconds`: how long a standby waits, after it last
    /// saw the record change, before it takes the Lease.
    pub lease_duration: Duration,
    /// The leader stops writing when no renewal that started within this
    /// long succeeded (< lease duration, so it stops before a standby may
    /// start).
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby reads the Lease.
    pub retry_period: Duration,
    /// The bound on one API call (Lease or write).
    pub call_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(3),
            call_timeout: Duration::from_secs(2),
        }
    }
}

/// Why a write through the [`Fence`] did not happen.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// This replica does not lead (or its renew deadline passed): the call
    /// was not made, or was abandoned when the deadline came.
    #[error("not leading: the write was not made")]
    NotLeading,
    /// The call did not finish within the call timeout; it was abandoned.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The API server refused the call.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

impl FenceError {
    /// Whether the API server refused the write because the object changed
    /// since it was read (HTTP 409): the write was planned from stale state.
    pub fn is_conflict(&self) -> bool {
        matches!(self, FenceError::Api(kube::Error::Api(s)) if s.code == 409)
    }
}

/// Until when this replica may write. Cloned into everything that writes;
/// the [`Elector`] extends it on each renewal and closes it when leadership
/// ends.
#[derive(Debug, Clone)]
pub struct Fence {
    /// `None`: closed. `Some(None)`: open without a deadline (no leader
    /// election). `Some(Some(t))`: open until `t`.
    until: Arc<Mutex<Option<Option<Instant>>>>,
    call_timeout: Duration,
}

impl Fence {
    /// A fence closed until an elector opens it.
    pub fn closed(call_timeout: Duration) -> Fence {
        Fence {
            until: Arc::new(Mutex::new(None)),
            call_timeout,
        }
    }

    /// A fence always open: for a single replica run without election.
    pub fn always_open(call_timeout: Duration) -> Fence {
        Fence {
            until: Arc::new(Mutex::new(Some(None))),
            call_timeout,
        }
    }

    fn deadline(&self) -> Option<Option<Instant>> {
        *self.until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens (or keeps open) the fence until `until`.
    pub fn open_until(&self, until: Instant) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Some(until));
    }

    /// Closes the fence: no write starts from now on.
    pub fn close(&self) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether a write may start at `now`.
    pub fn is_open(&self, now: Instant) -> bool {
        match self.deadline() {
            None => false,
            Some(None) => true,
            Some(Some(until)) => now < until,
        }
    }

    /// Runs `call` if this replica may write now, abandoning it when the
    /// call timeout or the fence's deadline comes, whichever is first.
    pub async fn guard<T, F>(&self, call: F) -> Result<T, FenceError>
    where
        F: Future<Output = Result<T, kube::Error>>,
    {
        let now = Instant::now();
        let by_timeout = now + self.call_timeout;
        let stop = match self.deadline() {
            None => return Err(FenceError::NotLeading),
            Some(None) => by_timeout,
            Some(Some(until)) if now >= until => return Err(FenceError::NotLeading),
            Some(Some(until)) => until.min(by_timeout),
        };
        match tokio::time::timeout_at(stop, call).await {
            Ok(result) => Ok(result?),
            Err(_) if stop < by_timeout => Err(FenceError::NotLeading),
            Err(_) => Err(FenceError::TimedOut(self.call_timeout)),
        }
    }
}

/// What this replica is, as its elector last found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No Lease call has succeeded yet.
    Candidate,
    /// Another replica holds the Lease; this one reads it and waits.
    Standby,
    /// This replica holds the Lease.
    Leader,
}

/// One replica's view of the Lease it competes for.
pub struct Elector {
    leases: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    fence: Fence,
    /// The record last seen (renew time, holder) and when this replica first
    /// saw it.
    observed: Option<(Option<MicroTime>, Option<String>, Instant)>,
    /// The Lease as this replica last wrote it, while it leads: renewals
    /// replace it without reading it first.
    written: Option<Lease>,
}

/// Why a Lease call failed.
#[derive(Debug, thiserror::Error)]
enum LeaseCallError {
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Api(#[from] kube::Error),
}

impl Elector {
    /// An elector for Lease `namespace/name`, competing as `identity`, that
    /// opens and closes `fence`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
        fence: Fence,
    ) -> Elector {
        Elector {
            leases: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
            fence,
            observed: None,
            written: None,
        }
    }

    /// Bounds one Lease call by the call timeout.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LeaseCallError> {
        tokio::time::timeout(self.timing.call_timeout, call)
            .await
            .map_err(|_| LeaseCallError::TimedOut(self.timing.call_timeout))?
            .map_err(LeaseCallError::Api)
    }

    /// Competes until `release`, publishing this replica's [`Role`]. Returns
    /// [`Ended::Lost`] when leadership, once held, could not be renewed in
    /// time (a replica that lost it cannot tell what it missed, so the
    /// caller exits), or [`Ended::Released`] after `release`, having handed a
    /// held Lease over so that another replica takes it at its next read
    /// instead of after the lease duration.
    pub async fn run(mut self, role: watch::Sender<Role>, release: CancellationToken) -> Ended {
        // When the last successful renewal started.
        let mut renewed: Option<Instant> = None;
        loop {
            if release.is_cancelled() {
                self.fence.close();
                role.send_replace(Role::Candidate);
                if renewed.is_some() {
                    self.hand_over().await;
                }
                return Ended::Released;
            }
            let started = Instant::now();
            match self.try_acquire_or_renew(started).await {
                Ok(true) => {
                    // Opened from when the call started: the API server saw
                    // the renewal after that, so a standby waits a lease
                    // duration from a later point.
                    self.fence.open_until(started + self.timing.renew_deadline);
                    if renewed.is_none() {
                        info!(lease = %self.name, identity = %self.identity, "became leader");
                        role.send_replace(Role::Leader);
                    }
                    renewed = Some(started);
                }
                Ok(false) => {
                    if renewed.is_some() {
                        self.fence.close();
                        role.send_replace(Role::Candidate);
                        warn!(lease = %self.name, identity = %self.identity, "another replica holds the lease; stopped writing");
                        return Ended::Lost;
                    }
                    role.send_if_modified(|r| {
                        let changed = *r != Role::Standby;
                        *r = Role::Standby;
                        changed
                    });
                }
                Err(e) => warn!(lease = %self.name, error = %e, "lease call failed; retrying"),
            }
            if let Some(at) = renewed
                && !self.fence.is_open(Instant::now())
            {
                self.fence.close();
                role.send_replace(Role::Candidate);
                warn!(
                    lease = %self.name,
                    identity = %self.identity,
                    deadline = ?self.timing.renew_deadline,
                    since_renewal = ?at.elapsed(),
                    "could not renew the lease within the renew deadline; stopped writing"
                );
                return Ended::Lost;
            }
            let next = self.next_try(renewed.is_some());
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = release.cancelled() => {}
            }
        }
    }

    /// When to call again: after a retry period, or (as a standby) right
    /// after the record it watches would expire, if that is sooner.
    fn next_try(&self, leading: bool) -> Instant {
        let periodic = Instant::now() + self.timing.retry_period;
        match (&self.observed, leading) {
            (Some((_, _, seen)), false) => {
                let expiry = *seen + self.timing.lease_duration + Duration::from_millis(20);
                periodic.min(expiry.max(Instant::now()))
            }
            _ => periodic,
        }
    }

    /// Empties the Lease's holder if this replica still holds it.
    async fn hand_over(&mut self) {
        let result = async {
            let mut lease = match self.written.take() {
                Some(lease) => lease,
                None => self.bounded(self.leases.get(&self.name)).await?,
            };
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            self.bounded(
                self.leases
                    .replace(&self.name, &PostParams::default(), &lease),
            )
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
    async fn try_acquire_or_renew(&mut self, now: Instant) -> Result<bool, LeaseCallError> {
        let stamp = MicroTime(Timestamp::now());
        // The leader renews the record it wrote last, without reading it:
        // if anyone else wrote since, the API server refuses (409) and the
        // read below decides.
        if let Some(mut lease) = self.written.take() {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(stamp.clone());
            match self.write(&lease).await {
                Ok(false) => {}
                other => return other,
            }
        }
        let Some(mut lease) = self.bounded(self.leases.get_opt(&self.name)).await? else {
            return self.create(stamp).await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if !self.may_take(&spec, now) {
            return Ok(false);
        }
        let held_by_me = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!held_by_me);
        let acquired = match spec.acquire_time {
            Some(acquired) if held_by_me => acquired,
            _ => stamp.clone(),
        };
        lease.spec = Some(self.spec(acquired, stamp, transitions));
        self.write(&lease).await
    }

    /// Whether this replica may write the Lease whose spec it just read: it
    /// holds it, nobody does, or its record has not changed for a lease
    /// duration of this replica's own clock (never the writer's timestamps:
    /// clocks differ).
    fn may_take(&mut self, spec: &LeaseSpec, now: Instant) -> bool {
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
        held_by_me || free || expired
    }

    /// Creates the Lease; `Ok(false)` when another replica created it first.
    async fn create(&mut self, stamp: MicroTime) -> Result<bool, LeaseCallError> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            spec: Some(self.spec(stamp.clone(), stamp, 0)),
        };
        match self
            .bounded(self.leases.create(&PostParams::default(), &lease))
            .await
        {
            Ok(lease) => {
                self.written = Some(lease);
                Ok(true)
            }
            Err(LeaseCallError::Api(kube::Error::Api(s))) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Replaces the Lease with `lease`, which carries the resourceVersion it
    /// was read or written with: if another replica wrote in between, the
    /// API server refuses it (409) and this is `Ok(false)`.
    async fn write(&mut self, lease: &Lease) -> Result<bool, LeaseCallError> {
        match self
            .bounded(
                self.leases
                    .replace(&self.name, &PostParams::default(), lease),
            )
            .await
        {
            Ok(lease) => {
                self.written = Some(lease);
                Ok(true)
            }
            Err(LeaseCallError::Api(kube::Error::Api(s))) if s.code == 409 => Ok(false),
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

#[cfg(test)]
mod tests {
    //! Real time, in tenths of a second: only the order of events matters.
    use super::*;

    const CALL: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_closed_fence_makes_no_call() {
        let fence = Fence::closed(CALL);
        let called = std::sync::atomic::AtomicBool::new(false);
        let result = fence
            .guard(async {
                called.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<(), kube::Error>(())
            })
            .await;
        assert!(matches!(result, Err(FenceError::NotLeading)));
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_fence_refuses_writes_once_its_renew_deadline_passed() {
        let fence = Fence::closed(CALL);
        let deadline = Instant::now() + Duration::from_millis(200);
        fence.open_until(deadline);
        assert!(fence.guard(async { Ok::<_, kube::Error>(1) }).await.is_ok());
        tokio::time::sleep_until(deadline).await;
        assert!(matches!(
            fence.guard(async { Ok::<_, kube::Error>(1) }).await,
            Err(FenceError::NotLeading)
        ));
    }

    #[tokio::test]
    async fn a_write_still_running_at_the_deadline_is_abandoned_then() {
        let fence = Fence::closed(Duration::from_secs(60));
        let deadline = Instant::now() + Duration::from_millis(200);
        fence.open_until(deadline);
        let result = fence
            .guard(std::future::pending::<Result<(), kube::Error>>())
            .await;
        assert!(matches!(result, Err(FenceError::NotLeading)));
        assert!(Instant::now() >= deadline);
        assert!(!fence.is_open(Instant::now()));
    }

    #[tokio::test]
    async fn every_call_is_bounded_even_without_a_deadline() {
        let fence = Fence::always_open(CALL);
        let start = Instant::now();
        let result = fence
            .guard(std::future::pending::<Result<(), kube::Error>>())
            .await;
        assert!(matches!(result, Err(FenceError::TimedOut(_))));
        assert!(start.elapsed() >= CALL);
        assert!(
            fence.is_open(Instant::now()),
            "a timeout is not a lost lease"
        );
    }

    #[test]
    fn the_leader_stops_writing_before_a_standby_may_take_over() {
        let t = Timing::default();
        assert!(t.renew_deadline < t.lease_duration);
        // The margin covers clock-rate skew (< 0.1 %) many times over.
        assert!(t.lease_duration - t.renew_deadline >= t.lease_duration / 5);
        // Calls end before the next try, and the leader tries at least
        // three times before its deadline.
        assert!(t.call_timeout < t.retry_period);
        assert!(t.renew_deadline >= 3 * t.retry_period);
        // One PUT per retry period: at most 0.5 request/s at idle.
        assert!(t.retry_period >= Duration::from_secs(2));
    }
}
