//! `probe-agent audit-sink`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;

use crate::{
    auditsink::{SinkConfig, serve},
    cli::parse_duration,
};

#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// Where the API server's audit webhook posts its batches (plain HTTP: put TLS in front, or
    /// listen where only the API server reaches it).
    #[arg(long, default_value = "0.0.0.0:9466")]
    listen: SocketAddr,
    /// The `TokenAuditEvidence` object to keep the totals in.
    #[arg(long, default_value = "audit-sink")]
    name: String,
    /// Write the totals this often.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    flush_interval: Duration,
    /// Drop a pod's or ServiceAccount's totals this long after its last request (the planner's
    /// `--retention` for gone workloads is 30d too).
    #[arg(long, value_parser = parse_duration, default_value = "720h")]
    retention: Duration,
    /// Keep at most this many pods (the least recently seen go first; the object says how many
    /// went).
    #[arg(long, default_value_t = 20_000)]
    max_pods: usize,
    /// A kubeconfig (default: in-cluster configuration, else `$KUBECONFIG`/`~/.kube/config`).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

pub async fn sink(args: SinkArgs) -> anyhow::Result<()> {
    let config = super::kubeconfig::client_config(args.kubeconfig.as_ref(), None).await?;
    let client = kube::Client::try_from(config).context("cannot build a Kubernetes client")?;
    let sink = SinkConfig {
        listen: args.listen,
        name: args.name,
        flush_interval: args.flush_interval,
        retention: args.retention,
        max_pods: args.max_pods,
    };
    let signal = super::shutdown_signal().context("cannot handle signals")?;
    serve(sink, client, signal).await.with_context(|| format!("cannot listen on {}", args.listen))
}
