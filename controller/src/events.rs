//! Kubernetes events about Services and the ConfigMap: repeats folded into a
//! series, notes cut to the API server's limit, and written by a bounded queue
//! off the allocation path.
//!
//! A reconcile decides what to tell at once ([`Events::publish`] never
//! waits) and one writer drains the queue behind the status writes: an
//! event is news about an address, the status is the address, so a cold
//! start of ten thousand Services spends the API server's capacity on
//! statuses first. When the queue is full an event is dropped and counted
//! (`ferrolb_controller_events_dropped_total`), never the allocation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{EventType, Reporter};
use kube::{Client, Resource};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::leader::Fence;
use crate::metrics::Metrics;

/// How long an event may be repeated as a series rather than anew.
const REPEAT_WINDOW: Duration = Duration::from_secs(6 * 60);

/// How often a repeated event's series count is written: repeats in
/// between are counted here, not each written (a pending Service is woken
/// whenever any address is freed, and one write per wake-up per pending
/// Service would load the API server for nothing).
const SERIES_INTERVAL: Duration = Duration::from_secs(60);

/// How often events older than [`REPEAT_WINDOW`] are forgotten: not on every
/// publish, since with ten thousand Services a sweep per event would cost
/// more than the event.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Events waiting to be written; about a kilobyte each.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Events written at once: one, so status writes keep the API server's
/// capacity while a backlog drains (measured at a cold start of 10,000
/// Services: four writers cost the allocations 9 % of their rate).
const WRITERS: usize = 1;

/// The longest note the API server accepts, in bytes.
pub const NOTE_LIMIT: usize = 1024;

/// `note` cut to the API server's limit, ending with an ellipsis when cut.
pub fn cut_note(mut note: String) -> String {
    const ELLIPSIS: char = '…';
    if note.len() <= NOTE_LIMIT {
        return note;
    }
    let mut cut = NOTE_LIMIT - ELLIPSIS.len_utf8();
    while !note.is_char_boundary(cut) {
        cut -= 1;
    }
    note.truncate(cut);
    note.push(ELLIPSIS);
    note
}

/// Whether an event was new or a repeat of a recent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    /// A new event.
    New,
    /// Counted in the series of an identical recent event.
    Repeated,
}

/// What makes two events the same event, repeated: the object, the type,
/// the reason and the note (as client-go's recorder keys them).
///
/// kube's `Recorder` keys repeats without the note, so a second, different
/// message (a config refused for another reason, an address that moved
/// again) would show as "x2" of the first message: the user would read a
/// stale reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    warning: bool,
    reason: String,
    note: String,
}

/// An event told in the last [`REPEAT_WINDOW`].
#[derive(Debug)]
struct Told {
    /// The event as first written, to write again if the API server
    /// expired it before its series was updated.
    event: K8sEvent,
    count: i32,
    last: Instant,
    /// When the series count was last written.
    written: Instant,
}

/// One write to the API server.
#[derive(Debug)]
enum Write {
    Create(K8sEvent),
    Series { event: K8sEvent, count: i32 },
}

/// The events told recently: decides whether an event is new, a repeat to
/// write as a series, or a repeat only counted. Time is an argument.
#[derive(Debug)]
struct Recent {
    told: HashMap<EventKey, Told>,
    swept: Instant,
}

impl Recent {
    fn new(now: Instant) -> Recent {
        Recent {
            told: HashMap::new(),
            swept: now,
        }
    }

    /// Records `event` under `key` at `now`: what to write, if anything.
    fn record(
        &mut self,
        key: EventKey,
        event: K8sEvent,
        now: Instant,
    ) -> (Publication, Option<Write>) {
        if now.duration_since(self.swept) > SWEEP_INTERVAL {
            self.told
                .retain(|_, t| now.duration_since(t.last) < REPEAT_WINDOW);
            self.swept = now;
        }
        if let Some(told) = self
            .told
            .get_mut(&key)
            .filter(|t| now.duration_since(t.last) < REPEAT_WINDOW)
        {
            told.count += 1;
            told.last = now;
            if now.duration_since(told.written) < SERIES_INTERVAL {
                return (Publication::Repeated, None);
            }
            told.written = now;
            let write = Write::Series {
                event: told.event.clone(),
                count: told.count,
            };
            return (Publication::Repeated, Some(write));
        }
        let told = Told {
            event: event.clone(),
            count: 1,
            last: now,
            written: now,
        };
        self.told.insert(key, told);
        (Publication::New, Some(Write::Create(event)))
    }
}

/// Tells `events.k8s.io/v1` events: an event identical to one told recently
/// bumps its series count (written at most every [`SERIES_INTERVAL`]); one
/// whose note differs is a new event.
pub struct Events {
    reporter: Reporter,
    recent: Mutex<Recent>,
    queue: mpsc::Sender<Write>,
    metrics: Arc<Metrics>,
}

/// The queue's other end: [`Writer::run`] writes what [`Events`] queued.
pub struct Writer {
    client: Client,
    fence: Fence,
    queue: mpsc::Receiver<Write>,
}

impl Events {
    /// Events reported as `reporter`, and the writer that carries them out
    /// through `fence` (so only while this replica leads).
    pub fn new(
        client: Client,
        reporter: Reporter,
        fence: Fence,
        metrics: Arc<Metrics>,
    ) -> (Events, Writer) {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let events = Events {
            reporter,
            recent: Mutex::new(Recent::new(Instant::now())),
            queue,
            metrics,
        };
        let writer = Writer {
            client,
            fence,
            queue: rx,
        };
        (events, writer)
    }

    /// Tells an event about `object`; returns whether it is new (not a
    /// repeat counted in an existing one's series). Never waits.
    pub fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> Publication {
        let regarding = object.object_ref(&());
        let note = cut_note(note);
        let key = EventKey {
            kind: regarding.kind.clone(),
            namespace: regarding.namespace.clone(),
            name: regarding.name.clone(),
            uid: regarding.uid.clone(),
            warning: matches!(type_, EventType::Warning),
            reason: reason.to_owned(),
            note: note.clone(),
        };
        let event = self.event(regarding, key.warning, reason, note);
        let (publication, write) = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(key, event, Instant::now());
        if let Some(write) = write
            && self.queue.try_send(write).is_err()
        {
            self.metrics.event_dropped();
            debug!(reason, "event queue full; event dropped");
        }
        publication
    }

    /// A new event about `regarding`, named after it and the time.
    fn event(
        &self,
        regarding: ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) -> K8sEvent {
        let stamp = MicroTime(Timestamp::now());
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let name = format!(
            "{}.{:x}",
            regarding
                .name
                .as_deref()
                .unwrap_or(&self.reporter.controller),
            stamp.0.as_nanosecond()
        );
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                ..Default::default()
            },
            action: Some("Allocate".into()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(stamp),
            regarding: Some(regarding),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..Default::default()
        }
    }
}

impl Writer {
    /// Writes queued events, [`WRITERS`] at a time, until the [`Events`] it
    /// belongs to is gone.
    pub async fn run(self) {
        let Writer {
            client,
            fence,
            mut queue,
        } = self;
        let writes = futures::stream::poll_fn(move |cx| queue.poll_recv(cx))
            .for_each_concurrent(WRITERS, |write| {
                let (client, fence) = (client.clone(), fence.clone());
                async move {
                    let reason = match &write {
                        Write::Create(e) | Write::Series { event: e, .. } => e.reason.clone(),
                    };
                    if let Err(e) = fence.guard(carry_out(&client, write)).await {
                        warn!(reason = reason.as_deref().unwrap_or(""), error = %e, "could not publish event");
                    }
                }
            });
        writes.await;
    }
}

/// One write; a series whose event the API server expired is written anew.
async fn carry_out(client: &Client, write: Write) -> Result<(), kube::Error> {
    let event = match write {
        Write::Create(event) => event,
        Write::Series { event, count } => {
            let series = json!({ "series": EventSeries {
                count,
                last_observed_time: MicroTime(Timestamp::now()),
            } });
            let (namespace, name) = (
                event.metadata.namespace.clone().unwrap_or_default(),
                event.metadata.name.clone().unwrap_or_default(),
            );
            match Api::<K8sEvent>::namespaced(client.clone(), &namespace)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Err(kube::Error::Api(s)) if s.code == 404 => event,
                other => return other.map(|_| ()),
            }
        }
    };
    let namespace = event.metadata.namespace.clone().unwrap_or_default();
    Api::<K8sEvent>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &event)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_within_the_limit_is_kept_whole() {
        let note = "x".repeat(NOTE_LIMIT);
        assert_eq!(cut_note(note.clone()), note);
    }

    #[test]
    fn a_long_note_is_cut_to_the_limit_with_an_ellipsis_on_a_char_boundary() {
        // Multi-byte characters straddle the cut.
        let note = "é".repeat(NOTE_LIMIT);
        let cut = cut_note(note);
        assert!(cut.len() <= NOTE_LIMIT, "{} bytes", cut.len());
        assert!(cut.len() >= NOTE_LIMIT - 4);
        assert!(cut.ends_with("é…"));
    }

    fn key(note: &str) -> EventKey {
        EventKey {
            kind: Some("Service".into()),
            namespace: Some("default".into()),
            name: Some("web".into()),
            uid: Some("1".into()),
            warning: true,
            reason: "AllocationFailed".into(),
            note: note.into(),
        }
    }

    fn kinds(write: &Option<Write>) -> Option<(&'static str, i32)> {
        write.as_ref().map(|w| match w {
            Write::Create(_) => ("create", 1),
            Write::Series { count, .. } => ("series", *count),
        })
    }

    #[test]
    fn repeats_are_counted_and_written_as_a_series_at_most_once_a_minute() {
        let t0 = Instant::now();
        let mut recent = Recent::new(t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let (p, w) = recent.record(key("no free address"), K8sEvent::default(), at(0));
        assert_eq!((p, kinds(&w)), (Publication::New, Some(("create", 1))));
        // A wake-up every few seconds: counted, not written.
        for s in [5, 20, 59] {
            let (p, w) = recent.record(key("no free address"), K8sEvent::default(), at(s));
            assert_eq!((p, kinds(&w)), (Publication::Repeated, None), "at {s} s");
        }
        let (p, w) = recent.record(key("no free address"), K8sEvent::default(), at(61));
        assert_eq!((p, kinds(&w)), (Publication::Repeated, Some(("series", 5))));
        // Another cause is another event, at once.
        let (p, w) = recent.record(key("pool removed"), K8sEvent::default(), at(62));
        assert_eq!((p, kinds(&w)), (Publication::New, Some(("create", 1))));
    }

    #[test]
    fn an_event_not_repeated_within_the_window_is_new_again() {
        let t0 = Instant::now();
        let mut recent = Recent::new(t0);
        recent.record(key("x"), K8sEvent::default(), t0);
        let later = t0 + REPEAT_WINDOW + Duration::from_secs(1);
        let (p, w) = recent.record(key("x"), K8sEvent::default(), later);
        assert_eq!((p, kinds(&w)), (Publication::New, Some(("create", 1))));
        // The sweep forgot the old one.
        assert_eq!(recent.told.len(), 1);
    }
}
