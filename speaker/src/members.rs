//! The membership shell: one UDP socket bound to this node's announcing
//! address, one task that owns the [`Liveness`] core and reads a single
//! [`Input`] stream (datagrams, ticks, the API's address book, the leave
//! request), and the [`MemberView`] it publishes for the decisions. No
//! protocol rules here: they are all in [`crate::liveness`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::liveness::{Effect, Liveness, Settings};
use crate::metrics::Metrics;
use crate::seal::Key;

/// What the decisions read of the membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberView {
    /// The live members, this one included.
    pub live: BTreeSet<String>,
    /// Whether the view is complete enough to decide from.
    pub settled: bool,
    /// Raised whenever this member refuted being held down: whatever it owns
    /// must be announced again.
    pub reannounce: u64,
}

/// Everything the membership task reacts to.
#[derive(Debug)]
pub enum Input {
    /// A datagram from the LAN.
    Datagram(Vec<u8>),
    /// The API's address book: every speaker's name and membership address.
    Book(Vec<(String, SocketAddr)>),
    /// Say goodbye to the peers; answered once the first round is sent.
    Leave(oneshot::Sender<()>),
}

/// Handle to the running membership.
#[derive(Debug, Clone)]
pub struct Members {
    inputs: mpsc::Sender<Input>,
}

impl Members {
    /// Hands the API's address book to the membership.
    pub async fn book(&self, book: Vec<(String, SocketAddr)>) {
        let _ = self.inputs.send(Input::Book(book)).await;
    }

    /// Tells every peer this speaker leaves; returns once that is sent (or
    /// the task is gone). The task keeps repeating it until `shutdown`.
    pub async fn leave(&self) {
        let (done, sent) = oneshot::channel();
        if self.inputs.send(Input::Leave(done)).await.is_ok() {
            let _ = sent.await;
        }
    }
}

/// Why the membership could not start.
#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    /// The UDP socket could not be bound; nothing runs.
    #[error("cannot bind the membership socket on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the kernel said.
        source: std::io::Error,
    },
}

/// Binds `addr` and starts the membership of node `me` until `shutdown`;
/// its view is published on the returned receiver.
pub async fn start(
    me: String,
    addr: SocketAddr,
    key: Key,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(Members, watch::Receiver<MemberView>), MembersError> {
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|source| MembersError::Bind { addr, source })?;
    let socket = Arc::new(socket);
    let (inputs, rx) = mpsc::channel(1024);
    let generation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let core = Liveness::new(
        me.clone(),
        addr,
        key,
        settings,
        generation,
        Instant::now().into_std(),
    );
    let mut initial = MemberView {
        live: core.live(),
        ..MemberView::default()
    };
    initial.settled = false;
    let (view_tx, view_rx) = watch::channel(initial);
    tokio::spawn(
        receive(socket.clone(), inputs.clone(), shutdown.clone())
            .instrument(info_span!("members-receive", %addr)),
    );
    tokio::spawn(
        drive(core, socket, rx, view_tx, metrics, shutdown)
            .instrument(info_span!("members", node = %me, %addr)),
    );
    info!(%addr, "membership listening");
    Ok((Members { inputs }, view_rx))
}

/// Moves datagrams from the socket to the task; nothing else.
async fn receive(socket: Arc<UdpSocket>, inputs: mpsc::Sender<Input>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((len, _)) => {
                if inputs
                    .send(Input::Datagram(buf[..len].to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                debug!(error = %e, "membership receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The one task that owns the core.
async fn drive(
    mut core: Liveness,
    socket: Arc<UdpSocket>,
    mut inputs: mpsc::Receiver<Input>,
    view: watch::Sender<MemberView>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(core.settings().interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut out = Vec::new();
    let mut reannounce = 0u64;
    let mut send_failing = false;
    loop {
        let now = Instant::now().into_std();
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => core.handle_tick(Instant::now().into_std(), &mut out),
            input = inputs.recv() => match input {
                None => return,
                Some(Input::Datagram(bytes)) => core.handle_datagram(&bytes, now, &mut out),
                Some(Input::Book(book)) => core.discover(book, now, &mut out),
                Some(Input::Leave(done)) => {
                    info!("leaving the membership: peers take over now");
                    core.leave(&mut out);
                    carry(&socket, &mut out, &metrics, &mut reannounce, &mut send_failing).await;
                    let _ = done.send(());
                }
            },
        }
        carry(
            &socket,
            &mut out,
            &metrics,
            &mut reannounce,
            &mut send_failing,
        )
        .await;
        let next = MemberView {
            live: core.live(),
            settled: core.settled(Instant::now().into_std()),
            reannounce,
        };
        view.send_if_modified(|current| {
            let changed = *current != next;
            *current = next;
            changed
        });
    }
}

/// Sends what the core asked to send and logs its decisions.
async fn carry(
    socket: &UdpSocket,
    out: &mut Vec<Effect>,
    metrics: &Metrics,
    reannounce: &mut u64,
    send_failing: &mut bool,
) {
    for effect in out.drain(..) {
        match effect {
            Effect::Send { to, bytes } => match socket.send_to(&bytes, to).await {
                Ok(_) => {
                    if std::mem::take(send_failing) {
                        info!("membership datagrams go out again");
                    }
                }
                Err(e) => {
                    if !std::mem::replace(send_failing, true) {
                        warn!(error = %e, %to, "cannot send membership datagrams; peers will hold this node down");
                    }
                }
            },
            Effect::Up { member } => info!(%member, "member live"),
            Effect::Down { member, cause } => {
                info!(%member, cause = cause.as_label(), "member down")
            }
            Effect::Rejected(reason) => {
                metrics.count_rejected(reason);
                debug!(reason = reason.as_label(), "membership datagram rejected");
            }
            Effect::Refuted => {
                *reannounce += 1;
                info!("peers held this node down; refuted, announcing again");
            }
        }
    }
}
