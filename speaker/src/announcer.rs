//! The announcer: turns the desired [`Announcements`] into answered ARP and
//! NDP on this node. It owns one task per suitable interface — read a frame,
//! ask [`respond`], send the reply or count the drop — and the gratuitous
//! burst a newly owned address gets. It makes no ownership decisions: it
//! announces exactly what the `watch` channel says, from the moment it says it.
//!
//! Before it first announces an address it probes it (RFC 5227 ARP probe,
//! RFC 4862 DAD) and refuses it if a station that is no speaker answers;
//! while announcing, a speaker's MAC claiming an owned address is a split
//! brain (counted, and the address announced again), any other MAC an IP
//! conflict (counted and reported once per MAC as a [`WireEvent`]).
//!
//! Start with [`Announcer::new`] and [`Announcer::run`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::interfaces::{self, Eligibility, InterfaceFacts, permits};
use crate::rate_limit::{KeyedBuckets, Rate, TokenBucket};
use crate::respond::{
    self, Claimant, Conflict, DropReason, Interface, OwnedAddresses, Speakers, Verdict, respond,
};
use crate::socket::{Listen, PacketSocket, Received, SocketError, SolicitedNodeGroups};
use crate::wire::{Frame, MacAddr};

/// The addresses this node should announce now, each with the interfaces its
/// pool allows (empty: every suitable interface). Whoever decides ownership
/// publishes a new value on a `watch` channel; the announcer follows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announcements {
    addresses: BTreeMap<IpAddr, BTreeSet<String>>,
    /// Raised to have every announced address announced again (a gratuitous
    /// burst as on a gain): after a partition heals, clients may have moved
    /// to another node that held this one dead.
    reannounce: u64,
    /// Addresses this node takes over from another speaker: announced at
    /// once, without the conflict probe.
    takeovers: BTreeSet<IpAddr>,
}

impl Announcements {
    /// Nothing announced.
    pub fn new() -> Announcements {
        Announcements::default()
    }

    /// Announces `address` on `interfaces`, or on every suitable interface if
    /// that list is empty (a pool's `interfaces`). Announcing an address again
    /// (several Services sharing it) widens the set: every interface if either
    /// list is empty, their union otherwise.
    pub fn announce<I, S>(&mut self, address: IpAddr, interfaces: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let named: BTreeSet<String> = interfaces.into_iter().map(Into::into).collect();
        match self.addresses.get_mut(&address) {
            None => {
                self.addresses.insert(address, named);
            }
            Some(current) if current.is_empty() => {}
            Some(current) if named.is_empty() => current.clear(),
            Some(current) => current.extend(named),
        }
    }

    /// The same announcements, to be announced again whenever `epoch`
    /// differs from the one the announcer last followed.
    pub fn reannounced(mut self, epoch: u64) -> Announcements {
        self.reannounce = epoch;
        self
    }

    /// Marks an announced `address` as taken over from another speaker
    /// that held it: the announcer sends it out at once instead of probing
    /// first. A takeover is a failover and must not wait; the probe guards
    /// first announcements, and the speaker that held the address is no
    /// conflict.
    pub fn take_over(&mut self, address: IpAddr) {
        if self.addresses.contains_key(&address) {
            self.takeovers.insert(address);
        }
    }

    /// Whether `address` was marked with [`Announcements::take_over`].
    pub fn is_takeover(&self, address: IpAddr) -> bool {
        self.takeovers.contains(&address)
    }

    /// Stops announcing `address`; false if it was not announced.
    pub fn withdraw(&mut self, address: IpAddr) -> bool {
        self.takeovers.remove(&address);
        self.addresses.remove(&address).is_some()
    }

    /// Whether `address` is announced.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.addresses.contains_key(&address)
    }

    /// The interfaces `address` is limited to (empty: all suitable ones), or
    /// `None` if it is not announced.
    pub fn interfaces(&self, address: IpAddr) -> Option<&BTreeSet<String>> {
        self.addresses.get(&address)
    }

    /// Every announced address with its interface list, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &BTreeSet<String>)> {
        self.addresses.iter().map(|(a, names)| (*a, names))
    }

    /// How many addresses are announced.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Whether nothing is announced.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    /// The addresses announced on `interface` (with its eligibility): what the
    /// responder there answers for.
    pub fn owned_on(&self, interface: &str, eligibility: &Eligibility) -> OwnedAddresses {
        self.iter()
            .filter(|(_, named)| permits(eligibility, interface, named))
            .map(|(address, _)| address)
            .collect()
    }

    /// Announced addresses that no interface among `interfaces` may carry —
    /// e.g. a pool naming `eth1` on a node without one. Nothing is sent for
    /// them; the caller should say so (MetalLB's `announceFailed`).
    pub fn unannounceable(&self, interfaces: &[InterfaceFacts]) -> Vec<IpAddr> {
        let judged: Vec<(&str, Eligibility)> = interfaces
            .iter()
            .map(|f| (f.name.as_str(), interfaces::eligibility(f)))
            .collect();
        self.iter()
            .filter(|(_, named)| {
                !judged
                    .iter()
                    .any(|(name, eligibility)| permits(eligibility, name, named))
            })
            .map(|(address, _)| address)
            .collect()
    }

    /// Every interface name some address is limited to.
    fn named_interfaces(&self) -> BTreeSet<String> {
        self.addresses.values().flatten().cloned().collect()
    }
}

impl<S: Into<String>> FromIterator<(IpAddr, Vec<S>)> for Announcements {
    fn from_iter<T: IntoIterator<Item = (IpAddr, Vec<S>)>>(iter: T) -> Announcements {
        let mut announcements = Announcements::new();
        for (address, interfaces) in iter {
            announcements.announce(address, interfaces);
        }
        announcements
    }
}

/// Timing of the announcer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How often the interface list is read again, so interfaces that appear,
    /// go down or change MAC are picked up.
    pub rescan_interval: Duration,
    /// Gratuitous ARP / unsolicited NA frames sent per newly owned address
    /// and interface; the first goes out at once.
    pub gratuitous_rounds: u32,
    /// Spacing of those frames. Longer than the IPv4 neighbour `locktime`
    /// (1 s), so a repeat always lands outside a lock window some other
    /// update opened on a client.
    pub gratuitous_interval: Duration,
    /// How long a first announcement waits for an answer to its conflict
    /// probe; zero announces without probing. Takeovers never probe.
    pub probe_window: Duration,
    /// How long an address found in use waits before it is probed again.
    pub probe_retry: Duration,
    /// Gratuitous frames sent again for every owned address this often, so
    /// that switches keep the node's MAC in their tables; `None`: never
    /// (MetalLB never does).
    pub refresh_interval: Option<Duration>,
    /// Replies one requester (a source MAC) may get on one interface.
    pub reply_rate_per_requester: Rate,
    /// Replies one interface sends to all requesters together.
    pub reply_rate_per_interface: Rate,
}

/// 100 replies per second per requester: a client resolving an address
/// sends one request, then up to three unicast probes when its entry goes
/// stale; a router resolving a hundred addresses at once still gets all.
pub const DEFAULT_REPLY_RATE_PER_REQUESTER: Rate = match Rate::new(100, Duration::from_secs(1)) {
    Some(rate) => rate,
    None => unreachable!(),
};

/// 1,000 replies per second per interface, all requesters together: ten
/// requesters at their full rate.
pub const DEFAULT_REPLY_RATE_PER_INTERFACE: Rate = match Rate::new(1000, Duration::from_secs(1)) {
    Some(rate) => rate,
    None => unreachable!(),
};

impl Default for Settings {
    /// Rescan every 5 s; five gratuitous frames 1.1 s apart (≈4.4 s), as
    /// MetalLB sends them; a 150 ms probe (a host on the LAN answers ARP in
    /// well under a millisecond; the failover budget is one second), retried
    /// every 30 s; no refresh; replies limited as the defaults above say.
    fn default() -> Settings {
        Settings {
            rescan_interval: Duration::from_secs(5),
            gratuitous_rounds: 5,
            gratuitous_interval: Duration::from_millis(1100),
            probe_window: Duration::from_millis(150),
            probe_retry: Duration::from_secs(30),
            refresh_interval: None,
            reply_rate_per_requester: DEFAULT_REPLY_RATE_PER_REQUESTER,
            reply_rate_per_interface: DEFAULT_REPLY_RATE_PER_INTERFACE,
        }
    }
}

/// What the announcer saw on the wire that the cluster should hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireEvent {
    /// A station that is no ferrolb speaker uses `address`: it answered the
    /// probe (`announced` false: the address is not announced) or claimed
    /// the address while this node announced it. Sent once per MAC.
    IpConflict {
        /// The address in use.
        address: IpAddr,
        /// The station's MAC.
        mac: MacAddr,
        /// Whether this node announces the address anyway.
        announced: bool,
    },
}

/// What happened for one announced address, summed over interfaces. Named
/// for the metrics they feed (MetalLB's `metallb_layer2_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressCounts {
    /// ARP requests and Neighbor Solicitations this node should answer:
    /// answered, or dropped by a reply rate limit (`requests_received`).
    pub requests_received: u64,
    /// Replies actually sent (`responses_sent`).
    pub responses_sent: u64,
    /// Gratuitous ARP / unsolicited NA frames sent (`gratuitous_sent`).
    pub gratuitous_sent: u64,
    /// Frames from another MAC claiming the address (`conflicts`).
    pub conflicts: u64,
}

/// A copy of every counter at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Per address, until [`Counters::retain_addresses`] forgets it: a
    /// listed address's counters never go backwards.
    pub addresses: BTreeMap<IpAddr, AddressCounts>,
    /// Frames not answered, by [`DropReason::as_label`].
    pub drops: BTreeMap<&'static str, u64>,
    /// Frames the kernel refused to send.
    pub send_errors: u64,
    /// Split brains: another speaker's MAC claiming an announced address
    /// (once per address, MAC and episode), or an address this node kept
    /// announcing while the LAN held it down (once per address and refute).
    pub split_brains: u64,
    /// IP conflicts seen: a station that is no speaker using an address
    /// this node announces or probed, once per address and MAC.
    pub ip_conflicts: u64,
    /// Interfaces to answer on whose sockets could not be opened or failed,
    /// with the error, until they open again or the interface is no longer
    /// served.
    pub failed_sockets: BTreeMap<String, String>,
}

/// The announcer's counters, shared with the metrics exporter.
#[derive(Debug, Default)]
pub struct Counters {
    state: Mutex<CountersSnapshot>,
}

impl Counters {
    /// Reads every counter.
    pub fn snapshot(&self) -> CountersSnapshot {
        self.with(|state| state.clone())
    }

    fn with<R>(&self, f: impl FnOnce(&mut CountersSnapshot) -> R) -> R {
        // A panic elsewhere while holding the lock leaves plain integers
        // behind: still valid, so keep counting.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    pub(crate) fn address(&self, address: IpAddr, f: impl FnOnce(&mut AddressCounts)) {
        self.with(|state| f(state.addresses.entry(address).or_default()));
    }

    /// Forgets the counters of every address `keep` refuses, so the series
    /// of an address this node no longer announces end; the others' go on.
    pub fn retain_addresses(&self, keep: impl Fn(&IpAddr) -> bool) {
        self.with(|state| state.addresses.retain(|address, _| keep(address)));
    }

    fn dropped(&self, reason: DropReason) {
        self.dropped_many(reason, 1);
    }

    fn dropped_many(&self, reason: DropReason, count: u64) {
        self.with(|state| *state.drops.entry(reason.as_label()).or_default() += count);
    }

    fn send_failed(&self) {
        self.with(|state| state.send_errors += 1);
    }

    fn split_brain(&self) {
        self.with(|state| state.split_brains += 1);
    }

    fn ip_conflict(&self) {
        self.with(|state| state.ip_conflicts += 1);
    }

    pub(crate) fn sockets(&self, interface: &str, failed: Option<&SocketError>) {
        self.with(|state| match failed {
            Some(error) => {
                state
                    .failed_sockets
                    .insert(interface.to_owned(), error.to_string());
            }
            None => {
                state.failed_sockets.remove(interface);
            }
        });
    }
}

/// Runs the announcement for one node: which interfaces, which sockets,
/// which answers.
///
/// ```no_run
/// use std::sync::Arc;
/// use ferrolb_speaker::announcer::{Announcements, Announcer, Settings};
/// use tokio::sync::watch;
/// use tokio_util::sync::CancellationToken;
///
/// # async fn wire(shutdown: CancellationToken) {
/// let (desired, receiver) = watch::channel(Announcements::new());
/// let announcer = Announcer::new(receiver, Settings::default());
/// let counters = announcer.counters(); // for the metrics exporter
/// let running = tokio::spawn(announcer.run(shutdown.child_token()));
///
/// desired.send_modify(|a| a.announce("198.51.100.10".parse().unwrap(), Vec::<String>::new()));
/// // … later: stop answering at once.
/// desired.send_modify(|a| {
///     a.withdraw("198.51.100.10".parse().unwrap());
/// });
/// shutdown.cancel();
/// running.await.unwrap();
/// # let _ = counters; }
/// ```
#[derive(Debug)]
pub struct Announcer {
    desired: watch::Receiver<Announcements>,
    settings: Settings,
    counters: Arc<Counters>,
    interfaces: watch::Sender<Vec<InterfaceFacts>>,
    speakers: watch::Receiver<Speakers>,
    events: Option<mpsc::UnboundedSender<WireEvent>>,
    leaving: CancellationToken,
}

impl Announcer {
    /// An announcer following `desired`. Nothing happens until [`run`].
    ///
    /// [`run`]: Announcer::run
    pub fn new(desired: watch::Receiver<Announcements>, settings: Settings) -> Announcer {
        Announcer {
            desired,
            settings,
            counters: Arc::default(),
            interfaces: watch::Sender::new(Vec::new()),
            speakers: watch::Sender::new(Speakers::default()).subscribe(),
            events: None,
            leaving: CancellationToken::new(),
        }
    }

    /// Follows `speakers`, the MACs of the ferrolb speakers on the LAN, to
    /// tell a split brain or a handover from an IP conflict. Without it
    /// every other MAC counts as foreign.
    pub fn with_speakers(mut self, speakers: watch::Receiver<Speakers>) -> Announcer {
        self.speakers = speakers;
        self
    }

    /// Sends what it sees on the wire (IP conflicts) to `events`.
    pub fn with_events(mut self, events: mpsc::UnboundedSender<WireEvent>) -> Announcer {
        self.events = Some(events);
        self
    }

    /// Once `leaving` is cancelled this speaker is handing its addresses
    /// over: other speakers claiming them are expected, not a split brain.
    pub fn with_leaving(mut self, leaving: CancellationToken) -> Announcer {
        self.leaving = leaving;
        self
    }

    /// The counters, for the metrics exporter.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Every interface of the node as last scanned (judge them with
    /// [`interfaces::eligibility`], or pass them to
    /// [`Announcements::unannounceable`]).
    pub fn interfaces(&self) -> watch::Receiver<Vec<InterfaceFacts>> {
        self.interfaces.subscribe()
    }

    /// Runs until `shutdown` is cancelled, then stops every interface task
    /// and returns once they have closed their sockets (and so left their
    /// multicast groups). Must run inside a tokio runtime; needs CAP_NET_RAW.
    ///
    /// If the sender of `desired` is dropped, the last announcements stay in
    /// force until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut serving: BTreeMap<String, Serving> = BTreeMap::new();
        let mut scanned: Vec<InterfaceFacts> = Vec::new();
        let mut rescan = tokio::time::interval(self.settings.rescan_interval);
        rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut desired_open = true;
        loop {
            let mut rescanned = false;
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = rescan.tick() => match interfaces::scan() {
                    Ok(found) => {
                        self.interfaces.send_if_modified(|current| {
                            let changed = *current != found;
                            if changed {
                                current.clone_from(&found);
                            }
                            changed
                        });
                        scanned = found;
                        rescanned = true;
                    }
                    Err(error) => warn!(%error, "keeping the previous interface list"),
                },
                changed = self.desired.changed(), if desired_open => {
                    desired_open = changed.is_ok();
                }
            }
            self.reconcile(&mut serving, &scanned, rescanned, &shutdown);
        }
        for (_, interface) in std::mem::take(&mut serving) {
            interface.stop.cancel();
            // A task that panicked has nothing left to close.
            let _ = interface.task.await;
        }
    }

    /// A fresh responder for interface `name`: nothing owned yet.
    fn responder(
        &self,
        name: &str,
        facts: &InterfaceFacts,
        mac: MacAddr,
        eligibility: Eligibility,
    ) -> Responder {
        Responder {
            iface: Interface {
                name: name.to_owned(),
                mac,
            },
            eligibility,
            owned: OwnedAddresses::new(),
            groups: SolicitedNodeGroups::new(name, facts.index),
            bursts: Bursts::default(),
            counters: Arc::clone(&self.counters),
            settings: self.settings.clone(),
            conflicts_reported: HashMap::new(),
            send_failing: false,
            reannounce: 0,
            speakers: self.speakers.clone(),
            events: self.events.clone(),
            leaving: self.leaving.clone(),
            probing: OwnedAddresses::new(),
            probe_due: BTreeSet::new(),
            foreign_reported: BTreeSet::new(),
            reannounced: HashMap::new(),
            next_refresh: None,
            refused: BTreeMap::new(),
            probe_until: HashMap::new(),
            probes_to_send: Vec::new(),
            suspected: BTreeSet::new(),
            requester_limits: KeyedBuckets::new(
                self.settings.reply_rate_per_requester,
                REQUESTERS_TRACKED,
            ),
            interface_limit: TokenBucket::new(self.settings.reply_rate_per_interface),
            detail: Detail::default(),
            foreign_warned: HashMap::new(),
        }
    }

    /// Starts and stops interface tasks so that exactly the interfaces that
    /// qualify now are served. A task that ended on its own (its socket
    /// failed, and it said why) is restarted only after a fresh scan, so a
    /// persistent failure is retried every scan, not on every change.
    fn reconcile(
        &self,
        serving: &mut BTreeMap<String, Serving>,
        scanned: &[InterfaceFacts],
        rescanned: bool,
        shutdown: &CancellationToken,
    ) {
        let named = self.desired.borrow().named_interfaces();
        let mut wanted: BTreeMap<&str, (&InterfaceFacts, Eligibility)> = BTreeMap::new();
        for facts in scanned {
            let eligibility = interfaces::eligibility(facts);
            let serve = match &eligibility {
                Eligibility::Default => true,
                // Container plumbing gets a socket only when a pool names it:
                // raw sockets on hundreds of pod veths would cost every packet.
                Eligibility::OnlyWhenNamed => named.contains(&facts.name),
                Eligibility::Unsuitable(_) => false,
            };
            if serve {
                wanted.insert(&facts.name, (facts, eligibility));
            }
        }
        self.counters.with(|state| {
            state
                .failed_sockets
                .retain(|name, _| wanted.contains_key(name.as_str()));
        });
        serving.retain(|name, interface| {
            if interface.task.is_finished() {
                return !rescanned;
            }
            let keep = match wanted.get(name.as_str()) {
                Some((facts, eligibility)) => {
                    facts.index == interface.facts.index
                        && facts.mac == interface.facts.mac
                        && *eligibility == interface.eligibility
                }
                None => false,
            };
            if !keep {
                let why = scanned
                    .iter()
                    .find(|f| &f.name == name)
                    .map(|f| match interfaces::eligibility(f) {
                        Eligibility::Unsuitable(reason) => reason.to_string(),
                        Eligibility::OnlyWhenNamed if !named.contains(name) => {
                            "no pool names it any more".to_owned()
                        }
                        _ => "its index or MAC changed".to_owned(),
                    })
                    .unwrap_or_else(|| "it is gone".to_owned());
                info!(interface = %name, "stopped answering on {name}: {why}");
                interface.stop.cancel();
            }
            keep
        });
        for (name, (facts, eligibility)) in wanted {
            if serving.contains_key(name) {
                continue;
            }
            let Some(mac) = facts.mac else { continue };
            let stop = shutdown.child_token();
            let responder = self.responder(name, facts, mac, eligibility.clone());
            info!(interface = %name, index = facts.index, %mac, "answering on {name}");
            let task = tokio::spawn(
                serve(responder, facts.index, self.desired.clone(), stop.clone())
                    .instrument(info_span!("interface", name = %name)),
            );
            serving.insert(
                name.to_owned(),
                Serving {
                    facts: facts.clone(),
                    eligibility,
                    stop,
                    task,
                },
            );
        }
    }
}

/// A running interface task.
#[derive(Debug)]
struct Serving {
    facts: InterfaceFacts,
    eligibility: Eligibility,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Large enough for any frame on a jumbo-frame link; a longer one is
/// reported truncated and fails to parse.
const FRAME_BUFFER: usize = 9216;

/// One interface's task: opens its sockets, then answers until stopped.
async fn serve(
    mut responder: Responder,
    ifindex: u32,
    mut desired: watch::Receiver<Announcements>,
    stop: CancellationToken,
) {
    let name = responder.iface.name.clone();
    let counters = Arc::clone(&responder.counters);
    let sockets = match Sockets::open(&name, ifindex) {
        Ok(sockets) => sockets,
        Err(error) => {
            warn!(%error, "not answering on {name}; retrying at the next scan");
            counters.sockets(&name, Some(&error));
            return;
        }
    };
    counters.sockets(&name, None);
    if let Err(error) = responder.run(&sockets, &mut desired, &stop).await {
        warn!(%error, "stopped answering on {name}; retrying at the next scan");
        counters.sockets(&name, Some(&error));
    }
    // Dropping the sockets stops reception; dropping the responder closes its
    // membership sockets, which leaves every solicited-node group. The
    // interface-level log line covers every address at once.
}

/// The two sockets of one interface.
struct Sockets {
    arp: PacketSocket,
    ndp: PacketSocket,
}

impl Sockets {
    fn open(name: &str, ifindex: u32) -> Result<Sockets, SocketError> {
        Ok(Sockets {
            arp: PacketSocket::open(name, ifindex, Listen::Arp)?,
            ndp: PacketSocket::open(name, ifindex, Listen::NeighborDiscovery)?,
        })
    }

    fn for_frame(&self, frame: &Frame) -> &PacketSocket {
        match frame {
            Frame::Arp(_) => &self.arp,
            Frame::Ndp(_) => &self.ndp,
        }
    }
}

/// The state of one interface task.
struct Responder {
    iface: Interface,
    eligibility: Eligibility,
    /// What is answered here; rebuilt whenever the announcements change.
    owned: OwnedAddresses,
    groups: SolicitedNodeGroups,
    bursts: Bursts,
    counters: Arc<Counters>,
    settings: Settings,
    /// The last split brain counted per address, and when: the other
    /// speaker's MAC, or none when the membership reported it.
    conflicts_reported: HashMap<IpAddr, (Option<crate::wire::MacAddr>, Instant)>,
    /// Whether the last send failed, to log a failing link once.
    send_failing: bool,
    /// The re-announce epoch last followed.
    reannounce: u64,
    /// The MACs of the speakers on the LAN.
    speakers: watch::Receiver<Speakers>,
    /// Where IP conflicts are reported.
    events: Option<mpsc::UnboundedSender<WireEvent>>,
    /// Cancelled when this speaker starts handing over.
    leaving: CancellationToken,
    /// Addresses being probed before their first announcement.
    probing: OwnedAddresses,
    /// When each probe (or the retry of a refused address) ends.
    probe_due: BTreeSet<(Instant, IpAddr)>,
    /// The foreign MACs already reported per address: one event and one
    /// count each, not one per packet.
    foreign_reported: BTreeSet<(IpAddr, MacAddr)>,
    /// When each address was last announced again because of a split brain.
    reannounced: HashMap<IpAddr, Instant>,
    /// When the next periodic refresh is due, if refreshing.
    next_refresh: Option<Instant>,
    /// Addresses refused because a foreign MAC answered their probe.
    refused: BTreeMap<IpAddr, MacAddr>,
    /// The live entry of `probe_due` per address.
    probe_until: HashMap<IpAddr, Instant>,
    /// Probes to send at the next turn of the loop.
    probes_to_send: Vec<IpAddr>,
    /// Foreign MACs that answered one probe, awaiting a second.
    suspected: BTreeSet<(IpAddr, MacAddr)>,
    /// Replies left per requester's MAC.
    requester_limits: KeyedBuckets<MacAddr>,
    /// Replies left for everyone together.
    interface_limit: TokenBucket,
    /// Per-frame debug lines left.
    detail: Detail,
    /// When an IP conflict on each address was last logged and reported.
    foreign_warned: HashMap<IpAddr, Instant>,
}

/// Requesters whose reply budget one interface remembers; beyond that, new
/// requesters wait until some budget is whole again (see
/// [`KeyedBuckets`]).
const REQUESTERS_TRACKED: usize = 4096;

/// Most foreign (address, MAC) pairs remembered as reported; beyond that a
/// flood of spoofed MACs is neither counted nor reported again.
const FOREIGN_TRACKED: usize = 4096;

/// Per-frame debug lines: at most 20 a second per interface, the number
/// left out said on the next one.
#[derive(Debug)]
struct Detail {
    bucket: TokenBucket,
    suppressed: u64,
}

impl Default for Detail {
    fn default() -> Detail {
        Detail {
            bucket: TokenBucket::new(DETAIL_RATE),
            suppressed: 0,
        }
    }
}

impl Detail {
    /// Whether a per-frame line may be logged now: `Some(lines left out
    /// since the last one)`, or `None`, counting this one as left out.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.bucket.take(now.into_std()) {
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

const DETAIL_RATE: Rate = match Rate::new(20, Duration::from_secs(1)) {
    Some(rate) => rate,
    None => unreachable!(),
};

/// How soon an address whose probe a foreign MAC answered is probed again
/// before the conflict is reported.
const PROBE_CONFIRM: Duration = Duration::from_secs(1);

/// How soon a split brain may make the same address be announced again:
/// often enough to win back a client within a second, rarely enough that
/// two speakers that both believe they own it do not flood the LAN.
const REANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);

/// Frames in the burst a split brain starts.
const REANNOUNCE_ROUNDS: u32 = 3;

/// How often the kernel's count of frames lost to a full receive queue is
/// read into the drop counters.
const QUEUE_CHECK: Duration = Duration::from_secs(1);

/// How often the same conflict is logged again.
const CONFLICT_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl Responder {
    async fn run(
        &mut self,
        sockets: &Sockets,
        desired: &mut watch::Receiver<Announcements>,
        stop: &CancellationToken,
    ) -> Result<(), SocketError> {
        let mut arp_buf = vec![0u8; FRAME_BUFFER];
        let mut ndp_buf = vec![0u8; FRAME_BUFFER];
        let mut desired_open = true;
        self.next_refresh = self
            .settings
            .refresh_interval
            .map(|every| Instant::now() + every);
        self.follow(desired);
        let mut queue_check = tokio::time::interval(QUEUE_CHECK);
        queue_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.send_probes(sockets).await;
            let next_burst = self.bursts.next_due();
            let next_probe = self.probe_due.first().map(|(at, _)| *at);
            let next_refresh = self.next_refresh;
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                changed = desired.changed(), if desired_open => {
                    desired_open = changed.is_ok();
                    self.follow(desired);
                }
                () = tokio::time::sleep_until(next_burst.unwrap_or_else(Instant::now)),
                    if next_burst.is_some() => self.announce_due(sockets).await,
                () = tokio::time::sleep_until(next_probe.unwrap_or_else(Instant::now)),
                    if next_probe.is_some() => self.probes_due(),
                () = tokio::time::sleep_until(next_refresh.unwrap_or_else(Instant::now)),
                    if next_refresh.is_some() => self.refresh(sockets).await,
                _ = queue_check.tick() => {
                    for socket in [&sockets.arp, &sockets.ndp] {
                        let lost = socket.take_queue_drops()?;
                        if lost > 0 {
                            self.counters.dropped_many(DropReason::QueueFull, u64::from(lost));
                            if let Some(suppressed) = self.detail.allow(Instant::now()) {
                                debug!(lost, suppressed, listen = %socket.listen(), "the receive queue overflowed");
                            }
                        }
                    }
                }
                received = sockets.arp.recv(&mut arp_buf) => {
                    let received = received?;
                    self.answer(&arp_buf, received, sockets, desired).await;
                }
                received = sockets.ndp.recv(&mut ndp_buf) => {
                    let received = received?;
                    self.answer(&ndp_buf, received, sockets, desired).await;
                }
            }
        }
    }

    /// Brings `owned`, the probes, the multicast groups and the bursts in
    /// line with the latest announcements.
    fn follow(&mut self, desired: &mut watch::Receiver<Announcements>) {
        let announcements = desired.borrow_and_update();
        let now = announcements.owned_on(&self.iface.name, &self.eligibility);
        // A raised epoch: the LAN had held this node down while it announced
        // these addresses, so another speaker announced them too. That is a
        // split brain this node learns of from the membership rather than on
        // the wire (the other side withdraws before either hears the other):
        // count it, and announce every address still owned again.
        if std::mem::replace(&mut self.reannounce, announcements.reannounce)
            != announcements.reannounce
        {
            let at = Instant::now();
            for address in self.owned.iter().filter(|a| now.contains(*a)) {
                self.bursts
                    .start(address, at, self.settings.gratuitous_rounds);
                // The other side's frames may have shown it on the wire
                // already: one episode, one count.
                let seen = self
                    .conflicts_reported
                    .get(&address)
                    .is_some_and(|(_, seen_at)| {
                        at.duration_since(*seen_at) < CONFLICT_LOG_INTERVAL
                    });
                self.conflicts_reported.insert(address, (None, at));
                if seen {
                    info!(%address, "announcing {address} again on {}", self.iface.name);
                } else {
                    self.counters.split_brain();
                    warn!(
                        %address,
                        "split brain: the LAN held this node down while it announced {address}; announcing it again on {}",
                        self.iface.name
                    );
                }
            }
        }
        let lost: Vec<IpAddr> = self.owned.iter().filter(|a| !now.contains(*a)).collect();
        let gained: Vec<(IpAddr, bool)> = now
            .iter()
            .filter(|a| !self.owned.contains(*a))
            .map(|a| (a, announcements.is_takeover(a)))
            .collect();
        drop(announcements);
        for address in lost {
            self.stop_announcing(address);
        }
        // Probes and refusals of addresses no longer wanted end quietly.
        let unwanted: Vec<IpAddr> = self
            .probing
            .iter()
            .chain(self.refused.keys().copied())
            .filter(|a| !now.contains(*a))
            .collect();
        for address in unwanted {
            self.suspected.retain(|(a, _)| *a != address);
            self.probing.remove(address);
            self.refused.remove(&address);
            self.probe_until.remove(&address);
        }
        let at = Instant::now();
        for (address, takeover) in gained {
            if self.probing.contains(address) || self.refused.contains_key(&address) {
                if takeover && self.probing.remove(address) {
                    self.probe_until.remove(&address);
                    self.start_announcing(address, at);
                }
                continue;
            }
            if takeover || self.settings.probe_window.is_zero() {
                self.start_announcing(address, at);
            } else {
                self.start_probe(address, at);
            }
        }
    }

    fn start_probe(&mut self, address: IpAddr, now: Instant) {
        self.probing.insert(address);
        let until = now + self.settings.probe_window;
        self.probe_until.insert(address, until);
        self.probe_due.insert((until, address));
        self.probes_to_send.push(address);
        debug!(%address, "probing {address} on {} before announcing it", self.iface.name);
    }

    fn start_announcing(&mut self, address: IpAddr, now: Instant) {
        self.owned.insert(address);
        self.suspected.retain(|(a, _)| *a != address);
        if let IpAddr::V6(v6) = address
            && let Err(error) = self.groups.join(v6)
        {
            // Still answered where multicast is flooded; not where a
            // switch snoops MLD.
            warn!(%error, "solicitations for {address} may not reach {}", self.iface.name);
        }
        self.bursts
            .start(address, now, self.settings.gratuitous_rounds);
        info!(%address, "announcing {address} on {}", self.iface.name);
    }

    /// Sends the probes queued by [`Responder::start_probe`].
    async fn send_probes(&mut self, sockets: &Sockets) {
        for address in std::mem::take(&mut self.probes_to_send) {
            if self.probing.contains(address) {
                let frame = respond::probe(&self.iface, address);
                self.send(sockets, &frame).await;
            }
        }
    }

    /// Ends the probes whose window passed with no foreign answer (the
    /// address is announced) and probes refused addresses again.
    fn probes_due(&mut self) {
        let now = Instant::now();
        while let Some(&(at, address)) = self.probe_due.first() {
            if at > now {
                break;
            }
            self.probe_due.pop_first();
            if self.probe_until.get(&address) != Some(&at) {
                continue;
            }
            self.probe_until.remove(&address);
            if self.probing.remove(address) {
                self.start_announcing(address, now);
            } else if let Some(mac) = self.refused.remove(&address) {
                debug!(%address, %mac, "probing {address} again");
                self.start_probe(address, now);
            }
        }
    }

    fn stop_announcing(&mut self, address: IpAddr) {
        self.owned.remove(address);
        self.bursts.cancel(address);
        self.conflicts_reported.remove(&address);
        self.reannounced.remove(&address);
        self.foreign_reported.retain(|(a, _)| *a != address);
        self.foreign_warned.remove(&address);
        if let IpAddr::V6(v6) = address
            && let Err(error) = self.groups.leave(v6)
        {
            warn!(%error, "still a member of the group of {address}");
        }
        info!(%address, "stopped announcing {address} on {}", self.iface.name);
    }

    /// Sends the gratuitous frames that are due.
    async fn announce_due(&mut self, sockets: &Sockets) {
        let due = self
            .bursts
            .take_due(Instant::now(), self.settings.gratuitous_interval);
        for address in due {
            self.announce(sockets, address).await;
        }
    }

    /// Sends one gratuitous frame for an owned address.
    async fn announce(&mut self, sockets: &Sockets, address: IpAddr) {
        if !self.owned.contains(address) {
            return;
        }
        let frame = respond::announcement(&self.iface, address);
        if self.send(sockets, &frame).await {
            self.counters.address(address, |c| c.gratuitous_sent += 1);
            debug!(%address, "sent gratuitous announcement for {address}");
        }
    }

    /// The periodic refresh: one gratuitous frame per owned address that is
    /// not in a burst already.
    async fn refresh(&mut self, sockets: &Sockets) {
        let (Some(due), Some(every)) = (self.next_refresh, self.settings.refresh_interval) else {
            return;
        };
        self.next_refresh = Some(due + every);
        let idle: Vec<IpAddr> = self
            .owned
            .iter()
            .filter(|a| !self.bursts.is_pending(*a))
            .collect();
        for address in idle {
            self.announce(sockets, address).await;
        }
    }

    /// Handles one received frame.
    async fn answer(
        &mut self,
        buf: &[u8],
        received: Received,
        sockets: &Sockets,
        desired: &mut watch::Receiver<Announcements>,
    ) {
        // Ownership is read for every frame: a withdrawal takes effect before
        // the next answer, whatever else is queued.
        if desired.has_changed().unwrap_or(false) {
            self.follow(desired);
        }
        let frame = &buf[..received.len];
        let now = Instant::now();
        if let Some(reason) = received.refusal(frame, self.iface.mac) {
            self.dropped(reason, received, now);
            return;
        }
        if !self.probing.is_empty()
            && let Some(conflict) = respond::probe_conflict(frame, &self.iface, &self.probing)
        {
            self.probe_answered(conflict);
            return;
        }
        match respond(frame, &self.iface, &self.owned) {
            Verdict::Reply(reply) => {
                let address = reply.address();
                self.counters.address(address, |c| c.requests_received += 1);
                // The requester is the station that sent the frame; the
                // interface's budget is spent only on what a requester's
                // own budget allows, so one flooding MAC cannot use it up.
                let requester =
                    MacAddr::new(frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]);
                if !self.requester_limits.take(requester, now.into_std()) {
                    self.dropped(DropReason::RequesterRateLimited, received, now);
                    return;
                }
                if !self.interface_limit.take(now.into_std()) {
                    self.dropped(DropReason::InterfaceRateLimited, received, now);
                    return;
                }
                if self.send(sockets, &reply).await {
                    self.counters.address(address, |c| c.responses_sent += 1);
                    if let Some(suppressed) = self.detail.allow(now) {
                        debug!(
                            %address,
                            packet_type = ?received.packet_type,
                            to = %reply_destination(&reply),
                            suppressed,
                            "answered for {address}"
                        );
                    }
                }
            }
            Verdict::Drop(reason) => self.dropped(reason, received, now),
            Verdict::Conflict(conflict) => self.claimed(conflict),
        }
    }

    /// Counts a frame not answered, and says why at debug level.
    fn dropped(&mut self, reason: DropReason, received: Received, now: Instant) {
        self.counters.dropped(reason);
        if let Some(suppressed) = self.detail.allow(now) {
            debug!(
                reason = reason.as_label(),
                packet_type = ?received.packet_type,
                vlan_tci = ?received.vlan_tci,
                other_interface = ?received.other_interface,
                len = received.len,
                truncated = received.truncated,
                suppressed,
                "not answered"
            );
        }
    }

    /// Someone answered the probe of an address about to be announced.
    fn probe_answered(&mut self, conflict: Conflict) {
        let Conflict { address, mac } = conflict;
        let claimant = self
            .speakers
            .borrow()
            .claimant(mac, self.leaving.is_cancelled());
        self.probing.remove(address);
        self.probe_until.remove(&address);
        if claimant == Claimant::Foreign {
            // Reported only when a second probe finds the same MAC: at
            // start-up another speaker may answer before its Lease lists
            // its MACs, and it withdraws as soon as it learns of this one.
            let confirmed = !self.suspected.insert((address, mac));
            let wait = if confirmed {
                self.settings.probe_retry
            } else {
                PROBE_CONFIRM
            };
            self.refused.insert(address, mac);
            let retry = Instant::now() + wait;
            self.probe_until.insert(address, retry);
            self.probe_due.insert((retry, address));
            if confirmed {
                self.report_foreign(address, mac, false);
            } else {
                debug!(%address, %mac, "{mac} answered the probe of {address}; probing again");
            }
        } else {
            // The speaker that held the address answered: a takeover, which
            // must not wait for the window to end.
            info!(%address, %mac, claimant = claimant.as_label(), "{address} was held by speaker {mac}; taking it over");
            self.start_announcing(address, Instant::now());
        }
    }

    /// Another station claims an address this node announces.
    fn claimed(&mut self, conflict: Conflict) {
        let Conflict { address, mac } = conflict;
        let claimant = self
            .speakers
            .borrow()
            .claimant(mac, self.leaving.is_cancelled());
        match claimant {
            Claimant::Handover | Claimant::ThisNode => {
                debug!(%address, %mac, claimant = claimant.as_label(), "{mac} also answers for {address}: expected");
            }
            Claimant::Speaker => {
                self.counters.address(address, |c| c.conflicts += 1);
                let now = Instant::now();
                let repeat = self
                    .conflicts_reported
                    .get(&address)
                    .is_some_and(|(seen, at)| {
                        seen.is_none_or(|seen| seen == mac)
                            && now.duration_since(*at) < CONFLICT_LOG_INTERVAL
                    });
                // Every sighting renews the episode, so one that lasts is
                // counted once.
                self.conflicts_reported.insert(address, (Some(mac), now));
                if repeat {
                    debug!(%address, %mac, "split brain again");
                } else {
                    self.counters.split_brain();
                    warn!(
                        %address,
                        %mac,
                        "split brain: speaker {mac} also announces {address} on {}; announcing it again",
                        self.iface.name
                    );
                }
                // Win the clients back: a short burst, not sooner than
                // REANNOUNCE_INTERVAL after the last one, and paid for from
                // the claimant's and the interface's reply budgets, so that
                // frames spoofing a speaker's MAC for many addresses cannot
                // make this node flood the LAN.
                if !self.bursts.is_pending(address)
                    && self.requester_limits.take(mac, now.into_std())
                    && self.interface_limit.take(now.into_std())
                {
                    let at = self
                        .reannounced
                        .get(&address)
                        .map_or(now, |last| (*last + REANNOUNCE_INTERVAL).max(now));
                    self.bursts.start(address, at, REANNOUNCE_ROUNDS);
                    self.reannounced.insert(address, at);
                }
            }
            Claimant::Foreign => {
                self.counters.address(address, |c| c.conflicts += 1);
                self.report_foreign(address, mac, true);
            }
        }
    }

    /// Counts a foreign MAC using `address` once per address and MAC, and
    /// logs and reports it at most once per address every
    /// [`CONFLICT_LOG_INTERVAL`]: a LAN of spoofed MACs claiming an address
    /// is one conflict to the operator, not one warning per frame.
    fn report_foreign(&mut self, address: IpAddr, mac: MacAddr, announced: bool) {
        let now = Instant::now();
        let known = self.foreign_reported.contains(&(address, mac));
        if known || self.foreign_reported.len() >= FOREIGN_TRACKED {
            if let Some(suppressed) = self.detail.allow(now) {
                debug!(%address, %mac, suppressed, "IP conflict again");
            }
            return;
        }
        self.foreign_reported.insert((address, mac));
        self.counters.ip_conflict();
        let recent = self
            .foreign_warned
            .get(&address)
            .is_some_and(|at| now.duration_since(*at) < CONFLICT_LOG_INTERVAL);
        if recent {
            if let Some(suppressed) = self.detail.allow(now) {
                debug!(%address, %mac, suppressed, "IP conflict: {mac} also claims {address}; reported already");
            }
            return;
        }
        self.foreign_warned.insert(address, now);
        if announced {
            warn!(%address, %mac, "IP conflict: {mac}, no ferrolb speaker, also answers for {address} on {}", self.iface.name);
        } else {
            warn!(%address, %mac, "IP conflict: {address} is in use by {mac} on {}; not announcing it", self.iface.name);
        }
        if let Some(events) = &self.events {
            let _ = events.send(WireEvent::IpConflict {
                address,
                mac,
                announced,
            });
        }
    }

    /// Sends a frame; false (counted and logged) if the kernel refused it.
    async fn send(&mut self, sockets: &Sockets, frame: &Frame) -> bool {
        match sockets.for_frame(frame).send(&frame.to_vec()).await {
            Ok(()) => {
                self.send_failing = false;
                true
            }
            Err(error) => {
                self.counters.send_failed();
                if !self.send_failing {
                    warn!(%error, "sending fails");
                }
                self.send_failing = true;
                false
            }
        }
    }
}

fn reply_destination(frame: &Frame) -> crate::wire::MacAddr {
    match frame {
        Frame::Arp(repr) => repr.ethernet.destination,
        Frame::Ndp(repr) => repr.ethernet.destination,
    }
}

/// Gratuitous frames still to send: per address, when the next is due and
/// how many remain. Time is passed in.
#[derive(Debug, Default)]
struct Bursts {
    queue: BTreeSet<(Instant, IpAddr)>,
    pending: HashMap<IpAddr, (Instant, u32)>,
}

impl Bursts {
    /// Schedules `rounds` frames for `address`, the first at `now`.
    fn start(&mut self, address: IpAddr, now: Instant, rounds: u32) {
        self.cancel(address);
        if rounds > 0 {
            self.queue.insert((now, address));
            self.pending.insert(address, (now, rounds));
        }
    }

    fn cancel(&mut self, address: IpAddr) {
        if let Some((at, _)) = self.pending.remove(&address) {
            self.queue.remove(&(at, address));
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    fn is_pending(&self, address: IpAddr) -> bool {
        self.pending.contains_key(&address)
    }

    /// The addresses whose frame is due at `now`, each rescheduled
    /// `interval` after its due time (so rounds do not drift) if any remain.
    fn take_due(&mut self, now: Instant, interval: Duration) -> Vec<IpAddr> {
        let mut due = Vec::new();
        while let Some(&(at, address)) = self.queue.first() {
            if at > now {
                break;
            }
            self.queue.pop_first();
            due.push(address);
            let Some((_, left)) = self.pending.remove(&address) else {
                continue;
            };
            if left > 1 {
                let next = at + interval;
                self.queue.insert((next, address));
                self.pending.insert(address, (next, left - 1));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interfaces::Unsuitable;
    use crate::wire::MacAddr;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nic(name: &str) -> InterfaceFacts {
        InterfaceFacts {
            name: name.to_owned(),
            index: 2,
            mac: Some(MacAddr::new(0x02, 0, 0, 0, 0, 1)),
            flags: 0x1003,
            master: None,
            ipv6_link_local: None,
        }
    }

    #[test]
    fn an_address_without_interface_list_is_owned_on_every_default_interface() {
        let a: Announcements = [(ip("198.51.100.10"), Vec::<String>::new())]
            .into_iter()
            .collect();
        let owned = a.owned_on("eth0", &Eligibility::Default);
        assert!(owned.contains(ip("198.51.100.10")));
        assert!(a.owned_on("cni0", &Eligibility::OnlyWhenNamed).is_empty());
    }

    #[test]
    fn a_pool_interface_list_limits_where_an_address_is_owned() {
        let a: Announcements = [
            (ip("198.51.100.10"), vec!["eth1"]),
            (ip("2001:db8:100::10"), vec![]),
        ]
        .into_iter()
        .collect();
        let on_eth0: Vec<IpAddr> = a.owned_on("eth0", &Eligibility::Default).iter().collect();
        assert_eq!(on_eth0, vec![ip("2001:db8:100::10")]);
        assert_eq!(a.owned_on("eth1", &Eligibility::Default).len(), 2);
        let gone = Eligibility::Unsuitable(Unsuitable::Down);
        assert!(a.owned_on("eth1", &gone).is_empty());
    }

    #[test]
    fn sharing_an_address_widens_its_interfaces() {
        let mut a = Announcements::new();
        a.announce(ip("198.51.100.10"), ["eth1"]);
        a.announce(ip("198.51.100.10"), ["eth2"]);
        assert_eq!(
            a.interfaces(ip("198.51.100.10")).unwrap(),
            &["eth1".to_owned(), "eth2".to_owned()].into()
        );
        a.announce(ip("198.51.100.10"), Vec::<String>::new());
        assert!(a.interfaces(ip("198.51.100.10")).unwrap().is_empty(), "all");
        a.announce(ip("198.51.100.10"), ["eth1"]);
        assert!(
            a.interfaces(ip("198.51.100.10")).unwrap().is_empty(),
            "still all"
        );
        assert!(a.withdraw(ip("198.51.100.10")));
        assert!(!a.withdraw(ip("198.51.100.10")));
        assert!(a.is_empty());
    }

    #[test]
    fn an_address_limited_to_a_missing_interface_is_unannounceable() {
        let a: Announcements = [
            (ip("198.51.100.10"), vec!["eth1"]),
            (ip("198.51.100.11"), vec![]),
            (ip("198.51.100.12"), vec!["cni0"]),
        ]
        .into_iter()
        .collect();
        let node = [nic("eth0"), nic("cni0")];
        assert_eq!(a.unannounceable(&node), vec![ip("198.51.100.10")]);
    }

    #[test]
    fn a_burst_sends_the_configured_rounds_at_fixed_spacing() {
        let start = Instant::now();
        let step = Duration::from_millis(1100);
        let vip = ip("198.51.100.10");
        let mut bursts = Bursts::default();
        bursts.start(vip, start, 3);
        let mut sent_at = Vec::new();
        // Poll a little late each time: rounds stay on the 1.1 s grid.
        let mut now = start;
        while let Some(due) = bursts.next_due() {
            now = now.max(due) + Duration::from_millis(30);
            for address in bursts.take_due(now, step) {
                assert_eq!(address, vip);
                sent_at.push(now);
            }
        }
        assert_eq!(sent_at.len(), 3);
        assert_eq!(bursts.next_due(), None);
        assert_eq!(sent_at[2] - sent_at[0], step * 2);
    }

    #[test]
    fn losing_an_address_cancels_its_remaining_gratuitous_frames() {
        let start = Instant::now();
        let mut bursts = Bursts::default();
        bursts.start(ip("198.51.100.10"), start, 5);
        bursts.start(ip("198.51.100.11"), start, 5);
        bursts.cancel(ip("198.51.100.10"));
        let due = bursts.take_due(start, Duration::from_secs(1));
        assert_eq!(due, vec![ip("198.51.100.11")]);
    }

    #[test]
    fn counters_are_kept_per_address_and_per_drop_reason() {
        let counters = Counters::default();
        counters.address(ip("198.51.100.10"), |c| c.responses_sent += 1);
        counters.dropped(DropReason::NotOurs);
        counters.dropped(DropReason::NotOurs);
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.addresses[&ip("198.51.100.10")].responses_sent, 1);
        assert_eq!(snapshot.drops["not_ours"], 2);
    }
}
