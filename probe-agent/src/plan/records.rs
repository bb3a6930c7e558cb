//! Compact records of the kinds a big cluster has hundreds of thousands of — Pods, `ReplicaSet`s,
//! Deployments — holding only what the planner judges by. Objects are reduced to records as they
//! are read (files item by item, live pages), so a cluster's size in memory is the records',
//! not the objects'.
//!
//! Every record is made by one function from the typed object ([`PodRecord::of`] and the
//! like), the same for objects read in full and objects read through the lean parsing types
//! below, so both paths judge alike (a test pins it).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet},
        core::v1::{Container, ContainerStatus, Lifecycle, Pod, PodSpec, PodStatus, Probe, Volume, VolumeMount},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use serde::Deserialize;

use crate::k8s::{
    automount,
    owners::controller_of,
    podinfo::container_id,
    revision::{self, CONTROLLER_REVISION_HASH, DEPLOYMENT_REVISION, POD_TEMPLATE_HASH},
};

/// An object's controller: (kind, name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub kind: String,
    pub name: String,
}

fn controller(meta: &ObjectMeta) -> Option<Controller> {
    controller_of(meta).map(|o| Controller { kind: o.kind.clone(), name: o.name.clone() })
}

fn label(meta: &ObjectMeta, key: &str) -> Option<String> {
    meta.labels.as_ref()?.get(key).cloned()
}

/// What a pod template (or a pod's spec) says about the token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateFacts {
    /// `automountServiceAccountToken` of the template.
    pub automount: Option<bool>,
    /// Its ServiceAccount (`default` when unset).
    pub service_account: String,
    /// Exec probes or exec lifecycle hooks.
    pub exec_hooks: bool,
}

impl TemplateFacts {
    #[must_use]
    pub fn of(spec: Option<&PodSpec>) -> Self {
        Self {
            automount: spec.and_then(|s| s.automount_service_account_token),
            service_account: spec
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
            exec_hooks: spec.is_some_and(revision::declares_exec_hooks),
        }
    }
}

/// A container a pod's status lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusContainer {
    pub name: String,
    /// Without the runtime prefix; `None` while it has not started.
    pub id: Option<String>,
}

/// A pod, as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub controller: Option<Controller>,
    pub pod_template_hash: Option<String>,
    pub controller_revision_hash: Option<String>,
    pub node: Option<String>,
    pub template: TemplateFacts,
    pub has_automount_volume: bool,
    pub phase: Option<String>,
    /// Regular containers, then init containers that ran (those with an id); `None` when the
    /// pod has no status listing containers.
    pub containers: Option<Vec<StatusContainer>>,
    /// The spec's container names.
    pub spec_containers: Vec<String>,
    /// Its addresses (`status.podIPs`, else `podIP`), to match unauthenticated requests in the
    /// audit log to it.
    pub ips: Vec<String>,
    /// `status.startTime`.
    pub started: Option<time::OffsetDateTime>,
}

fn pod_ips(status: &k8s_openapi::api::core::v1::PodStatus) -> Vec<String> {
    match &status.pod_ips {
        Some(ips) if !ips.is_empty() => ips.iter().map(|i| i.ip.clone()).collect(),
        _ => status.pod_ip.iter().cloned().collect(),
    }
}

impl PodRecord {
    /// The record of a pod; `None` for a pod without a UID (not a real object).
    #[must_use]
    pub fn of(pod: &Pod) -> Option<Self> {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        Some(Self {
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone()?,
            controller: controller(meta),
            pod_template_hash: label(meta, POD_TEMPLATE_HASH),
            controller_revision_hash: label(meta, CONTROLLER_REVISION_HASH),
            node: spec.and_then(|s| s.node_name.clone()),
            template: TemplateFacts::of(spec),
            has_automount_volume: automount::automount_volume(pod).is_some(),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            containers: status_containers(pod.status.as_ref()),
            spec_containers: spec.map(|s| s.containers.iter().map(|c| c.name.clone()).collect()).unwrap_or_default(),
            ips: pod.status.as_ref().map(pod_ips).unwrap_or_default(),
            started: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.0.as_second()).ok()),
        })
    }

    /// One of the revision labels it keeps (`None` for any other key).
    #[must_use]
    pub fn label(&self, key: &str) -> Option<&str> {
        match key {
            POD_TEMPLATE_HASH => self.pod_template_hash.as_deref(),
            CONTROLLER_REVISION_HASH => self.controller_revision_hash.as_deref(),
            _ => None,
        }
    }

    /// The revision label its controller of `kind` records (see [`revision::label_revision`]).
    #[must_use]
    pub fn label_revision(&self, owner_kind: &str) -> Option<&str> {
        self.label(revision::revision_label(owner_kind)?)
    }
}

/// The containers a pod runs or ran, from its status — its containers and the init containers
/// that ran (those with a container id; init containers that ran before the agent attached, e.g.
/// at node boot, are exactly the ones that copy tokens); `None` when the status lists none.
fn status_containers(status: Option<&PodStatus>) -> Option<Vec<StatusContainer>> {
    let status = status?;
    let statuses = status.container_statuses.as_ref()?;
    let id_of = |s: &ContainerStatus| {
        s.container_id.as_deref().filter(|id| !id.is_empty()).map(|id| container_id(id).to_owned())
    };
    let mut out: Vec<StatusContainer> =
        statuses.iter().map(|s| StatusContainer { name: s.name.clone(), id: id_of(s) }).collect();
    for s in status.init_container_statuses.iter().flatten() {
        if let Some(id) = id_of(s) {
            out.push(StatusContainer { name: s.name.clone(), id: Some(id) });
        }
    }
    Some(out)
}

/// A `ReplicaSet`: its owner, and the revision and template hash of a Deployment's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSetRecord {
    pub namespace: String,
    pub name: String,
    pub controller: Option<Controller>,
    pub pod_template_hash: Option<String>,
    /// `deployment.kubernetes.io/revision`.
    pub revision: Option<u64>,
}

impl ReplicaSetRecord {
    #[must_use]
    pub fn of(rs: &ReplicaSet) -> Option<Self> {
        let meta = &rs.metadata;
        Some(Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
            controller: controller(meta),
            pod_template_hash: label(meta, POD_TEMPLATE_HASH),
            revision: meta.annotations.as_ref().and_then(|a| a.get(DEPLOYMENT_REVISION)).and_then(|r| r.parse().ok()),
        })
    }
}

/// A Deployment: its template's facts and whether its rollout has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    pub namespace: String,
    pub name: String,
    pub template: TemplateFacts,
    /// `spec.replicas` (`None`: unset, which means 1).
    pub replicas: Option<i32>,
    /// Its status shows the rollout of its current generation finished.
    pub settled: bool,
}

impl DeploymentRecord {
    #[must_use]
    pub fn of(d: &Deployment) -> Self {
        let spec = d.spec.as_ref();
        let want = spec.and_then(|s| s.replicas).unwrap_or(1);
        let settled = d.status.as_ref().is_some_and(|s| {
            s.observed_generation >= d.metadata.generation
                && s.updated_replicas == Some(want)
                && s.replicas == Some(want)
        });
        Self {
            namespace: d.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: d.metadata.name.clone().unwrap_or_default(),
            template: TemplateFacts::of(spec.and_then(|s| s.template.spec.as_ref())),
            replicas: spec.and_then(|s| s.replicas),
            settled,
        }
    }
}

/// Lean parsing types: the fields of a Pod that [`PodRecord::of`] reads, and nothing else, so a
/// pod is read without allocating its environment, images, resources or conditions. They are
/// turned into a (sparse) typed Pod, so the record is made by the same function as from a
/// full one.
pub mod lean {
    use k8s_openapi::api::core::v1::{ExecAction, LifecycleHandler, ProjectedVolumeSource, SecretVolumeSource};

    use super::{
        BTreeMap, Container, ContainerStatus, Deserialize, Lifecycle, ObjectMeta, OwnerReference, Pod, PodSpec,
        PodStatus, Probe, Volume, VolumeMount,
    };

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Meta {
        name: Option<String>,
        namespace: Option<String>,
        uid: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        owner_references: Option<Vec<OwnerReference>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct LeanContainer {
        name: String,
        liveness_probe: Option<LeanHandler>,
        readiness_probe: Option<LeanHandler>,
        startup_probe: Option<LeanHandler>,
        lifecycle: Option<LeanLifecycle>,
        volume_mounts: Option<Vec<VolumeMount>>,
    }

    /// A probe or a lifecycle hook: whether it execs is all the record reads.
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct LeanHandler {
        exec: Option<serde::de::IgnoredAny>,
    }

    impl LeanHandler {
        fn exec(&self) -> Option<ExecAction> {
            self.exec.map(|_| ExecAction::default())
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct LeanLifecycle {
        post_start: Option<LeanHandler>,
        pre_stop: Option<LeanHandler>,
    }

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Spec {
        node_name: Option<String>,
        service_account_name: Option<String>,
        automount_service_account_token: Option<bool>,
        containers: Vec<LeanContainer>,
        init_containers: Option<Vec<LeanContainer>>,
        volumes: Option<Vec<LeanVolume>>,
    }

    /// A volume: its name, its projections, whether it is a Secret's (all the record reads;
    /// the typed `Volume` is large to move about).
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct LeanVolume {
        name: String,
        projected: Option<ProjectedVolumeSource>,
        secret: Option<serde::de::IgnoredAny>,
    }

    impl From<LeanVolume> for Volume {
        fn from(v: LeanVolume) -> Self {
            Self {
                name: v.name,
                projected: v.projected,
                secret: v.secret.map(|_| SecretVolumeSource::default()),
                ..Self::default()
            }
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct LeanStatus {
        name: String,
        #[serde(rename = "containerID")]
        container_id: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Status {
        phase: Option<String>,
        container_statuses: Option<Vec<LeanStatus>>,
        init_container_statuses: Option<Vec<LeanStatus>>,
        #[serde(rename = "podIP")]
        pod_ip: Option<String>,
        #[serde(rename = "podIPs")]
        pod_ips: Option<Vec<k8s_openapi::api::core::v1::PodIP>>,
        start_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    }

    /// A Pod read for its record only.
    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct LeanPod {
        metadata: Meta,
        spec: Option<Spec>,
        status: Option<Status>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Template {
        spec: Option<Spec>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct DeploymentSpec {
        replicas: Option<i32>,
        template: Template,
    }

    /// A Deployment read for its record only (its template's facts, replicas, rollout status).
    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct LeanDeployment {
        metadata: ObjectMeta,
        spec: Option<DeploymentSpec>,
        status: Option<k8s_openapi::api::apps::v1::DeploymentStatus>,
    }

    impl From<LeanDeployment> for k8s_openapi::api::apps::v1::Deployment {
        fn from(d: LeanDeployment) -> Self {
            Self {
                metadata: d.metadata,
                spec: d.spec.map(|s| k8s_openapi::api::apps::v1::DeploymentSpec {
                    replicas: s.replicas,
                    template: k8s_openapi::api::core::v1::PodTemplateSpec {
                        metadata: None,
                        spec: s.template.spec.map(PodSpec::from),
                    },
                    ..k8s_openapi::api::apps::v1::DeploymentSpec::default()
                }),
                status: d.status,
            }
        }
    }

    /// A `ReplicaSet` read for its record only (its metadata).
    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct LeanReplicaSet {
        metadata: ObjectMeta,
    }

    impl From<LeanReplicaSet> for k8s_openapi::api::apps::v1::ReplicaSet {
        fn from(r: LeanReplicaSet) -> Self {
            Self { metadata: r.metadata, ..Self::default() }
        }
    }

    fn container(c: LeanContainer) -> Container {
        let probe = |p: Option<LeanHandler>| p.map(|p| Probe { exec: p.exec(), ..Probe::default() });
        let hook =
            |h: Option<LeanHandler>| h.map(|h| LifecycleHandler { exec: h.exec(), ..LifecycleHandler::default() });
        Container {
            name: c.name,
            liveness_probe: probe(c.liveness_probe),
            readiness_probe: probe(c.readiness_probe),
            startup_probe: probe(c.startup_probe),
            lifecycle: c.lifecycle.map(|l| Lifecycle {
                post_start: hook(l.post_start),
                pre_stop: hook(l.pre_stop),
                ..Lifecycle::default()
            }),
            volume_mounts: c.volume_mounts,
            ..Container::default()
        }
    }

    fn statuses(s: Option<Vec<LeanStatus>>) -> Option<Vec<ContainerStatus>> {
        s.map(|s| {
            s.into_iter()
                .map(|s| ContainerStatus { name: s.name, container_id: s.container_id, ..ContainerStatus::default() })
                .collect()
        })
    }

    impl From<Spec> for PodSpec {
        fn from(s: Spec) -> Self {
            Self {
                node_name: s.node_name,
                service_account_name: s.service_account_name,
                automount_service_account_token: s.automount_service_account_token,
                containers: s.containers.into_iter().map(container).collect(),
                init_containers: s.init_containers.map(|c| c.into_iter().map(container).collect()),
                volumes: s.volumes.map(|v| v.into_iter().map(Volume::from).collect()),
                ..Self::default()
            }
        }
    }

    impl From<LeanPod> for Pod {
        fn from(p: LeanPod) -> Self {
            Self {
                metadata: ObjectMeta {
                    name: p.metadata.name,
                    namespace: p.metadata.namespace,
                    uid: p.metadata.uid,
                    labels: p.metadata.labels,
                    owner_references: p.metadata.owner_references,
                    ..ObjectMeta::default()
                },
                spec: p.spec.map(PodSpec::from),
                status: p.status.map(|s| PodStatus {
                    phase: s.phase,
                    container_statuses: statuses(s.container_statuses),
                    init_container_statuses: statuses(s.init_container_statuses),
                    pod_ip: s.pod_ip,
                    pod_ips: s.pod_ips,
                    start_time: s.start_time,
                    ..PodStatus::default()
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A pod with everything the record reads and much it does not.
    fn rich() -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-7d9f-abcde", "namespace": "shop", "uid": "u-1", "resourceVersion": "9",
                "labels": {"app": "web", "pod-template-hash": "7d9f", "controller-revision-hash": "x"},
                "annotations": {"a": "b"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f", "uid": "r", "controller": true}]},
            "spec": {"nodeName": "n1", "serviceAccountName": "web", "automountServiceAccountToken": true,
                "containers": [{"name": "app", "image": "x", "env": [{"name": "A", "value": "1"}],
                    "readinessProbe": {"exec": {"command": ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"]}},
                    "volumeMounts": [{"name": "legacy", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
                "initContainers": [{"name": "init", "lifecycle": {"postStart": {"exec": {"command": ["true"]}}}}],
                "volumes": [{"name": "legacy", "secret": {"secretName": "web-token-abcde"}},
                    {"name": "vault", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "audience": "vault"}}]}}],
                "tolerations": [{"key": "k", "operator": "Exists"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "app", "containerID": "containerd://abc", "image": "x", "imageID": "y", "ready": true, "restartCount": 0}],
                "initContainerStatuses": [{"name": "init", "containerID": "containerd://def", "image": "x", "imageID": "y", "ready": false, "restartCount": 0},
                    {"name": "never", "image": "x", "imageID": "", "ready": false, "restartCount": 0}]}})
    }

    #[test]
    fn lean_and_full_reading_make_the_same_record() {
        let bound = json!({"metadata": {"uid": "u-2"}, "spec": {"containers": [{"name": "app",
                "livenessProbe": {"httpGet": {"path": "/", "port": 80}}, "startupProbe": {"exec": null},
                "lifecycle": {"preStop": {"httpGet": {"port": 80}}},
                "volumeMounts": [{"name": "kube-api-access-x1y2z", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
            "volumes": [{"name": "kube-api-access-x1y2z", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
                {"name": "cache", "emptyDir": {}}]}});
        for pod in [
            rich(),
            bound.clone(),
            json!({"metadata": {"uid": "u"}}),
            json!({"metadata": {"uid": "u"}, "spec": {"containers": []}}),
        ] {
            let full: Pod = serde_json::from_value(pod.clone()).expect("full");
            let lean: Pod = serde_json::from_value::<lean::LeanPod>(pod).expect("lean").into();
            assert_eq!(PodRecord::of(&lean), PodRecord::of(&full));
        }
        let b = PodRecord::of(&Pod::from(serde_json::from_value::<lean::LeanPod>(bound).expect("lean"))).expect("uid");
        assert!(b.has_automount_volume, "the kube-api-access projected volume");
        assert!(!b.template.exec_hooks, "HTTP probes and hooks, and a null exec, do not exec");
        let r = PodRecord::of(&Pod::from(serde_json::from_value::<lean::LeanPod>(rich()).expect("lean"))).expect("uid");
        assert!(r.has_automount_volume, "the legacy token Secret mounted at the service-account path");
        assert!(r.template.exec_hooks);
        assert_eq!(r.template.automount, Some(true));
        assert_eq!(r.controller, Some(Controller { kind: "ReplicaSet".into(), name: "web-7d9f".into() }));
        let ids: Vec<Option<&str>> = r.containers.as_ref().expect("status").iter().map(|c| c.id.as_deref()).collect();
        assert_eq!(ids, [Some("abc"), Some("def")], "init containers that never ran are not expected");
    }

    #[test]
    fn lean_and_full_workloads_make_the_same_records() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": 4, "annotations": {"x": "y"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"serviceAccountName": "web", "automountServiceAccountToken": false,
                    "containers": [{"name": "app", "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}}}]}}},
            "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3}});
        let full: Deployment = serde_json::from_value(d.clone()).expect("full");
        let lean: Deployment = serde_json::from_value::<lean::LeanDeployment>(d).expect("lean").into();
        let record = DeploymentRecord::of(&lean);
        assert_eq!(record, DeploymentRecord::of(&full));
        assert!(record.settled && record.template.exec_hooks && record.template.automount == Some(false));
        let rs = json!({"metadata": {"name": "web-1", "namespace": "shop", "labels": {"pod-template-hash": "1"},
            "annotations": {"deployment.kubernetes.io/revision": "7"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u", "controller": true}]},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "app"}]}}}});
        let full: ReplicaSet = serde_json::from_value(rs.clone()).expect("full");
        let lean: ReplicaSet = serde_json::from_value::<lean::LeanReplicaSet>(rs).expect("lean").into();
        assert_eq!(ReplicaSetRecord::of(&lean), ReplicaSetRecord::of(&full));
        assert_eq!(ReplicaSetRecord::of(&lean).and_then(|r| r.revision), Some(7));
    }

    #[test]
    fn a_pod_without_uid_has_no_record() {
        assert_eq!(PodRecord::of(&Pod::default()), None);
    }
}
