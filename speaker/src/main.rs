//! `ferrolb-speaker`: announces the LoadBalancer addresses this node owns.
//! `main` owns the flags, logging, wiring and the shutdown path, whose drain
//! step hands addresses over before the speaker stops answering.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use ferrolb_config::{DEFAULT_CONFIGMAP_NAME, DEFAULT_NAMESPACE, names};
use ferrolb_speaker::announcer::{self, Announcements, Announcer};
use ferrolb_speaker::liveness;
use ferrolb_speaker::members;
use ferrolb_speaker::metrics::{self, Metrics};
use ferrolb_speaker::rate_limit::Rate;
use ferrolb_speaker::respond::Speakers;
use ferrolb_speaker::seal::Key;
use ferrolb_speaker::{l2_status_writer, node_lease, watch};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Answers ARP and NDP for the LoadBalancer addresses this node owns, and
/// agrees with the other speakers on one owner per address.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// This node's name (the DaemonSet sets NODE_NAME from the downward API).
    #[arg(long, env = "NODE_NAME", value_parser = names::object_name)]
    node_name: String,
    /// Namespace of the ConfigMap and of the speakers' Leases.
    #[arg(long, env = "FERROLB_NAMESPACE", default_value = DEFAULT_NAMESPACE, value_parser = names::namespace)]
    namespace: String,
    /// Name of the ConfigMap holding the pools.
    #[arg(long, env = "FERROLB_CONFIGMAP", default_value = DEFAULT_CONFIGMAP_NAME, value_parser = names::object_name)]
    config_map: String,
    /// Address of the /metrics, /healthz and /livez endpoints.
    #[arg(long, env = "FERROLB_METRICS_ADDRESS", default_value = "0.0.0.0:7473")]
    metrics_address: SocketAddr,
    /// The address the membership listens on and speaks from: the node's
    /// address on the LAN that carries the announcements, so a node whose
    /// LAN link is dead loses its addresses. Default: the Node's InternalIP.
    #[arg(long, env = "FERROLB_MEMBER_ADDRESS", value_parser = ferrolb_speaker::flags::member_address)]
    member_address: Option<IpAddr>,
    /// The membership's UDP port.
    #[arg(long, env = "FERROLB_MEMBER_PORT", default_value_t = 7946, value_parser = clap::value_parser!(u16).range(1..))]
    member_port: u16,
    /// The membership key: the Secret ferrolb-system/ferrolb-memberlist, key
    /// `secretkey`. Without it the speaker does not start.
    #[arg(long, env = "FERROLB_MEMBERLIST_SECRET", hide_env_values = true)]
    memberlist_secret: Option<String>,
    /// How often heartbeats go to the watching peers.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    member_interval: Duration,
    /// Silence after which a peer is declared down (detection takes this
    /// plus at most one interval).
    #[arg(long, default_value = "600ms", value_parser = parse_duration)]
    member_timeout: Duration,
    /// Send gratuitous ARP / unsolicited NA for every owned address this
    /// often (e.g. 60s), for switches that age out their MAC tables. Off by
    /// default.
    #[arg(long, env = "FERROLB_GRATUITOUS_REFRESH", value_parser = parse_duration)]
    gratuitous_refresh: Option<Duration>,
    /// Replies to ARP requests and Neighbor Solicitations one requester (a
    /// source MAC) gets per interface: COUNT/PERIOD, at most COUNT per
    /// PERIOD and COUNT at once (e.g. 100/s, 20/500ms). Requests beyond it
    /// are dropped and counted (reason requester_rate_limited).
    #[arg(long, env = "FERROLB_REPLY_RATE_PER_REQUESTER", default_value = "100/s", value_parser = parse_rate)]
    reply_rate_per_requester: Rate,
    /// Replies one interface sends to all requesters together, as
    /// COUNT/PERIOD (reason interface_rate_limited); at least the rate per
    /// requester.
    #[arg(long, env = "FERROLB_REPLY_RATE_PER_INTERFACE", default_value = "1000/s", value_parser = parse_rate)]
    reply_rate_per_interface: Rate,
}

/// `EX_USAGE`: the speaker was started with settings it cannot run with.
const EX_USAGE: u8 = 64;

fn parse_duration(text: &str) -> Result<Duration, String> {
    ferrolb_speaker::flags::duration(text)
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    ferrolb_speaker::flags::rate(text)
}

/// A usage error naming what conflicts, printed as clap prints its own.
fn conflict(message: String) -> ExitCode {
    let error = <Cli as clap::CommandFactory>::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message);
    let _ = error.print();
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.member_interval >= cli.member_timeout {
        return conflict(format!(
            "--member-interval ({}) must be shorter than --member-timeout ({}), or every peer looks dead between heartbeats",
            humantime::format_duration(cli.member_interval),
            humantime::format_duration(cli.member_timeout),
        ));
    }
    let (one, all) = (cli.reply_rate_per_requester, cli.reply_rate_per_interface);
    let window = Duration::from_secs(3600);
    if one.most_within(window) > all.most_within(window) || one.burst() > all.burst() {
        return conflict(format!(
            "--reply-rate-per-requester ({one}) must not exceed --reply-rate-per-interface ({all}), or one requester can take every reply"
        ));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let key = match cli
        .memberlist_secret
        .as_deref()
        .map(str::as_bytes)
        .map(Key::new)
    {
        Some(Ok(key)) => key,
        Some(Err(e)) => {
            error!("refusing to start: {e}");
            return ExitCode::from(EX_USAGE);
        }
        None => {
            error!(
                "refusing to start: no membership key (FERROLB_MEMBERLIST_SECRET, from the Secret ferrolb-system/ferrolb-memberlist, key secretkey); create it with: kubectl create secret generic -n ferrolb-system ferrolb-memberlist --from-literal=secretkey=\"$(openssl rand -base64 32)\""
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, key)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, key: Key) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the API server")?;
    let shutdown = CancellationToken::new();
    let stop_answering = CancellationToken::new();

    let member_ip = match cli.member_address {
        Some(ip) => ip,
        None => internal_ip(&client, &cli.node_name).await?,
    };
    let member_addr = SocketAddr::new(member_ip, cli.member_port);

    let (desired_tx, desired_rx) = tokio::sync::watch::channel(Announcements::new());
    let (speakers_tx, speakers_rx) = tokio::sync::watch::channel(Speakers::default());
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let announcer = announcer(&cli, desired_rx, speakers_rx, events_tx, &shutdown);
    let interfaces = announcer.interfaces();
    let status_interfaces = announcer.interfaces();
    let metrics = Arc::new(Metrics::new(announcer.counters()));
    let announcing = tokio::spawn(announcer.run(stop_answering.clone()));
    let server = tokio::spawn(metrics::serve(
        cli.metrics_address,
        metrics.clone(),
        stop_answering.clone(),
    ));
    // The membership outlives the decisions: it says goodbye during the
    // drain and stops with the answering.
    let (members, view) = membership(&cli, member_addr, key, &metrics, &stop_answering).await?;
    let record_missing = Arc::new(tokio::sync::Notify::new());
    let publishing = tokio::spawn(node_lease::publish(
        client.clone(),
        cli.namespace.clone(),
        cli.node_name.clone(),
        member_addr,
        interfaces,
        record_missing.clone(),
        shutdown.clone(),
    ));
    info!(node = %cli.node_name, member = %member_addr, "speaker started");
    let (decided_tx, decided_rx) = tokio::sync::watch::channel(None);
    let writing_statuses = tokio::spawn(l2_status_writer::run(
        client.clone(),
        cli.node_name.clone(),
        l2_status_writer::Inputs {
            decided: decided_rx,
            interfaces: status_interfaces,
        },
        shutdown.clone(),
    ));
    let watching = tokio::spawn(watch::run(
        client.clone(),
        watch_settings(&cli, member_addr),
        watch::Wiring {
            recorder: recorder(&client, &cli),
            metrics,
            announcements: desired_tx,
            members: members.clone(),
            view,
            record_missing,
            speakers: speakers_tx,
            wire_events: events_rx,
            decided: decided_tx,
        },
        shutdown.clone(),
    ));

    shutdown_signal().await;
    let decisions = (watching, publishing, writing_statuses);
    let answering = (announcing, server);
    drain(
        &client,
        &cli,
        &members,
        decisions,
        answering,
        &shutdown,
        &stop_answering,
    )
    .await;
    info!("stopped");
    Ok(())
}

/// The announcer the flags ask for, fed the announcements, the speakers'
/// MACs and where to report what it sees on the wire.
fn announcer(
    cli: &Cli,
    desired: tokio::sync::watch::Receiver<Announcements>,
    speakers: tokio::sync::watch::Receiver<Speakers>,
    events: tokio::sync::mpsc::UnboundedSender<announcer::WireEvent>,
    shutdown: &CancellationToken,
) -> Announcer {
    Announcer::new(
        desired,
        announcer::Settings {
            refresh_interval: cli.gratuitous_refresh,
            reply_rate_per_requester: cli.reply_rate_per_requester,
            reply_rate_per_interface: cli.reply_rate_per_interface,
            ..announcer::Settings::default()
        },
    )
    .with_speakers(speakers)
    .with_events(events)
    // Once the drain starts, speakers taking the addresses over are expected.
    .with_leaving(shutdown.clone())
}

/// Joins the speakers' LAN membership with the flags' timing.
async fn membership(
    cli: &Cli,
    member_addr: SocketAddr,
    key: Key,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> anyhow::Result<(
    members::Members,
    tokio::sync::watch::Receiver<members::MemberView>,
)> {
    let settings = liveness::Settings {
        interval: cli.member_interval,
        timeout: cli.member_timeout,
        ..liveness::Settings::default()
    };
    Ok(members::start(
        cli.node_name.clone(),
        member_addr,
        key,
        settings,
        metrics.clone(),
        stop.clone(),
    )
    .await?)
}

/// Events reported by this node's speaker.
fn recorder(client: &Client, cli: &Cli) -> Recorder {
    let reporter = Reporter {
        controller: "ferrolb-speaker".into(),
        instance: Some(cli.node_name.clone()),
    };
    Recorder::new(client.clone(), reporter)
}

/// What the decisions need to know of this speaker.
fn watch_settings(cli: &Cli, member: SocketAddr) -> watch::Settings {
    watch::Settings {
        node: cli.node_name.clone(),
        namespace: cli.namespace.clone(),
        config_map: cli.config_map.clone(),
        member,
    }
}

/// Drains on a stop: stop deciding, tell the peers this speaker leaves (they
/// take its addresses over and announce them at once), keep answering a
/// moment so no client is left without an answer meanwhile, then stop.
async fn drain(
    client: &Client,
    cli: &Cli,
    members: &members::Members,
    decisions: (JoinHandle<()>, JoinHandle<()>, JoinHandle<()>),
    answering: (JoinHandle<()>, JoinHandle<std::io::Result<()>>),
    shutdown: &CancellationToken,
    stop_answering: &CancellationToken,
) {
    shutdown.cancel();
    let _ = tokio::join!(decisions.0, decisions.1, decisions.2);
    members.leave().await;
    let answering_until = tokio::time::Instant::now() + HANDOVER;
    let release = node_lease::release(client.clone(), &cli.namespace, &cli.node_name);
    if tokio::time::timeout(HANDOVER, release).await.is_err() {
        info!("could not delete the discovery record in time");
    }
    tokio::time::sleep_until(answering_until).await;
    stop_answering.cancel();
    let _ = tokio::join!(answering.0, answering.1);
}

/// How long a stopping speaker keeps answering after telling its peers it
/// leaves: they announce within a few milliseconds of hearing it.
const HANDOVER: Duration = Duration::from_millis(500);

/// Node `node`'s InternalIP, from the API (retried while it cannot be read).
async fn internal_ip(client: &Client, node: &str) -> anyhow::Result<IpAddr> {
    let nodes = Api::<Node>::all(client.clone());
    let mut backoff = Duration::from_millis(250);
    loop {
        match nodes.get(node).await {
            Ok(found) => {
                let ip = found
                    .status
                    .and_then(|s| s.addresses)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|a| a.type_ == "InternalIP")
                    .and_then(|a| a.address.parse().ok());
                return ip.with_context(|| {
                    format!("node {node} has no InternalIP; pass --member-address")
                });
            }
            Err(e) => {
                error!(error = %e, "cannot read node {node} for its InternalIP; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// SIGTERM comes from the kubelet when the pod stops, SIGINT from a person
/// at a terminal: both start the drain.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    info!("shutting down: handing over");
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    fn refused(args: &[&str]) -> String {
        let mut argv = vec!["ferrolb-speaker", "--node-name", "node-1"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn every_flag_with_a_bad_value_is_refused_naming_the_flag() {
        for (args, flag) in [
            (&["--namespace", "Ferrolb"][..], "--namespace"),
            (&["--config-map", ""][..], "--config-map"),
            (&["--node-name", "node_1"][..], "--node-name"),
            (&["--metrics-address", "7473"][..], "--metrics-address"),
            (&["--member-address", "0.0.0.0"][..], "--member-address"),
            (&["--member-port", "0"][..], "--member-port"),
            (&["--member-interval", "0s"][..], "--member-interval"),
            (
                &["--member-timeout", "100000000000000000000s"][..],
                "--member-timeout",
            ),
            (&["--gratuitous-refresh", "60"][..], "--gratuitous-refresh"),
            (
                &["--reply-rate-per-requester", "0/s"][..],
                "--reply-rate-per-requester",
            ),
            (
                &["--reply-rate-per-interface", "100"][..],
                "--reply-rate-per-interface",
            ),
        ] {
            let error = refused(args);
            assert!(error.contains(flag), "{args:?}: {error}");
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        let cli = Cli::try_parse_from(["ferrolb-speaker", "--node-name", "node-1"]).unwrap();
        assert_eq!(cli.member_port, 7946);
    }
}
