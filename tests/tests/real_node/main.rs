//! The real node: `deploy/` on a real kubelet + containerd node (`cargo xtask node start`), the
//! agent's image built by `cargo xtask image`, real workloads, and the whole chain users run:
//! evidence, plan, the change rolled out by the real controllers, verify.
//!
//! Needs root and the node: `TOKENPROBE_NODE_KUBECONFIG` (its API server), `TOKENPROBE_NODE_NAME`,
//! `TOKENPROBE_AGENT_IMAGE` and `TOKENPROBE_WORKLOAD_IMAGE` (imported there), and
//! `TOKENPROBE_AGENT_BIN` (for `plan` and `verify`). `cargo xtask test` starts the node, runs this
//! and stops it; without the node the cases are reported skipped (and fail in CI). The cases
//! build on each other, in order.

mod workloads;

use std::{process::ExitCode, time::Duration};

use probe_agent::evidence::{ContainerEvidence, Evidence};
use probe_tests::{
    cluster::TestNamespace,
    real_node::{self, Node},
    runner::{Suite, without_root},
};
use tokio::runtime::Runtime;

/// What the cases share: the workloads' namespace.
#[derive(Default)]
struct Ctx {
    ns: Option<TestNamespace>,
}

impl Ctx {
    fn ns(&self) -> &str {
        &self.ns.as_ref().expect("the workloads case ran first").name
    }
}

type Case = fn(&Runtime, &Node, &mut Ctx);

const CASES: &[(&str, Case)] = &[
    ("deploy_runs_and_publishes", deploy_runs_and_publishes),
    ("workloads_are_attributed", workloads_are_attributed),
    ("the_planner_job_writes_reports", the_planner_job_writes_reports),
    ("agent_pod_deleted_mid_run_loses_nothing", agent_pod_deleted_mid_run),
    ("plan_change_and_verify", plan_change_and_verify),
    ("a_mistake_is_caught_and_rolled_back", a_mistake_is_caught_and_rolled_back),
];

fn main() -> ExitCode {
    if let Some(code) = without_root("real-node") {
        return code;
    }
    let in_ci = std::env::var_os("CI").is_some();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut suite = Suite::from_args();
    match rt.block_on(Node::from_env()) {
        Ok(node) => {
            let mut ctx = Ctx::default();
            for (name, case) in CASES {
                suite.run(&format!("real-node/{name}"), || case(&rt, &node, &mut ctx));
            }
            suite.finish()
        }
        Err(reason) if !in_ci => {
            for (name, _) in CASES {
                suite.skip(&format!("real-node/{name}"), &reason);
            }
            suite.finish_allowing_skips()
        }
        Err(reason) => {
            eprintln!("error: the real-node tests need the node: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// `deploy/` applied with only the image changed: the agent pod becomes Ready with exactly the
/// manifest's capabilities and publishes a NodeTokenEvidence that lists a running pod under its
/// workload.
fn deploy_runs_and_publishes(rt: &Runtime, node: &Node, _ctx: &mut Ctx) {
    let pod = node.deploy_agent(rt);
    let pid = real_node::agent_pid().expect("the agent's process on this host (hostPID)");
    let held = probe_tests::caps::effective(pid);
    let wanted = probe_tests::caps::daemonset_security().add;
    assert_eq!(held, wanted, "the agent pod {pod} runs with exactly the manifest's capabilities: {:?}", held.names());
    let ns = rt.block_on(TestNamespace::new(&node.client, "smoke"));
    node.deployment(rt, &ns, "sleeper", 1, "sleep 3600");
    let ev = node.evidence_where(rt, Duration::from_mins(2), |ev| {
        ev.containers.iter().any(|c| {
            c.namespace.as_deref() == Some(ns.name.as_str())
                && c.workload.as_ref().is_some_and(|w| w.kind == "Deployment" && w.name == "sleeper")
                && c.gone_since.is_none()
        })
    });
    let e =
        ev.containers.iter().find(|c| c.namespace.as_deref() == Some(ns.name.as_str())).expect("the sleeper's entry");
    assert_eq!(e.container.as_deref(), Some("main"), "{e:#?}");
    assert_eq!(e.service_account.as_deref(), Some("default"));
    assert_eq!(e.reads.total() + e.api_connects, 0, "it only sleeps: {e:#?}");
    println!(
        "# the agent on {}: file-open={} connect={} key={:?}",
        ev.node,
        ev.agent.hooks.file_open.as_deref().unwrap_or("-"),
        ev.agent.hooks.connect.as_deref().unwrap_or("-"),
        ev.agent.container_key
    );
    rt.block_on(ns.cleanup());
}

/// The entries of a namespace's workload (all its pods and containers).
fn of<'e>(ev: &'e Evidence, ns: &str, workload: &str) -> Vec<&'e ContainerEvidence> {
    ev.containers
        .iter()
        .filter(|c| c.namespace.as_deref() == Some(ns) && c.workload.as_ref().is_some_and(|w| w.name == workload))
        .collect()
}

fn named<'e>(entries: &[&'e ContainerEvidence], container: &str) -> Vec<&'e ContainerEvidence> {
    entries.iter().copied().filter(|e| e.container.as_deref() == Some(container)).collect()
}

/// Asks the on-demand reader to read its token `n` times, one at a time.
fn ask_reads(node: &Node, ns: &str, pod: &str, n: usize) {
    for _ in 0..n {
        let out = node.exec(ns, pod, &["sh", "-c", "touch /tmp/go; while [ -f /tmp/go ]; do sleep 0.1; done"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Real workloads, each doing one thing with its token; every container's evidence says who
/// it is and what it did.
fn workloads_are_attributed(rt: &Runtime, node: &Node, ctx: &mut Ctx) {
    // Faster publication than the manifest's 60 s, for the test's waits (a test-only patch).
    node.patch_agent_args(rt, &["--publish-interval", "5s"]);
    let ns = rt.block_on(TestNamespace::new(&node.client, "realnode"));
    for sa in workloads::SERVICE_ACCOUNTS {
        node.apply_in(
            Some(&ns.name),
            &format!("{{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\",\"metadata\":{{\"name\":\"{sa}\"}}}}"),
        );
    }
    for (_, _, object) in workloads::all(&node.workload_image) {
        node.apply_in(Some(&ns.name), &object.to_string());
    }
    for (app, n) in [
        ("api-client", 1),
        ("idle", 2),
        ("db", 1),
        ("mesh", 1),
        ("boot", 1),
        ("probed", 1),
        ("toolbox", 1),
        ("on-demand", 1),
    ] {
        node.wait_ready(rt, &ns.name, &format!("app={app}"), n, Duration::from_mins(2));
    }
    let toolbox = node.pods(rt, &ns.name, "app=toolbox").remove(0).metadata.name.unwrap_or_default();
    for _ in 0..2 {
        let out = node.exec(&ns.name, &toolbox, &["cat", workloads::TOKEN]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let on_demand = node.pods(rt, &ns.name, "app=on-demand").remove(0).metadata.name.unwrap_or_default();
    ask_reads(node, &ns.name, &on_demand, 3);
    let name = ns.name.clone();
    let ev = node.evidence_where(rt, Duration::from_mins(3), |ev| {
        let ready =
            |w: &str, c: &str, f: fn(&ContainerEvidence) -> bool| named(&of(ev, &name, w), c).iter().any(|e| f(e));
        ready("api-client", "main", |e| e.reads.token > 0 && e.api_connects > 0)
            && ready("mesh", "sidecar", |e| e.reads.token > 0 && e.reads.ca_crt > 0)
            && ready("boot", "reader", |e| e.reads.token == 1)
            && ready("probed", "main", |e| e.exec_reads.token > 0)
            && ready("toolbox", "main", |e| e.exec_reads.token == 2)
            && ready("on-demand", "main", |e| e.reads.token == 3)
            && ready("nightly", "job", |e| e.pod_phase.as_deref() == Some("Succeeded"))
    });
    let check = |workload: &str, kind: &str, sa: &str| {
        let entries = of(&ev, &name, workload);
        assert!(!entries.is_empty(), "{workload}: no entry");
        for e in &entries {
            assert_eq!(e.workload.as_ref().map(|w| w.kind.as_str()), Some(kind), "{e:#?}");
            assert_eq!(e.service_account.as_deref(), Some(sa), "{e:#?}");
            assert_eq!(e.observed_from_start, Some(true), "created after the agent: {e:#?}");
            assert!(e.uncovered.is_empty(), "{e:#?}");
        }
        entries
    };
    let api = check("api-client", "Deployment", "reader");
    assert!(api.iter().all(|e| e.exec_reads.total() == 0 && e.reads.ca_crt == 0), "{api:#?}");
    for e in check("idle", "Deployment", "quiet").iter().chain(&check("db", "StatefulSet", "quiet")) {
        assert_eq!((e.reads.total(), e.api_connects, e.exec_reads.total()), (0, 0, 0), "idle: {e:#?}");
    }
    assert_eq!(check("idle", "Deployment", "quiet").len(), 2, "two replicas");
    let mesh = check("mesh", "Deployment", "mesh");
    assert!(
        named(&mesh, "app").iter().all(|e| e.reads.total() + e.api_connects == 0),
        "only the sidecar reads: {mesh:#?}"
    );
    assert!(named(&mesh, "sidecar").iter().all(|e| e.reads.namespace > 0 && e.api_connects == 0), "{mesh:#?}");
    let boot = check("boot", "Deployment", "boot");
    assert!(named(&boot, "reader").iter().all(|e| e.gone_since.is_some()), "the init container ended: {boot:#?}");
    assert!(named(&boot, "main").iter().all(|e| e.reads.total() == 0), "{boot:#?}");
    let probed = check("probed", "Deployment", "probed");
    assert!(
        probed.iter().all(|e| e.reads.token == 0),
        "the probe's reads are exec sessions, not the app's: {probed:#?}"
    );
    let toolbox_entries = check("toolbox", "Deployment", "toolbox");
    assert!(
        toolbox_entries.iter().all(|e| e.reads.total() == 0 && e.exec_processes.iter().any(|p| p == "cat")),
        "{toolbox_entries:#?}"
    );
    let nightly = check("nightly", "CronJob", "batch");
    assert!(nightly.iter().all(|e| e.reads.total() + e.api_connects == 0), "{nightly:#?}");
    println!("# {} containers attributed, {} CronJob run(s) seen", ev.containers.len(), nightly.len());
    audit_witness_agrees(node, &ns.name);
    ctx.ns = Some(ns);
}

/// The second witness on the real node: the kubelet mints the api-client's token bound to its
/// pod, so the API server's audit log names the pod, and the plan with `--audit-log` adds "N API
/// requests with its token seen by the API server" to what the agent saw; the idle workload
/// gets no such reason.
fn audit_witness_agrees(node: &Node, ns: &str) {
    let log = std::env::var("TOKENPROBE_NODE_AUDIT_LOG").expect("TOKENPROBE_NODE_AUDIT_LOG");
    let policy = std::env::var("TOKENPROBE_NODE_AUDIT_POLICY").expect("TOKENPROBE_NODE_AUDIT_POLICY");
    let out = node.probe_agent(&["plan", "-n", ns, "-o", "json", "--audit-log", &log, "--audit-policy", &policy]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let reasons = |name: &str| -> Vec<String> {
        let w = plan["workloads"].as_array().and_then(|w| w.iter().find(|w| w["workload"]["name"] == name));
        let w = w.unwrap_or_else(|| panic!("{name} is not in the plan"));
        w["reasons"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_owned)).collect()
    };
    let api = reasons("api-client");
    assert!(api.iter().any(|r| r.contains("API requests with its token seen by the API server")), "{api:#?}");
    let idle = reasons("idle");
    assert!(!idle.iter().any(|r| r.contains("seen by the API server")), "{idle:#?}");
    println!("# audit log: {}", api.iter().find(|r| r.contains("seen by the API server")).map_or("", String::as_str));
}

/// The agent pod deleted mid-run: the DaemonSet recreates it, it continues from its saved
/// state; what was counted while an agent was attached stays, and the gap is recorded.
fn agent_pod_deleted_mid_run(rt: &Runtime, node: &Node, ctx: &mut Ctx) {
    let ns = ctx.ns().to_owned();
    let pod = node.pods(rt, &ns, "app=on-demand").remove(0).metadata.name.unwrap_or_default();
    let before = node.evidence_where(rt, Duration::from_mins(1), |ev| {
        named(&of(ev, &ns, "on-demand"), "main").iter().any(|e| e.reads.token == 3)
    });
    let gaps = before.agent.gaps.len();
    let agent = node.wait_agent_ready(rt);
    let deleted_at = time::OffsetDateTime::now_utc();
    let out =
        node.kubectl().args(["-n", "tokenprobe", "delete", "pod", &agent, "--wait=true"]).output().expect("kubectl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    node.wait_agent_ready(rt);
    let back_at = time::OffsetDateTime::now_utc();
    ask_reads(node, &ns, &pod, 2);
    let ev = node.evidence_where(rt, Duration::from_mins(1), |ev| {
        ev.agent.gaps.len() > gaps && named(&of(ev, &ns, "on-demand"), "main").iter().any(|e| e.reads.token == 5)
    });
    let gap = ev.agent.gaps.last().expect("the restart's gap");
    assert!(
        gap.from >= deleted_at - time::Duration::seconds(1) && gap.to <= back_at,
        "{gap:?} within {deleted_at}..{back_at}"
    );
    let e = named(&of(&ev, &ns, "on-demand"), "main")[0];
    assert_eq!(e.reads.token, 5, "3 before + 2 after; nothing lost: {e:#?}");
    let gap_seconds = u64::try_from((gap.to - gap.from).whole_seconds()).unwrap_or(0);
    assert!(e.unobserved_seconds >= gap_seconds, "it ran through the gap: {} < {gap_seconds}", e.unobserved_seconds);
    println!("# agent away {gap_seconds} s; counts kept");
}

/// The migration as users run it: `plan` on the live cluster, its script applied so the real
/// controllers roll the pods, the restarted pods really without (or with) the token, `verify`
/// with the missing-token detector clean.
/// The planner CronJob of `deploy/kustomize/overlays/planner-cronjob`, run once as a Job (the
/// 1.20 node serves CronJobs as batch/v1beta1 only): the agent's image as a non-root user, its
/// own ServiceAccount and RBAC, in-cluster configuration; it writes a PolicyReport for the
/// workloads' namespace.
fn the_planner_job_writes_reports(rt: &Runtime, node: &Node, ctx: &mut Ctx) {
    let ns = ctx.ns().to_owned();
    node.apply(probe_tests::cluster::POLICY_REPORT_CRD);
    let overlay = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kustomize/overlays/planner-cronjob");
    let out = std::process::Command::new("kubectl").arg("kustomize").arg(&overlay).output().expect("kubectl kustomize");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let objects: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(d).expect("YAML"))
                .expect("JSON")
        })
        .collect();
    let planner = |o: &&serde_json::Value| o["metadata"]["name"] == "tokenprobe-planner";
    for object in objects.iter().filter(planner).filter(|o| o["kind"] != "CronJob") {
        node.apply(&object.to_string());
    }
    let cronjob = objects.iter().filter(planner).find(|o| o["kind"] == "CronJob").expect("the CronJob");
    let mut spec = cronjob["spec"]["jobTemplate"]["spec"].clone();
    let container = &mut spec["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/tokenprobe/probe-agent:0.1.0");
    container["image"] = node.agent_image.clone().into();
    let job = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "tokenprobe-planner-once", "namespace": "tokenprobe"},
        "spec": spec,
    });
    node.apply(&job.to_string());
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> = kube::Api::namespaced(node.client.clone(), "tokenprobe");
    let deadline = std::time::Instant::now() + Duration::from_mins(2);
    loop {
        let status = rt.block_on(jobs.get("tokenprobe-planner-once")).expect("the Job").status.unwrap_or_default();
        if status.succeeded.unwrap_or(0) > 0 {
            break;
        }
        let logs = || {
            let out = node.kubectl().args(["-n", "tokenprobe", "logs", "job/tokenprobe-planner-once"]).output();
            out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
        };
        assert!(status.failed.unwrap_or(0) == 0, "the planner Job failed: {}", logs());
        assert!(std::time::Instant::now() < deadline, "the planner Job did not finish: {status:?} {}", logs());
        std::thread::sleep(Duration::from_secs(2));
    }
    let out = node
        .kubectl()
        .args(["-n", &ns, "get", "policyreports.wgpolicyk8s.io", "tokenprobe-automount", "-o", "json"])
        .output()
        .expect("kubectl get");
    assert!(out.status.success(), "no report in {ns}: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let result_of = |name: &str| {
        report["results"].as_array().expect("results").iter().find(|r| r["resources"][0]["name"] == name).cloned()
    };
    let client = result_of("api-client").unwrap_or_else(|| panic!("api-client not in {report}"));
    assert_eq!(client["result"], "pass", "api-client uses its token: {client}");
    assert_eq!(client["properties"]["verdict"], "uses-token");
    assert!(result_of("idle").is_some(), "idle not in {report}");
    node.kubectl()
        .args(["-n", "tokenprobe", "delete", "job", "tokenprobe-planner-once", "--cascade=background"])
        .output()
        .expect("kubectl delete");
}

fn plan_change_and_verify(rt: &Runtime, node: &Node, ctx: &mut Ctx) {
    let ns = ctx.ns().to_owned();
    // The documented patch for verifying (docs/migration.md): the missing-token detector on.
    node.patch_agent_with(rt, "detect-missing-token.json");
    node.evidence_where(rt, Duration::from_mins(1), |ev| ev.agent.missing_token_detector);
    let plan_args = [
        "plan",
        "-n",
        &ns,
        "--min-observation",
        "20s",
        "--min-runs",
        "1",
        "--accept-tracepoint-mode",
        "--ignore-exec-sessions",
    ];
    // The CronJob starts a run every minute: a run's pod can exist before the agent has
    // published its first evidence (every 5 s), and then the plan rightly says so. Planned
    // again after a publication, for up to 90 s (a run's pod can take a while to start on a
    // loaded machine: 4 tries in 24 s once fell short in CI); any other reason fails at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let plan: serde_json::Value = loop {
        let out = node.probe_agent(&[&plan_args[..], &["-o", "json"]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
        let just_started = plan["workloads"].as_array().is_some_and(|ws| {
            ws.iter().any(|w| {
                w["workload"]["name"] == "nightly"
                    && w["verdict"] == "insufficient-evidence"
                    && w["reasons"].to_string().contains("current pods without evidence")
            })
        });
        if !just_started || std::time::Instant::now() > deadline {
            break plan;
        }
        println!("# a nightly run started just before the plan; planning again");
        std::thread::sleep(Duration::from_secs(6));
    };
    let verdict = |w: &str| {
        plan["workloads"]
            .as_array()
            .expect("workloads")
            .iter()
            .find(|x| x["workload"]["name"] == w)
            .map(|x| (x["verdict"].as_str().unwrap_or_default().to_owned(), x["reasons"].to_string()))
    };
    for (w, v) in [
        ("api-client", "uses-token"),
        ("mesh", "uses-token"),
        ("boot", "uses-token"),
        ("probed", "uses-token"),
        ("on-demand", "uses-token"),
        ("idle", "safe-to-disable"),
        ("db", "safe-to-disable"),
        ("toolbox", "safe-to-disable"),
        ("nightly", "safe-to-disable"),
    ] {
        let (got, reasons) = verdict(w).unwrap_or_else(|| panic!("no verdict for {w}"));
        assert_eq!(got, v, "{w}: {reasons}");
    }
    let out = node.probe_agent(&[&plan_args[..], &["-o", "script"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let script = String::from_utf8_lossy(&out.stdout).into_owned();
    for sa in ["quiet", "toolbox", "batch"] {
        assert!(script.contains(&format!("patch serviceaccount {sa} ")), "{sa} goes false:\n{script}");
    }
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("KUBECONFIG", &node.kubeconfig)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("bash");
    assert!(out.status.success(), "the script failed: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    // The controllers rolled the safe workloads: their pods have no token now; users keep it.
    for (app, n) in [("idle", 2), ("db", 1), ("toolbox", 1)] {
        let pods = node.wait_ready(rt, &ns, &format!("app={app}"), n, Duration::from_mins(2));
        assert!(pods.iter().all(|p| !workloads::has_token_volume(p)), "{app} restarted without its token");
    }
    for app in ["api-client", "mesh", "boot", "probed", "on-demand"] {
        assert!(node.pods(rt, &ns, &format!("app={app}")).iter().all(workloads::has_token_volume), "{app} keeps it");
    }
    // verify: the token-less pods, watched with the detector, reached for nothing.
    let new_idle: Vec<String> = node.pods(rt, &ns, "app=idle").iter().filter_map(|p| p.metadata.name.clone()).collect();
    node.evidence_where(rt, Duration::from_mins(1), |ev| {
        new_idle.iter().all(|p| ev.containers.iter().any(|c| c.pod.as_deref() == Some(p.as_str())))
    });
    let out = node.probe_agent(&["verify", "-n", &ns]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("# plan applied; verify clean");
}

/// A workload that needs its token turned off by mistake: it still reaches for it, `verify`
/// reports it (exit 3), and its rollback restores the token for real.
fn a_mistake_is_caught_and_rolled_back(rt: &Runtime, node: &Node, ctx: &mut Ctx) {
    let ns = ctx.ns().to_owned();
    let patch = r#"{"spec":{"template":{"spec":{"automountServiceAccountToken":false}}}}"#;
    let out = node
        .kubectl()
        .args(["-n", &ns, "patch", "deployment", "api-client", "--type", "strategic", "-p", patch])
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pods = node.wait_ready(rt, &ns, "app=api-client", 1, Duration::from_mins(2));
    assert!(!workloads::has_token_volume(&pods[0]));
    let broken = pods[0].metadata.name.clone().unwrap_or_default();
    node.evidence_where(rt, Duration::from_mins(1), |ev| {
        ev.containers
            .iter()
            .any(|c| c.pod.as_deref() == Some(broken.as_str()) && c.missing_token_opens > 0 && c.api_connects > 0)
    });
    let out = node.probe_agent(&["verify", "-n", &ns]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "a regression: {report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("api-client") && report.contains(&broken), "{report}");
    let out = node.probe_agent(&["verify", "-n", &ns, "-o", "script"]);
    let rollback = String::from_utf8_lossy(&out.stdout).into_owned();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&rollback)
        .env("KUBECONFIG", &node.kubeconfig)
        .output()
        .expect("bash");
    assert!(out.status.success(), "the rollback failed: {}\n{rollback}", String::from_utf8_lossy(&out.stderr));
    let pods = node.wait_ready(rt, &ns, "app=api-client", 1, Duration::from_mins(2));
    assert!(workloads::has_token_volume(&pods[0]), "the rollback restored the token: {:#?}", pods[0].spec);
    println!("# the mistake caught (exit 3) and rolled back");
}
