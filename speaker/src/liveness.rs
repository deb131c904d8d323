//! Which speakers are alive, from a membership among them on the LAN. A
//! sans-IO state machine: datagrams and timer ticks go in, datagrams to send
//! and membership changes come out as [`Effect`]s; time is an argument. The
//! shell ([`crate::members`]) owns the UDP socket and the one task driving
//! it; [`sim`] drives many of them over a simulated LAN.
//!
//! # Protocol
//! Every member sends a heartbeat every `interval` to its `monitors` nearest
//! successors in the ring of members ordered by name — both among every
//! member it knows of and among those it holds live, so a dead stretch of the
//! ring never leaves a member unwatched. A member's predecessors therefore
//! watch it; one silent for `timeout` is declared down, and the verdict is
//! sent straight to every member (`repeats` times, a tick apart), so all
//! learn of a death one hop after it is seen: detection takes `timeout` plus
//! at most one `interval`, whatever the cluster's size. Steady load per node
//! is at most `2 × monitors` heartbeats sent and received per interval (30
//! packets/s each way by default, at 5,000 members as at 3); a death costs
//! each watcher one round of `repeats × members` datagrams. `sim` and
//! `examples/membership_scale.rs` print the figures.
//!
//! This protocol rather than `foca`'s SWIM: SWIM finds a dead member when a
//! random probe reaches it and spreads the news by gossip, so its detection
//! time grows with the cluster (log N protocol periods) and sits at seconds
//! with sound settings; ferrolb needs a bound under one second at any size,
//! which fixed watchers plus a direct verdict give, with less code to prove.
//!
//! # Fencing rules
//! - **Only a member proves its own liveness.** A member becomes live only
//!   from its own sealed datagrams: one it never answered a fresh challenge
//!   of (a `Join` carrying a number it must echo) is not live, so a replayed
//!   datagram cannot revive anything. Nothing written to the API (a Lease
//!   naming another node, `leaseDurationSeconds: 0`, a deleted Lease) makes
//!   a member live or dead: the API only says where members listen.
//! - **The LAN wins over the API for liveness.** The API gives the address
//!   book and the facts the election reads (pools, Services, Node labels and
//!   conditions); who is alive comes from here alone. A stalled watch or an
//!   API outage changes no one's liveness, and the owner keeps answering as
//!   long as its peers hear it on the LAN.
//! - **A peer's liveness is never judged from data that stopped arriving
//!   because of this node.** Silence is counted only while this member was
//!   itself running: a tick that comes late (the process was stalled, the
//!   machine loaded) forgives the stall before judging anyone.
//! - **A verdict can be refuted only by its subject.** A member told it is
//!   down while it runs raises its incarnation and tells everyone
//!   ([`Effect::Refuted`]: it then re-announces what it owns, so clients
//!   move back after a partition heals). A verdict at an incarnation the
//!   member has already left behind changes nothing.
//! - **A member that hears no peer at all** for `timeout` holds them all down
//!   and serves as if alone (as MetalLB does): if its own link is dead its
//!   answers reach no one, and if its peers are dead it must serve. When the
//!   LAN heals, the first heartbeat across tells each side the other held it
//!   down; both refute, the election settles, and the rightful owner
//!   re-announces.
//! - **Leaving is announced**: a stopping member tells every peer, which
//!   take its addresses over at once; it keeps answering for a short bound.

pub mod sim;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::seal::{Key, Rejection, ReplayWindow};

/// Timing and shape of the membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How often a member sends its heartbeats.
    pub interval: Duration,
    /// How long a watched member may stay silent before it is declared
    /// down: `timeout / interval - 1` lost heartbeats in a row, or a stall of
    /// that member, are forgiven (the hysteresis).
    pub timeout: Duration,
    /// How many successors each member heartbeats (and so how many
    /// predecessors watch each member).
    pub monitors: usize,
    /// How many times a verdict or a leave is sent, a tick apart.
    pub repeats: u32,
}

impl Default for Settings {
    /// 100 ms heartbeats, declared down after 600 ms of silence, three
    /// watchers, three sends of each verdict: a death is known everywhere
    /// within 0.7 s.
    fn default() -> Settings {
        Settings {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(600),
            monitors: 3,
            repeats: 3,
        }
    }
}

/// A member's version: the generation (its process start, so a restart
/// supersedes everything said of the previous process) and the incarnation
/// (raised to refute a verdict). Versions order lexicographically.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    /// Per process start; the shell passes the start time in milliseconds.
    pub generation: u64,
    /// Raised by the member itself to refute a verdict.
    pub incarnation: u64,
}

/// Why a member stopped being live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// It was silent for the timeout while this member watched it.
    Silent,
    /// A watcher said so.
    Verdict {
        /// Who said so.
        by: String,
    },
    /// It said it was leaving.
    Left,
    /// This member heard no peer at all for the timeout.
    Isolated,
}

impl Cause {
    /// A stable label for logs and metrics.
    pub fn as_label(&self) -> &'static str {
        match self {
            Cause::Silent => "silent",
            Cause::Verdict { .. } => "verdict",
            Cause::Left => "left",
            Cause::Isolated => "isolated",
        }
    }
}

/// What the shell must do, or may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send `bytes` (sealed) to `to`.
    Send {
        /// The recipient's membership address.
        to: SocketAddr,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// `member` is live now.
    Up {
        /// The member's name.
        member: String,
    },
    /// `member` is not live any more.
    Down {
        /// The member's name.
        member: String,
        /// Why.
        cause: Cause,
    },
    /// A datagram was dropped.
    Rejected(Rejection),
    /// Others held this member down and it refuted: whatever it owns must be
    /// announced again, since clients may have moved away.
    Refuted,
}

/// What one member says to another. Sealed by [`Key::seal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Message {
    from: String,
    to: String,
    /// Where the sender listens for membership datagrams.
    addr: SocketAddr,
    version: Version,
    /// Numbered per recipient within the generation.
    seq: u64,
    body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t")]
enum Body {
    Heartbeat,
    /// "Prove you are there": answered by `Alive { echo: Some(challenge) }`.
    Join {
        challenge: (u64, u64),
    },
    Alive {
        echo: Option<(u64, u64)>,
    },
    Down {
        member: String,
        version: Version,
    },
    Leave,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Known from the API (or an unproven datagram), never proven live.
    Unknown,
    Alive(Version),
    Down(Version),
    Left(Version),
}

#[derive(Debug, Clone)]
struct Peer {
    addr: Option<SocketAddr>,
    state: State,
    last_heard: Instant,
    window: ReplayWindow,
    next_seq: u64,
    /// The challenge last sent, and when.
    challenge: Option<((u64, u64), Instant)>,
    /// When it was last told it is held down.
    notified: Option<Instant>,
    /// Listed by the API's address book.
    discovered: bool,
    /// When it was first listed or heard of.
    known_since: Instant,
}

impl Peer {
    fn new(now: Instant) -> Peer {
        Peer {
            addr: None,
            state: State::Unknown,
            last_heard: now,
            window: ReplayWindow::default(),
            next_seq: 0,
            challenge: None,
            notified: None,
            discovered: false,
            known_since: now,
        }
    }

    fn is_alive(&self) -> bool {
        matches!(self.state, State::Alive(_))
    }
}

/// A verdict or leave still to be repeated.
#[derive(Debug, Clone)]
struct Broadcast {
    body: Body,
    left: u32,
}

/// How often an unproven member is challenged again.
const CHALLENGE_EVERY: Duration = Duration::from_secs(1);

/// One member's view of the membership.
#[derive(Debug)]
pub struct Liveness {
    me: String,
    addr: SocketAddr,
    key: Key,
    settings: Settings,
    version: Version,
    peers: BTreeMap<String, Peer>,
    broadcasts: Vec<Broadcast>,
    /// Who this member watched at the last tick, since when.
    watched: BTreeMap<String, Instant>,
    started: Instant,
    last_tick: Option<Instant>,
    last_heard_any: Instant,
    leaving: bool,
}

impl Liveness {
    /// Member `me`, listening on `addr`, sealing with `key`, in process
    /// generation `generation` (a number that grows with every start, e.g.
    /// the start time in milliseconds), started at `now`.
    pub fn new(
        me: impl Into<String>,
        addr: SocketAddr,
        key: Key,
        settings: Settings,
        generation: u64,
        now: Instant,
    ) -> Liveness {
        Liveness {
            me: me.into(),
            addr,
            key,
            settings,
            version: Version {
                generation,
                incarnation: 0,
            },
            peers: BTreeMap::new(),
            broadcasts: Vec::new(),
            watched: BTreeMap::new(),
            started: now,
            last_tick: None,
            last_heard_any: now,
            leaving: false,
        }
    }

    /// This member's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// This member's current version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The members live in this view, this one included.
    pub fn live(&self) -> BTreeSet<String> {
        self.peers
            .iter()
            .filter(|(_, p)| p.is_alive())
            .map(|(name, _)| name.clone())
            .chain(std::iter::once(self.me.clone()))
            .collect()
    }

    /// Whether this view is good enough to decide from: every member in the
    /// address book has answered or has had a whole timeout to (one that has
    /// not is dead or unreachable), and the book was not empty or a timeout
    /// has passed since the start. Deciding earlier would claim everything
    /// for a moment. (When a whole cluster starts at once, members that
    /// have not written their record yet cannot be waited for: two may
    /// answer for an address until they hear each other.)
    pub fn settled(&self, now: Instant) -> bool {
        let timeout = self.settings.timeout;
        let waited = now.saturating_duration_since(self.started) >= timeout;
        let listed = self.peers.values().any(|p| p.discovered);
        let answered = self
            .peers
            .values()
            .filter(|p| p.discovered && p.state == State::Unknown)
            .all(|p| now.saturating_duration_since(p.known_since) >= timeout);
        (waited || listed) && answered
    }

    /// Takes the API's address book: the members that should exist and where
    /// they listen. New ones are challenged; an address a member gave in its
    /// own datagrams is kept over the book's. Members missing from the book
    /// are forgotten only if they are not live: a deleted record makes no
    /// member dead.
    pub fn discover<I>(&mut self, book: I, now: Instant, out: &mut Vec<Effect>)
    where
        I: IntoIterator<Item = (String, SocketAddr)>,
    {
        let mut listed = BTreeSet::new();
        for (name, addr) in book {
            if name == self.me {
                continue;
            }
            let peer = self
                .peers
                .entry(name.clone())
                .or_insert_with(|| Peer::new(now));
            peer.discovered = true;
            if peer.addr.is_none() || peer.state == State::Unknown {
                peer.addr = Some(addr);
            }
            listed.insert(name);
        }
        self.peers
            .retain(|name, p| listed.contains(name) || p.is_alive());
        for (name, peer) in &mut self.peers {
            peer.discovered = listed.contains(name);
        }
        let unproven: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == State::Unknown && p.challenge.is_none())
            .map(|(name, _)| name.clone())
            .collect();
        for name in unproven {
            self.challenge(&name, now, out);
        }
    }

    /// Records `name`, listening on `addr`, as live at `version` without the
    /// join exchange: for simulations of a settled cluster too large to
    /// simulate every start (each start challenges every member once).
    #[doc(hidden)]
    pub fn assume_alive(&mut self, name: &str, addr: SocketAddr, version: Version, now: Instant) {
        let peer = self
            .peers
            .entry(name.to_owned())
            .or_insert_with(|| Peer::new(now));
        peer.addr = Some(addr);
        peer.discovered = true;
        peer.state = State::Alive(version);
        peer.last_heard = now;
    }

    /// Handles one datagram received at `now`.
    pub fn handle_datagram(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<Effect>) {
        if let Err(rejection) = self.accept(bytes, now, out) {
            out.push(Effect::Rejected(rejection));
        }
    }

    fn accept(
        &mut self,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<Effect>,
    ) -> Result<(), Rejection> {
        let body = self.key.open(bytes)?;
        let message: Message = serde_json::from_slice(body).map_err(|_| Rejection::Malformed)?;
        if message.from == self.me {
            return Err(Rejection::FromSelf);
        }
        if message.to != self.me {
            return Err(Rejection::Misdirected);
        }
        let peer = self
            .peers
            .entry(message.from.clone())
            .or_insert_with(|| Peer::new(now));
        peer.window
            .accept(message.version.generation, message.seq)?;
        peer.addr = Some(message.addr);
        self.last_heard_any = now;
        let from = message.from;
        match message.body {
            Body::Join { challenge } => {
                self.claim(&from, message.version, false, now, out);
                self.send(
                    &from,
                    Body::Alive {
                        echo: Some(challenge),
                    },
                    out,
                );
            }
            Body::Alive { echo } => {
                let proven = echo.is_some() && self.peers[&from].challenge.map(|(c, _)| c) == echo;
                self.claim(&from, message.version, proven, now, out);
            }
            Body::Heartbeat => self.claim(&from, message.version, false, now, out),
            Body::Down { member, version } => {
                self.claim(&from, message.version, false, now, out);
                self.verdict(&member, version, &from, out);
            }
            Body::Leave => {
                let peer = self.peers.get_mut(&from).expect("inserted above");
                let was_alive = peer.is_alive();
                let newer = match peer.state {
                    State::Alive(v) | State::Down(v) | State::Left(v) => message.version >= v,
                    State::Unknown => true,
                };
                if newer {
                    peer.state = State::Left(message.version);
                    if was_alive {
                        out.push(Effect::Down {
                            member: from,
                            cause: Cause::Left,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// `name` spoke for itself at `version`; `proven` if it echoed a fresh
    /// challenge.
    fn claim(
        &mut self,
        name: &str,
        version: Version,
        proven: bool,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        match peer.state {
            State::Unknown if proven => {
                peer.state = State::Alive(version);
                peer.last_heard = now;
                out.push(Effect::Up {
                    member: name.to_owned(),
                });
            }
            State::Unknown => {
                let due = peer.challenge.is_none_or(|(_, at)| {
                    now.saturating_duration_since(at) >= self.settings.interval
                });
                if due {
                    self.challenge(name, now, out);
                }
            }
            State::Alive(known) => {
                if version >= known {
                    peer.state = State::Alive(version);
                    peer.last_heard = now;
                }
            }
            State::Down(held) | State::Left(held) if version > held => {
                peer.state = State::Alive(version);
                peer.last_heard = now;
                out.push(Effect::Up {
                    member: name.to_owned(),
                });
            }
            State::Down(held) => {
                // It runs but others hold it down at this version: tell it,
                // so it refutes (at most once per interval).
                let due = peer
                    .notified
                    .is_none_or(|at| now.saturating_duration_since(at) >= self.settings.interval);
                if due {
                    peer.notified = Some(now);
                    let member = name.to_owned();
                    self.send(
                        name,
                        Body::Down {
                            member,
                            version: held,
                        },
                        out,
                    );
                }
            }
            State::Left(_) => {}
        }
    }

    /// `by` says `member` is down at `version`.
    fn verdict(&mut self, member: &str, version: Version, by: &str, out: &mut Vec<Effect>) {
        if member == self.me {
            if self.leaving
                || version.generation != self.version.generation
                || version.incarnation < self.version.incarnation
            {
                return;
            }
            self.version.incarnation = version.incarnation + 1;
            out.push(Effect::Refuted);
            let everyone = self.reachable();
            for name in everyone {
                self.send(&name, Body::Alive { echo: None }, out);
            }
            return;
        }
        let Some(peer) = self.peers.get_mut(member) else {
            return;
        };
        if let State::Alive(known) = peer.state
            && version >= known
        {
            peer.state = State::Down(version);
            self.watched.remove(member);
            out.push(Effect::Down {
                member: member.to_owned(),
                cause: Cause::Verdict { by: by.to_owned() },
            });
        }
    }

    /// One timer tick at `now`; the shell ticks every `interval`.
    pub fn handle_tick(&mut self, now: Instant, out: &mut Vec<Effect>) {
        // A late tick means this process did not run: forgive the silence
        // it could not have heard.
        if let Some(last) = self.last_tick {
            let gap = now.saturating_duration_since(last);
            if gap > self.settings.interval * 2 {
                let forgiven = gap - self.settings.interval;
                for peer in self.peers.values_mut() {
                    peer.last_heard += forgiven;
                }
                for since in self.watched.values_mut() {
                    *since += forgiven;
                }
                self.last_heard_any += forgiven;
            }
        }
        self.last_tick = Some(now);
        if self.leaving {
            self.repeat_broadcasts(out);
            return;
        }
        for name in self.heartbeat_targets() {
            self.send(&name, Body::Heartbeat, out);
        }
        self.repeat_broadcasts(out);
        let stale: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.state == State::Unknown
                    && p.addr.is_some()
                    && p.challenge
                        .is_none_or(|(_, at)| now.saturating_duration_since(at) >= CHALLENGE_EVERY)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            self.challenge(&name, now, out);
        }
        self.watch(now, out);
    }

    /// Declares down the watched members silent for the timeout, and every
    /// member if none at all was heard.
    fn watch(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let timeout = self.settings.timeout;
        let watched = self.watched_members();
        let previous = std::mem::take(&mut self.watched);
        for name in watched {
            let since = previous.get(&name).copied().unwrap_or(now);
            self.watched.insert(name, since);
        }
        let silent: Vec<String> = self
            .watched
            .iter()
            .filter(|(name, since)| {
                let heard = self.peers[*name].last_heard.max(**since);
                now.saturating_duration_since(heard) >= timeout
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in silent {
            let peer = self
                .peers
                .get_mut(&name)
                .expect("watched members are peers");
            let State::Alive(version) = peer.state else {
                continue;
            };
            peer.state = State::Down(version);
            self.watched.remove(&name);
            out.push(Effect::Down {
                member: name.clone(),
                cause: Cause::Silent,
            });
            self.broadcast(
                Body::Down {
                    member: name,
                    version,
                },
                out,
            );
        }
        if now.saturating_duration_since(self.last_heard_any) >= timeout {
            for (name, peer) in &mut self.peers {
                if let State::Alive(version) = peer.state {
                    peer.state = State::Down(version);
                    out.push(Effect::Down {
                        member: name.clone(),
                        cause: Cause::Isolated,
                    });
                }
            }
            self.watched.clear();
        }
    }

    /// Says goodbye to every peer; from now on this member only repeats that.
    pub fn leave(&mut self, out: &mut Vec<Effect>) {
        self.leaving = true;
        self.broadcast(Body::Leave, out);
    }

    /// Sends `body` to every reachable peer now, and again on the next
    /// `repeats - 1` ticks.
    fn broadcast(&mut self, body: Body, out: &mut Vec<Effect>) {
        for name in self.reachable() {
            self.send(&name, body.clone(), out);
        }
        if self.settings.repeats > 1 {
            self.broadcasts.push(Broadcast {
                body,
                left: self.settings.repeats - 1,
            });
        }
    }

    fn repeat_broadcasts(&mut self, out: &mut Vec<Effect>) {
        let due = std::mem::take(&mut self.broadcasts);
        for mut broadcast in due {
            for name in self.reachable() {
                self.send(&name, broadcast.body.clone(), out);
            }
            broadcast.left -= 1;
            if broadcast.left > 0 {
                self.broadcasts.push(broadcast);
            }
        }
    }

    /// Every peer with an address that has not left.
    fn reachable(&self) -> Vec<String> {
        self.peers
            .iter()
            .filter(|(_, p)| p.addr.is_some() && !matches!(p.state, State::Left(_)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The `monitors` nearest successors among every reachable member, and
    /// among the live ones.
    fn heartbeat_targets(&self) -> BTreeSet<String> {
        let k = self.settings.monitors;
        let known = |p: &Peer| p.addr.is_some() && !matches!(p.state, State::Left(_));
        let successors = |pick: &dyn Fn(&Peer) -> bool| -> Vec<String> {
            let after = self.peers.range::<str, _>((
                std::ops::Bound::Excluded(self.me.as_str()),
                std::ops::Bound::Unbounded,
            ));
            let before = self.peers.range::<str, _>((
                std::ops::Bound::Unbounded,
                std::ops::Bound::Excluded(self.me.as_str()),
            ));
            after
                .chain(before)
                .filter(|(_, p)| pick(p))
                .take(k)
                .map(|(name, _)| name.clone())
                .collect()
        };
        let mut targets: BTreeSet<String> = successors(&known).into_iter().collect();
        targets.extend(successors(&|p: &Peer| known(p) && p.is_alive()));
        targets
    }

    /// The live members whose heartbeats this member expects: those it is
    /// among the `monitors` nearest successors of.
    fn watched_members(&self) -> BTreeSet<String> {
        let k = self.settings.monitors;
        let known = |p: &Peer| p.addr.is_some() && !matches!(p.state, State::Left(_));
        let predecessors = |pick: &dyn Fn(&Peer) -> bool| -> Vec<String> {
            let before = self
                .peers
                .range::<str, _>((
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Excluded(self.me.as_str()),
                ))
                .rev();
            let after = self
                .peers
                .range::<str, _>((
                    std::ops::Bound::Excluded(self.me.as_str()),
                    std::ops::Bound::Unbounded,
                ))
                .rev();
            before
                .chain(after)
                .filter(|(_, p)| pick(p))
                .take(k)
                .map(|(name, _)| name.clone())
                .collect()
        };
        let mut watched: BTreeSet<String> = predecessors(&known)
            .into_iter()
            .filter(|name| self.peers[name].is_alive())
            .collect();
        watched.extend(predecessors(&|p: &Peer| known(p) && p.is_alive()));
        watched
    }

    fn challenge(&mut self, name: &str, now: Instant, out: &mut Vec<Effect>) {
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        if peer.addr.is_none() {
            return;
        }
        let challenge = (self.version.generation, peer.next_seq + 1);
        peer.challenge = Some((challenge, now));
        self.send(name, Body::Join { challenge }, out);
    }

    fn send(&mut self, to: &str, body: Body, out: &mut Vec<Effect>) {
        let Some(peer) = self.peers.get_mut(to) else {
            return;
        };
        let Some(addr) = peer.addr else { return };
        peer.next_seq += 1;
        let message = Message {
            from: self.me.clone(),
            to: to.to_owned(),
            addr: self.addr,
            version: self.version,
            seq: peer.next_seq,
            body,
        };
        // Serialising plain data to JSON cannot fail.
        let body = serde_json::to_vec(&message).expect("a message serialises");
        out.push(Effect::Send {
            to: addr,
            bytes: self.key.seal(&body),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::sim::{Lan, name};
    use super::*;

    const STEP: Duration = Duration::from_millis(10);

    fn key() -> Key {
        Key::new(b"a test key of enough bytes").unwrap()
    }

    fn names(indices: &[usize]) -> BTreeSet<String> {
        indices.iter().map(|&i| name(i)).collect()
    }

    fn none() -> BTreeSet<usize> {
        BTreeSet::new()
    }

    fn settled(n: usize) -> Lan {
        let mut lan = Lan::new(n, Settings::default(), key());
        let all: Vec<usize> = (0..n).collect();
        let took = lan.run_until(Duration::from_secs(2), STEP, |lan| {
            lan.all_agree(&names(&all), &none())
        });
        assert!(took.is_some(), "members never agreed: {:?}", lan.live(0));
        lan.log.clear();
        lan.run(Duration::from_secs(1), STEP);
        lan
    }

    fn downs(lan: &Lan) -> Vec<(usize, String, &'static str)> {
        lan.log
            .iter()
            .filter_map(|(_, at, e)| match e {
                Effect::Down { member, cause } => Some((*at, member.clone(), cause.as_label())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn members_that_hear_each_other_all_hold_each_other_live_and_stay_so() {
        let lan = settled(5);
        assert!(lan.all_agree(&names(&[0, 1, 2, 3, 4]), &none()));
        assert!(downs(&lan).is_empty(), "{:?}", downs(&lan));
        assert!(lan.members.iter().all(|m| m.settled(lan.now)));
    }

    #[test]
    fn a_dead_member_is_down_everywhere_within_timeout_plus_one_interval() {
        for n in [2, 3, 10] {
            let mut lan = settled(n);
            lan.dead.insert(1);
            let survivors: Vec<usize> = (0..n).filter(|&i| i != 1).collect();
            let took = lan
                .run_until(Duration::from_secs(3), STEP, |lan| {
                    lan.all_agree(&names(&survivors), &none())
                })
                .expect("the dead member is declared down");
            let bound = Settings::default().timeout + Settings::default().interval;
            assert!(took <= bound, "{n} members: took {took:?} > {bound:?}");
        }
    }

    #[test]
    fn a_member_whose_link_is_cut_loses_its_place_then_refutes_when_it_heals() {
        let mut lan = settled(3);
        lan.cut.insert(0);
        let took = lan.run_until(Duration::from_secs(3), STEP, |lan| {
            lan.all_agree(&names(&[1, 2]), &[0].into())
        });
        assert!(took.unwrap() <= Duration::from_millis(700));
        // The cut member hears no one: it holds itself alone.
        lan.run(Duration::from_millis(200), STEP);
        assert_eq!(lan.live(0), names(&[0]));
        lan.log.clear();
        lan.cut.clear();
        let healed = lan.run_until(Duration::from_secs(2), STEP, |lan| {
            lan.all_agree(&names(&[0, 1, 2]), &none())
        });
        assert!(healed.unwrap() <= Duration::from_millis(300), "{healed:?}");
        let refuted: BTreeSet<usize> = lan
            .log
            .iter()
            .filter(|(_, _, e)| *e == Effect::Refuted)
            .map(|(_, at, _)| *at)
            .collect();
        assert!(refuted.contains(&0), "the rightful owner must re-announce");
        lan.log.clear();
        lan.run(Duration::from_secs(2), STEP);
        assert!(
            downs(&lan).is_empty(),
            "flapped after healing: {:?}",
            downs(&lan)
        );
    }

    #[test]
    fn a_member_silent_for_less_than_the_timeout_does_not_flap() {
        let mut lan = settled(3);
        // Its heartbeats are lost for 400 ms (a loaded node, a busy link).
        lan.cut.insert(2);
        lan.run(Duration::from_millis(400), STEP);
        lan.cut.clear();
        lan.run(Duration::from_secs(2), STEP);
        assert!(downs(&lan).is_empty(), "{:?}", downs(&lan));
    }

    #[test]
    fn a_member_that_was_stalled_itself_does_not_blame_its_peers() {
        let mut lan = settled(3);
        lan.paused.insert(0);
        lan.run(Duration::from_secs(2), STEP);
        // Member 0 wakes: it ticks before reading what queued up meanwhile.
        lan.resume(0);
        lan.run(Duration::from_millis(500), STEP);
        let blamed: Vec<_> = downs(&lan)
            .into_iter()
            .filter(|(at, _, _)| *at == 0)
            .collect();
        assert!(blamed.is_empty(), "{blamed:?}");
        assert_eq!(lan.live(0), names(&[0, 1, 2]));
    }

    #[test]
    fn a_paused_member_is_declared_down_and_comes_back_by_refuting() {
        let mut lan = settled(3);
        lan.paused.insert(2);
        lan.run(Duration::from_secs(1), STEP);
        assert!(lan.all_agree(&names(&[0, 1]), &[2].into()));
        lan.resume(2);
        let back = lan.run_until(Duration::from_secs(1), STEP, |lan| {
            lan.all_agree(&names(&[0, 1, 2]), &none())
        });
        assert!(back.is_some());
    }

    #[test]
    fn a_leaving_member_is_down_everywhere_at_once() {
        let mut lan = settled(3);
        lan.leave(1);
        assert!(lan.all_agree(&names(&[0, 2]), &[1].into()));
        let causes: Vec<_> = downs(&lan).into_iter().map(|(_, _, c)| c).collect();
        assert_eq!(causes, vec!["left", "left"]);
        lan.dead.insert(1);
        lan.run(Duration::from_secs(1), STEP);
        assert!(lan.all_agree(&names(&[0, 2]), &none()));
    }

    #[test]
    fn a_restarted_member_is_live_again_in_its_new_generation() {
        let mut lan = settled(3);
        lan.leave(1);
        lan.dead.insert(1);
        lan.run(Duration::from_millis(300), STEP);
        lan.restart(1, 2);
        let took = lan.run_until(Duration::from_secs(1), STEP, |lan| {
            lan.all_agree(&names(&[0, 1, 2]), &none())
        });
        assert!(took.unwrap() <= Duration::from_millis(50), "{took:?}");
        assert!(lan.members[1].settled(lan.now));
    }

    #[test]
    fn a_datagram_sealed_with_another_key_is_rejected_and_changes_nothing() {
        let mut lan = settled(3);
        lan.capture = Some(Vec::new());
        lan.run(Duration::from_millis(100), STEP);
        let (_, to, bytes) = lan.capture.take().unwrap().swap_remove(0);
        let mut forged = bytes.clone();
        let body = forged.split_off(crate::seal::TAG_LEN);
        let forged = Key::new(b"somebody else's key!").unwrap().seal(&body);
        lan.log.clear();
        lan.inject(to, &forged);
        assert_eq!(
            lan.log
                .iter()
                .map(|(_, _, e)| e.clone())
                .collect::<Vec<_>>(),
            vec![Effect::Rejected(Rejection::BadTag)]
        );
    }

    #[test]
    fn a_replayed_datagram_is_rejected() {
        let mut lan = settled(3);
        lan.capture = Some(Vec::new());
        lan.run(Duration::from_millis(100), STEP);
        let (_, to, bytes) = lan.capture.take().unwrap().swap_remove(0);
        lan.log.clear();
        lan.inject(to, &bytes);
        assert_eq!(
            lan.log
                .iter()
                .map(|(_, _, e)| e.clone())
                .collect::<Vec<_>>(),
            vec![Effect::Rejected(Rejection::Replayed)]
        );
    }

    #[test]
    fn a_datagram_for_one_member_replayed_to_another_is_rejected() {
        let mut lan = settled(3);
        lan.capture = Some(Vec::new());
        lan.run(Duration::from_millis(100), STEP);
        let (from, to, bytes) = lan.capture.take().unwrap().swap_remove(0);
        let other = (0..3).find(|i| *i != from && *i != to).unwrap();
        lan.log.clear();
        lan.inject(other, &bytes);
        assert_eq!(
            lan.log
                .iter()
                .map(|(_, _, e)| e.clone())
                .collect::<Vec<_>>(),
            vec![Effect::Rejected(Rejection::Misdirected)]
        );
    }

    #[test]
    fn a_replayed_answer_does_not_revive_a_dead_member_for_a_restarted_peer() {
        let mut lan = settled(3);
        // Capture everything member 2 says to member 0, then kill member 2.
        lan.capture = Some(Vec::new());
        lan.restart(0, 2);
        lan.run(Duration::from_millis(300), STEP);
        let said: Vec<Vec<u8>> = lan
            .capture
            .take()
            .unwrap()
            .into_iter()
            .filter(|(from, to, _)| *from == 2 && *to == 0)
            .map(|(_, _, b)| b)
            .collect();
        assert!(!said.is_empty());
        lan.dead.insert(2);
        lan.run(Duration::from_secs(1), STEP);
        // Member 0 restarts again and hears everything member 2 once said.
        lan.restart(0, 3);
        for bytes in &said {
            lan.inject(0, bytes);
        }
        lan.run(Duration::from_millis(200), STEP);
        assert_eq!(lan.live(0), names(&[0, 1]));
    }

    #[test]
    fn a_verdict_at_an_incarnation_left_behind_changes_nothing() {
        let mut lan = settled(3);
        // Member 1 is falsely declared down once and refutes.
        lan.paused.insert(1);
        lan.run(Duration::from_secs(1), STEP);
        lan.resume(1);
        lan.run(Duration::from_millis(300), STEP);
        assert!(lan.all_agree(&names(&[0, 1, 2]), &none()));
        // The verdict arrives again (a late copy): nothing changes.
        let stale = Version {
            generation: 1,
            incarnation: 0,
        };
        let mut out = Vec::new();
        lan.members[0].verdict(&name(1), stale, &name(2), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert!(lan.live(0).contains(&name(1)));
    }

    #[test]
    fn the_address_book_forgetting_a_live_member_changes_nothing() {
        let mut lan = settled(3);
        let mut out = Vec::new();
        let now = lan.now;
        lan.members[0].discover([(name(1), super::sim::addr(1))], now, &mut out);
        assert!(lan.live(0).contains(&name(2)));
        lan.run(Duration::from_secs(1), STEP);
        assert!(lan.all_agree(&names(&[0, 1, 2]), &none()));
    }

    #[test]
    fn a_member_is_settled_once_all_have_answered_or_a_timeout_passed() {
        let now = Instant::now();
        let settings = Settings::default();
        let mut alone = Liveness::new("a", super::sim::addr(0), key(), settings.clone(), 1, now);
        assert!(!alone.settled(now), "nobody listed yet");
        let mut out = Vec::new();
        let later = now + settings.timeout;
        alone.discover([("b".to_owned(), super::sim::addr(1))], later, &mut out);
        assert!(
            !alone.settled(later),
            "b was just listed and has not answered"
        );
        assert!(alone.settled(later + settings.timeout));
        assert_eq!(alone.live(), ["a".to_owned()].into());
    }

    #[test]
    fn steady_load_per_member_does_not_grow_with_the_cluster() {
        let per_second = |n: usize| {
            let mut lan = settled(n);
            let before = lan.traffic[0];
            lan.run(Duration::from_secs(1), STEP);
            lan.traffic[0].sent_packets - before.sent_packets
        };
        let (small, large) = (per_second(4), per_second(40));
        let bound = 2 * Settings::default().monitors as u64 * 10;
        assert!(large <= bound, "{large} packets/s at 40 members");
        assert!(large <= small * 2, "{small} at 4, {large} at 40");
    }
}
