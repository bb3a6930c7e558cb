//! `probe-agent run`: the `DaemonSet` agent. The [`crate::watch`] agent plus the cluster: pod
//! metadata from a node-scoped watch, API server addresses from the `kubernetes` Service,
//! publication as a `NodeTokenEvidence` object, and HTTP (`/metrics`, `/healthz`, `/readyz`,
//! `/v1/evidence`).

mod api;
pub mod http;
mod pods;
pub mod publish;
mod targets;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::sync::watch;

use crate::watch::{Agent, WatchConfig, WatchError};

/// What `run` needs beyond the agent's own configuration.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub watch: WatchConfig,
    /// How often the evidence is published (when it changed) and the liveness Lease renewed.
    pub publish_interval: Duration,
    /// The namespace of the node's liveness Lease (the agent's own).
    pub lease_namespace: String,
    /// How often the API server addresses are re-read (they are also re-read when the
    /// `kubernetes` Endpoints change).
    pub targets_refresh: Duration,
    /// Where to serve HTTP; `None`: no server.
    pub http_addr: Option<SocketAddr>,
}

/// Runs until `shutdown` resolves; then publishes once more, saves and detaches. `api` is the
/// cluster connection; the agent builds its own client from it (one that counts every answer).
///
/// # Errors
/// When the agent cannot start.
pub async fn run(config: RunConfig, api: kube::Config, shutdown: impl Future<Output = ()>) -> Result<(), WatchError> {
    let node = config.watch.node_name.clone();
    let stats = Arc::new(publish::PublishStats::default());
    let client = api::client(api, Arc::clone(&stats.api)).map_err(|e| WatchError::Client(e.to_string()))?;
    let mut watch_config = config.watch;
    watch_config.publish_interval = Some(config.publish_interval);
    let agent = Agent::start(watch_config).await?;
    let handle = agent.handle();
    let (synced_tx, synced_rx) = watch::channel(false);
    let (targets_tx, targets_rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(pods::follow(client.clone(), node.clone(), handle.clone(), synced_tx)),
        tokio::spawn(targets::follow(client.clone(), handle.clone(), config.targets_refresh, targets_tx)),
    ];
    let (publish_stop_tx, publish_stop_rx) = watch::channel(false);
    let publisher = publish::Publisher {
        client,
        node,
        lease_namespace: config.lease_namespace,
        interval: config.publish_interval,
        stats: Arc::clone(&stats),
        ready: vec![synced_rx.clone(), targets_rx],
    };
    let publisher = tokio::spawn(publisher.follow(handle.clone(), publish_stop_rx));
    if let Some(addr) = config.http_addr {
        let http_state =
            http::HttpState { handle: handle.clone(), publish: Some(Arc::clone(&stats)), ready: synced_rx };
        tasks.push(tokio::spawn(http::serve(addr, http_state)));
    }
    shutdown.await;
    tracing::info!("stopping: publishing once more and saving the evidence");
    if publish_stop_tx.send(true).is_err() {
        tracing::debug!("the publisher had already ended");
    }
    match tokio::time::timeout(Duration::from_secs(10), publisher).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "publisher ended badly"),
        Err(_) => tracing::warn!("the last publication did not finish in 10s; the saved state keeps the evidence"),
    }
    for t in &tasks {
        t.abort();
    }
    agent.stop().await.map(drop)
}
