//! The subcommands.

use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use probe_agent::{
    cli::{parse_duration, parse_endpoint},
    evidence::Evidence,
    probe::{ConnectHook, FileHook},
    watch::{Agent, WatchConfig},
};

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
    Watch(WatchArgs),
}

#[derive(Debug, clap::Args)]
struct WatchArgs {
    /// The kubelet's root directory.
    #[arg(long, default_value = "/var/lib/kubelet")]
    kubelet_dir: PathBuf,
    /// An API server address to count connects to (repeatable; IPv6 as [`::1`]:6443).
    #[arg(long = "api-endpoint", value_name = "ADDR:PORT", value_parser = parse_endpoint)]
    api_endpoints: Vec<std::net::SocketAddr>,
    /// Stop after this long (`30s`, `10m`, `24h`; a bare number is seconds). Without it, run
    /// until SIGINT or SIGTERM.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Where to write the evidence (JSON): a file (written atomically) or `-` for stdout.
    #[arg(long, default_value = "-")]
    output: String,
    /// File-open hook: `auto` tries lsm, fentry, kprobe, tracepoint in that order.
    #[arg(long, value_enum, default_value_t = FileHook::Auto)]
    file_hook: FileHook,
    /// API-connect hook: `auto` tries cgroup, lsm, fentry in that order.
    #[arg(long, value_enum, default_value_t = ConnectHook::Auto)]
    connect_hook: ConnectHook,
    /// Node name in the evidence (default: the host name).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// The host mount table to follow.
    #[arg(long, default_value = "/proc/1/mountinfo")]
    mountinfo: PathBuf,
    /// The host's cgroup v2 mount (default: found in the mount table).
    #[arg(long)]
    cgroup_root: Option<PathBuf>,
    /// How often to rescan cgroups for new containers.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    rescan_interval: Duration,
    /// Entries of the in-kernel counters map (one per container, target and kind of event);
    /// `mapFull` in the evidence says when it was too small.
    #[arg(long, default_value_t = probe_common::maps::COUNTERS_MAX)]
    counters_capacity: u32,
}

pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Watch(args) => watch(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let mut config = WatchConfig::new(args.kubelet_dir);
    if let Some(name) = args.node_name {
        config.node_name = name;
    }
    config.api_endpoints = args.api_endpoints;
    config.file_hook = args.file_hook;
    config.connect_hook = args.connect_hook;
    config.mountinfo = args.mountinfo;
    config.cgroup_root = args.cgroup_root;
    config.rescan_interval = args.rescan_interval;
    config.counters_capacity = args.counters_capacity;
    let agent = Agent::start(config).await.context("cannot start the agent")?;
    tracing::info!(duration = ?args.duration, "watching; SIGINT or SIGTERM writes the evidence and exits");
    wait_for_end(args.duration).await?;
    let evidence = agent.stop().await?;
    write_evidence(&args.output, &evidence)
}

/// Waits for the duration to pass, or SIGINT/SIGTERM.
async fn wait_for_end(duration: Option<Duration>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let sleep = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = sleep => tracing::info!("duration reached"),
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    Ok(())
}

/// Writes evidence as pretty JSON to stdout or, atomically, to a file.
fn write_evidence(output: &str, evidence: &Evidence) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(evidence)?;
    json.push(b'\n');
    if output == "-" {
        std::io::stdout().lock().write_all(&json).context("cannot write the evidence to stdout")?;
        return Ok(());
    }
    let path = PathBuf::from(output);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &json).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot move {} into place", path.display()))?;
    tracing::info!(path = %path.display(), containers = evidence.containers.len(), "evidence written");
    Ok(())
}
