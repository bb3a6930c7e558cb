//! Table-driven rule tests (every verdict and placement case) and golden tests of every output.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::*;
use crate::evidence::{
    AgentInfo, ContainerEvidence, ContainerKey, Evidence, Hooks, KeyKind, Reads, RetiredTotals, Workload,
};

const HOUR: i64 = 3600;

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
}

impl Fixture {
    fn new() -> Self {
        Self { inputs: Inputs::default(), next_uid: 1 }
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

    /// A Deployment with its ReplicaSet; returns the ReplicaSet's name.
    fn deployment(&mut self, ns: &str, name: &str, sa: &str, replicas: i32, field: Option<bool>) -> String {
        self.inputs.deployments.push(Self::obj(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {}, "template": Self::template(sa, field)}
        })));
        let rs = format!("{name}-7d9f");
        self.inputs.replica_sets.push(Self::obj(json!({
            "metadata": {"name": rs, "namespace": ns, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": "d", "controller": true}]},
            "spec": {"selector": {}}
        })));
        rs
    }

    fn cronjob(&mut self, ns: &str, name: &str, sa: &str) {
        self.inputs.cron_jobs.push(crate::k8s::workloads::cronjob_from_json(
            Self::obj(json!({"name": name, "namespace": ns})),
            &json!({"jobTemplate": {"spec": {"template": {"spec": {"serviceAccountName": sa}}}}}),
        ));
    }

    /// A pod; `owner` = (kind, name). `volume`: it has the automount volume.
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
            "nodeName": "node-a",
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
        }
        self.inputs.pods.push(Self::obj(json!({"metadata": meta, "spec": spec})));
        uid
    }

    fn node(&mut self, node: &str) -> &mut Evidence {
        if !self.inputs.evidence.iter().any(|e| e.node == node) {
            self.inputs.evidence.push(Evidence {
                node: node.into(),
                agent: AgentInfo {
                    hooks: Hooks { file_open: Some("lsm".into()), connect: Some("cgroup".into()) },
                    exec_tracking: true,
                    generated_at: Some(now()),
                    ..AgentInfo::new("0.1.0", now() - Duration::from_hours(720))
                },
                containers: Vec::new(),
                retired: Vec::new(),
                volumes: Vec::new(),
            });
        }
        self.inputs.evidence.iter_mut().find(|e| e.node == node).expect("node")
    }

    #[expect(clippy::too_many_arguments, reason = "a fixture builder")]
    fn seen(&mut self, uid: &str, ns: &str, pod: &str, container: &str, workload: (&str, &str), sa: &str, s: Seen) {
        let since = now() - Duration::from_secs(u64::try_from(s.hours * HOUR).expect("hours"));
        let entry = ContainerEvidence {
            key: ContainerKey { kind: KeyKind::Cgroup, id: 1 },
            cgroup_path: None,
            pod_uid: Some(uid.into()),
            container_id: Some(format!("{uid}-{container}")),
            namespace: Some(ns.into()),
            pod: Some(pod.into()),
            container: Some(container.into()),
            service_account: Some(sa.into()),
            workload: Some(Workload { kind: workload.0.into(), name: workload.1.into() }),
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
        };
        self.node("node-a").containers.push(entry);
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
    ) {
        let rs = self.deployment(ns, name, sa, replicas, field);
        let names: Vec<&str> = containers.iter().map(|(c, _)| *c).collect();
        for i in 0..replicas {
            let pod = format!("{rs}-{i}");
            let effective_field = field;
            let uid = self.pod(ns, &pod, Some(("ReplicaSet", &rs)), sa, &names, true, effective_field);
            if i < seen {
                for (c, s) in containers {
                    self.seen(&uid, ns, &pod, c, ("Deployment", name), sa, *s);
                }
            }
        }
    }

    fn plan(&self) -> Plan {
        plan(&self.inputs, &Policy { now: now(), ..Policy::default() })
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

/// No change may remove a token an observed container used.
fn assert_never_removes_a_used_token(plan: &Plan) {
    for c in plan.changes.iter().filter(|c| !c.automount) {
        if c.target.kind == "ServiceAccount" {
            let sa = plan
                .service_accounts
                .iter()
                .find(|s| s.namespace == c.target.namespace && s.name == c.target.name)
                .expect("sa");
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

#[test]
#[expect(clippy::too_many_lines, reason = "one table of cases")]
fn verdicts_and_placement_table() {
    struct Case {
        name: &'static str,
        build: fn(&mut Fixture),
        expect: &'static [(&'static str, &'static str, Verdict, &'static str)],
        changes: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "idle deployment alone under its ServiceAccount: the ServiceAccount goes false",
            build: |f| {
                f.sa("shop", "web", None);
                f.workload("shop", "web", "web", 3, 3, &[("app", IDLE)], None);
            },
            expect: &[("shop", "web", Verdict::SafeToDisable, "no token use by 3/3 replicas")],
            changes: &["ServiceAccount shop/web=false"],
        },
        Case {
            name: "a controller reading the token every minute",
            build: |f| {
                f.sa("ops", "controller", None);
                f.workload(
                    "ops",
                    "controller",
                    "controller",
                    1,
                    1,
                    &[("manager", Seen { token: 2880, connects: 2880, ..IDLE })],
                    None,
                );
            },
            expect: &[("ops", "controller", Verdict::UsesToken, "container manager read the token 2880 times")],
            changes: &[],
        },
        Case {
            name: "the only reader is a sidecar",
            build: |f| {
                f.sa("mesh", "default", None);
                f.workload("mesh", "web", "default", 2, 2, &[("app", IDLE), ("sidecar", BUSY)], None);
            },
            expect: &[("mesh", "web", Verdict::UsesToken, "container sidecar read the token")],
            changes: &[],
        },
        Case {
            name: "a ServiceAccount shared by a user and a non-user: pin the user, turn the SA off",
            build: |f| {
                f.sa("shop", "shared", None);
                f.workload("shop", "api", "shared", 2, 2, &[("app", BUSY)], None);
                f.workload("shop", "worker", "shared", 2, 2, &[("app", IDLE)], None);
            },
            expect: &[
                ("shop", "api", Verdict::UsesToken, "container app"),
                ("shop", "worker", Verdict::SafeToDisable, "no token use by 2/2"),
            ],
            changes: &["pin Deployment shop/api=true", "ServiceAccount shop/shared=false"],
        },
        Case {
            name: "a pod-level true under a ServiceAccount-level false",
            build: |f| {
                f.sa("legacy", "locked", Some(false));
                f.workload("legacy", "reporter", "locked", 1, 1, &[("app", IDLE)], Some(true));
                f.workload("legacy", "syncer", "locked", 1, 1, &[("app", BUSY)], Some(true));
                f.workload("legacy", "quiet", "locked", 1, 1, &[("app", IDLE)], None);
            },
            expect: &[
                ("legacy", "reporter", Verdict::SafeToDisable, "no token use"),
                ("legacy", "syncer", Verdict::UsesToken, "container app"),
                ("legacy", "quiet", Verdict::AlreadyDisabled, "ServiceAccount locked sets"),
            ],
            changes: &["Deployment legacy/reporter=false"],
        },
        Case {
            name: "a pod-level false under a true ServiceAccount",
            build: |f| {
                f.sa("ops", "default", Some(true));
                f.workload("ops", "cleaner", "default", 1, 1, &[("app", IDLE)], Some(false));
            },
            expect: &[("ops", "cleaner", Verdict::AlreadyDisabled, "the pod template sets")],
            changes: &[],
        },
        Case {
            name: "observed too briefly",
            build: |f| f.workload("new", "fresh", "default", 1, 1, &[("app", Seen { hours: 2, ..IDLE })], None),
            expect: &[(
                "new",
                "fresh",
                Verdict::InsufficientEvidence,
                "too short: observed for 2h0m of the required 1d0h",
            )],
            changes: &[],
        },
        Case {
            name: "not seen from start",
            build: |f| {
                f.workload("old", "veteran", "default", 1, 1, &[("app", Seen { from_start: false, ..IDLE })], None);
            },
            expect: &[("old", "veteran", Verdict::InsufficientEvidence, "not seen from start")],
            changes: &[],
        },
        Case {
            name: "a replica on a node without the agent",
            build: |f| f.workload("shop", "cart", "default", 3, 2, &[("app", IDLE)], None),
            expect: &[("shop", "cart", Verdict::InsufficientEvidence, "replicas unseen: 2/3")],
            changes: &[],
        },
        Case {
            name: "drops on the node",
            build: |f| {
                f.workload("shop", "lossy", "default", 1, 1, &[("app", IDLE)], None);
                f.node("node-a").agent.drops = 7;
            },
            expect: &[(
                "shop",
                "lossy",
                Verdict::InsufficientEvidence,
                "the agent on node node-a lost events (drops 7",
            )],
            changes: &[],
        },
        Case {
            name: "exec-only use is not the application's",
            build: |f| f.workload("shop", "debugged", "default", 1, 1, &[("app", Seen { exec: 3, ..IDLE })], None),
            expect: &[("shop", "debugged", Verdict::SafeToDisable, "exec sessions into app used the token (3 reads")],
            changes: &["ServiceAccount shop/default=false"],
        },
        Case {
            name: "only ca.crt read; under a shared ServiceAccount it is pinned like a user",
            build: |f| {
                f.workload("data", "verifier", "default", 1, 1, &[("app", Seen { files: 4, ..IDLE })], None);
                f.workload("data", "batch", "default", 1, 1, &[("app", IDLE)], None);
            },
            expect: &[
                ("data", "verifier", Verdict::UsesVolumeFiles, "read ca.crt/namespace 4 times"),
                ("data", "batch", Verdict::SafeToDisable, ""),
            ],
            changes: &["pin Deployment data/verifier=true", "ServiceAccount data/default=false"],
        },
        Case {
            name: "automount on but no automount volume",
            build: |f| {
                let rs = f.deployment("custom", "vaulted", "default", 1, None);
                f.pod("custom", "vaulted-1", Some(("ReplicaSet", &rs)), "default", &["app"], false, None);
            },
            expect: &[("custom", "vaulted", Verdict::NotMounted, "no automount volume")],
            changes: &[],
        },
        Case {
            name: "a ServiceAccount with an undecided workload: only the safe one's template changes",
            build: |f| {
                f.workload("mixed", "sure", "default", 1, 1, &[("app", IDLE)], None);
                f.workload("mixed", "unsure", "default", 1, 1, &[("app", Seen { hours: 1, ..IDLE })], None);
            },
            expect: &[
                ("mixed", "sure", Verdict::SafeToDisable, ""),
                ("mixed", "unsure", Verdict::InsufficientEvidence, "too short"),
            ],
            changes: &["Deployment mixed/sure=false"],
        },
        Case {
            name: "a CronJob judged by runs observed from start",
            build: |f| {
                f.cronjob("batch", "backup", "backup");
                f.sa("batch", "backup", None);
                f.cronjob("batch", "report", "report");
                f.sa("batch", "report", None);
                for (name, runs) in [("backup", 3), ("report", 2)] {
                    f.node("node-a").retired.push(RetiredTotals {
                        namespace: Some("batch".into()),
                        workload: Some(Workload { kind: "CronJob".into(), name: name.into() }),
                        container: Some("job".into()),
                        service_account: Some(name.into()),
                        containers: runs,
                        observed_from_start: runs,
                        reads: Reads::default(),
                        api_connects: 0,
                        exec_reads: Reads::default(),
                        exec_api_connects: 0,
                        missing_token_opens: 0,
                        other_volumes: Vec::new(),
                        first_seen: None,
                        last_seen: None,
                        observed_since: Some(now() - Duration::from_hours(168)),
                        unobserved_seconds: 0,
                    });
                }
            },
            expect: &[
                ("batch", "backup", Verdict::SafeToDisable, "no token use by 3/3 runs"),
                ("batch", "report", Verdict::InsufficientEvidence, "2 of the required 3 runs observed from start"),
            ],
            changes: &["ServiceAccount batch/backup=false"],
        },
        Case {
            name: "a bare pod that uses the token cannot be pinned: the safe neighbour gets a template change",
            build: |f| {
                let uid = f.pod("adhoc", "debug", None, "default", &["shell"], true, None);
                f.seen(&uid, "adhoc", "debug", "shell", ("Pod", "debug"), "default", BUSY);
                f.workload("adhoc", "web", "default", 1, 1, &[("app", IDLE)], None);
            },
            expect: &[
                ("adhoc", "debug", Verdict::UsesToken, "container shell"),
                ("adhoc", "web", Verdict::SafeToDisable, ""),
            ],
            changes: &["Deployment adhoc/web=false"],
        },
        Case {
            name: "a safe bare pod: the change is not patchable",
            build: |f| {
                let uid = f.pod("adhoc", "lonely", None, "lonely", &["app"], true, None);
                f.sa("adhoc", "lonely", None);
                f.seen(&uid, "adhoc", "lonely", "app", ("Pod", "lonely"), "lonely", IDLE);
            },
            expect: &[("adhoc", "lonely", Verdict::SafeToDisable, "")],
            changes: &["ServiceAccount adhoc/lonely=false"],
        },
    ];
    for case in cases {
        let mut f = Fixture::new();
        (case.build)(&mut f);
        let plan = f.plan();
        for (ns, name, v, reason) in case.expect {
            let (got, reasons) = verdict(&plan, ns, name);
            assert_eq!(got, *v, "{}: {ns}/{name}: {reasons:?}", case.name);
            let summary =
                plan.workloads.iter().find(|w| w.workload.name == *name).map(|w| w.summary.clone()).unwrap_or_default();
            assert!(
                reason.is_empty() || reasons.iter().any(|r| r.contains(reason)) || summary.contains(reason),
                "{}: {ns}/{name}: expected a reason with {reason:?}, got {reasons:?} / {summary:?}",
                case.name
            );
        }
        assert_eq!(changes(&plan), case.changes, "{}", case.name);
        assert_never_removes_a_used_token(&plan);
    }
}

#[test]
fn pins_come_first_and_dev_namespaces_lead() {
    let mut f = Fixture::new();
    f.workload("team-dev", "api", "default", 1, 1, &[("app", IDLE)], None);
    f.workload("shop", "api", "shared", 1, 1, &[("app", Seen { token: 5, ..IDLE })], None);
    f.workload("shop", "worker", "shared", 1, 1, &[("app", IDLE)], None);
    for i in 0..12 {
        f.workload(&format!("prod-{i:02}"), "svc", "default", 1, 1, &[("app", IDLE)], None);
    }
    let plan = f.plan();
    let names: Vec<&str> = plan.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["development", "canary", "rest"]);
    let dev = &plan.phases[0];
    assert!(dev.changes.iter().all(|i| plan.changes[*i].target.namespace == "team-dev"));
    assert_eq!(plan.phases[1].changes.len(), 2, "10% of 13 units, rounded up: {:#?}", plan.phases[1]);
    // The shop unit: its pin right before the ServiceAccount change, whichever phase it is in.
    let order: Vec<usize> = plan.phases.iter().flat_map(|p| p.changes.iter().copied()).collect();
    let pin = order.iter().position(|i| plan.changes[*i].pin).expect("a pin");
    let sa = order
        .iter()
        .position(|i| plan.changes[*i].target.kind == "ServiceAccount" && plan.changes[*i].target.namespace == "shop")
        .expect("sa change");
    assert_eq!(sa, pin + 1);
    assert!(plan.phases.iter().all(|p| !p.watch.is_empty()));
    assert_eq!(
        plan.phases[0].restarts,
        vec![WorkloadRef { namespace: "team-dev".into(), kind: "Deployment".into(), name: "api".into() }]
    );
}

#[test]
fn evidence_exports_merge_by_latest_entry_never_adding() {
    let mut f = Fixture::new();
    f.workload("shop", "web", "default", 1, 1, &[("app", Seen { token: 5, ..IDLE })], None);
    let older = f.inputs.evidence[0].clone();
    let mut newer = older.clone();
    newer.containers[0].reads.token = 9;
    newer.containers[0].last_seen = Some(now() + Duration::from_mins(1));
    newer.agent.generated_at = Some(now() + Duration::from_mins(1));
    let merged = inputs::merge_evidence(vec![newer.clone(), older.clone(), older]);
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].containers.len(), 1);
    assert_eq!(merged[0].containers[0].reads.token, 9, "latest wins, not 5+9+5");
}

#[test]
fn parses_every_evidence_shape_and_rejects_others() {
    let mut f = Fixture::new();
    f.workload("shop", "web", "default", 1, 1, &[("app", IDLE)], None);
    let ev = serde_json::to_value(&f.inputs.evidence[0]).expect("json");
    let object = json!({"apiVersion": "tokenprobe.dev/v1alpha1", "kind": "NodeTokenEvidence", "metadata": {"name": "node-a"}, "spec": {"nodeName": "node-a"}, "status": ev});
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [object.clone(), object.clone()]});
    assert_eq!(inputs::parse_evidence("watch.json", &ev.to_string()).expect("watch json").len(), 1);
    assert_eq!(inputs::parse_evidence("list.json", &list.to_string()).expect("list").len(), 2);
    let yaml = format!(
        "{}---\n{}",
        serde_yaml::to_string(&object).expect("yaml"),
        serde_yaml::to_string(&object).expect("yaml")
    );
    assert_eq!(inputs::parse_evidence("objects.yaml", &yaml).expect("yaml").len(), 2);
    for (text, needle) in [
        ("{\"kind\": \"Pod\"}", "expected evidence, found a Pod"),
        ("{\"node\": 1}", "expected evidence"),
        ("{nonsense", "invalid JSON"),
        ("kind: NodeTokenEvidence\nmetadata: {name: n}\n", "has no status"),
        ("node: n\ncontainers: [{key: 3}]\n", "malformed evidence"),
    ] {
        let err = inputs::parse_evidence("bad", text).expect_err(text).to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
    let mut objects = Inputs::default();
    let pods = json!({"kind": "List", "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]});
    assert_eq!(inputs::parse_objects("o.json", &pods.to_string(), &mut objects).expect("objects"), 1);
    assert!(inputs::parse_objects("o.json", "{\"kind\": \"Pod\", \"spec\": 3}", &mut objects).is_err());
}

#[test]
fn verify_finds_containers_reaching_for_a_missing_token() {
    let mut f = Fixture::new();
    f.sa("shop", "default", Some(false));
    let rs = f.deployment("shop", "web", "default", 1, None);
    let uid = f.pod("shop", "web-1", Some(("ReplicaSet", &rs)), "default", &["app"], false, None);
    f.seen(&uid, "shop", "web-1", "app", ("Deployment", "web"), "default", IDLE);
    f.node("node-a").containers[0].missing_token_opens = 4;
    let rs = f.deployment("shop", "fine", "default", 1, None);
    let uid = f.pod("shop", "fine-1", Some(("ReplicaSet", &rs)), "default", &["app"], false, None);
    f.seen(&uid, "shop", "fine-1", "app", ("Deployment", "fine"), "default", IDLE);
    let regressions = verify::verify(&f.inputs);
    assert_eq!(regressions.len(), 1, "{regressions:#?}");
    assert_eq!(regressions[0].workload.name, "web");
    assert_eq!(regressions[0].attempts[0].missing_token_opens, 4);
    assert!(regressions[0].rollback.automount);
    let patch = output::patch_body(&regressions[0].rollback);
    assert_eq!(patch["spec"]["template"]["spec"]["automountServiceAccountToken"], json!(true));
}

#[test]
fn audit_uses_the_service_account_setting() {
    let mut f = Fixture::new();
    f.sa("shop", "quiet", Some(false));
    f.pod("shop", "a", None, "quiet", &["app"], false, None);
    f.pod("shop", "b", None, "default", &["app"], true, None);
    f.pod("shop", "c", None, "quiet", &["app"], true, Some(true));
    f.pod("shop", "d", None, "default", &["app"], false, None);
    let rows = audit::audit(&f.inputs);
    let status: Vec<(&str, bool, &str)> = rows.iter().map(|r| (r.pod.as_str(), r.effective, r.status)).collect();
    assert_eq!(
        status,
        vec![("a", false, "off"), ("b", true, "mounted"), ("c", true, "mounted"), ("d", true, "not-mounted")]
    );
    assert!(rows[0].naive_audit_says_on, "a pod-field audit misjudges pod a");
    assert!(output::audit_table(&rows).contains("1 pod(s) have no token because their ServiceAccount says false"));
}

// --- golden tests --------------------------------------------------------------------------

/// The fixture cluster of the issue: an idle Deployment, a controller reading the token every
/// minute, a workload whose only reader is a sidecar, a ServiceAccount shared by a user and a
/// non-user, a pod-level true under a ServiceAccount-level false, one observed too briefly, one
/// not seen from start, a development namespace.
fn golden_fixture() -> Plan {
    let mut f = Fixture::new();
    f.sa("shop", "web", None);
    f.workload("shop", "web", "web", 3, 3, &[("app", IDLE)], None);
    f.sa("ops", "controller", None);
    f.workload("ops", "controller", "controller", 1, 1, &[("manager", BUSY)], None);
    f.workload("mesh", "gateway", "default", 2, 2, &[("app", IDLE), ("sidecar", BUSY)], None);
    f.sa("shop", "shared", None);
    f.workload("shop", "api", "shared", 2, 2, &[("app", BUSY)], None);
    f.workload("shop", "worker", "shared", 2, 2, &[("app", IDLE)], None);
    f.sa("legacy", "locked", Some(false));
    f.workload("legacy", "reporter", "locked", 1, 1, &[("app", IDLE)], Some(true));
    f.workload("new", "fresh", "default", 1, 1, &[("app", Seen { hours: 2, ..IDLE })], None);
    f.workload("old", "veteran", "default", 1, 1, &[("app", Seen { from_start: false, ..IDLE })], None);
    f.workload("team-dev", "sandbox", "default", 1, 1, &[("app", IDLE)], None);
    f.plan()
}

fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plan/golden").join(name);
    if std::env::var_os("TOKENPROBE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (TOKENPROBE_BLESS=1 cargo test writes it)", path.display()));
    if expected != actual {
        let line = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{name} differs from {} at line {}:\n  expected: {:?}\n  actual:   {:?}\n(review, then TOKENPROBE_BLESS=1 cargo test -p probe-agent golden)",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

#[test]
fn golden_outputs() {
    let plan = golden_fixture();
    golden("plan.table", &output::plan_table(&plan));
    golden("plan.json", &output::structured(&plan, output::Format::Json).expect("json"));
    golden("plan.yaml", &output::structured(&plan, output::Format::Yaml).expect("yaml"));
    golden("plan.patch", &output::patches(&plan));
    golden("plan.sh", &output::script(&plan));
    golden("plan.policyreport", &output::policy_reports(&plan));
    golden("plan.md", &output::markdown(&plan));
    // The fixture's verdicts, so a golden file cannot silently bless a wrong plan.
    let v = |n: &str| plan.workloads.iter().find(|w| w.workload.name == n).expect(n).verdict;
    assert_eq!(v("web"), Verdict::SafeToDisable);
    assert_eq!(v("controller"), Verdict::UsesToken);
    assert_eq!(v("gateway"), Verdict::UsesToken);
    assert_eq!(v("api"), Verdict::UsesToken);
    assert_eq!(v("worker"), Verdict::SafeToDisable);
    assert_eq!(v("reporter"), Verdict::SafeToDisable);
    assert_eq!(v("fresh"), Verdict::InsufficientEvidence);
    assert_eq!(v("veteran"), Verdict::InsufficientEvidence);
    assert_never_removes_a_used_token(&plan);
    // The patches parse as YAML documents with the field where each kind keeps it.
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&output::patches(&plan))
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml doc"))
        .filter(|v: &Value| !v.is_null())
        .collect();
    assert_eq!(docs.len(), plan.changes.iter().filter(|c| c.patchable).count());
    for doc in &docs {
        let field = if doc["kind"] == "ServiceAccount" {
            &doc["automountServiceAccountToken"]
        } else {
            &doc["spec"]["template"]["spec"]["automountServiceAccountToken"]
        };
        assert!(field.is_boolean(), "{doc}");
        assert!(doc["metadata"]["annotations"][output::EVIDENCE_ANNOTATION].is_string(), "{doc}");
    }
}
