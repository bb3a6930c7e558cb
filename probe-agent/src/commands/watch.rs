//! `probe-agent watch`.

use std::{io::Write as _, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use probe_agent::{cli::parse_duration, evidence::Evidence, run::http, watch::Agent};

use super::agent_args::AgentArgs;

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Stop after this long (`30s`, `10m`, `24h`; a bare number is seconds). Without it, run
    /// until SIGINT or SIGTERM.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Where to write the evidence (JSON): a file (written atomically) or `-` for stdout.
    #[arg(long, default_value = "-")]
    output: String,
    /// Node name in the evidence (default: the host name).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Also serve /metrics, /healthz, /readyz and /v1/evidence here.
    #[arg(long)]
    http_addr: Option<SocketAddr>,
}

pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let config = args.agent.config(args.node_name);
    if config.api_endpoints.is_empty() {
        tracing::warn!("no --api-endpoint given: API connects are not watched");
    }
    let agent = Agent::start(config).await.context("cannot start the agent")?;
    let server = args.http_addr.map(|addr| {
        let (_, ready) = tokio::sync::watch::channel(true);
        tokio::spawn(http::serve(addr, http::HttpState { handle: agent.handle(), publish: None, ready }))
    });
    // Handlers first: once "watching" is logged, a signal is never the default (fatal) one.
    let signal = super::shutdown_signal().context("cannot handle signals")?;
    tracing::info!(duration = ?args.duration, "watching; SIGINT or SIGTERM writes the evidence and exits");
    match args.duration {
        Some(d) => tokio::select! {
            () = tokio::time::sleep(d) => tracing::info!("duration reached"),
            () = signal => {}
        },
        None => signal.await,
    }
    if let Some(server) = server {
        server.abort();
    }
    let evidence = agent.stop().await?;
    write_evidence(&args.output, &evidence)
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
