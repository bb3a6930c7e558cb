//! Pod → owner chain → workload: `ReplicaSet` → Deployment, Job → `CronJob`, `StatefulSet`,
//! `DaemonSet`, bare pods.
//!
//! The chain is resolved by a pure function over an [`OwnerIndex`] (the controller reference of
//! each intermediate object); the live agent fills the index with GETs as it meets new owners,
//! the offline planner from `kubectl get -o json` files.

use std::collections::HashMap;

use k8s_openapi::{
    api::{apps::v1::ReplicaSet, batch::v1::Job, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{Api, Client};

use super::revision;
use crate::evidence::Workload;

/// The controlling owner reference of an object (the first owner when none is marked).
#[must_use]
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    let owners = meta.owner_references.as_deref()?;
    owners.iter().find(|o| o.controller == Some(true)).or_else(|| owners.first())
}

/// Kinds whose owner the index must know to resolve a chain.
const INTERMEDIATE: [&str; 2] = ["ReplicaSet", "Job"];

/// An indexed object's kind and its controller.
type Owned = (String, Option<OwnerReference>);

/// Controller references of intermediate objects, by (kind, namespace, name). `None`: the
/// object exists and has no owner, or is gone.
#[derive(Debug, Default, Clone)]
pub struct OwnerIndex {
    /// namespace → name → (kind, controller): looked up without allocating.
    owners: HashMap<String, HashMap<String, Vec<Owned>>>,
    /// Pod-template fingerprints of Jobs, by (namespace, name): a Job pod's revision.
    job_templates: HashMap<(String, String), String>,
}

impl OwnerIndex {
    pub fn insert(&mut self, kind: &str, namespace: &str, meta: &ObjectMeta) {
        if let Some(name) = &meta.name {
            self.put(kind, namespace, name, controller_of(meta).cloned());
        }
    }

    /// Indexes an object by its controller's kind and name (what the planner's records keep).
    pub fn insert_controller(&mut self, kind: &str, namespace: &str, name: &str, controller: Option<(&str, &str)>) {
        let owner = controller.map(|(kind, name)| OwnerReference {
            kind: kind.to_owned(),
            name: name.to_owned(),
            controller: Some(true),
            ..OwnerReference::default()
        });
        self.put(kind, namespace, name, owner);
    }

    fn put(&mut self, kind: &str, namespace: &str, name: &str, owner: Option<OwnerReference>) {
        let kinds = self.owners.entry(namespace.to_owned()).or_default().entry(name.to_owned()).or_default();
        match kinds.iter_mut().find(|(k, _)| k == kind) {
            Some((_, slot)) => *slot = owner,
            None => kinds.push((kind.to_owned(), owner)),
        }
    }

    /// Indexes a Job: its owner and its pod template's fingerprint.
    pub fn insert_job(&mut self, job: &Job) {
        let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
        self.insert("Job", namespace, &job.metadata);
        if let (Some(name), Some(spec)) = (&job.metadata.name, job.spec.as_ref().and_then(|s| s.template.spec.as_ref()))
        {
            self.job_templates.insert((namespace.to_owned(), name.clone()), revision::template_fingerprint(spec));
        }
    }

    /// The pod template revision a pod was made from (see [`revision`]): its controller's label,
    /// or its Job's template fingerprint. `None` for bare pods, unknown owners and Jobs not
    /// indexed.
    #[must_use]
    pub fn revision(&self, pod: &Pod) -> Option<String> {
        let owner = controller_of(&pod.metadata)?;
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.revision_of(namespace, (&owner.kind, &owner.name), |kind| revision::label_revision(pod, kind))
    }

    /// [`OwnerIndex::revision`] of a pod in `namespace` whose controller is `(kind, name)`;
    /// `label` gives the revision label the pod carries for a controller kind.
    #[must_use]
    pub fn revision_of(
        &self,
        namespace: &str,
        (kind, name): (&str, &str),
        label: impl FnOnce(&str) -> Option<String>,
    ) -> Option<String> {
        if kind == "Job" {
            return self.job_templates.get(&(namespace.to_owned(), name.to_owned())).cloned();
        }
        label(kind)
    }

    fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&Option<OwnerReference>> {
        self.owners.get(namespace)?.get(name)?.iter().find(|(k, _)| k == kind).map(|(_, owner)| owner)
    }

    /// What the index needs to resolve `pod` and does not hold yet: (kind, name).
    #[must_use]
    pub fn missing(&self, pod: &Pod) -> Option<(String, String)> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let owner = controller_of(&pod.metadata)?;
        self.missing_of(namespace, (&owner.kind, &owner.name))
    }

    /// [`OwnerIndex::missing`] for a pod in `namespace` whose controller is `(kind, name)`.
    #[must_use]
    pub fn missing_of(&self, namespace: &str, (kind, name): (&str, &str)) -> Option<(String, String)> {
        (INTERMEDIATE.contains(&kind) && self.get(kind, namespace, name).is_none())
            .then(|| (kind.to_owned(), name.to_owned()))
    }

    /// The workload a pod belongs to. Unknown intermediates resolve to themselves.
    #[must_use]
    pub fn workload(&self, pod: &Pod) -> Workload {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let owner = controller_of(&pod.metadata).map(|o| (o.kind.as_str(), o.name.as_str()));
        self.workload_of(namespace, pod.metadata.name.as_deref().unwrap_or_default(), owner)
    }

    /// [`OwnerIndex::workload`] of the pod `name` in `namespace` with controller `(kind, name)`.
    #[must_use]
    pub fn workload_of(&self, namespace: &str, pod_name: &str, controller: Option<(&str, &str)>) -> Workload {
        let Some((kind, name)) = controller else {
            return Workload { kind: "Pod".into(), name: pod_name.to_owned() };
        };
        if INTERMEDIATE.contains(&kind)
            && let Some(Some(top)) = self.get(kind, namespace, name)
        {
            return Workload { kind: top.kind.clone(), name: top.name.clone() };
        }
        Workload { kind: kind.to_owned(), name: name.to_owned() }
    }
}

/// Fetches what `index` lacks to resolve `pod` (one GET at most) and returns its workload.
///
/// # Errors
/// API errors other than the intermediate object being gone.
pub async fn resolve_live(client: &Client, index: &mut OwnerIndex, pod: &Pod) -> Result<Workload, kube::Error> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some((kind, name)) = index.missing(pod) {
        let meta = match kind.as_str() {
            "ReplicaSet" => {
                Api::<ReplicaSet>::namespaced(client.clone(), &namespace).get_opt(&name).await?.map(|o| o.metadata)
            }
            _ => match Api::<Job>::namespaced(client.clone(), &namespace).get_opt(&name).await? {
                Some(job) => {
                    index.insert_job(&job);
                    return Ok(index.workload(pod));
                }
                None => None,
            },
        };
        let meta = meta.unwrap_or_else(|| ObjectMeta { name: Some(name), ..ObjectMeta::default() });
        index.insert(&kind, &namespace, &meta);
    }
    Ok(index.workload(pod))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(name: &str, owner: Option<(&str, &str)>) -> ObjectMeta {
        serde_json::from_value(json!({
            "name": name, "namespace": "ns",
            "ownerReferences": owner.map(|(kind, n)| vec![json!({"apiVersion": "x/v1", "kind": kind, "name": n, "uid": "u", "controller": true})])
        }))
        .unwrap()
    }

    fn pod(owner: Option<(&str, &str)>) -> Pod {
        Pod { metadata: meta("p", owner), ..Pod::default() }
    }

    #[test]
    fn chains() {
        let mut index = OwnerIndex::default();
        let deployment_pod = pod(Some(("ReplicaSet", "web-5d9c")));
        assert_eq!(index.missing(&deployment_pod), Some(("ReplicaSet".into(), "web-5d9c".into())));
        assert_eq!(index.workload(&deployment_pod), Workload { kind: "ReplicaSet".into(), name: "web-5d9c".into() });
        index.insert("ReplicaSet", "ns", &meta("web-5d9c", Some(("Deployment", "web"))));
        assert_eq!(index.missing(&deployment_pod), None);
        assert_eq!(index.workload(&deployment_pod), Workload { kind: "Deployment".into(), name: "web".into() });

        index.insert("Job", "ns", &meta("backup-2890", Some(("CronJob", "backup"))));
        assert_eq!(
            index.workload(&pod(Some(("Job", "backup-2890")))),
            Workload { kind: "CronJob".into(), name: "backup".into() }
        );
        index.insert("Job", "ns", &meta("oneoff", None));
        assert_eq!(
            index.workload(&pod(Some(("Job", "oneoff")))),
            Workload { kind: "Job".into(), name: "oneoff".into() }
        );
        for kind in ["StatefulSet", "DaemonSet"] {
            let p = pod(Some((kind, "db")));
            assert_eq!(index.missing(&p), None);
            assert_eq!(index.workload(&p), Workload { kind: kind.into(), name: "db".into() });
        }
        assert_eq!(index.workload(&pod(None)), Workload { kind: "Pod".into(), name: "p".into() });
    }

    #[test]
    fn controller_reference_wins_over_others() {
        let m: ObjectMeta = serde_json::from_value(json!({"name": "x", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "1"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}
        ]}))
        .unwrap();
        assert_eq!(controller_of(&m).map(|o| o.name.as_str()), Some("b"));
    }
}
