//! The subcommands.

mod agent_args;
mod plan;
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
    /// Verdicts per workload and ServiceAccount, the changes to make and a phased plan, from
    /// the cluster or from files.
    Plan(plan::PlanArgs),
    /// The effective automount setting of every pod, checked against its volumes.
    Audit(plan::AuditArgs),
    /// After turning tokens off: containers that still reach for them, with rollback patches
    /// (exit code 3 when any).
    Verify(plan::VerifyArgs),
    /// Print the CustomResourceDefinition(s) tokenprobe uses, as YAML.
    Crds,
}

pub async fn run(cli: Cli) -> ExitCode {
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Watch(args) => done(watch::watch(args).await),
        Command::Run(args) => done(run::run(args).await),
        Command::Plan(args) => plan::plan(args).await,
        Command::Audit(args) => plan::audit(args).await,
        Command::Verify(args) => plan::verify(args).await,
        Command::Crds => {
            done(probe_agent::k8s::crd::crd_yaml().map(|yaml| print!("{yaml}")).map_err(anyhow::Error::from))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            plan::exit_code(&e)
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
