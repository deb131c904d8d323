//! `ferrolb-controller`: allocates addresses to LoadBalancer Services. `main`
//! owns the flags, logging, wiring and the shutdown path; the logic lives in
//! the library.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ferrolb_config::{Config, DEFAULT_CONFIGMAP_NAME, DEFAULT_NAMESPACE, names};
use ferrolb_controller::allocator::Allocator;
use ferrolb_controller::events::Events;
use ferrolb_controller::leader::{Elector, Ended, Fence, Role, Timing};
use ferrolb_controller::metrics::{self, Metrics};
use ferrolb_controller::namespaces::NamespaceLabels;
use ferrolb_controller::plan::Desire;
use ferrolb_controller::reconcile::{self, Context};
use ferrolb_controller::{config_watch, preview};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::runtime::events::Reporter;
use kube::{Client, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Allocates external addresses to `type: LoadBalancer` Services from the
/// pools in ferrolb's ConfigMap.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validates a config file (a ConfigMap manifest or the bare config YAML)
    /// and prints its pools, or every error; exits 1 on errors.
    CheckConfig {
        /// The file to check.
        file: std::path::PathBuf,
        /// Also show what applying it would do to the Services of the cluster
        /// reached through KUBECONFIG (or in-cluster config).
        #[arg(long)]
        preview: bool,
    },
    /// Converts MetalLB's IPAddressPools and L2Advertisements (what `kubectl
    /// get ipaddresspools,l2advertisements -A -o yaml` prints) into ferrolb's
    /// ConfigMap, printed on stdout; exits 1, naming every object and field
    /// it cannot convert, without printing a config.
    ConvertMetallb {
        /// Files holding the objects: a List, or one object per document.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Namespace of the ConfigMap and of the leader-election Lease.
    #[arg(long, env = "FERROLB_NAMESPACE", default_value = DEFAULT_NAMESPACE, value_parser = names::namespace)]
    namespace: String,
    /// Name of the ConfigMap holding the pools (MetalLB's `config` works too).
    #[arg(long, env = "FERROLB_CONFIGMAP", default_value = DEFAULT_CONFIGMAP_NAME, value_parser = names::object_name)]
    config_map: String,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "FERROLB_METRICS_ADDRESS", default_value = "0.0.0.0:7472")]
    metrics_address: SocketAddr,
    /// Compete for the Lease so that only one replica allocates.
    #[arg(long, env = "FERROLB_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// This replica's name in the Lease (default: the pod or host name).
    #[arg(long, env = "POD_NAME", value_parser = names::identity)]
    identity: Option<String>,
}

/// How long a stopping controller lets in-flight reconciles finish.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// `EX_USAGE` (from sysexits.h): a file named on the command line could not
/// be read. Bad flags exit 2, as clap exits.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    match cli.command {
        Some(Command::CheckConfig { file, preview }) => {
            runtime.block_on(check_config(&file, preview))
        }
        Some(Command::ConvertMetallb { files }) => convert_metallb(&files),
        None => match runtime.block_on(run(cli.run)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn convert_metallb(files: &[std::path::PathBuf]) -> ExitCode {
    let mut texts = Vec::with_capacity(files.len());
    for file in files {
        match std::fs::read_to_string(file) {
            Ok(text) => texts.push((file.display().to_string(), text)),
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let borrowed: Vec<(&str, &str)> = texts
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    match ferrolb_config::metallb::convert(&borrowed) {
        Ok(converted) => {
            for warning in &converted.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", converted.manifest());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("cannot convert:\n{errors}");
            ExitCode::FAILURE
        }
    }
}

async fn check_config(file: &std::path::Path, with_preview: bool) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let report = ferrolb_config::check(&text);
    println!("{report}");
    if report.failed() {
        return ExitCode::FAILURE;
    }
    let (Ok(validated), true) = (&report.outcome, with_preview) else {
        return ExitCode::SUCCESS;
    };
    match preview_impact(&validated.config).await {
        Ok(lines) if lines.is_empty() => println!("Applying it changes no Service's address."),
        Ok(lines) => {
            println!("Applying it would change:");
            for line in lines {
                println!("  {line}");
            }
        }
        Err(e) => {
            eprintln!("cannot preview against the cluster: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

async fn preview_impact(config: &Config) -> anyhow::Result<Vec<String>> {
    let client = Client::try_default()
        .await
        .context("connecting to the cluster")?;
    let mut services = reconcile::list_services(&client)
        .await
        .context("listing Services")?;
    let namespaces: BTreeMap<String, BTreeMap<String, String>> = Api::<Namespace>::all(client)
        .list_metadata(&ListParams::default())
        .await
        .context("listing Namespaces")?
        .items
        .into_iter()
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect();
    reconcile::oldest_first(&mut services);
    let desires: Vec<(Desire, Vec<std::net::IpAddr>)> = services
        .iter()
        .map(|s| {
            let labels = |n: &str| namespaces.get(n).cloned().unwrap_or_default();
            (
                reconcile::desire(s, labels),
                ferrolb_config::request::ingress(s),
            )
        })
        .collect();
    Ok(preview::preview(&config.pools, &desires)
        .iter()
        .map(ToString::to_string)
        .collect())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the API server")?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));

    let metrics = Arc::new(Metrics::new());
    let server = tokio::spawn(metrics::serve(
        args.metrics_address,
        metrics.clone(),
        shutdown.clone(),
    ));

    let timing = Timing::default();
    let release = CancellationToken::new();
    let mut lost_leadership = None;
    let fence = if args.leader_elect {
        let (fence, elector) =
            match lead(&args, &identity, timing, &metrics, &release, &shutdown).await? {
                Leading::Yes(fence, elector) => (fence, elector),
                Leading::Stopped(elector) => return step_down(Some(elector), &release).await,
            };
        lost_leadership = Some(elector);
        fence
    } else {
        metrics.set_role(Role::Leader);
        Fence::always_open(timing.call_timeout)
    };

    let (ctx, wake_rx) = context(&client, &identity, fence, &metrics);
    let namespaces = ctx.namespaces.clone();

    // Nothing is allocated before a valid config is in force and the
    // addresses already handed out are known again.
    let (config_tx, mut config) = watch::channel(None);
    tokio::spawn(config_watch::run(
        ctx.clone(),
        args.namespace.clone(),
        args.config_map.clone(),
        config_tx,
    ));
    info!(configmap = %format!("{}/{}", args.namespace, args.config_map), "waiting for a valid config");
    if !unless_stopped(config.wait_for(Option::is_some), &shutdown).await {
        return step_down(lost_leadership, &release).await;
    }
    // A Service is judged against its namespace's labels: restoring before
    // they are known would refuse addresses of pools with namespace
    // selectors, and move them.
    if !unless_stopped(namespaces.wait_until_ready(), &shutdown).await {
        return step_down(lost_leadership, &release).await;
    }
    let kept = reconcile::restore(&ctx)
        .await
        .context("listing Services to restore their addresses")?;
    info!(
        services = kept,
        "restored the addresses in Services' statuses"
    );
    metrics.set_restored(true);

    let controller = reconcile::run(ctx, wake_rx, shutdown.clone());
    tokio::pin!(controller);
    tokio::select! {
        _ = &mut controller => {}
        _ = shutdown.cancelled() => {
            // In-flight reconciles finish within the grace period; kube's
            // controller can also wait for ever for a store that a stop
            // right after start left unsynced, so the wait is bounded.
            if tokio::time::timeout(DRAIN_GRACE, &mut controller).await.is_err() {
                info!(grace = ?DRAIN_GRACE, "reconciles did not finish in time; stopping anyway");
            }
        }
        ended = async {
            match lost_leadership.as_mut() {
                Some(task) => task.await.unwrap_or(Ended::Lost),
                None => std::future::pending().await,
            }
        } => {
            shutdown.cancel();
            if ended == Ended::Lost {
                anyhow::bail!("lost leadership; exiting so that a restart starts from a clean state");
            }
            lost_leadership = None;
        }
    }
    // The controller has stopped allocating: only now hand the Lease over.
    shutdown.cancel();
    step_down(lost_leadership, &release).await?;
    let _ = server.await;
    info!("stopped");
    Ok(())
}

/// Mirrors the elector's view of this replica into the metrics (the
/// `controller_leader` gauge and `/readyz`).
async fn publish_role(mut role: watch::Receiver<Role>, metrics: Arc<Metrics>) {
    loop {
        metrics.set_role(*role.borrow_and_update());
        if role.changed().await.is_err() {
            return;
        }
    }
}

/// Releases the Lease if this replica holds it, waiting a few seconds at
/// most for the API server.
/// What every reconcile shares, with the tasks that feed it started: the
/// Namespace labels and the event writer. Also the wake-ups' receiver.
fn context(
    client: &Client,
    identity: &str,
    fence: Fence,
    metrics: &Arc<Metrics>,
) -> (Arc<Context>, mpsc::UnboundedReceiver<()>) {
    let (wake_tx, wake_rx) = mpsc::unbounded_channel();
    let (namespaces, follow_namespaces) = NamespaceLabels::watch(client.clone(), wake_tx.clone());
    tokio::spawn(follow_namespaces);
    let (events, event_writer) = Events::new(
        client.clone(),
        Reporter {
            controller: "ferrolb-controller".into(),
            instance: Some(identity.to_owned()),
        },
        fence.clone(),
        metrics.clone(),
    );
    tokio::spawn(event_writer.run());
    let ctx = Arc::new(Context {
        client: client.clone(),
        allocator: Mutex::new(Allocator::default()),
        events,
        fence,
        metrics: metrics.clone(),
        wake: wake_tx,
        namespaces,
    });
    (ctx, wake_rx)
}

/// Waits for `ready`; false when `shutdown` came first.
async fn unless_stopped(ready: impl std::future::Future, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = ready => true,
        () = shutdown.cancelled() => false,
    }
}

/// How waiting to lead ended: leading, or stopped first.
enum Leading {
    Yes(Fence, tokio::task::JoinHandle<Ended>),
    Stopped(tokio::task::JoinHandle<Ended>),
}

/// Competes for the leader Lease until this replica leads or `shutdown`.
async fn lead(
    args: &RunArgs,
    identity: &str,
    timing: Timing,
    metrics: &Arc<Metrics>,
    release: &CancellationToken,
    shutdown: &CancellationToken,
) -> anyhow::Result<Leading> {
    let fence = Fence::closed(timing.call_timeout);
    let (role_tx, mut role) = watch::channel(Role::Candidate);
    // Its own client, so its own connections: a Lease renewal must not
    // queue behind the reconciles' writes (a cold start of thousands of
    // Services would otherwise cost the leader its Lease).
    let lease_client = Client::try_default()
        .await
        .context("connecting to the API server")?;
    let elector = Elector::new(
        lease_client,
        &args.namespace,
        "ferrolb-controller",
        identity,
        timing,
        fence.clone(),
    );
    let elector = tokio::spawn(elector.run(role_tx, release.clone()));
    tokio::spawn(publish_role(role.clone(), metrics.clone()));
    info!(identity = %identity, "waiting to lead");
    tokio::select! {
        _ = role.wait_for(|r| *r == Role::Leader) => Ok(Leading::Yes(fence, elector)),
        _ = shutdown.cancelled() => Ok(Leading::Stopped(elector)),
    }
}

async fn step_down(
    elector: Option<tokio::task::JoinHandle<Ended>>,
    release: &CancellationToken,
) -> anyhow::Result<()> {
    release.cancel();
    if let Some(task) = elector
        && tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .is_err()
    {
        info!("the lease was not released in time; another replica takes over when it expires");
    }
    Ok(())
}

/// SIGTERM comes from the kubelet when the pod stops, SIGINT from a person
/// at a terminal: both drain and stop.
async fn signal_shutdown(shutdown: CancellationToken) {
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
    info!("shutting down");
    shutdown.cancel();
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "ferrolb-controller".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn every_flag_with_a_bad_value_is_refused_naming_the_flag() {
        for (args, flag) in [
            (&["--namespace", "ferrolb.system"][..], "--namespace"),
            (&["--config-map", "Pools"][..], "--config-map"),
            (&["--metrics-address", "localhost"][..], "--metrics-address"),
            (&["--leader-elect", "maybe"][..], "--leader-elect"),
            (&["--identity", ""][..], "--identity"),
        ] {
            let mut argv = vec!["ferrolb-controller"];
            argv.extend_from_slice(args);
            let error = Cli::try_parse_from(argv)
                .expect_err("should be refused")
                .to_string();
            assert!(error.contains(flag), "{args:?}: {error}");
        }
        assert!(Cli::try_parse_from(["ferrolb-controller"]).is_ok());
    }
}
