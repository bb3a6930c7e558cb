//! Which pod template a pod was made from, and what a template declares.
//!
//! The planner may only count observation time of the workload's *current* template: pods of an
//! earlier revision say nothing about the pods the current template makes. A pod's revision is
//! what its controller records: the `pod-template-hash` label (`ReplicaSet`s of Deployments),
//! the `controller-revision-hash` label (`StatefulSet`s, `DaemonSet`s), or, for Jobs, which
//! record none, a fingerprint of the Job's pod template (the same fingerprint of a `CronJob`'s
//! `jobTemplate` tells which Jobs it makes now).

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Probe};

/// Label of pods (and `ReplicaSet`s) made by a Deployment.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Label of pods made by a `StatefulSet` or `DaemonSet` (and of their `ControllerRevision`s).
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// Annotation of a Deployment's `ReplicaSet`s: the rollout revision (the highest is current).
pub const DEPLOYMENT_REVISION: &str = "deployment.kubernetes.io/revision";

/// A stable fingerprint of a pod template's spec (`tpl-` and 16 hex digits): FNV-1a over its
/// JSON as the typed object serializes it, so the same spec read from a Job, a batch/v1 or a
/// batch/v1beta1 `CronJob` gives the same value.
#[must_use]
pub fn template_fingerprint(spec: &PodSpec) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let json = serde_json::to_vec(spec).unwrap_or_default();
    let hash = json.iter().fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME));
    format!("tpl-{hash:016x}")
}

/// The fingerprint of a pod spec given as JSON (a `CronJob` read without types); `None` when it
/// is not a pod spec.
#[must_use]
pub fn template_fingerprint_json(spec: &serde_json::Value) -> Option<String> {
    if spec.is_null() {
        return None;
    }
    serde_json::from_value::<PodSpec>(spec.clone()).ok().map(|s| template_fingerprint(&s))
}

/// The label a controller of `owner_kind` records its pods' template revision in.
#[must_use]
pub fn revision_label(owner_kind: &str) -> Option<&'static str> {
    match owner_kind {
        "ReplicaSet" => Some(POD_TEMPLATE_HASH),
        "StatefulSet" | "DaemonSet" => Some(CONTROLLER_REVISION_HASH),
        _ => None,
    }
}

/// The revision label a pod carries for a controller of `owner_kind` (its direct owner).
#[must_use]
pub fn label_revision(pod: &Pod, owner_kind: &str) -> Option<String> {
    pod.metadata.labels.as_ref()?.get(revision_label(owner_kind)?).cloned()
}

fn exec_probe(p: Option<&Probe>) -> bool {
    p.is_some_and(|p| p.exec.is_some())
}

fn container_exec_hooks(c: &Container) -> bool {
    let lifecycle = c.lifecycle.as_ref();
    exec_probe(c.liveness_probe.as_ref())
        || exec_probe(c.readiness_probe.as_ref())
        || exec_probe(c.startup_probe.as_ref())
        || lifecycle.and_then(|l| l.post_start.as_ref()).is_some_and(|h| h.exec.is_some())
        || lifecycle.and_then(|l| l.pre_stop.as_ref()).is_some_and(|h| h.exec.is_some())
}

/// Whether a pod spec declares any exec probe (liveness, readiness, startup) or exec lifecycle
/// hook (`postStart`, `preStop`). The kubelet runs those through the runtime's exec, which the
/// kernel sees exactly like `kubectl exec`: exec-session use of such a pod may be the
/// application's own.
#[must_use]
pub fn declares_exec_hooks(spec: &PodSpec) -> bool {
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(container_exec_hooks)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).expect("spec")
    }

    #[test]
    fn fingerprint_is_stable_and_tells_templates_apart() {
        let a = json!({"serviceAccountName": "backup", "containers": [{"name": "job", "image": "x:1"}]});
        let b = json!({"serviceAccountName": "backup", "containers": [{"name": "job", "image": "x:2"}]});
        let fa = template_fingerprint(&spec(a.clone()));
        assert!(fa.starts_with("tpl-") && fa.len() == 20, "{fa}");
        assert_eq!(template_fingerprint_json(&a).as_deref(), Some(fa.as_str()));
        // Key order in the input does not matter: the typed object serializes one way.
        let reordered = json!({"containers": [{"image": "x:1", "name": "job"}], "serviceAccountName": "backup"});
        assert_eq!(template_fingerprint_json(&reordered).as_deref(), Some(fa.as_str()));
        assert_ne!(template_fingerprint(&spec(b)), fa);
        assert_eq!(template_fingerprint_json(&serde_json::Value::Null), None);
        assert_eq!(template_fingerprint_json(&json!({"containers": 3})), None);
    }

    #[test]
    fn revision_labels_per_owner_kind() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"labels": {
            "pod-template-hash": "7d9f", "controller-revision-hash": "web-5c8d"}}}))
        .expect("pod");
        assert_eq!(label_revision(&pod, "ReplicaSet").as_deref(), Some("7d9f"));
        assert_eq!(label_revision(&pod, "StatefulSet").as_deref(), Some("web-5c8d"));
        assert_eq!(label_revision(&pod, "DaemonSet").as_deref(), Some("web-5c8d"));
        assert_eq!(label_revision(&pod, "Job"), None);
        assert_eq!(label_revision(&Pod::default(), "ReplicaSet"), None);
    }

    #[test]
    fn exec_probes_and_hooks_are_found_anywhere() {
        assert!(!declares_exec_hooks(&spec(json!({"containers": [{"name": "a",
            "livenessProbe": {"httpGet": {"port": 80}}}]}))));
        for container in [
            json!({"name": "a", "livenessProbe": {"exec": {"command": ["true"]}}}),
            json!({"name": "a", "readinessProbe": {"exec": {"command": ["true"]}}}),
            json!({"name": "a", "startupProbe": {"exec": {"command": ["true"]}}}),
            json!({"name": "a", "lifecycle": {"postStart": {"exec": {"command": ["true"]}}}}),
            json!({"name": "a", "lifecycle": {"preStop": {"exec": {"command": ["true"]}}}}),
        ] {
            assert!(
                declares_exec_hooks(&spec(json!({"containers": [{"name": "b"}, container.clone()]}))),
                "{container}"
            );
        }
        // A sidecar declared as an init container with an exec probe counts too.
        assert!(declares_exec_hooks(&spec(json!({"containers": [{"name": "b"}], "initContainers": [
            {"name": "proxy", "restartPolicy": "Always", "readinessProbe": {"exec": {"command": ["true"]}}}]}))));
    }
}
