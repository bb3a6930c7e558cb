//! Every verdict and placement case, and the order of the phases.

use super::*;
use crate::evidence::RetiredTotals;

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
            build: |f| {
                f.workload("new", "fresh", "default", 1, 1, &[("app", Seen { hours: 2, ..IDLE })], None);
            },
            expect: &[(
                "new",
                "fresh",
                Verdict::InsufficientEvidence,
                "too short: observed for 2h0m of the required 1d0h (the current pod template's pods only)",
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
            build: |f| {
                f.workload("shop", "cart", "default", 3, 2, &[("app", IDLE)], None);
            },
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
                "the agent on node node-a lost events (first-seen notices 7",
            )],
            changes: &[],
        },
        Case {
            name: "exec-only use: people or the application's own exec, the kernel cannot tell",
            build: |f| {
                f.workload("shop", "debugged", "default", 1, 1, &[("app", Seen { exec: 3, ..IDLE })], None);
            },
            expect: &[(
                "shop",
                "debugged",
                Verdict::InsufficientEvidence,
                "exec sessions into app (3 reads, 0 API connects) used the token",
            )],
            changes: &[],
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
                    let revision = f.cron_revision("batch", name);
                    f.node("node-a").retired.push(RetiredTotals {
                        namespace: Some("batch".into()),
                        workload: Some(Workload { kind: "CronJob".into(), name: name.into() }),
                        container: Some("job".into()),
                        service_account: Some(name.into()),
                        revision: Some(revision),
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
