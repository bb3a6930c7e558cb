//! What the agent needs to know about a pod on its node, distilled from the Pod object.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use time::OffsetDateTime;

use super::automount;
use crate::evidence::Workload;

/// A container as the pod's status names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: String,
    /// When it started (second resolution), if running or ran.
    pub started_at: Option<OffsetDateTime>,
    /// The container id it replaced when restarted in place (`lastState.terminated`).
    pub previous_id: Option<String>,
}

/// A pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub service_account: Option<String>,
    pub workload: Option<Workload>,
    /// The pod template revision it was made from (see [`super::revision`]).
    pub revision: Option<String>,
    /// `Pending`, `Running`, `Succeeded`, `Failed` (as the status says).
    pub phase: Option<String>,
    /// By container id (without the `containerd://` prefix).
    pub containers: HashMap<String, ContainerMeta>,
    /// The automount volume the spec has (`kube-api-access-*`), if any.
    pub automount_volume: Option<String>,
    /// Other projected volumes with a token.
    pub other_token_volumes: Vec<String>,
    /// `spec.runtimeClassName`.
    pub runtime_class: Option<String>,
}

/// `containerd://abc` → `abc` (also `cri-o://`, `docker://`).
#[must_use]
pub fn container_id(raw: &str) -> &str {
    raw.split_once("://").map_or(raw, |(_, id)| id)
}

fn started_at(status: &ContainerStatus) -> Option<OffsetDateTime> {
    let state = status.state.as_ref()?;
    let time = state
        .running
        .as_ref()
        .and_then(|r| r.started_at.as_ref())
        .or_else(|| state.terminated.as_ref().and_then(|t| t.started_at.as_ref()))?;
    OffsetDateTime::from_unix_timestamp(time.0.as_second()).ok()
}

/// Distils a pod, with what the owner chain said of it; `None` without a UID.
#[must_use]
pub fn pod_info(pod: &Pod, workload: Option<Workload>, revision: Option<String>) -> Option<PodInfo> {
    let uid = pod.metadata.uid.clone()?;
    let mut containers = HashMap::new();
    if let Some(status) = &pod.status {
        let all = [&status.container_statuses, &status.init_container_statuses, &status.ephemeral_container_statuses];
        for s in all.into_iter().flatten().flatten() {
            if let Some(id) = &s.container_id {
                let previous =
                    s.last_state.as_ref().and_then(|l| l.terminated.as_ref()).and_then(|t| t.container_id.as_deref());
                containers.insert(
                    container_id(id).to_owned(),
                    ContainerMeta {
                        name: s.name.clone(),
                        started_at: started_at(s),
                        previous_id: previous.filter(|p| !p.is_empty()).map(|p| container_id(p).to_owned()),
                    },
                );
            }
        }
    }
    Some(PodInfo {
        uid,
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        service_account: pod.spec.as_ref().map(|s| s.service_account_name.clone().unwrap_or_else(|| "default".into())),
        workload,
        revision,
        phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
        containers,
        automount_volume: automount::automount_volume(pod).map(|v| v.name.clone()),
        other_token_volumes: automount::other_token_volumes(pod).into_iter().map(str::to_owned).collect(),
        runtime_class: pod.spec.as_ref().and_then(|s| s.runtime_class_name.clone()),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn distils_containers_and_volumes() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "0f4a3c2e-1b2d-4c5e-8f90-123456789abc"},
            "spec": {"serviceAccountName": "web", "containers": [{"name": "app"}, {"name": "proxy"}], "volumes": [
                {"name": "kube-api-access-x", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt"}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
                {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {"path": "istio-token", "audience": "istio-ca"}}]}}
            ]},
            "status": {
                "containerStatuses": [
                    {"name": "app", "containerID": "containerd://aaa", "image": "", "imageID": "", "ready": true, "restartCount": 1,
                     "state": {"running": {"startedAt": "2026-11-28T12:00:00Z"}},
                     "lastState": {"terminated": {"exitCode": 1, "containerID": "containerd://a00"}}},
                    {"name": "proxy", "containerID": "cri-o://bbb", "image": "", "imageID": "", "ready": true, "restartCount": 0}
                ],
                "initContainerStatuses": [
                    {"name": "init", "containerID": "containerd://ccc", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": 0, "startedAt": "2026-11-28T11:59:50Z"}}}
                ]
            }
        }))
        .unwrap();
        let info =
            pod_info(&pod, Some(Workload { kind: "Deployment".into(), name: "web".into() }), Some("7d9f".into()))
                .unwrap();
        assert_eq!(info.revision.as_deref(), Some("7d9f"));
        assert_eq!(info.phase, None);
        assert_eq!(info.service_account.as_deref(), Some("web"));
        assert_eq!(info.containers["aaa"].name, "app");
        assert_eq!(info.containers["aaa"].started_at.map(OffsetDateTime::unix_timestamp), Some(1_795_867_200));
        assert_eq!(info.containers["aaa"].previous_id.as_deref(), Some("a00"), "restarted in place");
        assert_eq!(info.containers["bbb"].name, "proxy");
        assert_eq!(info.containers["bbb"].previous_id, None);
        assert_eq!(info.containers["bbb"].started_at, None);
        assert_eq!(info.containers["ccc"].name, "init");
        assert_eq!(info.automount_volume.as_deref(), Some("kube-api-access-x"));
        assert_eq!(info.other_token_volumes, vec!["istio-token"]);
        assert_eq!(container_id("abc"), "abc");
    }
}
