//! The pods on this node, from a node-scoped watch, distilled and handed to the agent.

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::sync::watch;

use crate::{
    k8s::{
        owners::{OwnerIndex, resolve_live},
        podinfo::pod_info,
    },
    watch::{AgentHandle, PodEvent},
};

/// Follows the pods of `node` until the agent stops. `synced` turns true after the first full
/// listing (readiness).
pub(super) async fn follow(client: Client, node: String, handle: AgentHandle, synced: watch::Sender<bool>) {
    let api: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(api, config).default_backoff().modify(|pod| pod.managed_fields_mut().clear()).boxed();
    let mut owners = OwnerIndex::default();
    loop {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(e) => {
                // The backoff retries; say it once per failure.
                tracing::warn!(error = %e, "pod watch failed; retrying");
                continue;
            }
        };
        let sent = match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                upsert(&client, &mut owners, &handle, &pod).await
            }
            watcher::Event::Delete(pod) => match pod.metadata.uid {
                Some(uid) => handle.pod(PodEvent::Delete(uid)).await,
                None => Ok(()),
            },
            watcher::Event::InitDone => {
                synced.send_replace(true);
                Ok(())
            }
            watcher::Event::Init => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}

async fn upsert(
    client: &Client,
    owners: &mut OwnerIndex,
    handle: &AgentHandle,
    pod: &Pod,
) -> Result<(), crate::watch::WatchError> {
    let workload = match resolve_live(client, owners, pod).await {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(pod = %pod.name_any(), error = %e, "cannot resolve the pod's owners; workload unknown for now");
            None
        }
    };
    match pod_info(pod, workload, owners.revision(pod)) {
        Some(info) => handle.pod(PodEvent::Upsert(Box::new(info))).await,
        None => Ok(()),
    }
}
