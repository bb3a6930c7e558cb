//! Whether a pod gets the service-account token mounted: the pod's
//! `automountServiceAccountToken`, else its `ServiceAccount`'s, else true — and whether the pod
//! really has the admission-injected volume.

use k8s_openapi::api::core::v1::{Pod, ServiceAccount, Volume};

/// Where the effective setting comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    Pod,
    ServiceAccount,
    Default,
}

/// The effective automount setting of a pod and where it comes from.
#[must_use]
pub fn effective(pod: &Pod, service_account: Option<&ServiceAccount>) -> (bool, Source) {
    effective_of(pod.spec.as_ref().and_then(|s| s.automount_service_account_token), service_account)
}

/// [`effective`] from the pod's own `automountServiceAccountToken` field.
#[must_use]
pub fn effective_of(pod_field: Option<bool>, service_account: Option<&ServiceAccount>) -> (bool, Source) {
    if let Some(v) = pod_field {
        return (v, Source::Pod);
    }
    if let Some(v) = service_account.and_then(|sa| sa.automount_service_account_token) {
        return (v, Source::ServiceAccount);
    }
    (true, Source::Default)
}

/// Whether a volume is the current automount volume: a projected volume named
/// `kube-api-access-*` with a service-account token, the `kube-root-ca.crt` `ConfigMap` and the
/// namespace from the downward API.
#[must_use]
pub fn is_automount_volume(volume: &Volume) -> bool {
    let Some(projected) = &volume.projected else { return false };
    let sources = projected.sources.as_deref().unwrap_or_default();
    let token = sources.iter().any(|s| s.service_account_token.is_some());
    let ca = sources.iter().any(|s| s.config_map.as_ref().is_some_and(|c| c.name == "kube-root-ca.crt"));
    let namespace = sources.iter().any(|s| s.downward_api.is_some());
    token && ca && namespace && volume.name.starts_with("kube-api-access-")
}

/// The pod's automount volume, if it has one: the `kube-api-access-*` projected volume, or, on
/// clusters without bound tokens (the `BoundServiceAccountTokenVolume` feature off, before
/// Kubernetes 1.21), the Secret volume a container mounts at the service-account path (the
/// ServiceAccount's token Secret). A Secret merely *named* like a token Secret is not it.
#[must_use]
pub fn automount_volume(pod: &Pod) -> Option<&Volume> {
    let spec = pod.spec.as_ref()?;
    let volumes = spec.volumes.as_ref()?;
    if let Some(v) = volumes.iter().find(|v| is_automount_volume(v)) {
        return Some(v);
    }
    let mounted_at_sa_path: Vec<&str> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .filter(|m| crate::mountinfo::SA_PATHS.contains(&m.mount_path.trim_end_matches('/')))
        .map(|m| m.name.as_str())
        .collect();
    volumes.iter().find(|v| v.secret.is_some() && mounted_at_sa_path.contains(&v.name.as_str()))
}

/// Projected volumes other than the automount one that carry a service-account token (custom
/// audiences, Istio, Vault): automount does not control them.
#[must_use]
pub fn other_token_volumes(pod: &Pod) -> Vec<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter(|v| automount_volume(pod).is_none_or(|a| a.name != v.name))
        .filter(|v| {
            v.projected.as_ref().is_some_and(|p| {
                p.sources.as_deref().unwrap_or_default().iter().any(|s| s.service_account_token.is_some())
            })
        })
        .map(|v| v.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodSpec, ProjectedVolumeSource, VolumeProjection};
    use serde_json::json;

    use super::*;

    #[expect(clippy::needless_pass_by_value, reason = "callers build the JSON inline")]
    fn pod(automount: Option<bool>, volumes: serde_json::Value) -> Pod {
        let mut spec: PodSpec = serde_json::from_value(json!({"containers": [], "volumes": volumes})).unwrap();
        spec.automount_service_account_token = automount;
        Pod { spec: Some(spec), ..Pod::default() }
    }

    fn sa(automount: Option<bool>) -> ServiceAccount {
        ServiceAccount { automount_service_account_token: automount, ..ServiceAccount::default() }
    }

    fn kube_api_access() -> serde_json::Value {
        json!({"name": "kube-api-access-abcde", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
        ]}})
    }

    #[test]
    fn pod_field_overrides_service_account_both_ways() {
        assert_eq!(effective(&pod(None, json!([])), None), (true, Source::Default));
        assert_eq!(effective(&pod(None, json!([])), Some(&sa(None))), (true, Source::Default));
        assert_eq!(effective(&pod(None, json!([])), Some(&sa(Some(false)))), (false, Source::ServiceAccount));
        assert_eq!(effective(&pod(Some(true), json!([])), Some(&sa(Some(false)))), (true, Source::Pod));
        assert_eq!(effective(&pod(Some(false), json!([])), Some(&sa(Some(true)))), (false, Source::Pod));
    }

    #[test]
    fn recognises_the_automount_volume_and_other_token_volumes() {
        let istio = json!({"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {"path": "istio-token", "audience": "istio-ca"}}]}});
        let p = pod(None, json!([kube_api_access(), istio, {"name": "data", "emptyDir": {}}]));
        assert_eq!(automount_volume(&p).map(|v| v.name.as_str()), Some("kube-api-access-abcde"));
        assert_eq!(other_token_volumes(&p), vec!["istio-token"]);
        // A look-alike that only projects a token is not the automount volume.
        let fake = Volume {
            name: "kube-api-access-fake".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(serde_json::from_value(json!({"path": "token"})).unwrap()),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        };
        assert!(!is_automount_volume(&fake));
        // Clusters without bound tokens: the ServiceAccount's token Secret mounted at the
        // service-account path.
        let mut legacy =
            pod(None, json!([{"name": "default-token-x7k2p", "secret": {"secretName": "default-token-x7k2p"}}]));
        legacy.spec.as_mut().unwrap().containers = serde_json::from_value(json!([{"name": "app",
            "volumeMounts": [{"name": "default-token-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}]))
        .unwrap();
        assert_eq!(automount_volume(&legacy).map(|v| v.name.as_str()), Some("default-token-x7k2p"));
        // A Secret merely named like a token Secret, mounted elsewhere, is not the automount volume.
        let mut named = legacy.clone();
        named.spec.as_mut().unwrap().containers[0].volume_mounts.as_mut().unwrap()[0].mount_path =
            "/etc/ci-token".into();
        assert!(automount_volume(&named).is_none());
        assert!(automount_volume(&pod(None, json!([]))).is_none());
    }
}
