//! The subcommands.

mod agent_args;
mod run;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "probe-agent",
    version,
    about = "tokenprobe: measure which containers use their service-account token"
)]
pub struct Cli {
    /// Log format on stderr (level via `TOKENPROBE_LOG`, e.g. `debug`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Standalone: watch this node without an API server and write the evidence at the end.
    Watch(watch::WatchArgs),
    /// The `DaemonSet` agent: watch this node, attribute to pods and workloads, publish a
    /// `NodeTokenEvidence` object, serve /metrics.
    Run(run::RunArgs),
    /// Print the CustomResourceDefinition(s) tokenprobe uses, as YAML.
    Crds,
}

pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Watch(args) => watch::watch(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Crds => probe_agent::k8s::crd::crd_yaml().map(|yaml| print!("{yaml}")).map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Waits for SIGINT or SIGTERM.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    })
}
