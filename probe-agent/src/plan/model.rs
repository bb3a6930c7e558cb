//! The planner's view of the cluster: workloads with their pod template setting and current
//! revision, their current pods and the containers those run, the evidence of every container
//! that ran for them (with the node that reported it), the nodes' agents and when each last
//! proved alive, and the use by workloads that no longer exist.

use std::collections::{BTreeMap, BTreeSet};

/// Hash maps keyed by the cluster's names and UIDs, hundreds of thousands of them: a fast
/// (randomly seeded) hash rather than the default `SipHash`.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use time::OffsetDateTime;

use super::{
    Inputs, WorkloadRef,
    records::{DeploymentRecord, PodRecord, ReplicaSetRecord, TemplateFacts},
};
use crate::{
    auditlog::{PodRequests, ServiceAccountRequests},
    evidence::{AgentInfo, ContainerEvidence, RetiredTotals},
    k8s::{
        liveness,
        owners::{OwnerIndex, controller_of},
        revision::{self, CONTROLLER_REVISION_HASH},
    },
};

/// An evidence entry and the node whose agent reported it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry<'a> {
    pub node: &'a str,
    pub e: &'a ContainerEvidence,
    /// Its pod is reported by more than one node. A pod runs on one node, so all but one of
    /// them speak for a pod that is not theirs; for a pod that is gone the planner cannot tell
    /// which: such entries show use but never vouch for non-use.
    pub disputed: bool,
}

/// A current pod of a workload: its record (fields read through it), its revision and its
/// evidence.
#[derive(Debug, Clone)]
pub(super) struct PodView<'a> {
    pub record: &'a PodRecord,
    /// Its pod template revision (see [`crate::k8s::revision`]).
    pub revision: Option<String>,
    /// Evidence entries of its containers, from any node.
    pub entries: Vec<Entry<'a>>,
}

impl std::ops::Deref for PodView<'_> {
    type Target = PodRecord;

    fn deref(&self) -> &PodRecord {
        self.record
    }
}

impl PodView<'_> {
    /// Entries from the pod's own node (only those may say "not used").
    pub fn own_entries(&self) -> impl Iterator<Item = &Entry<'_>> {
        self.entries.iter().filter(|en| Some(en.node) == self.node.as_deref())
    }
}

/// Which pod template revision is the workload's current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Revision {
    Known(String),
    /// Kinds without a revision (bare pods, controllers tokenprobe does not know): only the
    /// current pods are the current template.
    EachPod,
    /// It cannot be told (the reason says why).
    Unknown(String),
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
    pub current: Revision,
    /// The pod template (or a current pod) declares exec probes or exec lifecycle hooks.
    pub exec_hooks: bool,
    pub pods: Vec<PodView<'a>>,
    /// Entries of containers of pods that no longer exist (earlier replicas, finished runs).
    pub past: Vec<Entry<'a>>,
    pub retired: Vec<(&'a str, &'a RetiredTotals)>,
}

impl WorkloadView<'_> {
    /// Whether a revision is the current template's (`current_pod`: it is a current pod's).
    pub fn is_current(&self, revision: Option<&str>, current_pod: bool) -> bool {
        match &self.current {
            Revision::Known(r) => revision == Some(r.as_str()),
            Revision::EachPod => current_pod,
            Revision::Unknown(_) => false,
        }
    }
}

/// A node's agent and when it last proved alive.
#[derive(Debug, Clone)]
pub(super) struct NodeView<'a> {
    pub agent: &'a AgentInfo,
    /// The Lease's renewal, else the evidence's `generatedAt`.
    pub last_report: Option<OffsetDateTime>,
    pub from_lease: bool,
    /// How long a report holds.
    pub valid_seconds: u64,
}

/// Evidence of a workload that no longer exists, by the `ServiceAccount` it ran under.
#[derive(Debug, Clone)]
pub(super) struct GoneEntry<'a> {
    pub node: &'a str,
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub workload: String,
    pub container: &'a str,
    pub token_reads: u64,
    pub api_connects: u64,
    pub file_reads: u64,
    pub exec: u64,
    pub last_seen: Option<OffsetDateTime>,
}

pub(super) struct Model<'a> {
    pub workloads: BTreeMap<WorkloadRef, WorkloadView<'a>>,
    /// Requests the audit log attributes to each workload's pods (current or earlier).
    pub audit: BTreeMap<WorkloadRef, Vec<&'a PodRequests>>,
    /// Requests of pods that belong to no current workload, with the workload's name where an
    /// agent's evidence tells it.
    pub audit_gone: Vec<(String, &'a PodRequests)>,
    /// Everything the audit log said (`--audit-log`).
    pub audit_all: Option<&'a crate::auditlog::AuditEvidence>,
    /// Requests by ServiceAccounts with tokens bound to no pod, by (namespace, name).
    pub audit_unbound: BTreeMap<(String, String), &'a ServiceAccountRequests>,
    /// (namespace, name) → the ServiceAccount's field; present for every known ServiceAccount.
    pub service_accounts: BTreeMap<(String, String), Option<bool>>,
    pub nodes: HashMap<&'a str, NodeView<'a>>,
    /// Entries and retired totals of workloads not among the current ones.
    pub gone: Vec<GoneEntry<'a>>,
}

fn view(
    workload: WorkloadRef,
    spec: Option<&PodSpec>,
    expected: Option<u64>,
    current: Revision,
) -> WorkloadView<'static> {
    view_of(workload, TemplateFacts::of(spec), expected, current)
}

fn view_of(
    workload: WorkloadRef,
    facts: TemplateFacts,
    expected: Option<u64>,
    current: Revision,
) -> WorkloadView<'static> {
    WorkloadView {
        workload,
        template_field: facts.automount,
        service_account: facts.service_account,
        expected_replicas: expected,
        current,
        exec_hooks: facts.exec_hooks,
        pods: Vec::new(),
        past: Vec::new(),
        retired: Vec::new(),
    }
}

fn namespaced(meta: &ObjectMeta, kind: &str) -> WorkloadRef {
    WorkloadRef {
        namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
        kind: kind.to_owned(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

fn replicas(r: Option<i32>) -> Option<u64> {
    u64::try_from(r.unwrap_or(1)).ok()
}

fn label<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// Whether `meta`'s controller is the `kind` named like `owner`.
fn owned_by(meta: &ObjectMeta, kind: &str, owner: &ObjectMeta) -> bool {
    meta.namespace == owner.namespace
        && controller_of(meta).is_some_and(|o| o.kind == kind && Some(&o.name) == owner.name.as_ref())
}

/// The one label value every current pod of a workload carries (for controllers whose status
/// says the rollout is complete).
fn sole_label(pods: &[&PodRecord], key: &str) -> Option<String> {
    let values: BTreeSet<&str> = pods.iter().filter_map(|p| p.label(key)).collect();
    (values.len() == 1 && pods.iter().all(|p| p.label(key).is_some()))
        .then(|| values.into_iter().next().map(str::to_owned))
        .flatten()
}

/// The current pods of each workload, by its reference (computed before the views, so the
/// revision fallbacks can look at them).
type PodsBy<'p> = HashMap<WorkloadRef, Vec<&'p PodRecord>>;

/// The newest `ReplicaSet` revision of each Deployment, by (namespace, name): (revision,
/// pod-template-hash).
type NewestReplicaSets<'r> = HashMap<(&'r str, &'r str), (u64, &'r str)>;

fn newest_replica_sets<'r>(replica_sets: impl Iterator<Item = &'r ReplicaSetRecord>) -> NewestReplicaSets<'r> {
    let mut newest: NewestReplicaSets<'r> = HashMap::default();
    for rs in replica_sets {
        let (Some(owner), Some(n), Some(hash)) = (&rs.controller, rs.revision, rs.pod_template_hash.as_deref()) else {
            continue;
        };
        if owner.kind != "Deployment" {
            continue;
        }
        let slot = newest.entry((rs.namespace.as_str(), owner.name.as_str())).or_insert((n, hash));
        // Ties keep the later one, as the typed reading always did.
        if n >= slot.0 {
            *slot = (n, hash);
        }
    }
    newest
}

fn deployment_revision(newest: &NewestReplicaSets<'_>, d: &DeploymentRecord, pods: &[&PodRecord]) -> Revision {
    if let Some((_, hash)) = newest.get(&(d.namespace.as_str(), d.name.as_str())) {
        return Revision::Known((*hash).to_owned());
    }
    match sole_label(pods, revision::POD_TEMPLATE_HASH) {
        Some(hash) if d.settled => Revision::Known(hash),
        _ => Revision::Unknown(
            "cannot tell the Deployment's current pod template: no ReplicaSet of it with a revision in the inputs, and its status does not show a finished rollout".into(),
        ),
    }
}

fn daemon_set_revision(inputs: &Inputs, d: &k8s_openapi::api::apps::v1::DaemonSet, pods: &[&PodRecord]) -> Revision {
    let newest = inputs
        .controller_revisions
        .iter()
        .filter(|cr| owned_by(&cr.metadata, "DaemonSet", &d.metadata))
        .filter_map(|cr| Some((cr.revision, label(&cr.metadata, CONTROLLER_REVISION_HASH)?)))
        .max_by_key(|(n, _)| *n);
    if let Some((_, hash)) = newest {
        return Revision::Known(hash.to_owned());
    }
    let settled = d.status.as_ref().is_some_and(|s| {
        s.observed_generation >= d.metadata.generation && s.updated_number_scheduled == Some(s.desired_number_scheduled)
    });
    match sole_label(pods, CONTROLLER_REVISION_HASH) {
        Some(hash) if settled => Revision::Known(hash),
        _ => Revision::Unknown(
            "cannot tell the DaemonSet's current pod template: no ControllerRevision of it in the inputs, and its status does not show a finished rollout".into(),
        ),
    }
}

impl<'a> Model<'a> {
    /// The workloads the objects declare.
    fn declared(inputs: &'a Inputs, pods_by: &PodsBy<'_>) -> BTreeMap<WorkloadRef, WorkloadView<'a>> {
        let mut workloads: BTreeMap<WorkloadRef, WorkloadView<'a>> = BTreeMap::new();
        let pods_of = |r: &WorkloadRef| pods_by.get(r).map(Vec::as_slice).unwrap_or_default();
        let newest = newest_replica_sets(inputs.replica_set_records.iter());
        for d in &inputs.deployment_records {
            let r = WorkloadRef::new(
                &d.namespace,
                &crate::evidence::Workload { kind: "Deployment".into(), name: d.name.clone() },
            );
            let current = deployment_revision(&newest, d, pods_of(&r));
            workloads.insert(r.clone(), view_of(r, d.template.clone(), replicas(d.replicas), current));
        }
        for s in &inputs.stateful_sets {
            let r = namespaced(&s.metadata, "StatefulSet");
            let spec = s.spec.as_ref();
            let current = s.status.as_ref().and_then(|st| st.update_revision.clone()).map_or_else(
                || {
                    Revision::Unknown(
                        "cannot tell the StatefulSet's current pod template: its status has no updateRevision".into(),
                    )
                },
                Revision::Known,
            );
            let template = spec.and_then(|s| s.template.spec.as_ref());
            workloads.insert(r.clone(), view(r, template, replicas(spec.and_then(|s| s.replicas)), current));
        }
        for d in &inputs.daemon_sets {
            let r = namespaced(&d.metadata, "DaemonSet");
            let desired = d.status.as_ref().and_then(|s| u64::try_from(s.desired_number_scheduled).ok());
            let current = daemon_set_revision(inputs, d, pods_of(&r));
            let template = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
            workloads.insert(r.clone(), view(r, template, desired, current));
        }
        for c in &inputs.cron_jobs {
            let r = namespaced(&c.metadata, "CronJob");
            let current = c
                .template_fingerprint
                .clone()
                .map_or_else(|| Revision::Unknown("cannot read the CronJob's pod template".into()), Revision::Known);
            let mut v = view(r.clone(), None, None, current);
            v.template_field = c.automount;
            v.service_account = c.service_account.clone().unwrap_or_else(|| "default".into());
            v.exec_hooks = c.exec_hooks;
            workloads.insert(r, v);
        }
        for j in &inputs.jobs {
            let standalone = controller_of(&j.metadata).is_none_or(|o| o.kind != "CronJob");
            if standalone {
                let r = namespaced(&j.metadata, "Job");
                let template = j.spec.as_ref().and_then(|s| s.template.spec.as_ref());
                let current = template.map_or_else(
                    || Revision::Unknown("the Job has no pod template".into()),
                    |t| Revision::Known(revision::template_fingerprint(t)),
                );
                workloads.entry(r.clone()).or_insert_with(|| view(r, template, None, current));
            }
        }
        workloads
    }

    /// Builds the model of `inputs` — typed pods, `ReplicaSet`s and Deployments reduced to
    /// records first (see [`Inputs::as_records`]) — and hands it to `f`.
    pub(super) fn with<R>(inputs: &Inputs, f: impl FnOnce(&Model<'_>) -> R) -> R {
        match inputs.as_records() {
            Some(records) => f(&Model::build(&records)),
            None => f(&Model::build(inputs)),
        }
    }

    /// The model of inputs whose pods, `ReplicaSet`s and Deployments are all records.
    fn build(inputs: &'a Inputs) -> Self {
        debug_assert!(inputs.pods.is_empty() && inputs.replica_sets.is_empty() && inputs.deployments.is_empty());
        let mut owners = OwnerIndex::default();
        for rs in &inputs.replica_set_records {
            let controller = rs.controller.as_ref().map(|c| (c.kind.as_str(), c.name.as_str()));
            owners.insert_controller("ReplicaSet", &rs.namespace, &rs.name, controller);
        }
        for j in &inputs.jobs {
            owners.insert_job(j);
        }
        let mut pods_by: PodsBy<'a> = HashMap::default();
        for pod in &inputs.pod_records {
            let c = pod.controller.as_ref().map(|c| (c.kind.as_str(), c.name.as_str()));
            let workload = owners.workload_of(&pod.namespace, &pod.name, c);
            pods_by.entry(WorkloadRef::new(&pod.namespace, &workload)).or_default().push(pod);
        }
        let mut workloads = Self::declared(inputs, &pods_by);

        let nodes = nodes(inputs);
        let mut by_uid: HashMap<&str, Vec<Entry<'a>>> = HashMap::default();
        for ev in &inputs.evidence {
            for c in &ev.containers {
                if let Some(uid) = c.pod_uid.as_deref() {
                    by_uid.entry(uid).or_default().push(Entry { node: &ev.node, e: c, disputed: false });
                }
            }
        }
        for entries in by_uid.values_mut() {
            if entries.iter().any(|en| en.node != entries[0].node) {
                for en in entries.iter_mut() {
                    en.disputed = true;
                }
            }
        }

        let mut current: HashSet<&str> = HashSet::default();
        for (r, pods) in pods_by {
            let v = workloads.entry(r.clone()).or_insert_with(|| {
                let facts = pods.first().map_or_else(|| TemplateFacts::of(None), |p| p.template.clone());
                let expected = (r.kind == "Pod").then_some(1);
                // A ReplicaSet or Job standing for itself because it is missing from the inputs:
                // the workload that owns it is unknown.
                let missing = pods.iter().find_map(|p| {
                    p.controller.as_ref().and_then(|c| owners.missing_of(&p.namespace, (&c.kind, &c.name)))
                });
                let current = match missing {
                    Some((kind, name)) => Revision::Unknown(format!(
                        "its {kind} {name} is not in the inputs: cannot tell which workload owns the pods, nor its current template"
                    )),
                    None => Revision::EachPod,
                };
                view_of(r, facts, expected, current)
            });
            for pod in pods {
                current.insert(pod.uid.as_str());
                v.exec_hooks |= pod.template.exec_hooks;
                let revision = pod.controller.as_ref().and_then(|c| {
                    owners.revision_of(&pod.namespace, (&c.kind, &c.name), |kind| {
                        pod.label_revision(kind).map(str::to_owned)
                    })
                });
                v.pods.push(PodView {
                    record: pod,
                    revision,
                    entries: by_uid.get(pod.uid.as_str()).cloned().unwrap_or_default(),
                });
            }
        }

        let gone = attach_past(inputs, &mut workloads, &by_uid, &current);
        let (audit, audit_gone) = join_audit(inputs, &workloads);

        let mut service_accounts = BTreeMap::new();
        for sa in &inputs.service_accounts {
            service_accounts.insert(
                (sa.metadata.namespace.clone().unwrap_or_default(), sa.metadata.name.clone().unwrap_or_default()),
                sa.automount_service_account_token,
            );
        }
        let audit_unbound = inputs
            .audit
            .iter()
            .flat_map(|a| a.service_accounts.values())
            .map(|u| ((u.namespace.clone(), u.service_account.clone()), u))
            .collect();
        Self {
            workloads,
            audit,
            audit_gone,
            audit_all: inputs.audit.as_ref(),
            audit_unbound,
            service_accounts,
            nodes,
            gone,
        }
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

/// Each node's agent and when it last proved alive: its Lease when there is one, else its
/// evidence's `generatedAt`.
fn nodes(inputs: &Inputs) -> HashMap<&str, NodeView<'_>> {
    let mut nodes: HashMap<&str, NodeView<'_>> = HashMap::default();
    for ev in &inputs.evidence {
        let interval = ev.agent.publish_interval_seconds.unwrap_or(60);
        nodes.insert(
            ev.node.as_str(),
            NodeView {
                agent: &ev.agent,
                last_report: ev.agent.generated_at,
                from_lease: false,
                valid_seconds: interval.saturating_mul(liveness::STALE_AFTER_INTERVALS),
            },
        );
    }
    for live in inputs.leases.iter().filter_map(liveness::read) {
        if let Some(n) = nodes.get_mut(live.node.as_str()) {
            n.last_report = Some(live.renewed);
            n.from_lease = true;
            n.valid_seconds = live.valid_seconds;
        }
    }
    nodes
}

/// Attaches containers of pods that are gone (earlier replicas, finished runs) and retired
/// totals to their workloads; returns those of workloads that are gone too.
fn attach_past<'a>(
    inputs: &'a Inputs,
    workloads: &mut BTreeMap<WorkloadRef, WorkloadView<'a>>,
    by_uid: &HashMap<&str, Vec<Entry<'a>>>,
    current: &HashSet<&str>,
) -> Vec<GoneEntry<'a>> {
    let mut gone = Vec::new();
    for (uid, entries) in by_uid {
        if current.contains(uid) {
            continue;
        }
        for en in entries {
            let attached = match (&en.e.namespace, &en.e.workload) {
                (Some(ns), Some(w)) => workloads.get_mut(&WorkloadRef::new(ns, w)),
                _ => None,
            };
            match attached {
                Some(v) => v.past.push(*en),
                None => gone.extend(gone_entry(en.node, en.e)),
            }
        }
    }
    for ev in &inputs.evidence {
        for r in &ev.retired {
            let attached = match (&r.namespace, &r.workload) {
                (Some(ns), Some(w)) => workloads.get_mut(&WorkloadRef::new(ns, w)),
                _ => None,
            };
            match attached {
                Some(v) => v.retired.push((ev.node.as_str(), r)),
                None => gone.extend(gone_retired(&ev.node, r)),
            }
        }
    }
    gone
}

/// Joins the audit log's pods to workloads: by pod UID, among each workload's current pods and
/// the pods its evidence entries came from. Others are gone (named after their workload where
/// an entry of theirs tells it).
type AuditJoin<'a> = (BTreeMap<WorkloadRef, Vec<&'a PodRequests>>, Vec<(String, &'a PodRequests)>);

fn join_audit<'a>(inputs: &'a Inputs, workloads: &BTreeMap<WorkloadRef, WorkloadView<'a>>) -> AuditJoin<'a> {
    let mut by_workload: BTreeMap<WorkloadRef, Vec<&'a PodRequests>> = BTreeMap::new();
    let mut gone = Vec::new();
    let Some(audit) = &inputs.audit else { return (by_workload, gone) };
    let mut owner: HashMap<&str, &WorkloadRef> = HashMap::default();
    for (r, v) in workloads {
        for p in &v.pods {
            owner.insert(p.uid.as_str(), r);
        }
        for en in &v.past {
            if let Some(uid) = en.e.pod_uid.as_deref() {
                owner.insert(uid, r);
            }
        }
    }
    let mut named: HashMap<&str, String> = HashMap::default();
    for ev in &inputs.evidence {
        for c in &ev.containers {
            if let Some(uid) = c.pod_uid.as_deref() {
                named.entry(uid).or_insert_with(|| workload_name(c.workload.as_ref(), c.pod.as_deref()));
            }
        }
    }
    for p in audit.pods.values() {
        match owner.get(p.pod_uid.as_str()) {
            Some(r) => by_workload.entry((*r).clone()).or_default().push(p),
            None => gone.push((
                named.get(p.pod_uid.as_str()).cloned().unwrap_or_else(|| format!("pod/{} (owner unknown)", p.pod)),
                p,
            )),
        }
    }
    (by_workload, gone)
}

fn workload_name(w: Option<&crate::evidence::Workload>, pod: Option<&str>) -> String {
    match (w, pod) {
        (Some(w), _) => format!("{}/{}", w.kind.to_ascii_lowercase(), w.name),
        (None, Some(p)) => format!("pod/{p} (owner unknown)"),
        (None, None) => "an unknown workload".into(),
    }
}

fn gone_entry<'a>(node: &'a str, e: &'a ContainerEvidence) -> Option<GoneEntry<'a>> {
    Some(GoneEntry {
        node,
        namespace: e.namespace.as_deref()?,
        service_account: e.service_account.as_deref()?,
        workload: workload_name(e.workload.as_ref(), e.pod.as_deref()),
        container: e.container.as_deref().unwrap_or("?"),
        token_reads: e.reads.token,
        api_connects: e.api_connects,
        file_reads: e.reads.ca_crt + e.reads.namespace + e.reads.other,
        exec: e.exec_reads.total() + e.exec_api_connects,
        last_seen: e.last_seen,
    })
}

fn gone_retired<'a>(node: &'a str, r: &'a RetiredTotals) -> Option<GoneEntry<'a>> {
    Some(GoneEntry {
        node,
        namespace: r.namespace.as_deref()?,
        service_account: r.service_account.as_deref()?,
        workload: workload_name(r.workload.as_ref(), None),
        container: r.container.as_deref().unwrap_or("?"),
        token_reads: r.reads.token,
        api_connects: r.api_connects,
        file_reads: r.reads.ca_crt + r.reads.namespace + r.reads.other,
        exec: r.exec_reads.total() + r.exec_api_connects,
        last_seen: r.last_seen,
    })
}
