//! Reading and merging inputs, `verify` and `audit`.

use super::*;

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
    f.node("node-a").agent.missing_token_detector = true;
    let rs = f.deployment("shop", "web", "default", 1, None);
    let uid = f.pod("shop", "web-1", Some(("ReplicaSet", &rs)), "default", &["app"], false, None);
    f.seen(&uid, "shop", "web-1", "app", ("Deployment", "web"), "default", IDLE);
    f.node("node-a").containers[0].missing_token_opens = 4;
    let rs = f.deployment("shop", "fine", "default", 1, None);
    let uid = f.pod("shop", "fine-1", Some(("ReplicaSet", &rs)), "default", &["app"], false, None);
    f.seen(&uid, "shop", "fine-1", "app", ("Deployment", "fine"), "default", IDLE);
    // Token-less pods verify cannot vouch for: a node without evidence, one whose agent does not
    // count failed token opens, one whose agent stopped reporting.
    for (node, pod) in [("node-b", "dark-1"), ("node-c", "blind-1"), ("node-d", "stale-1")] {
        f.node = node.into();
        let rs = f.deployment("shop", pod.trim_end_matches("-1"), "default", 1, None);
        f.pod("shop", pod, Some(("ReplicaSet", &rs)), "default", &["app"], false, None);
    }
    f.node("node-c");
    f.node("node-d").agent.missing_token_detector = true;
    f.node("node-d").agent.generated_at = Some(now() - Duration::from_hours(5));
    let found = verify::verify(&f.inputs, &Fixture::policy());
    let regressions = &found.regressions;
    assert_eq!(regressions.len(), 1, "{regressions:#?}");
    assert_eq!(regressions[0].workload.name, "web");
    assert_eq!(regressions[0].attempts[0].missing_token_opens, 4);
    assert!(regressions[0].rollback.automount);
    let patch = output::patch_body(&regressions[0].rollback);
    assert_eq!(patch["spec"]["template"]["spec"]["automountServiceAccountToken"], json!(true));
    let unverified: Vec<(&str, &str)> = found.unverified.iter().map(|u| (u.pod.as_str(), u.reason.as_str())).collect();
    assert_eq!(unverified.len(), 3, "{unverified:#?}");
    assert!(unverified.contains(&("dark-1", "no evidence from node node-b")), "{unverified:?}");
    assert!(unverified.iter().any(|(p, r)| *p == "blind-1" && r.contains("without --detect-missing-token")));
    assert!(unverified.iter().any(|(p, r)| *p == "stale-1" && r.contains("last reported 5h0m ago")));
    assert!(output::verify_table(&found).contains("3 token-less pod(s) could not be verified"));
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
    // The cluster and files are read as pod records, not typed pods: the same rows.
    let records = f.inputs.as_records().expect("typed pods");
    assert!(records.pods.is_empty() && records.pod_records.len() == 4);
    assert_eq!(serde_json::to_value(audit::audit(&records)).ok(), serde_json::to_value(&rows).ok());
}
