//! API server addresses from the cluster, refreshed when the `kubernetes` Endpoints change and
//! periodically.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Endpoints;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt as _, watcher},
};

use crate::{k8s::endpoints::api_server_targets, watch::AgentHandle};

/// `tried` turns true once the first lookup ended (found or not).
pub(super) async fn follow(
    client: Client,
    handle: AgentHandle,
    refresh: Duration,
    tried: tokio::sync::watch::Sender<bool>,
) {
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let mut changes =
        watcher(endpoints, watcher::Config::default().fields("metadata.name=kubernetes")).default_backoff().boxed();
    loop {
        match api_server_targets(&client).await {
            Ok(found) => match handle.set_targets(found.all()).await {
                Ok(not_watched) if not_watched.is_empty() => {
                    tracing::debug!(targets = ?found.all(), source = ?found.source, "API server addresses");
                }
                Ok(not_watched) => {
                    tracing::error!(?not_watched, "API server addresses not watched: the target map is full");
                }
                Err(_) => return,
            },
            Err(e) => tracing::warn!(error = %e, "cannot read the API server's addresses; keeping the previous ones"),
        }
        tried.send_replace(true);
        tokio::select! {
            () = tokio::time::sleep(refresh) => {}
            event = changes.next() => if event.is_none() {
                tokio::time::sleep(refresh).await;
            },
        }
    }
}
