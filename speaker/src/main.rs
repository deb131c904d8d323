//! `ferrolb-speaker`: announces the LoadBalancer addresses this node owns.
//! `main` owns the flags, logging, wiring and the shutdown path, whose drain
//! step hands addresses over before the speaker stops answering.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use ferrolb_config::{DEFAULT_CONFIGMAP_NAME, DEFAULT_NAMESPACE};
use ferrolb_speaker::announcer::{self, Announcements, Announcer};
use ferrolb_speaker::metrics::{self, Metrics};
use ferrolb_speaker::respond::Speakers;
use ferrolb_speaker::{node_lease, watch};
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Answers ARP and NDP for the LoadBalancer addresses this node owns, and
/// agrees with the other speakers on one owner per address.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// This node's name (the DaemonSet sets NODE_NAME from the downward API).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Namespace of the ConfigMap and of the speakers' Leases.
    #[arg(long, env = "FERROLB_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Name of the ConfigMap holding the pools.
    #[arg(long, env = "FERROLB_CONFIGMAP", default_value = DEFAULT_CONFIGMAP_NAME)]
    config_map: String,
    /// Address of the /metrics and /healthz endpoints.
    #[arg(long, env = "FERROLB_METRICS_ADDRESS", default_value = "0.0.0.0:7473")]
    metrics_address: SocketAddr,
    /// How long this speaker's Lease vouches for it: a speaker that dies
    /// without handing over loses its addresses after this long.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// How often the Lease is renewed.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    lease_renew: Duration,
    /// Send gratuitous ARP / unsolicited NA for every owned address this
    /// often (e.g. 60s), for switches that age out their MAC tables. Off by
    /// default.
    #[arg(long, env = "FERROLB_GRATUITOUS_REFRESH", value_parser = parse_duration)]
    gratuitous_refresh: Option<Duration>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    ferrolb_speaker::flags::duration(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.lease_renew >= cli.lease_duration {
        let error = <Cli as clap::CommandFactory>::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--lease-renew ({}) must be shorter than --lease-duration ({}), or the Lease lapses between renewals",
                humantime::format_duration(cli.lease_renew),
                humantime::format_duration(cli.lease_duration),
            ),
        );
        let _ = error.print();
        return ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the API server")?;
    let shutdown = CancellationToken::new();
    let stop_answering = CancellationToken::new();

    let (desired_tx, desired_rx) = tokio::sync::watch::channel(Announcements::new());
    let (speakers_tx, speakers_rx) = tokio::sync::watch::channel(Speakers::default());
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let announcer = Announcer::new(
        desired_rx,
        announcer::Settings {
            refresh_interval: cli.gratuitous_refresh,
            ..announcer::Settings::default()
        },
    )
    .with_speakers(speakers_rx)
    .with_events(events_tx)
    // Once the drain starts, speakers taking the addresses over are expected.
    .with_leaving(shutdown.clone());
    let interfaces = announcer.interfaces();
    let metrics = Arc::new(Metrics::new(announcer.counters()));
    let announcing = tokio::spawn(announcer.run(stop_answering.clone()));
    let server = tokio::spawn(metrics::serve(
        cli.metrics_address,
        metrics.clone(),
        stop_answering.clone(),
    ));
    let (renewing_tx, renewing_rx) = tokio::sync::watch::channel(false);
    let renewing = tokio::spawn({
        let (client, namespace, node, shutdown) = (
            client.clone(),
            cli.namespace.clone(),
            cli.node_name.clone(),
            shutdown.clone(),
        );
        async move {
            node_lease::renew(
                client,
                &namespace,
                &node,
                cli.lease_duration,
                cli.lease_renew,
                renewing_tx,
                interfaces,
                shutdown,
            )
            .await
        }
    });
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "ferrolb-speaker".into(),
            instance: Some(cli.node_name.clone()),
        },
    );
    let settings = watch::Settings {
        node: cli.node_name.clone(),
        namespace: cli.namespace.clone(),
        config_map: cli.config_map.clone(),
    };
    info!(node = %cli.node_name, "speaker started");
    let watching = tokio::spawn(watch::run(
        client.clone(),
        settings,
        recorder,
        metrics,
        desired_tx,
        speakers_tx,
        events_rx,
        renewing_rx,
        shutdown.clone(),
    ));

    shutdown_signal().await;
    // Drain: stop deciding and renewing, hand the addresses over by
    // releasing the Lease, give the other speakers a moment to take over,
    // and only then stop answering.
    shutdown.cancel();
    let _ = tokio::join!(watching, renewing);
    let handover = node_lease::release(client, &cli.namespace, &cli.node_name);
    if tokio::time::timeout(Duration::from_secs(3), handover)
        .await
        .is_err()
    {
        info!("could not release the lease in time; others take over when it expires");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_answering.cancel();
    let _ = tokio::join!(announcing, server);
    info!("stopped");
    Ok(())
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
