//! `probe-agent run`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    cli::parse_duration,
    run::{RunConfig, run as run_agent},
};
use anyhow::Context as _;

use super::{agent_args::AgentArgs, kubeconfig::client_config};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// This node's name (from the downward API: `spec.nodeName`).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// A kubeconfig (default: in-cluster configuration, else `$KUBECONFIG`/`~/.kube/config`).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Publish the evidence this often (when it changed) and renew the node's liveness Lease.
    /// The planner distrusts a node whose Lease went three intervals without renewal.
    #[arg(long, env = "TOKENPROBE_PUBLISH_INTERVAL", value_parser = parse_duration, default_value = "60s")]
    publish_interval: Duration,
    /// The namespace of the liveness Leases (the agent's own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = crate::k8s::liveness::DEFAULT_NAMESPACE)]
    lease_namespace: String,
    /// Re-read the API server's addresses this often (also on changes).
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    targets_refresh: Duration,
    /// Serve /metrics, /healthz, /readyz and /v1/evidence here.
    #[arg(long, default_value = "0.0.0.0:9464")]
    http_addr: SocketAddr,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let api = client_config(args.kubeconfig.as_ref(), None).await?;
    let config = RunConfig {
        watch: args.agent.config(Some(args.node_name)),
        publish_interval: args.publish_interval,
        lease_namespace: args.lease_namespace,
        targets_refresh: args.targets_refresh,
        http_addr: Some(args.http_addr),
    };
    let signal = super::shutdown_signal().context("cannot handle signals")?;
    run_agent(config, api, signal).await.context("the agent failed")
}
