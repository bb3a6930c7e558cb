//! The planner's tests: a fixture cluster builder, the table of verdict and placement cases,
//! the soundness table (cluster shapes that must not be called safe, and safe ones that must
//! stay safe), a property test over generated clusters, golden files of every output.

mod auditlog;
mod golden;
mod property;
mod reading;
mod soundness;
mod table;

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::*;
use crate::evidence::{AgentInfo, ContainerEvidence, ContainerKey, Evidence, Hooks, KeyKind, Reads, Workload};

const HOUR: i64 = 3600;
/// The `pod-template-hash` of every fixture Deployment's current `ReplicaSet`.
const HASH: &str = "7d9f";

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time")
}

/// How a container was seen.
#[derive(Clone, Copy)]
struct Seen {
    token: u64,
    connects: u64,
    files: u64,
    exec: u64,
    hours: i64,
    from_start: bool,
}

const IDLE: Seen = Seen { token: 0, connects: 0, files: 0, exec: 0, hours: 48, from_start: true };
/// A controller that reads the token and calls the API server every minute for a day.
const BUSY: Seen = Seen { token: 1440, connects: 1440, ..IDLE };

/// A small cluster: objects, and evidence from one node per name.
struct Fixture {
    inputs: Inputs,
    next_uid: u32,
    /// The node the next pods run on.
    node: String,
}

impl Fixture {
    fn new() -> Self {
        Self { inputs: Inputs::default(), next_uid: 1, node: "node-a".into() }
    }

    fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).expect("fixture object")
    }

    fn sa(&mut self, ns: &str, name: &str, automount: Option<bool>) -> &mut Self {
        let mut v = json!({"metadata": {"name": name, "namespace": ns}});
        if let Some(a) = automount {
            v["automountServiceAccountToken"] = json!(a);
        }
        self.inputs.service_accounts.push(Self::obj(v));
        self
    }

    fn template(sa: &str, field: Option<bool>) -> Value {
        let mut spec = json!({"serviceAccountName": sa, "containers": [{"name": "app"}]});
        if let Some(f) = field {
            spec["automountServiceAccountToken"] = json!(f);
        }
        json!({"spec": spec})
    }

    /// A Deployment with its current `ReplicaSet` (revision 1, [`HASH`]); returns the
    /// `ReplicaSet`'s name.
    fn deployment(&mut self, ns: &str, name: &str, sa: &str, replicas: i32, field: Option<bool>) -> String {
        self.inputs.deployments.push(Self::obj(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {}, "template": Self::template(sa, field)}
        })));
        self.replica_set(ns, name, HASH, 1)
    }

    /// A `ReplicaSet` of Deployment `name` at a revision; returns its name.
    fn replica_set(&mut self, ns: &str, name: &str, hash: &str, revision: u32) -> String {
        let rs = format!("{name}-{hash}");
        self.inputs.replica_sets.push(Self::obj(json!({
            "metadata": {"name": rs, "namespace": ns,
                "labels": {"pod-template-hash": hash},
                "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": "d", "controller": true}]},
            "spec": {"selector": {}}
        })));
        rs
    }

    fn cronjob(&mut self, ns: &str, name: &str, sa: &str) {
        self.inputs.cron_jobs.push(crate::k8s::workloads::cronjob_from_json(
            Self::obj(json!({"name": name, "namespace": ns})),
            &json!({"jobTemplate": {"spec": {"template": {"spec": {"serviceAccountName": sa, "containers": [{"name": "job"}]}}}}}),
        ));
    }

    /// The fingerprint of a fixture CronJob's current pod template.
    fn cron_revision(&self, ns: &str, name: &str) -> String {
        self.inputs
            .cron_jobs
            .iter()
            .find(|c| c.metadata.namespace.as_deref() == Some(ns) && c.metadata.name.as_deref() == Some(name))
            .and_then(|c| c.template_fingerprint.clone())
            .expect("cronjob")
    }

    /// A pod; `owner` = (kind, name). `volume`: it has the automount volume. Its status lists
    /// its containers running with ids `<uid>-<container>`; a `ReplicaSet`-owned pod carries
    /// its `ReplicaSet`'s `pod-template-hash`.
    #[expect(clippy::too_many_arguments, reason = "a fixture builder")]
    fn pod(
        &mut self,
        ns: &str,
        name: &str,
        owner: Option<(&str, &str)>,
        sa: &str,
        containers: &[&str],
        volume: bool,
        field: Option<bool>,
    ) -> String {
        let uid = format!("00000000-0000-0000-0000-{:012}", self.next_uid);
        self.next_uid += 1;
        let mut spec = json!({
            "nodeName": self.node,
            "serviceAccountName": sa,
            "containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>()
        });
        if let Some(f) = field {
            spec["automountServiceAccountToken"] = json!(f);
        }
        if volume {
            spec["volumes"] = json!([{"name": "kube-api-access-x", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token"}}, {"configMap": {"name": "kube-root-ca.crt"}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}]);
        }
        let mut meta = json!({"name": name, "namespace": ns, "uid": uid});
        if let Some((kind, owner_name)) = owner {
            meta["ownerReferences"] =
                json!([{"apiVersion": "apps/v1", "kind": kind, "name": owner_name, "uid": "o", "controller": true}]);
            if kind == "ReplicaSet" {
                let hash = self
                    .inputs
                    .replica_sets
                    .iter()
                    .find(|rs| rs.metadata.name.as_deref() == Some(owner_name))
                    .and_then(|rs| rs.metadata.labels.as_ref()?.get("pod-template-hash").cloned());
                meta["labels"] = json!({"pod-template-hash": hash});
            }
        }
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| json!({"name": c, "containerID": format!("containerd://{uid}-{c}"), "image": "", "imageID": "", "ready": true, "restartCount": 0}))
            .collect();
        let status = json!({"phase": "Running", "containerStatuses": statuses});
        self.inputs.pods.push(Self::obj(json!({"metadata": meta, "spec": spec, "status": status})));
        uid
    }

    /// A mutable pod by uid.
    fn pod_mut(&mut self, uid: &str) -> &mut k8s_openapi::api::core::v1::Pod {
        self.inputs.pods.iter_mut().find(|p| p.metadata.uid.as_deref() == Some(uid)).expect("pod")
    }

    fn node(&mut self, node: &str) -> &mut Evidence {
        if !self.inputs.evidence.iter().any(|e| e.node == node) {
            self.inputs.evidence.push(Evidence {
                node: node.into(),
                agent: AgentInfo {
                    hooks: Hooks { file_open: Some("lsm".into()), connect: Some("cgroup".into()) },
                    exec_tracking: true,
                    generated_at: Some(now()),
                    targets: vec!["10.96.0.1:443".into(), "192.168.0.10:6443".into()],
                    publish_interval_seconds: Some(60),
                    ..AgentInfo::new("0.1.0", now() - Duration::from_hours(720))
                },
                containers: Vec::new(),
                retired: Vec::new(),
                volumes: Vec::new(),
            });
        }
        self.inputs.evidence.iter_mut().find(|e| e.node == node).expect("node")
    }

    /// An evidence entry as an agent reports it.
    #[expect(clippy::too_many_arguments, reason = "a fixture builder")]
    fn entry(
        uid: &str,
        ns: &str,
        pod: &str,
        container: &str,
        workload: (&str, &str),
        sa: &str,
        revision: Option<String>,
        s: Seen,
    ) -> ContainerEvidence {
        let since = now() - Duration::from_secs(u64::try_from(s.hours * HOUR).expect("hours"));
        ContainerEvidence {
            key: ContainerKey { kind: KeyKind::Cgroup, id: 1 },
            cgroup_path: None,
            pod_uid: Some(uid.into()),
            container_id: Some(format!("{uid}-{container}")),
            namespace: Some(ns.into()),
            pod: Some(pod.into()),
            container: Some(container.into()),
            service_account: Some(sa.into()),
            workload: Some(Workload { kind: workload.0.into(), name: workload.1.into() }),
            revision,
            pod_phase: Some("Running".into()),
            reads: Reads { token: s.token, ca_crt: s.files, namespace: 0, other: 0 },
            api_connects: s.connects,
            exec_reads: Reads { token: s.exec, ..Reads::default() },
            exec_api_connects: 0,
            missing_token_opens: 0,
            other_volumes: Vec::new(),
            processes: Vec::new(),
            exec_processes: Vec::new(),
            first_seen: None,
            last_seen: Some(now()),
            observed_since: Some(since),
            observed_from_start: Some(s.from_start),
            unobserved_seconds: 0,
            gone_since: None,
            uncovered: Vec::new(),
            previous_container_id: None,
        }
    }

    /// Evidence of a current pod's container, from the fixture's current node (revision from
    /// the pod's label).
    #[expect(clippy::too_many_arguments, reason = "a fixture builder")]
    fn seen(&mut self, uid: &str, ns: &str, pod: &str, container: &str, workload: (&str, &str), sa: &str, s: Seen) {
        let revision = self
            .inputs
            .pods
            .iter()
            .find(|p| p.metadata.uid.as_deref() == Some(uid))
            .and_then(|p| p.metadata.labels.as_ref()?.get("pod-template-hash").cloned());
        let entry = Self::entry(uid, ns, pod, container, workload, sa, revision, s);
        let node = self.node.clone();
        self.node(&node).containers.push(entry);
    }

    /// Evidence of a pod that no longer exists.
    #[expect(clippy::too_many_arguments, reason = "a fixture builder")]
    fn past(
        &mut self,
        ns: &str,
        pod: &str,
        containers: &[&str],
        workload: (&str, &str),
        sa: &str,
        revision: Option<&str>,
        phase: &str,
        s: Seen,
    ) -> String {
        let uid = format!("99999999-0000-0000-0000-{:012}", self.next_uid);
        self.next_uid += 1;
        let node = self.node.clone();
        for c in containers {
            let mut e = Self::entry(&uid, ns, pod, c, workload, sa, revision.map(str::to_owned), s);
            e.pod_phase = Some(phase.into());
            e.gone_since = Some(now() - Duration::from_hours(1));
            self.node(&node).containers.push(e);
        }
        uid
    }

    /// A Deployment with `replicas` pods, each container seen as `s` (`seen` of them).
    #[expect(clippy::too_many_arguments, reason = "a fixture builder")]
    fn workload(
        &mut self,
        ns: &str,
        name: &str,
        sa: &str,
        replicas: i32,
        seen: i32,
        containers: &[(&str, Seen)],
        field: Option<bool>,
    ) -> Vec<String> {
        let rs = self.deployment(ns, name, sa, replicas, field);
        let names: Vec<&str> = containers.iter().map(|(c, _)| *c).collect();
        let mut uids = Vec::new();
        for i in 0..replicas {
            let pod = format!("{rs}-{i}");
            let uid = self.pod(ns, &pod, Some(("ReplicaSet", &rs)), sa, &names, true, field);
            if i < seen {
                for (c, s) in containers {
                    self.seen(&uid, ns, &pod, c, ("Deployment", name), sa, *s);
                }
            }
            uids.push(uid);
        }
        uids
    }

    fn policy() -> Policy {
        Policy { now: now(), ..Policy::default() }
    }

    fn plan(&self) -> Plan {
        plan(&self.inputs, &Self::policy())
    }
}

fn verdict(plan: &Plan, ns: &str, name: &str) -> (Verdict, Vec<String>) {
    let w = plan
        .workloads
        .iter()
        .find(|w| w.workload.namespace == ns && w.workload.name == name)
        .unwrap_or_else(|| panic!("no workload {ns}/{name}: {plan:#?}"));
    (w.verdict, w.reasons.clone())
}

fn changes(plan: &Plan) -> Vec<String> {
    plan.changes
        .iter()
        .map(|c| {
            format!(
                "{}{} {}/{}={}",
                if c.pin { "pin " } else { "" },
                c.target.kind,
                c.target.namespace,
                c.target.name,
                c.automount
            )
        })
        .collect()
}

/// No change may remove a token an observed container used: a workload change only for a safe
/// workload; a ServiceAccount change only when every workload following it is safe or pinned,
/// and no gone workload used it.
fn assert_never_removes_a_used_token(plan: &Plan) {
    for c in plan.changes.iter().filter(|c| !c.automount) {
        if c.target.kind == "ServiceAccount" {
            let sa = plan
                .service_accounts
                .iter()
                .find(|s| s.namespace == c.target.namespace && s.name == c.target.name)
                .expect("sa");
            assert!(sa.gone_users.is_empty(), "{}: gone workloads used its token: {plan:#?}", sa.name);
            for w in &sa.workloads {
                let report = plan.workloads.iter().find(|r| &r.workload == w).expect("workload");
                let pinned = plan.changes.iter().any(|p| p.pin && p.unit == c.unit && p.target.name == w.name);
                assert!(
                    matches!(report.verdict, Verdict::SafeToDisable | Verdict::NotMounted) || pinned,
                    "{} would lose a used token: {plan:#?}",
                    w.display()
                );
            }
        } else {
            let report = plan
                .workloads
                .iter()
                .find(|r| r.workload.name == c.target.name && r.workload.namespace == c.target.namespace)
                .expect("w");
            assert_eq!(report.verdict, Verdict::SafeToDisable, "{c:#?}");
        }
    }
}
