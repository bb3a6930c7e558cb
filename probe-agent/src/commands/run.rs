//! `probe-agent run`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use probe_agent::{
    cli::parse_duration,
    run::{RunConfig, run as run_agent},
};

use super::agent_args::AgentArgs;

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
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    publish_interval: Duration,
    /// The namespace of the liveness Leases (the agent's own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = probe_agent::k8s::liveness::DEFAULT_NAMESPACE)]
    lease_namespace: String,
    /// Re-read the API server's addresses this often (also on changes).
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    targets_refresh: Duration,
    /// Serve /metrics, /healthz, /readyz and /v1/evidence here.
    #[arg(long, default_value = "0.0.0.0:9464")]
    http_addr: SocketAddr,
}

/// A client from a kubeconfig, else the in-cluster configuration or `$KUBECONFIG`.
pub async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Client> {
    Client::try_from(client_config(kubeconfig, None).await?).context("cannot build a Kubernetes client")
}

/// The client configuration: `kubeconfig` (else `$KUBECONFIG` or `~/.kube/config`, else
/// in-cluster), at its context `context` (else its current one) — as kubectl chooses.
pub async fn client_config(kubeconfig: Option<&PathBuf>, context: Option<&str>) -> anyhow::Result<Config> {
    let options = KubeConfigOptions { context: context.map(str::to_owned), ..KubeConfigOptions::default() };
    Ok(match (kubeconfig, context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("cannot read {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| format!("cannot use {}", path.display()))?
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("cannot use context {context} of $KUBECONFIG or ~/.kube/config"))?,
        (None, None) => Config::infer().await.context("no in-cluster configuration and no kubeconfig")?,
    })
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = client(args.kubeconfig.as_ref()).await?;
    let config = RunConfig {
        watch: args.agent.config(Some(args.node_name)),
        publish_interval: args.publish_interval,
        lease_namespace: args.lease_namespace,
        targets_refresh: args.targets_refresh,
        http_addr: Some(args.http_addr),
    };
    let signal = super::shutdown_signal().context("cannot handle signals")?;
    run_agent(config, client, signal).await.context("the agent failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_context_picks_the_cluster() {
        let dir = std::env::temp_dir().join(format!("tokenprobe-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
             clusters:\n- name: a\n  cluster: {server: 'https://127.0.0.1:6443'}\n- name: b\n  cluster: {server: 'https://127.0.0.2:7443'}\n\
             users:\n- name: u\n  user: {token: t}\n\
             contexts:\n- name: a\n  context: {cluster: a, user: u}\n- name: b\n  context: {cluster: b, user: u, namespace: team}\n",
        )
        .expect("kubeconfig");
        let current = client_config(Some(&path), None).await.expect("current context");
        assert_eq!(current.cluster_url.to_string(), "https://127.0.0.1:6443/");
        let b = client_config(Some(&path), Some("b")).await.expect("context b");
        assert_eq!(b.cluster_url.to_string(), "https://127.0.0.2:7443/");
        assert_eq!(b.default_namespace, "team");
        let missing = client_config(Some(&path), Some("nope")).await.expect_err("no such context");
        assert!(format!("{missing:#}").contains("nope"), "{missing:#}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
