//! A simulated LAN of membership cores, for the tests and the scale
//! simulation (`examples/membership_scale.rs`): zero latency, time stepped
//! by the caller, links that can be cut, processes that can be killed or
//! paused, and per-member traffic counted. Pure like the core it drives.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Effect, Liveness, Settings};
use crate::seal::Key;

/// Traffic one member sent and received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams sent.
    pub sent_packets: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Datagrams received.
    pub received_packets: u64,
    /// Bytes received.
    pub received_bytes: u64,
}

/// A LAN of `n` members named `node-00000`, `node-00001`, ….
#[derive(Debug)]
pub struct Lan {
    /// The members' cores, by index.
    pub members: Vec<Liveness>,
    /// The simulated clock.
    pub now: Instant,
    /// Traffic per member.
    pub traffic: Vec<Traffic>,
    /// Every effect other than `Send`, with when and where it happened.
    pub log: Vec<(Instant, usize, Effect)>,
    /// Members whose link is down: nothing in, nothing out.
    pub cut: BTreeSet<usize>,
    /// Members whose process is dead.
    pub dead: BTreeSet<usize>,
    /// Members whose process is paused: datagrams queue, no ticks.
    pub paused: BTreeSet<usize>,
    /// Datagrams waiting for a paused member.
    pub queued: HashMap<usize, VecDeque<Vec<u8>>>,
    /// While set, every datagram sent is copied here as (from, to, bytes).
    pub capture: Option<Vec<(usize, usize, Vec<u8>)>>,
    addrs: HashMap<SocketAddr, usize>,
    next_tick: Vec<Instant>,
    key: Key,
    settings: Settings,
}

/// Member `i`'s name.
pub fn name(i: usize) -> String {
    format!("node-{i:05}")
}

/// Member `i`'s membership address (documentation range, one port each).
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1 + (i / 60000) as u8)),
        1024 + (i % 60000) as u16,
    )
}

impl Lan {
    /// `n` members with `settings`, sealing with `key`, all started at once
    /// and told of each other by the address book; ticks are spread evenly
    /// over one interval.
    pub fn new(n: usize, settings: Settings, key: Key) -> Lan {
        let now = Instant::now();
        let members = (0..n)
            .map(|i| Liveness::new(name(i), addr(i), key.clone(), settings.clone(), 1, now))
            .collect();
        let next_tick = (0..n)
            .map(|i| now + settings.interval.mul_f64(i as f64 / n as f64))
            .collect();
        let mut lan = Lan {
            members,
            now,
            traffic: vec![Traffic::default(); n],
            log: Vec::new(),
            cut: BTreeSet::new(),
            dead: BTreeSet::new(),
            paused: BTreeSet::new(),
            queued: HashMap::new(),
            capture: None,
            addrs: (0..n).map(|i| (addr(i), i)).collect(),
            next_tick,
            key,
            settings,
        };
        let book: Vec<(String, SocketAddr)> = (0..n).map(|i| (name(i), addr(i))).collect();
        for i in 0..n {
            let mut out = Vec::new();
            lan.members[i].discover(book.clone(), now, &mut out);
            lan.carry(i, out);
        }
        lan
    }

    /// `n` members that already hold each other live (skipping the join
    /// exchange, whose cost is one round of challenges per start).
    pub fn settled(n: usize, settings: Settings, key: Key) -> Lan {
        let now = Instant::now();
        let mut members: Vec<Liveness> = (0..n)
            .map(|i| Liveness::new(name(i), addr(i), key.clone(), settings.clone(), 1, now))
            .collect();
        let version = super::Version {
            generation: 1,
            incarnation: 0,
        };
        let names: Vec<String> = (0..n).map(name).collect();
        for (i, member) in members.iter_mut().enumerate() {
            for (j, other) in names.iter().enumerate() {
                if i != j {
                    member.assume_alive(other, addr(j), version, now);
                }
            }
        }
        Lan {
            next_tick: (0..n)
                .map(|i| now + settings.interval.mul_f64(i as f64 / n as f64))
                .collect(),
            members,
            now,
            traffic: vec![Traffic::default(); n],
            log: Vec::new(),
            cut: BTreeSet::new(),
            dead: BTreeSet::new(),
            paused: BTreeSet::new(),
            queued: HashMap::new(),
            capture: None,
            addrs: (0..n).map(|i| (addr(i), i)).collect(),
            key,
            settings,
        }
    }

    /// Advances the clock by `step`, ticking every member whose tick is due.
    pub fn run(&mut self, duration: Duration, step: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now += step;
            for i in 0..self.members.len() {
                if self.dead.contains(&i) || self.paused.contains(&i) {
                    continue;
                }
                if self.next_tick[i] <= self.now {
                    self.next_tick[i] = self.now + self.settings.interval;
                    let mut out = Vec::new();
                    self.members[i].handle_tick(self.now, &mut out);
                    self.carry(i, out);
                }
            }
        }
    }

    /// Runs until `done` holds or `limit` passes; returns how long it took.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&Lan) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now < start + limit {
            if done(self) {
                return Some(self.now - start);
            }
            self.run(step, step);
        }
        done(self).then(|| self.now - start)
    }

    /// Resumes a paused member: it ticks first (the worst order), then reads
    /// what queued while it was paused.
    pub fn resume(&mut self, i: usize) {
        self.paused.remove(&i);
        let mut out = Vec::new();
        self.members[i].handle_tick(self.now, &mut out);
        self.next_tick[i] = self.now + self.settings.interval;
        self.carry(i, out);
        let queued = self.queued.remove(&i).unwrap_or_default();
        for bytes in queued {
            self.deliver(i, &bytes);
        }
    }

    /// Restarts member `i` as a new process (generation `generation`).
    pub fn restart(&mut self, i: usize, generation: u64) {
        self.dead.remove(&i);
        self.members[i] = Liveness::new(
            name(i),
            addr(i),
            self.key.clone(),
            self.settings.clone(),
            generation,
            self.now,
        );
        let book: Vec<(String, SocketAddr)> = (0..self.members.len())
            .map(|j| (name(j), addr(j)))
            .collect();
        let mut out = Vec::new();
        self.members[i].discover(book, self.now, &mut out);
        self.next_tick[i] = self.now + self.settings.interval;
        self.carry(i, out);
    }

    /// Member `i` leaves cleanly.
    pub fn leave(&mut self, i: usize) {
        let mut out = Vec::new();
        self.members[i].leave(&mut out);
        self.carry(i, out);
    }

    /// Hands `bytes` to member `to` as if received from the LAN.
    pub fn inject(&mut self, to: usize, bytes: &[u8]) {
        self.deliver(to, bytes);
    }

    /// The live set member `i` holds.
    pub fn live(&self, i: usize) -> BTreeSet<String> {
        self.members[i].live()
    }

    /// Whether every running member other than those in `except` holds
    /// exactly `expected` live.
    pub fn all_agree(&self, expected: &BTreeSet<String>, except: &BTreeSet<usize>) -> bool {
        (0..self.members.len())
            .filter(|i| !self.dead.contains(i) && !except.contains(i))
            .all(|i| &self.live(i) == expected)
    }

    /// Carries out `effects` of member `from`, delivering what it sends.
    fn carry(&mut self, from: usize, effects: Vec<Effect>) {
        let mut pending: VecDeque<(usize, Effect)> =
            effects.into_iter().map(|e| (from, e)).collect();
        while let Some((from, effect)) = pending.pop_front() {
            match effect {
                Effect::Send { to, bytes } => {
                    self.traffic[from].sent_packets += 1;
                    self.traffic[from].sent_bytes += bytes.len() as u64;
                    if self.cut.contains(&from) {
                        continue;
                    }
                    let Some(&to) = self.addrs.get(&to) else {
                        continue;
                    };
                    if let Some(capture) = &mut self.capture {
                        capture.push((from, to, bytes.clone()));
                    }
                    if self.cut.contains(&to) || self.dead.contains(&to) {
                        continue;
                    }
                    self.traffic[to].received_packets += 1;
                    self.traffic[to].received_bytes += bytes.len() as u64;
                    if self.paused.contains(&to) {
                        self.queued.entry(to).or_default().push_back(bytes);
                        continue;
                    }
                    let mut out = Vec::new();
                    self.members[to].handle_datagram(&bytes, self.now, &mut out);
                    pending.extend(out.into_iter().map(|e| (to, e)));
                }
                other => self.log.push((self.now, from, other)),
            }
        }
    }

    fn deliver(&mut self, to: usize, bytes: &[u8]) {
        let mut out = Vec::new();
        self.members[to].handle_datagram(bytes, self.now, &mut out);
        self.carry(to, out);
    }
}

/// What [`scale`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleReport {
    /// Members simulated.
    pub members: usize,
    /// Mean datagrams per second one member sends at steady state.
    pub packets_per_second: f64,
    /// The most any member sent or received per second at steady state.
    pub max_packets_per_second: f64,
    /// Mean bytes per second one member sends at steady state.
    pub bytes_per_second: f64,
    /// From one member's death to the last survivor holding it down.
    pub detection: Duration,
    /// Datagrams sent by everyone because of that death (verdicts), per
    /// member that sent them.
    pub verdict_packets: u64,
}

/// Simulates `n` settled members for `steady` with default settings, then
/// kills one and measures how long until every survivor holds it down.
pub fn scale(n: usize, steady: Duration) -> ScaleReport {
    let key = Key::new(b"simulation key, not a secret").expect("long enough");
    let step = Duration::from_millis(5);
    let mut lan = Lan::settled(n, Settings::default(), key);
    lan.run(Duration::from_millis(500), step);
    let before = lan.traffic.clone();
    lan.run(steady, step);
    let secs = steady.as_secs_f64();
    let deltas: Vec<(u64, u64, u64)> = lan
        .traffic
        .iter()
        .zip(&before)
        .map(|(a, b)| {
            (
                a.sent_packets - b.sent_packets,
                a.received_packets - b.received_packets,
                a.sent_bytes - b.sent_bytes,
            )
        })
        .collect();
    let sent: u64 = deltas.iter().map(|d| d.0).sum();
    let bytes: u64 = deltas.iter().map(|d| d.2).sum();
    let max = deltas.iter().map(|d| d.0.max(d.1)).max().unwrap_or(0);
    let victim = n / 2;
    let victim_name = name(victim);
    lan.log.clear();
    lan.dead.insert(victim);
    let heartbeats_before: u64 = lan.traffic.iter().map(|t| t.sent_packets).sum();
    let detection = lan
        .run_until(Duration::from_secs(5), step, |lan| {
            let knowing: BTreeSet<usize> = lan
                .log
                .iter()
                .filter(
                    |(_, _, e)| matches!(e, Effect::Down { member, .. } if *member == victim_name),
                )
                .map(|(_, at, _)| *at)
                .collect();
            knowing.len() == n - 1
        })
        .unwrap_or(Duration::MAX);
    let watchers: BTreeSet<usize> = lan
        .log
        .iter()
        .filter(|(_, _, e)| {
            matches!(e, Effect::Down { member, cause: super::Cause::Silent } if *member == victim_name)
        })
        .map(|(_, at, _)| *at)
        .collect();
    let during: u64 = lan.traffic.iter().map(|t| t.sent_packets).sum::<u64>() - heartbeats_before;
    let heartbeats = (sent as f64 / secs * detection.as_secs_f64()) as u64;
    ScaleReport {
        members: n,
        packets_per_second: sent as f64 / n as f64 / secs,
        max_packets_per_second: max as f64 / secs,
        bytes_per_second: bytes as f64 / n as f64 / secs,
        detection,
        verdict_packets: during.saturating_sub(heartbeats) / watchers.len().max(1) as u64,
    }
}
