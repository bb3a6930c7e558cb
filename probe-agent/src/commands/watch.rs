//! `probe-agent watch`.

use std::{io::Write as _, net::SocketAddr, path::PathBuf, time::Duration};

use crate::{cli::parse_duration, evidence::Evidence, run::http, watch::Agent};
use anyhow::Context as _;

use super::agent_args::AgentArgs;

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Stop after this long (`30s`, `10m`, `24h`; a bare number is seconds). Without it, run
    /// until SIGINT or SIGTERM.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Where to write the evidence (JSON): a file (replaced atomically; a device such as
    /// `/dev/null`, a FIFO or a symbolic link is written into instead), or `-` for stdout.
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
    // Only a regular file is replaced atomically (a new file renamed over it). Anything else
    // — `/dev/null`, `/dev/stdout`, a FIFO, a symbolic link — is written into: renaming over it
    // would replace a device node or the link itself with a regular file.
    let replace = std::fs::symlink_metadata(&path).map_or(true, |m| m.file_type().is_file());
    if !replace {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&json))
            .with_context(|| format!("cannot write {}", path.display()))?;
        tracing::info!(path = %path.display(), containers = evidence.containers.len(), "evidence written");
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &json).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot move {} into place", path.display()))?;
    tracing::info!(path = %path.display(), containers = evidence.containers.len(), "evidence written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence() -> Evidence {
        let t = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
        Evidence {
            node: "n".into(),
            agent: crate::evidence::AgentInfo::new("0", t),
            containers: Vec::new(),
            retired: Vec::new(),
            volumes: Vec::new(),
        }
    }

    #[test]
    fn regular_files_are_replaced_and_anything_else_written_into() {
        let dir = std::env::temp_dir().join(format!("tokenprobe-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("evidence.json");
        std::fs::write(&file, "old").expect("old");
        write_evidence(file.to_str().expect("utf-8"), &evidence()).expect("file");
        assert!(std::fs::read_to_string(&file).expect("read").contains("\"node\": \"n\""));
        assert!(!dir.join("evidence.tmp").exists());

        // A FIFO stands for /dev/null and /dev/stdout: written into, never replaced.
        let fifo = dir.join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).expect("read fifo"))
        };
        write_evidence(fifo.to_str().expect("utf-8"), &evidence()).expect("fifo");
        let kind = std::fs::symlink_metadata(&fifo).expect("still there").file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind), "the FIFO was replaced");
        assert!(reader.join().expect("reader").contains("\"node\": \"n\""));

        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        write_evidence(link.to_str().expect("utf-8"), &evidence()).expect("link");
        assert!(std::fs::symlink_metadata(&link).expect("link").file_type().is_symlink(), "the link was replaced");
        std::fs::remove_dir_all(&dir).ok();
    }
}
