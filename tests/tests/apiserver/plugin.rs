//! `kubectl tokenprobe …`: the planner-only binary (`--no-default-features`, built with stable
//! Rust by `cargo xtask test`, named by `TOKENPROBE_PLUGIN_BIN`), run through the real kubectl
//! as a plugin, offline from files and live through a kubeconfig context.

use std::{path::Path, process::Command};

use k8s_openapi::api::core::v1::Pod;
use kube::{Client, ResourceExt as _};
use probe_agent::evidence::{AgentInfo, ContainerEvidence, ContainerKey, Evidence, Hooks, KeyKind, Reads};
use serde_json::Value;
use tokio::runtime::Runtime;

use probe_tests::cluster::{TestNamespace, pod};

/// The planner CronJob's ServiceAccount, as a user name.
const PLANNER: &str = "system:serviceaccount:tokenprobe:tokenprobe-planner";

/// A directory on `PATH` holding `kubectl-tokenprobe`, and a kubeconfig whose current context
/// points nowhere, beside the test server's context.
struct Setup {
    dir: std::path::PathBuf,
    good_context: String,
}

impl Setup {
    fn new() -> Self {
        let plugin = std::env::var_os("TOKENPROBE_PLUGIN_BIN")
            .expect("TOKENPROBE_PLUGIN_BIN (the kubectl-tokenprobe binary; `cargo xtask test` sets it)");
        let dir = std::env::temp_dir().join(format!("tokenprobe-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let link = dir.join("kubectl-tokenprobe");
        std::fs::remove_file(&link).ok();
        std::os::unix::fs::symlink(&plugin, &link).expect("symlink the plugin");
        let original = std::env::var_os(probe_tests::kube::KUBECONFIG_ENV).expect("the test kubeconfig");
        let text = std::fs::read_to_string(&original).expect("read kubeconfig");
        let mut kc: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
        let good_context = kc["current-context"].as_str().expect("current-context").to_owned();
        let user = kc["contexts"][0]["context"]["user"].clone();
        push(&mut kc["clusters"], serde_json::json!({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}}));
        push(
            &mut kc["contexts"],
            serde_json::json!({"name": "nowhere", "context": {"cluster": "nowhere", "user": user}}),
        );
        // The nightly planner's identity (deploy/kustomize/components/planner-cronjob): the test
        // server's admin impersonating its ServiceAccount.
        let good = kc["contexts"].as_sequence().expect("contexts").iter().find(|c| c["name"] == good_context.as_str());
        let cluster = good.expect("the current context").get("context").expect("context")["cluster"].clone();
        let admin = kc["users"].as_sequence().expect("users").iter().find(|u| u["name"] == user).expect("user").clone();
        let mut planner = admin["user"].clone();
        planner["as"] = PLANNER.into();
        push(
            &mut kc["users"],
            serde_json::json!({"name": "planner", "user": serde_json::to_value(&planner).expect("user")}),
        );
        push(
            &mut kc["contexts"],
            serde_json::json!({"name": "planner", "context": {"cluster": serde_json::to_value(&cluster).expect("cluster"), "user": "planner"}}),
        );
        kc["current-context"] = "nowhere".into();
        std::fs::write(dir.join("kubeconfig"), serde_yaml::to_string(&kc).expect("YAML")).expect("write kubeconfig");
        Self { dir, good_context }
    }

    /// `kubectl tokenprobe <args>` with `KUBECONFIG` set to the two-context file.
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let path = format!("{}:{}", self.dir.display(), std::env::var("PATH").unwrap_or_default());
        Command::new("kubectl")
            .arg("tokenprobe")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .output()
            .expect("run kubectl")
    }
}

impl Setup {
    /// `kubectl --context <context> <args>`, which must succeed; its stdout.
    fn kubectl_at(&self, context: &str, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write as _;
        let mut child = Command::new("kubectl")
            .args(["--context", context])
            .args(args)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.unwrap_or_default().as_bytes()).expect("write stdin");
        drop(input);
        let out = child.wait_with_output().expect("kubectl");
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The evidence CRD, as a user installs it (other cases may have done so already).
    fn ensure_crd(&self) {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds.yaml");
        for args in [
            vec!["apply", "--server-side", "--force-conflicts", "-f", path(&crds)],
            vec!["wait", "--for", "condition=established", "crd/nodetokenevidences.tokenprobe.dev"],
        ] {
            let out = Command::new("kubectl")
                .args(["--context", &self.good_context])
                .args(&args)
                .env("KUBECONFIG", self.dir.join("kubeconfig"))
                .output()
                .expect("kubectl");
            assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn push(list: &mut serde_yaml::Value, item: Value) {
    let item: serde_yaml::Value = serde_json::from_value(item).expect("YAML value");
    list.as_sequence_mut().expect("a list").push(item);
}

fn json_out(what: &str, out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{what}: {}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn verdict_of(plan: &Value, name: &str) -> (String, String) {
    let w = plan["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .find(|w| w["workload"]["name"] == name)
        .unwrap_or_else(|| panic!("no workload {name} in {plan}"));
    (w["verdict"].as_str().expect("verdict").to_owned(), w["reasons"].to_string())
}

fn container(pod: &Pod, node_reads: u64, t: time::OffsetDateTime) -> ContainerEvidence {
    ContainerEvidence {
        key: ContainerKey { kind: KeyKind::Cgroup, id: 100 + node_reads },
        cgroup_path: None,
        pod_uid: pod.metadata.uid.clone(),
        container_id: Some(format!("cid-{}", pod.name_any())),
        namespace: pod.metadata.namespace.clone(),
        pod: Some(pod.name_any()),
        container: Some("app".into()),
        service_account: Some("default".into()),
        workload: None,
        revision: None,
        pod_phase: Some("Running".into()),
        reads: Reads { token: node_reads, ca_crt: 0, namespace: 0, other: 0 },
        api_connects: 0,
        exec_reads: Reads::default(),
        exec_api_connects: 0,
        missing_token_opens: 0,
        other_volumes: Vec::new(),
        processes: vec!["app".into()],
        exec_processes: Vec::new(),
        first_seen: Some(t),
        last_seen: Some(t),
        observed_since: Some(t),
        observed_from_start: Some(true),
        unobserved_seconds: 0,
        gone_since: None,
        uncovered: Vec::new(),
        previous_container_id: None,
    }
}

pub fn kubectl_plugin(rt: &Runtime, client: &Client) {
    let setup = Setup::new();
    setup.ensure_crd();
    let ns = rt.block_on(TestNamespace::new(client, "plugin"));
    let node = format!("tp-plugin-{}", std::process::id());
    let reader: Pod = rt.block_on(ns.create(pod("reader", &node, "default", None)));
    let idle: Pod = rt.block_on(ns.create(pod("idle", &node, "default", None)));

    // Which binary answers: the plugin, and it is the planner alone.
    let help = setup.kubectl(&["--help"]);
    let help_text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success() && help_text.contains("kubectl tokenprobe"), "{help_text}");
    assert!(!help_text.contains("watch") && help_text.contains("verify"), "{help_text}");

    // Live, current context unreachable: a clear failure, not a plan.
    let unreachable = setup.kubectl(&["plan", "-n", &ns.name, "-o", "json"]);
    assert_eq!(unreachable.status.code(), Some(1), "{unreachable:?}");
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot read the cluster"), "{unreachable:?}");

    // Live through --context: no agent ever reported for this node, so nothing is judged safe.
    let live = json_out(
        "plan --context",
        &setup.kubectl(&["plan", "--context", &setup.good_context, "-n", &ns.name, "-o", "json"]),
    );
    for name in ["reader", "idle"] {
        let (verdict, reasons) = verdict_of(&live, name);
        assert_eq!(verdict, "insufficient-evidence", "{name}: {reasons}");
    }
    // 1.20 has no ValidatingAdmissionPolicy: the plan says integrity is not enforced.
    assert_eq!(live["integrity"]["enforced"], false, "{}", live["integrity"]);
    let audit = json_out(
        "audit --context",
        &setup.kubectl(&["audit", "--context", &setup.good_context, "-n", &ns.name, "-o", "json"]),
    );
    let audited: Vec<&str> = audit.as_array().expect("rows").iter().filter_map(|r| r["pod"].as_str()).collect();
    assert!(audited.contains(&"reader") && audited.contains(&"idle"), "{audit}");

    // Offline: the objects as kubectl writes them, and an evidence file in which `reader`
    // read its token.
    let objects = Command::new("kubectl")
        .args(["--context", &setup.good_context, "get", "pods,serviceaccounts", "-n", &ns.name, "-o", "json"])
        .env("KUBECONFIG", setup.dir.join("kubeconfig"))
        .output()
        .expect("kubectl get");
    assert!(objects.status.success(), "{objects:?}");
    std::fs::write(setup.dir.join("objects.json"), &objects.stdout).expect("write objects");
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(3);
    let evidence = Evidence {
        node: node.clone(),
        agent: AgentInfo {
            hooks: Hooks { file_open: Some("lsm".into()), connect: Some("cgroup".into()) },
            exec_tracking: true,
            ..AgentInfo::new("0.1.0", t)
        },
        containers: vec![container(&reader, 3, t), container(&idle, 0, t)],
        retired: Vec::new(),
        volumes: Vec::new(),
    };
    std::fs::write(setup.dir.join("evidence.json"), serde_json::to_vec(&evidence).expect("JSON")).expect("write");
    let evidence_file = setup.dir.join("evidence.json");
    let objects_file = setup.dir.join("objects.json");
    let offline = json_out(
        "plan --evidence --objects",
        &setup.kubectl(&["plan", "--evidence", path(&evidence_file), "--objects", path(&objects_file), "-o", "json"]),
    );
    assert!(offline["integrity"]["enforced"].is_null(), "from files it is unknown: {}", offline["integrity"]);
    let (verdict, reasons) = verdict_of(&offline, "reader");
    assert_eq!(verdict, "uses-token", "{reasons}");
    // `idle` is judged from the same file: whatever its verdict, it is not "uses-token".
    assert_ne!(verdict_of(&offline, "idle").0, "uses-token");

    reports(rt, client, &setup, &ns.name);
    rt.block_on(ns.cleanup());
}

/// `plan --apply-reports` as the nightly CronJob runs it: with the planner's own RBAC, one
/// report per namespace, removed when the namespace has nothing left; a missing CRD is named.
fn reports(rt: &Runtime, client: &Client, setup: &Setup, namespace: &str) {
    let good = setup.good_context.as_str();
    // Reports of a kind the server does not serve: a clear error.
    setup.kubectl_at(good, &["delete", "crd", "reports.openreports.io", "--ignore-not-found"], None);
    let refused =
        setup.kubectl(&["plan", "--context", good, "-n", namespace, "--apply-reports=openreport", "-o", "json"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not serve Report (openreports.io/v1alpha1)"), "{stderr}");

    setup.kubectl_at(good, &["apply", "-f", "-"], Some(probe_tests::cluster::POLICY_REPORT_CRD));
    setup.kubectl_at(good, &["wait", "--for", "condition=established", "crd/policyreports.wgpolicyk8s.io"], None);
    rt.block_on(probe_tests::cluster::ensure_namespace(client, "tokenprobe"));
    let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kustomize/components/planner-cronjob/rbac.yaml");
    setup.kubectl_at(good, &["apply", "--server-side", "--force-conflicts", "-f", path(&rbac)], None);

    // The planner's role reads and writes reports, and changes nothing else.
    let can = |verb_resource: &[&str]| {
        let out = Command::new("kubectl")
            .args(["--context", "planner", "auth", "can-i"])
            .args(verb_resource)
            .env("KUBECONFIG", setup.dir.join("kubeconfig"))
            .output()
            .expect("kubectl auth can-i");
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    assert!(can(&["create", "policyreports.wgpolicyk8s.io", "-n", namespace]));
    assert!(can(&["list", "nodetokenevidences.tokenprobe.dev"]));
    for denied in [
        &["delete", "pods", "-n", namespace][..],
        &["patch", "deployments.apps", "-n", namespace],
        &["update", "serviceaccounts", "-n", namespace],
        &["get", "secrets", "-n", namespace],
        &["create", "nodetokenevidences.tokenprobe.dev"],
    ] {
        assert!(!can(denied), "the planner may {denied:?}");
    }

    let applied = setup.kubectl(&["plan", "--context", "planner", "-n", namespace, "--apply-reports", "-o", "json"]);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let report: Value = serde_json::from_str(&setup.kubectl_at(
        good,
        &["get", "policyreports.wgpolicyk8s.io", "tokenprobe-automount", "-n", namespace, "-o", "json"],
        None,
    ))
    .expect("report JSON");
    let mut subjects: Vec<&str> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["resources"][0]["name"].as_str())
        .collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["idle", "reader"], "{report}");
    assert_eq!(report["summary"]["skip"], 2, "no agent reported: both insufficient-evidence: {report}");
    assert_eq!(report["metadata"]["labels"]["app.kubernetes.io/managed-by"], "tokenprobe");

    // Nothing left in the namespace: the next run removes its report.
    setup.kubectl_at(good, &["delete", "pods", "--all", "-n", namespace, "--grace-period=0", "--force"], None);
    let again = setup.kubectl(&["plan", "--context", "planner", "-n", namespace, "--apply-reports"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let left = setup.kubectl_at(good, &["get", "policyreports.wgpolicyk8s.io", "-n", namespace, "-o", "name"], None);
    assert!(left.trim().is_empty(), "a stale report stayed: {left}");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
