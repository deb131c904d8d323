//! How many replies a requester, or everyone together, may get: a token
//! bucket ([`TokenBucket`]) and a bounded table of them keyed by requester
//! ([`KeyedBuckets`]). Pure: the caller passes the time, so the limits are
//! tested without a clock. The announcer owns one of each per interface.
//!
//! Why not `governor`: it reads time from a `Clock` it owns and keeps keyed
//! state in a map with no bound on its size; here the time is an argument
//! and a LAN full of spoofed MACs must not grow the table without end.
//!
//! The bucket is kept as a GCRA "theoretical arrival time" — the moment the
//! bucket would be full again — so it is one `Instant` and exact integer
//! arithmetic, with the behaviour of a bucket of `burst` tokens refilled at
//! `burst` per `period`.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// At most `burst` events per `period`, `burst` of them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    burst: u32,
    period: Duration,
}

impl Rate {
    /// `burst` events per `period`; `None` if either is zero.
    pub const fn new(burst: u32, period: Duration) -> Option<Rate> {
        if burst > 0 && !period.is_zero() {
            Some(Rate { burst, period })
        } else {
            None
        }
    }

    /// The events allowed at once.
    pub fn burst(self) -> u32 {
        self.burst
    }

    /// The period over which `burst` tokens come back.
    pub fn period(self) -> Duration {
        self.period
    }

    /// The time one token takes to come back.
    fn interval(self) -> Duration {
        self.period / self.burst
    }

    /// The most events allowed within `window`: the burst, plus what comes
    /// back meanwhile.
    pub fn most_within(self, window: Duration) -> u64 {
        let refilled = window.as_nanos() / self.interval().as_nanos().max(1);
        u64::from(self.burst) + u64::try_from(refilled).unwrap_or(u64::MAX)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.burst,
            humantime::format_duration(self.period)
        )
    }
}

/// One token bucket; starts full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    rate: Rate,
    /// When the bucket is full again; `None`: full.
    full_at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate) -> TokenBucket {
        TokenBucket {
            rate,
            full_at: None,
        }
    }

    /// Takes one token at `now`; false (and nothing taken) if none is left.
    /// A `now` earlier than a previous one counts as that previous moment.
    pub fn take(&mut self, now: Instant) -> bool {
        let interval = self.rate.interval();
        let full_at = self.full_at.map_or(now, |at| at.max(now));
        // Tokens in use = (full_at - now) / interval; one more must fit.
        let in_use = full_at - now;
        if in_use + interval > interval * self.rate.burst {
            return false;
        }
        self.full_at = Some(full_at + interval);
        true
    }

    /// Whether the bucket is full at `now`: it then behaves as a new one.
    pub fn is_full(&self, now: Instant) -> bool {
        self.full_at.is_none_or(|at| at <= now)
    }
}

/// One bucket per key (a requester's MAC), in a table of at most
/// `capacity` keys. Keys whose bucket is full again are forgotten when the
/// table fills; if it is still full, a new key gets no token until some
/// bucket refills, so spoofing many keys cannot grow memory, and the caller's
/// overall bucket still bounds what goes out.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    rate: Rate,
    capacity: usize,
    buckets: HashMap<K, TokenBucket>,
    /// When full buckets were last swept out, so a table that stays full is
    /// swept at most once per token interval, not once per event.
    swept_at: Option<Instant>,
}

impl<K: Eq + Hash + Copy> KeyedBuckets<K> {
    /// An empty table of buckets of `rate`, holding at most `capacity` keys.
    pub fn new(rate: Rate, capacity: usize) -> KeyedBuckets<K> {
        KeyedBuckets {
            rate,
            capacity,
            buckets: HashMap::new(),
            swept_at: None,
        }
    }

    /// Takes a token from `key`'s bucket at `now`.
    pub fn take(&mut self, key: K, now: Instant) -> bool {
        if let Some(bucket) = self.buckets.get_mut(&key) {
            return bucket.take(now);
        }
        if self.buckets.len() >= self.capacity {
            let due = self
                .swept_at
                .is_none_or(|at| now.saturating_duration_since(at) >= self.rate.interval());
            if due {
                self.buckets.retain(|_, bucket| !bucket.is_full(now));
                self.swept_at = Some(now);
            }
            if self.buckets.len() >= self.capacity {
                return false;
            }
        }
        let mut bucket = TokenBucket::new(self.rate);
        let taken = bucket.take(now);
        self.buckets.insert(key, bucket);
        taken
    }

    /// How many keys the table holds.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rate(burst: u32, ms: u64) -> Rate {
        Rate::new(burst, Duration::from_millis(ms)).expect("a rate")
    }

    #[test]
    fn a_full_bucket_allows_its_burst_then_one_token_per_interval() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(rate(10, 1000));
        for _ in 0..10 {
            assert!(bucket.take(start));
        }
        assert!(!bucket.take(start), "the burst is spent");
        assert!(!bucket.take(start + Duration::from_millis(99)));
        assert!(bucket.take(start + Duration::from_millis(100)));
        assert!(!bucket.take(start + Duration::from_millis(100)));
        // A long pause refills it to the burst, no further.
        let later = start + Duration::from_secs(60);
        assert!((0..10).all(|_| bucket.take(later)));
        assert!(!bucket.take(later));
        assert!(!bucket.is_full(later));
        assert!(bucket.is_full(later + Duration::from_secs(1)));
    }

    #[test]
    fn zero_rates_do_not_exist() {
        assert_eq!(Rate::new(0, Duration::from_secs(1)), None);
        assert_eq!(Rate::new(1, Duration::ZERO), None);
        assert_eq!(rate(100, 1000).to_string(), "100/1s");
        assert_eq!(rate(100, 1000).most_within(Duration::from_secs(10)), 1100);
    }

    #[test]
    fn each_requester_has_its_own_bucket() {
        let start = Instant::now();
        let mut limits = KeyedBuckets::new(rate(2, 1000), 16);
        assert!(limits.take('a', start));
        assert!(limits.take('a', start));
        assert!(!limits.take('a', start), "a spent its burst");
        assert!(limits.take('b', start), "b is untouched by a");
    }

    #[test]
    fn a_full_table_forgets_refilled_requesters_and_refuses_new_ones_until_then() {
        let start = Instant::now();
        let mut limits = KeyedBuckets::new(rate(1, 1000), 2);
        assert!(limits.take(1, start));
        assert!(limits.take(2, start));
        assert!(!limits.take(3, start), "no room, nobody refilled");
        assert_eq!(limits.len(), 2);
        let later = start + Duration::from_secs(1);
        assert!(limits.take(3, later), "1 and 2 refilled and were forgotten");
        assert_eq!(limits.len(), 1);
    }

    proptest! {
        /// Whatever the arrival pattern, what is allowed within any window
        /// never exceeds the burst plus what refills in it.
        #[test]
        fn never_more_than_the_burst_plus_the_refill(
            burst in 1u32..50,
            period_ms in 1u64..5000,
            gaps in proptest::collection::vec(0u64..200, 1..400),
        ) {
            let rate = rate(burst, period_ms);
            let start = Instant::now();
            let mut bucket = TokenBucket::new(rate);
            let mut now = start;
            let mut allowed = Vec::new();
            for gap in gaps {
                now += Duration::from_millis(gap);
                if bucket.take(now) {
                    allowed.push(now);
                }
            }
            for (i, from) in allowed.iter().enumerate() {
                for (j, to) in allowed.iter().enumerate().skip(i) {
                    let within = u64::try_from(j - i + 1).expect("small");
                    prop_assert!(within <= rate.most_within(*to - *from));
                }
            }
        }

        /// A requester sending no faster than the rate is never refused.
        #[test]
        fn a_requester_within_the_rate_is_never_refused(
            burst in 1u32..50,
            period_ms in 1u64..5000,
            extra in proptest::collection::vec(0u64..100, 1..200),
        ) {
            let rate = rate(burst, period_ms);
            let mut bucket = TokenBucket::new(rate);
            let mut now = Instant::now();
            for extra in extra {
                prop_assert!(bucket.take(now));
                now += rate.interval() + Duration::from_millis(extra);
            }
        }
    }
}
