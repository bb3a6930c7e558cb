//! The command lines: `probe-agent` (the agent and the planner) and `kubectl-tokenprobe` (the
//! planner alone, as a kubectl plugin). Both binaries are thin wrappers around [`main`] and
//! [`plugin_main`].

#[cfg(feature = "agent")]
mod agent_args;
mod kubeconfig;
mod plan;
#[cfg(feature = "agent")]
mod run;
#[cfg(feature = "agent")]
mod sink;
#[cfg(feature = "agent")]
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

/// `kubectl tokenprobe …`: kubectl runs `kubectl-tokenprobe` with every argument after the
/// plugin's name, so the plugin reads `--kubeconfig`, `--context`, `-n` and `-A` itself.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-tokenprobe",
    bin_name = "kubectl tokenprobe",
    version,
    about = "tokenprobe's planner: which workloads can stop mounting their service-account token",
    after_help = "Reads the cluster through $KUBECONFIG (else ~/.kube/config) at its current context, \
                  like kubectl; --kubeconfig and --context choose another. The scope is every namespace \
                  unless -n is given: the plan is about the whole cluster, so the context's default \
                  namespace does not narrow it."
)]
pub struct PluginCli {
    /// Log format on stderr (level via `TOKENPROBE_LOG`, e.g. `debug`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: PlannerCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Standalone: watch this node without an API server and write the evidence at the end.
    #[cfg(feature = "agent")]
    Watch(watch::WatchArgs),
    /// The `DaemonSet` agent: watch this node, attribute to pods and workloads, publish a
    /// `NodeTokenEvidence` object, serve /metrics.
    #[cfg(feature = "agent")]
    Run(run::RunArgs),
    /// Receive the API server's audit webhook and keep per-pod request totals in a
    /// `TokenAuditEvidence` object for the planner.
    #[cfg(feature = "agent")]
    AuditSink(sink::SinkArgs),
    #[command(flatten)]
    Planner(PlannerCommand),
}

/// What the planner does; the same in `probe-agent` and in the kubectl plugin.
#[derive(Debug, Subcommand)]
enum PlannerCommand {
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

/// `probe-agent`'s `main`.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    block_on(async move {
        match cli.command {
            #[cfg(feature = "agent")]
            Command::Watch(args) => finish(watch::watch(args).await.map(|()| ExitCode::SUCCESS)),
            #[cfg(feature = "agent")]
            Command::Run(args) => finish(run::run(args).await.map(|()| ExitCode::SUCCESS)),
            #[cfg(feature = "agent")]
            Command::AuditSink(args) => finish(sink::sink(args).await.map(|()| ExitCode::SUCCESS)),
            Command::Planner(command) => planner(command).await,
        }
    })
}

/// `kubectl-tokenprobe`'s `main`.
#[must_use]
pub fn plugin_main() -> ExitCode {
    let cli = PluginCli::parse();
    init_tracing(cli.log_format);
    block_on(planner(cli.command))
}

async fn planner(command: PlannerCommand) -> ExitCode {
    finish(match command {
        PlannerCommand::Plan(args) => plan::plan(args).await,
        PlannerCommand::Audit(args) => plan::audit(args).await,
        PlannerCommand::Verify(args) => plan::verify(args).await,
        PlannerCommand::Crds => crate::k8s::crd::crd_yaml()
            .map(|yaml| {
                print!("{yaml}");
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
    })
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        plan::exit_code(&e)
    })
}

fn block_on(future: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    let filter = EnvFilter::try_from_env("TOKENPROBE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => {
            // Colours only on a terminal: `kubectl logs` and log files get plain text.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            registry.with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr)).try_init()
        }
        LogFormat::Json => registry.with(fmt::layer().json().with_writer(std::io::stderr)).try_init(),
    };
    if let Err(e) = result {
        eprintln!("warning: logging not initialised: {e}");
    }
}

/// Waits for SIGINT or SIGTERM.
///
/// # Errors
/// When the signal handlers cannot be installed.
#[cfg(feature = "agent")]
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn both_command_lines_are_well_formed() {
        Cli::command().debug_assert();
        PluginCli::command().debug_assert();
    }

    /// kubectl hands the plugin everything after its name: the cluster flags come after the
    /// subcommand, as they do for kubectl's own commands.
    #[test]
    fn the_plugin_reads_kubectls_flags() {
        let cli = PluginCli::try_parse_from([
            "kubectl-tokenprobe",
            "plan",
            "--kubeconfig",
            "/tmp/kc",
            "--context",
            "staging",
            "-n",
            "shop",
            "-o",
            "json",
        ])
        .expect("parses");
        let PlannerCommand::Plan(args) = cli.command else { panic!("not plan: {cli:?}") };
        let debug = format!("{args:?}");
        for part in ["\"/tmp/kc\"", "Some(\"staging\")", "Some(\"shop\")"] {
            assert!(debug.contains(part), "{part} missing from {debug}");
        }
        let all = PluginCli::try_parse_from(["kubectl-tokenprobe", "audit", "-A"]).expect("-A parses");
        assert!(matches!(all.command, PlannerCommand::Audit(_)));
        let both = PluginCli::try_parse_from(["kubectl-tokenprobe", "verify", "-A", "-n", "x"]);
        assert!(both.is_err(), "-A and -n together must be refused");
        // The agent's own subcommands are not part of the plugin.
        assert!(PluginCli::try_parse_from(["kubectl-tokenprobe", "watch"]).is_err());
        assert!(PluginCli::try_parse_from(["kubectl-tokenprobe", "run"]).is_err());
    }
}
