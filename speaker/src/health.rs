//! Whether the speaker can do its job, for `/healthz`: every watch of the
//! API server has listed once and none has kept failing for longer than a
//! bound, and no interface the speaker should answer on has lost its
//! sockets. Pure: the shell reports watch outcomes and socket failures with
//! the time, and asks for the [`Problem`]s at a given time.
//!
//! A watch that fails is retried with backoff (at most half a minute apart),
//! and a retry that succeeds says nothing until the next change, so a watch
//! counts as failing while its errors keep coming: from its first error
//! after a success, until no error has come for [`WATCH_BOUND`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// How long a watch may keep failing (or a failing one stay quiet before it
/// counts as recovered): longer than the watch's longest backoff.
pub const WATCH_BOUND: Duration = Duration::from_secs(60);

/// Why the speaker is not healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A watch has not completed its first list.
    NotSynced {
        /// Which watch.
        watch: &'static str,
    },
    /// A watch has been failing for longer than [`WATCH_BOUND`].
    WatchFailing {
        /// Which watch.
        watch: &'static str,
        /// Since when, before the time asked about.
        for_: Duration,
    },
    /// An interface's ARP/NDP sockets could not be opened or failed.
    SocketsFailed {
        /// The interface.
        interface: String,
        /// The error.
        error: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotSynced { watch } => write!(f, "the {watch} watch has not listed yet"),
            Problem::WatchFailing { watch, for_ } => {
                write!(
                    f,
                    "the {watch} watch has been failing for {}s",
                    for_.as_secs()
                )
            }
            Problem::SocketsFailed { interface, error } => {
                write!(f, "the sockets on {interface} failed: {error}")
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Watch {
    synced: bool,
    /// The first error after the last success, and the latest error.
    failing: Option<(Instant, Instant)>,
}

/// What the watches did, as far as health goes.
#[derive(Debug, Clone, Default)]
pub struct Watches {
    watches: BTreeMap<&'static str, Watch>,
}

impl Watches {
    /// Health over `names`, none of them listed yet.
    pub fn new(names: &[&'static str]) -> Watches {
        Watches {
            watches: names.iter().map(|n| (*n, Watch::default())).collect(),
        }
    }

    /// Records that watch `name` delivered (`ok`) or failed at `now`.
    pub fn observe(&mut self, name: &'static str, ok: bool, now: Instant) {
        let watch = self.watches.entry(name).or_default();
        if ok {
            watch.synced = true;
            watch.failing = None;
        } else {
            let since = watch.failing.map_or(now, |(since, _)| since);
            watch.failing = Some((since, now));
        }
    }
}

/// What is wrong at `now`, given the watches and the interfaces whose
/// sockets failed (by name, with the error); empty when healthy.
pub fn problems(
    watches: &Watches,
    failed_sockets: &BTreeMap<String, String>,
    now: Instant,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (&watch, state) in &watches.watches {
        if !state.synced {
            problems.push(Problem::NotSynced { watch });
        } else if let Some((since, last)) = state.failing {
            let for_ = now.saturating_duration_since(since);
            if for_ > WATCH_BOUND && now.saturating_duration_since(last) < WATCH_BOUND {
                problems.push(Problem::WatchFailing { watch, for_ });
            }
        }
    }
    for (interface, error) in failed_sockets {
        problems.push(Problem::SocketsFailed {
            interface: interface.clone(),
            error: error.clone(),
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn healthy_only_once_every_watch_has_listed() {
        let t0 = Instant::now();
        let mut watches = Watches::new(&["services", "nodes"]);
        let none = BTreeMap::new();
        assert_eq!(
            problems(&watches, &none, t0),
            vec![
                Problem::NotSynced { watch: "nodes" },
                Problem::NotSynced { watch: "services" }
            ]
        );
        watches.observe("services", true, t0);
        watches.observe("nodes", false, t0);
        assert_eq!(
            problems(&watches, &none, t0 + S),
            vec![Problem::NotSynced { watch: "nodes" }]
        );
        watches.observe("nodes", true, t0 + 2 * S);
        assert_eq!(problems(&watches, &none, t0 + 3 * S), vec![]);
    }

    #[test]
    fn a_watch_failing_beyond_the_bound_is_a_problem_until_it_delivers_or_goes_quiet() {
        let t0 = Instant::now();
        let mut watches = Watches::new(&["services"]);
        let none = BTreeMap::new();
        watches.observe("services", true, t0);
        // Errors every 30 s, as the backoff retries.
        for i in 0..=3 {
            watches.observe("services", false, t0 + i * 30 * S);
        }
        assert_eq!(
            problems(&watches, &none, t0 + 59 * S),
            vec![],
            "within the bound"
        );
        assert_eq!(
            problems(&watches, &none, t0 + 91 * S),
            vec![Problem::WatchFailing {
                watch: "services",
                for_: 91 * S
            }]
        );
        // A retry that worked says nothing; quiet for the bound counts.
        assert_eq!(problems(&watches, &none, t0 + 151 * S), vec![]);
        watches.observe("services", false, t0 + 200 * S);
        watches.observe("services", true, t0 + 201 * S);
        assert_eq!(problems(&watches, &none, t0 + 270 * S), vec![]);
    }

    #[test]
    fn failed_sockets_are_a_problem_naming_the_interface() {
        let watches = Watches::default();
        let failed = BTreeMap::from([("eth1".to_owned(), "Network is down".to_owned())]);
        let found = problems(&watches, &failed, Instant::now());
        assert_eq!(
            found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["the sockets on eth1 failed: Network is down"]
        );
    }
}
