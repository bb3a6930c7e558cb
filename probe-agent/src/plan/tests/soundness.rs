//! The soundness table: cluster shapes in which a workload uses its token or was not fully
//! observed — none may be called `safe-to-disable` — and the safe shapes that must stay safe,
//! so the planner stays useful.

use super::*;
use crate::evidence::RetiredTotals;

struct Case {
    name: &'static str,
    build: fn(&mut Fixture),
    policy: fn(&mut Policy),
    /// (namespace, workload name, verdict, a reason or summary containing this)
    expect: &'static [(&'static str, &'static str, Verdict, &'static str)],
    changes: &'static [&'static str],
}

const fn defaults(_: &mut Policy) {}

/// Adds an exec readiness probe to a fixture Deployment's template and its pods.
fn exec_probe(f: &mut Fixture, ns: &str, name: &str) {
    let probe: k8s_openapi::api::core::v1::Probe =
        Fixture::obj(json!({"exec": {"command": ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"]}}));
    for d in &mut f.inputs.deployments {
        if d.metadata.name.as_deref() == Some(name) && d.metadata.namespace.as_deref() == Some(ns) {
            let spec = d.spec.as_mut().and_then(|s| s.template.spec.as_mut()).expect("template");
            spec.containers[0].readiness_probe = Some(probe.clone());
        }
    }
}

fn retired(ns: &str, workload: (&str, &str), sa: &str, revision: Option<String>, runs: u64) -> RetiredTotals {
    RetiredTotals {
        namespace: Some(ns.into()),
        workload: Some(Workload { kind: workload.0.into(), name: workload.1.into() }),
        container: Some("job".into()),
        service_account: Some(sa.into()),
        revision,
        containers: runs,
        observed_from_start: runs,
        pods: runs,
        runs,
        reads: Reads::default(),
        api_connects: 0,
        exec_reads: Reads::default(),
        exec_api_connects: 0,
        missing_token_opens: 0,
        other_volumes: Vec::new(),
        first_seen: None,
        last_seen: Some(now() - Duration::from_hours(2)),
        observed_since: Some(now() - Duration::from_hours(168)),
        unobserved_seconds: 0,
    }
}

const EXEC: Seen = Seen { exec: 3, ..IDLE };
const FRESH: Seen = Seen { hours: 0, ..IDLE };

#[test]
#[expect(clippy::too_many_lines, reason = "one table of cases")]
fn soundness_table() {
    let cases = [
        // 1. Exec sessions.
        Case {
            name: "exec use with an exec readiness probe is the application's",
            build: |f| {
                f.workload("shop", "probed", "default", 1, 1, &[("app", EXEC)], None);
                exec_probe(f, "shop", "probed");
            },
            policy: |p| p.ignore_exec_sessions = true,
            expect: &[(
                "shop",
                "probed",
                Verdict::UsesToken,
                "exec sessions used the token; the pod has exec probes/hooks",
            )],
            changes: &[],
        },
        Case {
            name: "exec use, no probes, --ignore-exec-sessions: people, safe",
            build: |f| {
                f.workload("shop", "toolbox", "default", 1, 1, &[("app", EXEC)], None);
            },
            policy: |p| p.ignore_exec_sessions = true,
            expect: &[("shop", "toolbox", Verdict::SafeToDisable, "ignored by --ignore-exec-sessions")],
            changes: &["ServiceAccount shop/default=false"],
        },
        // 2. Stale evidence.
        Case {
            name: "the node's agent stopped reporting three days ago",
            build: |f| {
                f.workload("shop", "stale", "default", 1, 1, &[("app", IDLE)], None);
                f.node("node-a").agent.generated_at = Some(now() - Duration::from_hours(72));
            },
            policy: defaults,
            expect: &[("shop", "stale", Verdict::InsufficientEvidence, "agent on node node-a last reported 3d0h ago")],
            changes: &[],
        },
        Case {
            name: "a Lease renewed a minute ago keeps quiet evidence fresh",
            build: |f| {
                f.workload("shop", "quiet", "default", 1, 1, &[("app", IDLE)], None);
                f.node("node-a").agent.generated_at = Some(now() - Duration::from_hours(72));
                let lease =
                    crate::k8s::liveness::lease_object("node-a", "tokenprobe", 60, now() - Duration::from_mins(1));
                f.inputs.leases.push(Fixture::obj(lease));
            },
            policy: defaults,
            expect: &[("shop", "quiet", Verdict::SafeToDisable, "")],
            changes: &["ServiceAccount shop/default=false"],
        },
        Case {
            name: "a Lease not renewed for ten minutes (three intervals are three minutes)",
            build: |f| {
                f.workload("shop", "lapsed", "default", 1, 1, &[("app", IDLE)], None);
                let lease =
                    crate::k8s::liveness::lease_object("node-a", "tokenprobe", 60, now() - Duration::from_mins(10));
                f.inputs.leases.push(Fixture::obj(lease));
            },
            policy: defaults,
            expect: &[("shop", "lapsed", Verdict::InsufficientEvidence, "agent on node node-a last reported 10m ago")],
            changes: &[],
        },
        // 3. The observation window belongs to the current template.
        Case {
            name: "rollout restart five minutes ago: the earlier template's two days do not count",
            build: |f| {
                let rs = f.deployment("shop", "restarted", "default", 1, None);
                f.past(
                    "shop",
                    &format!("{rs}-old"),
                    &["app"],
                    ("Deployment", "restarted"),
                    "default",
                    Some(HASH),
                    "Running",
                    IDLE,
                );
                let rs = f.replica_set("shop", "restarted", "8c2e", 2);
                let uid = f.pod("shop", &format!("{rs}-0"), Some(("ReplicaSet", &rs)), "default", &["app"], true, None);
                f.seen(
                    &uid,
                    "shop",
                    &format!("{rs}-0"),
                    "app",
                    ("Deployment", "restarted"),
                    "default",
                    Seen { hours: 0, ..IDLE },
                );
            },
            policy: defaults,
            expect: &[("shop", "restarted", Verdict::InsufficientEvidence, "too short: observed for 0s")],
            changes: &[],
        },
        Case {
            name: "the earlier template's use still counts",
            build: |f| {
                let rs = f.deployment("shop", "changed", "default", 1, None);
                f.past(
                    "shop",
                    &format!("{rs}-old"),
                    &["app"],
                    ("Deployment", "changed"),
                    "default",
                    Some(HASH),
                    "Running",
                    BUSY,
                );
                let rs = f.replica_set("shop", "changed", "8c2e", 2);
                let uid = f.pod("shop", &format!("{rs}-0"), Some(("ReplicaSet", &rs)), "default", &["app"], true, None);
                f.seen(&uid, "shop", &format!("{rs}-0"), "app", ("Deployment", "changed"), "default", IDLE);
            },
            policy: defaults,
            expect: &[("shop", "changed", Verdict::UsesToken, "container app read the token 1440 times")],
            changes: &[],
        },
        Case {
            name: "a pod of the earlier template still runs: rollout in progress",
            build: |f| {
                let old = f.deployment("shop", "rolling", "default", 1, None);
                let uid =
                    f.pod("shop", &format!("{old}-0"), Some(("ReplicaSet", &old)), "default", &["app"], true, None);
                f.seen(&uid, "shop", &format!("{old}-0"), "app", ("Deployment", "rolling"), "default", IDLE);
                let rs = f.replica_set("shop", "rolling", "8c2e", 2);
                let uid = f.pod("shop", &format!("{rs}-0"), Some(("ReplicaSet", &rs)), "default", &["app"], true, None);
                f.seen(&uid, "shop", &format!("{rs}-0"), "app", ("Deployment", "rolling"), "default", IDLE);
            },
            policy: defaults,
            expect: &[("shop", "rolling", Verdict::InsufficientEvidence, "rollout in progress")],
            changes: &[],
        },
        Case {
            name: "no ReplicaSet in the inputs and no settled status: the current template is unknown",
            build: |f| {
                f.workload("shop", "orphaned", "default", 1, 1, &[("app", IDLE)], None);
                f.inputs.replica_sets.clear();
            },
            policy: defaults,
            expect: &[
                (
                    "shop",
                    "orphaned",
                    Verdict::InsufficientEvidence,
                    "cannot tell the Deployment's current pod template",
                ),
                (
                    "shop",
                    "orphaned-7d9f",
                    Verdict::InsufficientEvidence,
                    "its ReplicaSet orphaned-7d9f is not in the inputs",
                ),
            ],
            changes: &[],
        },
        // 4. Every current pod must have evidence.
        Case {
            name: "a surge pod without an entry",
            build: |f| {
                let uids = f.workload("shop", "surging", "default", 2, 2, &[("app", IDLE)], None);
                let rs = format!("surging-{HASH}");
                f.pod("shop", &format!("{rs}-surge"), Some(("ReplicaSet", &rs)), "default", &["app"], true, None);
                assert_eq!(uids.len(), 2);
            },
            policy: defaults,
            expect: &[(
                "shop",
                "surging",
                Verdict::InsufficientEvidence,
                "no evidence for surging-7d9f-surge/app from node node-a",
            )],
            changes: &[],
        },
        Case {
            name: "a terminating pod without an entry",
            build: |f| {
                f.workload("shop", "draining", "default", 1, 1, &[("app", IDLE)], None);
                let rs = format!("draining-{HASH}");
                let uid =
                    f.pod("shop", &format!("{rs}-old"), Some(("ReplicaSet", &rs)), "default", &["app"], true, None);
                f.pod_mut(&uid).metadata.deletion_timestamp = Some(Fixture::obj(json!("2026-11-17T00:00:00Z")));
            },
            policy: defaults,
            expect: &[("shop", "draining", Verdict::InsufficientEvidence, "no evidence for draining-7d9f-old/app")],
            changes: &[],
        },
        Case {
            name: "a pod on a node without a reporting agent",
            build: |f| {
                f.workload("shop", "spread", "default", 1, 1, &[("app", IDLE)], None);
                f.node = "node-b".into();
                let rs = format!("spread-{HASH}");
                f.pod("shop", &format!("{rs}-b"), Some(("ReplicaSet", &rs)), "default", &["app"], true, None);
            },
            policy: defaults,
            expect: &[("shop", "spread", Verdict::InsufficientEvidence, "no evidence from node node-b")],
            changes: &[],
        },
        Case {
            name: "another node's entry for a pod does not count as its non-use",
            build: |f| {
                let rs = f.deployment("shop", "vouched", "default", 1, None);
                let uid = f.pod("shop", "vouched-0", Some(("ReplicaSet", &rs)), "default", &["app"], true, None);
                f.node("node-a");
                f.node = "node-b".into();
                f.seen(&uid, "shop", "vouched-0", "app", ("Deployment", "vouched"), "default", IDLE);
            },
            policy: defaults,
            expect: &[(
                "shop",
                "vouched",
                Verdict::InsufficientEvidence,
                "no evidence for vouched-0/app from node node-a",
            )],
            changes: &[],
        },
        Case {
            name: "another node's entry of use for a pod still counts",
            build: |f| {
                let rs = f.deployment("shop", "reported", "default", 1, None);
                let uid = f.pod("shop", "reported-0", Some(("ReplicaSet", &rs)), "default", &["app"], true, None);
                f.node = "node-b".into();
                f.seen(&uid, "shop", "reported-0", "app", ("Deployment", "reported"), "default", BUSY);
            },
            policy: defaults,
            expect: &[("shop", "reported", Verdict::UsesToken, "container app read the token")],
            changes: &[],
        },
        Case {
            name: "a container that has not started",
            build: |f| {
                let uids = f.workload("shop", "waiting", "default", 1, 1, &[("app", IDLE)], None);
                let pod = f.pod_mut(&uids[0]);
                let status = pod.status.as_mut().and_then(|s| s.container_statuses.as_mut()).expect("statuses");
                status[0].container_id = None;
            },
            policy: defaults,
            expect: &[("shop", "waiting", Verdict::InsufficientEvidence, "waiting-7d9f-0/app has not started")],
            changes: &[],
        },
        // 5. Runs are pods.
        Case {
            name: "three finished pods of the current template, seen from start: three runs",
            build: |f| {
                f.cronjob("batch", "nightly", "nightly");
                f.sa("batch", "nightly", None);
                let rev = f.cron_revision("batch", "nightly");
                for (i, phase) in ["Succeeded", "Failed", "Succeeded"].iter().enumerate() {
                    f.past(
                        "batch",
                        &format!("nightly-{i}"),
                        &["job"],
                        ("CronJob", "nightly"),
                        "nightly",
                        Some(&rev),
                        phase,
                        IDLE,
                    );
                }
            },
            policy: defaults,
            expect: &[("batch", "nightly", Verdict::SafeToDisable, "no token use by 3/3 runs")],
            changes: &["ServiceAccount batch/nightly=false"],
        },
        Case {
            name: "container restarts in one pod are one run",
            build: |f| {
                f.cronjob("batch", "flaky", "flaky");
                let rev = f.cron_revision("batch", "flaky");
                let uid =
                    f.past("batch", "flaky-0", &["job"], ("CronJob", "flaky"), "flaky", Some(&rev), "Succeeded", IDLE);
                // Two more instances of the same container in the same pod (restartPolicy: OnFailure).
                for n in 1..3 {
                    let mut e = f.node("node-a").containers.last().cloned().expect("entry");
                    e.container_id = Some(format!("{uid}-job-{n}"));
                    f.node("node-a").containers.push(e);
                }
            },
            policy: defaults,
            expect: &[(
                "batch",
                "flaky",
                Verdict::InsufficientEvidence,
                "1 of the required 3 runs observed from start",
            )],
            changes: &[],
        },
        Case {
            name: "runs of an earlier job template do not count",
            build: |f| {
                f.cronjob("batch", "edited", "edited");
                for i in 0..3 {
                    f.past(
                        "batch",
                        &format!("edited-{i}"),
                        &["job"],
                        ("CronJob", "edited"),
                        "edited",
                        Some("tpl-0000000000000000"),
                        "Succeeded",
                        IDLE,
                    );
                }
            },
            policy: defaults,
            expect: &[(
                "batch",
                "edited",
                Verdict::InsufficientEvidence,
                "0 of the required 3 runs observed from start",
            )],
            changes: &[],
        },
        Case {
            name: "pods still running are not runs yet; retired runs of the template count",
            build: |f| {
                f.cronjob("batch", "slow", "slow");
                let rev = f.cron_revision("batch", "slow");
                f.past("batch", "slow-0", &["job"], ("CronJob", "slow"), "slow", Some(&rev), "Running", IDLE);
                f.node("node-a").retired.push(retired("batch", ("CronJob", "slow"), "slow", Some(rev), 2));
            },
            policy: defaults,
            expect: &[("batch", "slow", Verdict::InsufficientEvidence, "2 of the required 3 runs observed from start")],
            changes: &[],
        },
        // 6. Use by workloads that are gone.
        Case {
            name: "a deleted Job read the token under the ServiceAccount: it stays, the safe neighbour gets a template change",
            build: |f| {
                f.workload("ci", "runner", "builder", 1, 1, &[("app", IDLE)], None);
                f.past(
                    "ci",
                    "migrate-db-x7k2p",
                    &["migrate"],
                    ("Job", "migrate-db"),
                    "builder",
                    Some("tpl-1"),
                    "Succeeded",
                    BUSY,
                );
            },
            policy: defaults,
            expect: &[("ci", "runner", Verdict::SafeToDisable, "")],
            changes: &["Deployment ci/runner=false"],
        },
        Case {
            name: "use by a gone workload beyond the retention window no longer holds the ServiceAccount",
            build: |f| {
                f.workload("ci", "runner", "builder", 1, 1, &[("app", IDLE)], None);
                f.past(
                    "ci",
                    "migrate-db-x7k2p",
                    &["migrate"],
                    ("Job", "migrate-db"),
                    "builder",
                    Some("tpl-1"),
                    "Succeeded",
                    BUSY,
                );
                for e in &mut f.node("node-a").containers {
                    if e.pod.as_deref() == Some("migrate-db-x7k2p") {
                        e.last_seen = Some(now() - Duration::from_hours(24 * 40));
                    }
                }
            },
            policy: defaults,
            expect: &[("ci", "runner", Verdict::SafeToDisable, "")],
            changes: &["ServiceAccount ci/builder=false"],
        },
        Case {
            name: "retired totals of a removed Deployment keep the ServiceAccount",
            build: |f| {
                f.workload("ops", "keeper", "ops", 1, 1, &[("app", IDLE)], None);
                let mut r = retired("ops", ("Deployment", "removed"), "ops", Some("abc".into()), 0);
                r.reads.token = 12;
                f.node("node-a").retired.push(r);
            },
            policy: defaults,
            expect: &[("ops", "keeper", Verdict::SafeToDisable, "")],
            changes: &["Deployment ops/keeper=false"],
        },
        // 7. Blind spots.
        Case {
            name: "a tracepoint-mode node: blind to io_uring, insufficient by default",
            build: |f| {
                f.workload("shop", "traced", "default", 1, 1, &[("app", IDLE)], None);
                f.node("node-a").agent.hooks.file_open = Some("tracepoint".into());
            },
            policy: defaults,
            expect: &[(
                "shop",
                "traced",
                Verdict::InsufficientEvidence,
                "tracepoint mode, blind to opens through io_uring",
            )],
            changes: &[],
        },
        Case {
            name: "a tracepoint-mode node accepted: safe, and the verdict states the blind spot",
            build: |f| {
                f.workload("shop", "traced", "default", 1, 1, &[("app", IDLE)], None);
                f.node("node-a").agent.hooks.file_open = Some("tracepoint".into());
            },
            policy: |p| p.accept_tracepoint = true,
            expect: &[("shop", "traced", Verdict::SafeToDisable, "(accepted by --accept-tracepoint-mode)")],
            changes: &["ServiceAccount shop/default=false"],
        },
        Case {
            name: "no API server address watched: connects unseen",
            build: |f| {
                f.workload("shop", "unwatched", "default", 1, 1, &[("app", IDLE)], None);
                f.node("node-a").agent.targets.clear();
            },
            policy: defaults,
            expect: &[("shop", "unwatched", Verdict::InsufficientEvidence, "watches no API server address")],
            changes: &[],
        },
        Case {
            name: "an API server address that did not fit the target map",
            build: |f| {
                f.workload("shop", "partial", "default", 1, 1, &[("app", IDLE)], None);
                f.node("node-a").agent.targets_not_watched = vec!["10.0.0.9:6443".into()];
            },
            policy: defaults,
            expect: &[(
                "shop",
                "partial",
                Verdict::InsufficientEvidence,
                "could not watch API server address(es) 10.0.0.9:6443",
            )],
            changes: &[],
        },
        Case {
            name: "no connect hook",
            build: |f| {
                f.workload("shop", "deaf", "default", 1, 1, &[("app", IDLE)], None);
                f.node("node-a").agent.hooks.connect = None;
            },
            policy: defaults,
            expect: &[("shop", "deaf", Verdict::InsufficientEvidence, "has no connect hook")],
            changes: &[],
        },
        Case {
            name: "an API connect alone is use",
            build: |f| {
                f.workload("shop", "caller", "default", 1, 1, &[("app", Seen { connects: 1, ..IDLE })], None);
            },
            policy: defaults,
            expect: &[(
                "shop",
                "caller",
                Verdict::UsesToken,
                "read the token 0 times and connected to the API server 1 times",
            )],
            changes: &[],
        },
        // What the agent could not see (part 2).
        Case {
            name: "an init container that ran before the agent (no entry) keeps the pod unseen",
            build: |f| {
                let uids = f.workload("vault", "app", "default", 1, 1, &[("app", IDLE)], None);
                let status = f.pod_mut(&uids[0]).status.as_mut().expect("status");
                status.init_container_statuses = Some(vec![Fixture::obj(json!({"name": "vault-agent-init",
                    "containerID": "containerd://0000", "image": "", "imageID": "", "ready": false, "restartCount": 0}))]);
            },
            policy: defaults,
            expect: &[("vault", "app", Verdict::InsufficientEvidence, "no evidence for app-7d9f-0/vault-agent-init")],
            changes: &[],
        },
        Case {
            name: "an init container seen from start counts like the others",
            build: |f| {
                let uids = f.workload("vault", "app", "default", 1, 1, &[("app", IDLE)], None);
                let status = f.pod_mut(&uids[0]).status.as_mut().expect("status");
                let id = format!("{}-init", uids[0]);
                status.init_container_statuses = Some(vec![Fixture::obj(json!({"name": "init",
                    "containerID": format!("containerd://{id}"), "image": "", "imageID": "", "ready": false, "restartCount": 0}))]);
                f.seen(&uids[0], "vault", "app-7d9f-0", "init", ("Deployment", "app"), "default", IDLE);
            },
            policy: defaults,
            expect: &[("vault", "app", Verdict::SafeToDisable, "")],
            changes: &["ServiceAccount vault/default=false"],
        },
        Case {
            name: "a container the agent says it could not cover",
            build: |f| {
                f.workload("shop", "symlinked", "default", 1, 1, &[("app", IDLE)], None);
                f.node("node-a").containers[0].uncovered =
                    vec!["its automount volume kube-api-access-x was not found in the host mount table".into()];
            },
            policy: defaults,
            expect: &[(
                "shop",
                "symlinked",
                Verdict::InsufficientEvidence,
                "not covered by the agent: symlinked-7d9f-0/app (its automount volume",
            )],
            changes: &[],
        },
        Case {
            name: "counts the node could not attribute during the observation make it partial",
            build: |f| {
                f.workload("shop", "partial", "default", 1, 1, &[("app", IDLE)], None);
                let u = &mut f.node("node-a").agent.unattributed;
                u.keys = 1;
                u.reads.token = 2;
                u.last_seen = Some(now() - Duration::from_hours(3));
            },
            policy: defaults,
            expect: &[(
                "shop",
                "partial",
                Verdict::InsufficientEvidence,
                "under 1 kernel key(s) it could not attribute",
            )],
            changes: &[],
        },
        Case {
            name: "losses before the observation began do not count against it; the same loss later does",
            build: |f| {
                f.workload("shop", "before", "default", 1, 1, &[("app", IDLE)], None);
                f.node("node-a").agent.losses.counter_map_full.add(5, now() - Duration::from_hours(100));
                f.node = "node-b".into();
                let rs = f.deployment("shop", "during", "other", 1, None);
                let uid = f.pod("shop", &format!("{rs}-0"), Some(("ReplicaSet", &rs)), "other", &["app"], true, None);
                f.seen(&uid, "shop", &format!("{rs}-0"), "app", ("Deployment", "during"), "other", IDLE);
                f.node("node-b").agent.losses.counter_map_full.add(5, now() - Duration::from_hours(1));
            },
            policy: defaults,
            expect: &[
                ("shop", "before", Verdict::SafeToDisable, ""),
                (
                    "shop",
                    "during",
                    Verdict::InsufficientEvidence,
                    "lost events (counter map full 5, failed kernel reads 0, last at",
                ),
            ],
            changes: &["ServiceAccount shop/default=false"],
        },
        // Safe shapes that must stay safe.
        Case {
            name: "idle replicas recreated an hour ago, the template watched for two days: safe",
            build: |f| {
                let rs = f.deployment("shop", "churned", "default", 2, None);
                f.past(
                    "shop",
                    &format!("{rs}-gone"),
                    &["app"],
                    ("Deployment", "churned"),
                    "default",
                    Some(HASH),
                    "Running",
                    IDLE,
                );
                for i in 0..2 {
                    let pod = format!("{rs}-{i}");
                    let uid = f.pod("shop", &pod, Some(("ReplicaSet", &rs)), "default", &["app"], true, None);
                    f.seen(&uid, "shop", &pod, "app", ("Deployment", "churned"), "default", Seen { hours: 1, ..IDLE });
                }
            },
            policy: defaults,
            expect: &[("shop", "churned", Verdict::SafeToDisable, "no token use by 2/2 replicas over 2d0h")],
            changes: &["ServiceAccount shop/default=false"],
        },
        Case {
            name: "a rolled-back Deployment: the older ReplicaSet is current again (highest revision)",
            build: |f| {
                f.workload("shop", "rolledback", "default", 1, 1, &[("app", IDLE)], None);
                f.replica_set("shop", "rolledback", "8c2e", 2);
                for rs in &mut f.inputs.replica_sets {
                    if rs.metadata.name.as_deref() == Some("rolledback-7d9f") {
                        let annotations = rs.metadata.annotations.get_or_insert_default();
                        annotations.insert("deployment.kubernetes.io/revision".into(), "3".into());
                    }
                }
            },
            policy: defaults,
            expect: &[("shop", "rolledback", Verdict::SafeToDisable, "")],
            changes: &["ServiceAccount shop/default=false"],
        },
        Case {
            name: "a fresh pod alone, watched for no time: insufficient, not unsafe",
            build: |f| {
                f.workload("shop", "new", "default", 1, 1, &[("app", FRESH)], None);
            },
            policy: defaults,
            expect: &[("shop", "new", Verdict::InsufficientEvidence, "too short")],
            changes: &[],
        },
    ];
    for case in cases {
        let mut f = Fixture::new();
        (case.build)(&mut f);
        let mut policy = Fixture::policy();
        (case.policy)(&mut policy);
        let plan = plan(&f.inputs, &policy);
        for (ns, name, v, reason) in case.expect {
            let (got, reasons) = verdict(&plan, ns, name);
            assert_eq!(got, *v, "{}: {ns}/{name}: {reasons:#?}", case.name);
            let summary = plan
                .workloads
                .iter()
                .find(|w| w.workload.name == *name && w.workload.namespace == *ns)
                .map(|w| w.summary.clone())
                .unwrap_or_default();
            assert!(
                reason.is_empty() || reasons.iter().any(|r| r.contains(reason)) || summary.contains(reason),
                "{}: {ns}/{name}: expected a reason with {reason:?}, got {reasons:#?} / {summary:?}",
                case.name
            );
        }
        assert_eq!(changes(&plan), case.changes, "{}", case.name);
        assert_never_removes_a_used_token(&plan);
    }
}

#[test]
fn gone_users_are_shown_on_their_service_account() {
    let mut f = Fixture::new();
    f.sa("ci", "builder", None);
    f.workload("ci", "runner", "builder", 1, 1, &[("app", IDLE)], None);
    f.past("ci", "migrate-db-x7k2p", &["migrate"], ("Job", "migrate-db"), "builder", Some("tpl-1"), "Succeeded", BUSY);
    let plan = f.plan();
    let sa = plan.service_accounts.iter().find(|s| s.name == "builder").expect("sa");
    assert_eq!(sa.verdict, Verdict::UsesToken);
    assert_eq!(sa.gone_users.len(), 1);
    assert_eq!(sa.gone_users[0].workload, "job/migrate-db");
    assert!(
        sa.reasons.iter().any(|r| r.contains("token used by workloads that are gone") && r.contains("job/migrate-db"))
    );
    assert!(output::plan_table(&plan).contains("job/migrate-db"), "{}", output::plan_table(&plan));
}

/// A CronJob with three idle runs observed from start on `node-a`.
fn nightly() -> Fixture {
    let mut f = Fixture::new();
    f.cronjob("batch", "nightly", "nightly");
    f.sa("batch", "nightly", None);
    let rev = f.cron_revision("batch", "nightly");
    for i in 0..3 {
        f.past(
            "batch",
            &format!("nightly-{i}"),
            &["job"],
            ("CronJob", "nightly"),
            "nightly",
            Some(&rev),
            "Succeeded",
            IDLE,
        );
    }
    f
}

/// [`nightly`], and the copies `forge` makes of its entries published by `node-evil`.
fn nightly_with_copies(forge: impl Fn(&mut ContainerEvidence)) -> Plan {
    let mut f = nightly();
    let mut copies = f.node("node-a").containers.clone();
    copies.iter_mut().for_each(forge);
    f.node("node-evil").containers.extend(copies);
    f.plan()
}

/// A pod runs on one node: when two nodes report the same gone pod, one of them speaks for a
/// pod that is not its own, and the planner cannot tell which — so neither proves non-use, while
/// use reported by either still counts.
#[test]
fn a_node_cannot_vouch_for_another_nodes_gone_pods() {
    let alone = nightly_with_copies(|_| {});
    let (v, reasons) = verdict(&alone, "batch", "nightly");
    assert_eq!(v, Verdict::InsufficientEvidence, "runs reported by two nodes counted: {reasons:?}");
    let used = nightly_with_copies(|e| e.reads.token = 5);
    assert_eq!(verdict(&used, "batch", "nightly").0, Verdict::UsesToken, "use from any node counts");
    // Without the copies the same runs are enough (the soundness table's case 5).
    assert_eq!(verdict(&nightly().plan(), "batch", "nightly").0, Verdict::SafeToDisable);
}

/// A `NodeTokenEvidence` object named after one node that says it is another node's is taken as
/// the evidence of the node it is named after: it shows use by the other node's pods, and never
/// vouches for them.
#[test]
fn an_object_speaks_only_for_the_node_it_is_named_after() {
    let build = |token: u64| {
        let mut f = Fixture::new();
        f.sa("shop", "web", None);
        f.workload("shop", "web", "web", 1, 1, &[("app", Seen { token, ..IDLE })], None);
        // The only evidence of node-a's pod comes from an object named after node-evil.
        let forged = f.inputs.evidence.remove(0);
        assert_eq!(forged.node, "node-a");
        f.inputs.evidence.push(crate::plan::inputs::published_by("node-evil", forged));
        f.plan()
    };
    let (v, reasons) = verdict(&build(0), "shop", "web");
    assert_eq!(v, Verdict::InsufficientEvidence, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("node-a")), "the pod's own node is named: {reasons:?}");
    assert_eq!(verdict(&build(7), "shop", "web").0, Verdict::UsesToken);
    // Named after the node it describes, the same evidence is that node's.
    let own = crate::plan::inputs::published_by("node-a", Fixture::new().node("node-a").clone());
    assert_eq!(own.node, "node-a");
}

/// A node that left entries without use out of its published evidence (over the size limit)
/// cannot vouch for its pods: the ones it kept are not enough.
#[test]
fn a_node_that_shed_entries_is_partial() {
    let mut f = Fixture::new();
    f.sa("shop", "web", None);
    f.workload("shop", "web", "web", 1, 1, &[("app", IDLE)], None);
    assert_eq!(verdict(&f.plan(), "shop", "web").0, Verdict::SafeToDisable);
    f.node("node-a").agent.truncated = Some(crate::evidence::Truncated {
        limit_bytes: 1_000_000,
        shed: vec![
            "process names".into(),
            "0 retired total(s) without use".into(),
            "2 container entr(ies) without use".into(),
        ],
        entries_without_use: 2,
    });
    let (v, reasons) = verdict(&f.plan(), "shop", "web");
    assert_eq!(v, Verdict::InsufficientEvidence);
    assert!(reasons.iter().any(|r| r.contains("coverage is partial") && r.contains("node-a")), "{reasons:?}");
}
