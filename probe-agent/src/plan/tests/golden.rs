//! Golden files of every output format.

use super::*;

/// The fixture cluster of the issue: an idle Deployment, a controller reading the token every
/// minute, a workload whose only reader is a sidecar, a ServiceAccount shared by a user and a
/// non-user, a pod-level true under a ServiceAccount-level false, one observed too briefly, one
/// not seen from start, a development namespace; a ServiceAccount a deleted Job used (it keeps
/// its token), and a toolbox people exec into.
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
    f.sa("ci", "builder", None);
    f.workload("ci", "runner", "builder", 1, 1, &[("app", IDLE)], None);
    f.past("ci", "migrate-db-x7k2p", &["migrate"], ("Job", "migrate-db"), "builder", Some("tpl-1"), "Succeeded", BUSY);
    f.workload("ops", "toolbox", "toolbox", 1, 1, &[("shell", Seen { exec: 2, ..IDLE })], None);
    // The audit log: an exporter on a node without an agent calls the API server with its
    // token, and something holds a token of ci/builder bound to no pod.
    f.node = "fargate-1".into();
    f.sa("batch", "exporter", None);
    let exporter = f.workload("batch", "exporter", "exporter", 1, 0, &[("app", IDLE)], None);
    let name = super::auditlog::pod_name(&f, &exporter[0]);
    super::auditlog::with_audit(
        &mut f,
        &[
            super::auditlog::request(1, "batch", "exporter", Some((&name, &exporter[0])), 200, "10.0.0.1"),
            super::auditlog::request(2, "batch", "exporter", Some((&name, &exporter[0])), 200, "10.0.0.1"),
            super::auditlog::request(3, "ci", "builder", None, 200, "192.0.2.7"),
        ],
    );
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
    golden("plan.openreport", &output::open_reports(&plan));
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
    assert_eq!(v("runner"), Verdict::SafeToDisable);
    assert_eq!(v("toolbox"), Verdict::InsufficientEvidence);
    let builder = plan.service_accounts.iter().find(|s| s.name == "builder").expect("builder");
    assert_eq!(builder.verdict, Verdict::UsesToken, "a gone Job used it");
    assert!(!plan.changes.iter().any(|c| c.target.kind == "ServiceAccount" && c.target.name == "builder"));
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

/// The reports' structure, field by field, for both formats: what Policy Reporter and `kubectl`
/// read from them.
#[test]
fn reports_carry_each_formats_fields() {
    let plan = golden_fixture();
    for (text, api_version, kind, top_source) in [
        (output::policy_reports(&plan), "wgpolicyk8s.io/v1alpha2", "PolicyReport", false),
        (output::open_reports(&plan), "openreports.io/v1alpha1", "Report", true),
    ] {
        let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
            .filter(|v: &serde_json::Value| !v.is_null())
            .collect();
        let namespaces: std::collections::BTreeSet<&str> =
            plan.workloads.iter().map(|w| w.workload.namespace.as_str()).collect();
        assert_eq!(docs.len(), namespaces.len(), "{kind}: one per namespace");
        let mut seen = 0;
        for doc in &docs {
            assert_eq!(doc["apiVersion"], api_version);
            assert_eq!(doc["kind"], kind);
            assert_eq!(doc["metadata"]["name"], "tokenprobe-automount");
            let namespace = doc["metadata"]["namespace"].as_str().expect("namespaced");
            assert!(namespaces.contains(namespace));
            assert_eq!(doc["metadata"]["labels"]["app.kubernetes.io/managed-by"], "tokenprobe");
            assert_eq!(doc.get("source").is_some(), top_source, "{kind}: report-level source");
            let results = doc["results"].as_array().expect("results");
            for r in results {
                let workload = plan
                    .workloads
                    .iter()
                    .find(|w| {
                        w.workload.namespace == namespace && r["resources"][0]["name"] == w.workload.name.as_str()
                    })
                    .expect("a result per workload of the namespace");
                let want = match workload.verdict {
                    Verdict::SafeToDisable => "fail",
                    Verdict::UsesVolumeFiles => "warn",
                    Verdict::InsufficientEvidence => "skip",
                    Verdict::UsesToken | Verdict::AlreadyDisabled | Verdict::NotMounted => "pass",
                };
                assert_eq!(r["result"], want, "{}", workload.workload.name);
                assert_eq!(r["source"], "tokenprobe");
                assert_eq!(r["policy"], "tokenprobe-automount");
                assert!(["critical", "high", "medium", "low", "info"].contains(&r["severity"].as_str().unwrap_or("")));
                assert_eq!(r["timestamp"]["seconds"], plan.generated_at.unix_timestamp());
                assert_eq!(r["timestamp"]["nanos"], 0);
                let subject = &r["resources"][0];
                assert_eq!(subject["kind"], workload.workload.kind.as_str());
                assert_eq!(subject["namespace"], namespace);
                assert!(subject["apiVersion"].as_str().is_some_and(|a| !a.is_empty()));
                assert_eq!(r["properties"]["verdict"], workload.verdict.name());
                assert!(r["message"].as_str().is_some_and(|m| m.starts_with(workload.verdict.name())));
            }
            let count = |v: &str| results.iter().filter(|r| r["result"] == v).count();
            for v in ["pass", "fail", "warn", "skip"] {
                assert_eq!(doc["summary"][v], count(v), "{kind} {namespace}: summary.{v}");
            }
            assert_eq!(doc["summary"]["error"], 0);
            seen += results.len();
        }
        assert_eq!(seen, plan.workloads.len(), "{kind}: every workload reported once");
    }
}
