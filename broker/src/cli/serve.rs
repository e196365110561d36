//! `fleetmq serve` and `fleetmq demo`: resolve the configuration, set up tracing, install the
//! SIGINT/SIGTERM handlers, bind, print the one "fleetmq listening" line on stdout, and run until
//! a signal. A second signal, or a shutdown that outlasts [`SHUTDOWN_GRACE`], ends the process.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use super::failure::Failure;
use super::render;
use super::settings::ServeArgs;
use crate::config::LogFormat;
use crate::{Broker, Config};

/// Longest a graceful shutdown may take after the first signal before the process exits 1.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs `serve` (`buses: None`) or `demo` (`Some(n)` simulated buses).
///
/// # Errors
/// [`Failure::Config`] for bad configuration or a port in use; [`Failure::Runtime`] otherwise.
pub fn serve(args: ServeArgs, buses: Option<usize>) -> Result<(), Failure> {
    let config = args.resolve()?;
    if args.print_config {
        let text = render::to_toml(&config).context("rendering the configuration")?;
        let mut out = std::io::stdout().lock();
        return out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .context("writing to stdout")
            .map_err(Failure::Runtime);
    }
    init_tracing(config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fleetmq")
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(run(config, buses));
    // Tasks still running after `Broker::run` returned get a moment, not forever.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Tracing on stderr (stdout carries only the "listening" line), filtered by `RUST_LOG`, default
/// `info`.
fn init_tracing(format: LogFormat) -> Result<(), Failure> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) => EnvFilter::try_new(&spec).map_err(|e| {
            Failure::Config(format!(
                "RUST_LOG={spec:?}: {e}; use e.g. RUST_LOG=info or RUST_LOG=fleetmq=debug,info"
            ))
        })?,
        // The redis crate's cluster client logs every reconnect attempt while a node is down,
        // many a second; fleetmq itself logs the outage once and shows it in fleetmq_redis_up.
        Err(_) => EnvFilter::new("info,rustls=error,redis=off"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person watching, not in a file or a journal.
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Already installed (a test calling twice) is not worth failing for.
    let _ = installed;
    Ok(())
}

async fn run(config: Config, buses: Option<usize>) -> Result<(), Failure> {
    // Handlers go in before binding, so a signal sent as soon as the "listening" line appears is
    // never lost.
    let stop = install_signal_handlers()?;
    let mut demo = None;
    let broker = Broker::bind_with(config, |network| match buses {
        Some(n) => {
            let d = crate::demo::Demo::new(&network, n, crate::ingest::now_ms());
            let network = d.with_timetable(network);
            demo = Some(d);
            network
        }
        None => network,
    })
    .await
    .map_err(|e| Failure::from_broker(e, "starting the broker"))?;
    announce(&broker)?;
    if let Some(buses) = buses {
        tracing::info!(
            buses,
            "demo: open http://{}/ for the map",
            broker.http_addr()
        );
    }

    let shutdown = wait_for(stop.clone());
    let deadline = async {
        wait_for(stop).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let served = match demo {
        Some(demo) => {
            let fleet = demo.spawn(broker.mqtt_addr(), broker.network().clone());
            // The buses stop (their tasks are aborted with the set) as soon as shutdown begins,
            // so they do not keep reconnecting to a broker that is closing.
            let shutdown = async move {
                shutdown.await;
                drop(fleet);
            };
            run_until(broker.run(shutdown), deadline).await
        }
        None => run_until(broker.run(shutdown), deadline).await,
    };
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Prints the line tests and scripts wait for, with the real bound ports.
fn announce(broker: &Broker) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let mqtts = [
        ("mqtts", broker.mqtts_addr()),
        ("https", broker.https_addr()),
        ("osmand", broker.osmand_addr()),
        ("osmands", broker.osmands_addr()),
    ]
    .into_iter()
    .filter_map(|(name, addr)| addr.map(|a| format!(" {name}={a}")))
    .collect::<String>();
    writeln!(
        out,
        "fleetmq listening mqtt={} http={}{mqtts}",
        broker.mqtt_addr(),
        broker.http_addr()
    )
    .and_then(|()| out.flush())
    .context("writing to stdout")
    .map_err(Failure::Runtime)?;
    tracing::info!(mqtt = %broker.mqtt_addr(), http = %broker.http_addr(), "listening");
    Ok(())
}

/// Runs the broker, but gives up once `deadline` completes (a shutdown that hangs).
async fn run_until(
    served: impl Future<Output = Result<(), crate::Error>>,
    deadline: impl Future<Output = ()>,
) -> Result<(), Failure> {
    tokio::select! {
        r = served => r.map_err(|e| Failure::from_broker(e, "running the broker")),
        () = deadline => Err(Failure::Runtime(anyhow::anyhow!(
            "shutdown took longer than {} s; exiting without finishing it",
            SHUTDOWN_GRACE.as_secs()
        ))),
    }
}

/// Completes once the flag turns true (or its sender is gone).
async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Spawns a task that sets the returned flag on the first SIGINT or SIGTERM and exits the process
/// with code 1 on the second (an operator pressing Ctrl-C again means "now").
fn install_signal_handlers() -> Result<watch::Receiver<bool>, Failure> {
    let install = |kind: SignalKind, name: &str| {
        signal(kind).with_context(|| format!("installing the {name} handler"))
    };
    let mut int = install(SignalKind::interrupt(), "SIGINT")?;
    let mut term = install(SignalKind::terminate(), "SIGTERM")?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        tracing::info!("{first} received: shutting down (send it again to exit at once)");
        let _ = tx.send(true);
        let second = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        let _ = writeln!(
            std::io::stderr(),
            "fleetmq: second {second}: exiting without finishing the shutdown"
        );
        std::process::exit(1);
    });
    Ok(rx)
}
