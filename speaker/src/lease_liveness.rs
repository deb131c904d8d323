//! Which speakers are alive, from their per-node Leases. A speaker is live
//! while its Lease record keeps changing: a record unchanged for a whole
//! lease duration *as this speaker saw it* means its holder is gone. Judging
//! by local observation, not by comparing the record's timestamp with this
//! node's clock, keeps clock skew between nodes out of failover. Pure: time
//! is an argument.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The liveness of every speaker whose Lease this node has seen.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    members: BTreeMap<String, Member>,
}

#[derive(Debug, Clone)]
struct Member {
    /// What the Lease said (its renew time, as text), to tell renewals apart.
    record: String,
    /// When the current record stops vouching for the speaker.
    expires: Instant,
}

impl Liveness {
    /// No speaker known.
    pub fn new() -> Liveness {
        Liveness::default()
    }

    /// Records node `node`'s Lease as seen at `now`. A new record extends
    /// its life by `duration` from now. The first record of a node is aged
    /// by `age`, how old its renew time already was (by the clocks involved;
    /// only used once, so a speaker that died long ago is not revived for a
    /// whole duration by a restart of this one).
    pub fn observe(
        &mut self,
        node: &str,
        record: &str,
        duration: Duration,
        age: Duration,
        now: Instant,
    ) {
        match self.members.get_mut(node) {
            Some(member) if member.record == record => {}
            Some(member) => {
                member.record = record.to_owned();
                member.expires = now + duration;
            }
            None => {
                let expires = now + duration.saturating_sub(age);
                self.members.insert(
                    node.to_owned(),
                    Member {
                        record: record.to_owned(),
                        expires,
                    },
                );
            }
        }
    }

    /// Forgets node `node` (its Lease was deleted: the speaker stopped
    /// cleanly and handed over).
    pub fn forget(&mut self, node: &str) {
        self.members.remove(node);
    }

    /// The nodes whose speakers are live at `now`.
    pub fn live(&self, now: Instant) -> BTreeSet<String> {
        self.members
            .iter()
            .filter(|(_, m)| m.expires > now)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// When the live set next changes by expiry alone, if it will.
    pub fn next_expiry(&self, now: Instant) -> Option<Instant> {
        self.members
            .values()
            .map(|m| m.expires)
            .filter(|e| *e > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(4);

    #[test]
    fn a_renewing_speaker_stays_live() {
        let t0 = Instant::now();
        let mut l = Liveness::new();
        l.observe("node-1", "r1", LEASE, Duration::ZERO, t0);
        l.observe(
            "node-1",
            "r2",
            LEASE,
            Duration::ZERO,
            t0 + Duration::from_secs(3),
        );
        assert!(l.live(t0 + Duration::from_secs(6)).contains("node-1"));
    }

    #[test]
    fn a_speaker_whose_lease_stops_changing_dies_after_one_duration() {
        let t0 = Instant::now();
        let mut l = Liveness::new();
        l.observe("node-1", "r1", LEASE, Duration::ZERO, t0);
        // The same record seen again does not extend it.
        l.observe(
            "node-1",
            "r1",
            LEASE,
            Duration::ZERO,
            t0 + Duration::from_secs(3),
        );
        assert!(l.live(t0 + Duration::from_millis(3999)).contains("node-1"));
        assert!(!l.live(t0 + LEASE).contains("node-1"));
        assert_eq!(l.next_expiry(t0), Some(t0 + LEASE));
    }

    #[test]
    fn a_lease_already_old_when_first_seen_expires_sooner() {
        let t0 = Instant::now();
        let mut l = Liveness::new();
        l.observe("node-1", "r1", LEASE, Duration::from_secs(10), t0);
        assert!(l.live(t0).is_empty());
    }

    #[test]
    fn a_deleted_lease_means_not_live() {
        let t0 = Instant::now();
        let mut l = Liveness::new();
        l.observe("node-1", "r1", LEASE, Duration::ZERO, t0);
        l.forget("node-1");
        assert!(l.live(t0).is_empty());
        assert_eq!(l.next_expiry(t0), None);
    }
}
