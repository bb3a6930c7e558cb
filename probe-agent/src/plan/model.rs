//! The planner's view of the cluster: workloads with their pod template setting, their current
//! pods, and the evidence of every container that ran for them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::PodSpec;

use super::{Inputs, WorkloadRef};
use crate::{
    evidence::{AgentInfo, ContainerEvidence, RetiredTotals},
    k8s::{automount, owners::OwnerIndex},
};

/// A current pod of a workload.
#[derive(Debug, Clone)]
pub(super) struct PodView<'a> {
    pub name: String,
    pub node: Option<String>,
    pub has_automount_volume: bool,
    /// Names of its (regular) containers.
    pub containers: Vec<String>,
    /// Evidence entries of its containers (init containers included).
    pub entries: Vec<&'a ContainerEvidence>,
}

/// A workload and everything known about it.
#[derive(Debug, Clone)]
pub(super) struct WorkloadView<'a> {
    pub workload: WorkloadRef,
    /// The pod template's field.
    pub template_field: Option<bool>,
    pub service_account: String,
    /// Replicas the object asks for (`None`: unknown, count the pods).
    pub expected_replicas: Option<u64>,
    pub pods: Vec<PodView<'a>>,
    /// Entries of containers of pods that no longer exist (earlier replicas, finished runs).
    pub past: Vec<&'a ContainerEvidence>,
    pub retired: Vec<&'a RetiredTotals>,
}

pub(super) struct Model<'a> {
    pub workloads: BTreeMap<WorkloadRef, WorkloadView<'a>>,
    /// (namespace, name) → the ServiceAccount's field; present for every known ServiceAccount.
    pub service_accounts: BTreeMap<(String, String), Option<bool>>,
    /// Agent header per node.
    pub agents: HashMap<String, &'a AgentInfo>,
}

fn template(spec: Option<&PodSpec>) -> (Option<bool>, String) {
    (
        spec.and_then(|s| s.automount_service_account_token),
        spec.and_then(|s| s.service_account_name.clone()).filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into()),
    )
}

fn view(workload: WorkloadRef, spec: Option<&PodSpec>, expected: Option<u64>) -> WorkloadView<'static> {
    let (template_field, service_account) = template(spec);
    WorkloadView {
        workload,
        template_field,
        service_account,
        expected_replicas: expected,
        pods: Vec::new(),
        past: Vec::new(),
        retired: Vec::new(),
    }
}

fn namespaced(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, kind: &str) -> WorkloadRef {
    WorkloadRef {
        namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
        kind: kind.to_owned(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

fn replicas(r: Option<i32>) -> Option<u64> {
    u64::try_from(r.unwrap_or(1)).ok()
}

impl<'a> Model<'a> {
    /// The workloads the objects declare, and the owner index of their intermediates.
    fn declared(inputs: &'a Inputs) -> (BTreeMap<WorkloadRef, WorkloadView<'a>>, OwnerIndex) {
        let mut workloads: BTreeMap<WorkloadRef, WorkloadView<'a>> = BTreeMap::new();
        for d in &inputs.deployments {
            let r = namespaced(&d.metadata, "Deployment");
            let spec = d.spec.as_ref();
            workloads.insert(
                r.clone(),
                view(r, spec.and_then(|s| s.template.spec.as_ref()), replicas(spec.and_then(|s| s.replicas))),
            );
        }
        for s in &inputs.stateful_sets {
            let r = namespaced(&s.metadata, "StatefulSet");
            let spec = s.spec.as_ref();
            workloads.insert(
                r.clone(),
                view(r, spec.and_then(|s| s.template.spec.as_ref()), replicas(spec.and_then(|s| s.replicas))),
            );
        }
        for d in &inputs.daemon_sets {
            let r = namespaced(&d.metadata, "DaemonSet");
            let desired = d.status.as_ref().and_then(|s| u64::try_from(s.desired_number_scheduled).ok());
            workloads.insert(r.clone(), view(r, d.spec.as_ref().and_then(|s| s.template.spec.as_ref()), desired));
        }
        for c in &inputs.cron_jobs {
            let r = namespaced(&c.metadata, "CronJob");
            let mut v = view(r.clone(), None, None);
            v.template_field = c.automount;
            v.service_account = c.service_account.clone().unwrap_or_else(|| "default".into());
            workloads.insert(r, v);
        }
        let mut owners = OwnerIndex::default();
        for rs in &inputs.replica_sets {
            owners.insert("ReplicaSet", rs.metadata.namespace.as_deref().unwrap_or_default(), &rs.metadata);
        }
        for j in &inputs.jobs {
            owners.insert("Job", j.metadata.namespace.as_deref().unwrap_or_default(), &j.metadata);
            let standalone = crate::k8s::owners::controller_of(&j.metadata).is_none_or(|o| o.kind != "CronJob");
            if standalone {
                let r = namespaced(&j.metadata, "Job");
                workloads
                    .entry(r.clone())
                    .or_insert_with(|| view(r, j.spec.as_ref().and_then(|s| s.template.spec.as_ref()), None));
            }
        }
        (workloads, owners)
    }

    pub(super) fn build(inputs: &'a Inputs) -> Self {
        let (mut workloads, owners) = Self::declared(inputs);
        let mut by_uid: HashMap<&str, Vec<&'a ContainerEvidence>> = HashMap::new();
        let mut agents = HashMap::new();
        for ev in &inputs.evidence {
            agents.insert(ev.node.clone(), &ev.agent);
            for c in &ev.containers {
                if let Some(uid) = c.pod_uid.as_deref() {
                    by_uid.entry(uid).or_default().push(c);
                }
            }
        }

        let mut current: BTreeSet<&str> = BTreeSet::new();
        for pod in &inputs.pods {
            let Some(uid) = pod.metadata.uid.as_deref() else { continue };
            let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let workload = owners.workload(pod);
            let r = WorkloadRef::new(&namespace, &workload);
            let spec = pod.spec.as_ref();
            let v = workloads.entry(r.clone()).or_insert_with(|| {
                let expected = (workload.kind == "Pod").then_some(1);
                view(r, spec, expected)
            });
            current.insert(uid);
            v.pods.push(PodView {
                name: pod.metadata.name.clone().unwrap_or_default(),
                node: spec.and_then(|s| s.node_name.clone()),
                has_automount_volume: automount::automount_volume(pod).is_some(),
                containers: spec.map(|s| s.containers.iter().map(|c| c.name.clone()).collect()).unwrap_or_default(),
                entries: by_uid.get(uid).cloned().unwrap_or_default(),
            });
        }

        // Containers of pods that are gone: earlier replicas, finished runs.
        for (uid, entries) in &by_uid {
            if current.contains(uid) {
                continue;
            }
            for e in entries {
                if let (Some(ns), Some(w)) = (&e.namespace, &e.workload)
                    && let Some(v) = workloads.get_mut(&WorkloadRef::new(ns, w))
                {
                    v.past.push(e);
                }
            }
        }
        for ev in &inputs.evidence {
            for r in &ev.retired {
                if let (Some(ns), Some(w)) = (&r.namespace, &r.workload)
                    && let Some(v) = workloads.get_mut(&WorkloadRef::new(ns, w))
                {
                    v.retired.push(r);
                }
            }
        }

        let mut service_accounts = BTreeMap::new();
        for sa in &inputs.service_accounts {
            service_accounts.insert(
                (sa.metadata.namespace.clone().unwrap_or_default(), sa.metadata.name.clone().unwrap_or_default()),
                sa.automount_service_account_token,
            );
        }
        Self { workloads, service_accounts, agents }
    }

    /// The ServiceAccount field a workload follows (`None`: unset or the SA is unknown).
    pub(super) fn service_account_field(&self, v: &WorkloadView<'_>) -> Option<bool> {
        self.service_accounts.get(&(v.workload.namespace.clone(), v.service_account.clone())).copied().flatten()
    }

    /// Whether the workload's pods get the token: template field, else SA field, else true.
    pub(super) fn effective(&self, v: &WorkloadView<'_>) -> bool {
        v.template_field.or_else(|| self.service_account_field(v)).unwrap_or(true)
    }
}
