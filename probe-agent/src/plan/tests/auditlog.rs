//! Audit evidence in the planner: proof of use, never of non-use.

use super::*;
use crate::auditlog::AuditEvidence;

/// A completed request as the log backend writes it; `pod` = (name, uid) of a bound token.
pub(super) fn request(id: u32, ns: &str, sa: &str, pod: Option<(&str, &str)>, code: u16, ip: &str) -> Value {
    let extra = pod.map_or_else(
        || json!({}),
        |(name, uid)| json!({"authentication.kubernetes.io/pod-name": [name], "authentication.kubernetes.io/pod-uid": [uid]}),
    );
    let username = if sa.is_empty() { String::new() } else { format!("system:serviceaccount:{ns}:{sa}") };
    json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": format!("id-{id}"),
        "stage": "ResponseComplete", "requestURI": format!("/api/v1/namespaces/{ns}/configmaps"), "verb": "list",
        "user": {"username": username, "extra": extra}, "sourceIPs": [ip],
        "objectRef": {"resource": "configmaps", "namespace": ns, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": "2026-11-18T08:00:00.000000Z", "stageTimestamp": "2026-11-18T08:00:00.100000Z"})
}

pub(super) fn with_audit(f: &mut Fixture, events: &[Value]) {
    let text: Vec<String> = events.iter().map(Value::to_string).collect();
    let mut audit = AuditEvidence::default();
    audit.read_bytes("audit.log", text.join("\n").as_bytes()).expect("audit events");
    f.inputs.audit = Some(audit);
}

pub(super) fn pod_name(f: &Fixture, uid: &str) -> String {
    f.inputs
        .pods
        .iter()
        .find(|p| p.metadata.uid.as_deref() == Some(uid))
        .and_then(|p| p.metadata.name.clone())
        .expect("pod")
}

#[test]
fn audit_use_is_use_without_an_agent_and_tells_workloads_of_one_service_account_apart() {
    let mut f = Fixture::new();
    f.sa("shop", "shared", None);
    // Both run on a node without an agent: no evidence from it at all.
    f.node = "fargate-1".into();
    let caller = f.workload("shop", "caller", "shared", 2, 0, &[("app", IDLE)], None);
    f.workload("shop", "quiet", "shared", 1, 0, &[("app", IDLE)], None);
    let (p0, p1) = (pod_name(&f, &caller[0]), pod_name(&f, &caller[1]));
    with_audit(
        &mut f,
        &[
            request(1, "shop", "shared", Some((&p0, &caller[0])), 200, "10.0.0.1"),
            request(2, "shop", "shared", Some((&p0, &caller[0])), 200, "10.0.0.1"),
            request(3, "shop", "shared", Some((&p1, &caller[1])), 403, "10.0.0.2"),
        ],
    );
    let plan = f.plan();
    let (v, reasons) = verdict(&plan, "shop", "caller");
    assert_eq!(v, Verdict::UsesToken, "{reasons:#?}");
    assert!(reasons[0].starts_with("3 API requests with its token seen by the API server"), "{reasons:#?}");
    assert!(reasons[0].contains(&p0) && reasons[0].contains("configmaps"), "{reasons:#?}");
    // The other workload of the same ServiceAccount made none: not a user — and not safe either,
    // since no agent watched it (audit silence proves nothing).
    let (v, reasons) = verdict(&plan, "shop", "quiet");
    assert_eq!(v, Verdict::InsufficientEvidence, "{reasons:#?}");
    let sa = plan.service_accounts.iter().find(|s| s.name == "shared").expect("sa");
    assert_eq!(sa.verdict, Verdict::UsesToken);
    assert_never_removes_a_used_token(&plan);
    let audit = plan.audit.as_ref().expect("audit summary");
    assert_eq!((audit.requests, audit.pods, audit.pods_gone), (3, 2, 0));
    assert!(audit.policy.contains("policy unknown"), "{}", audit.policy);
    let table = output::plan_table(&plan);
    assert!(table.contains("Audit log: 3 completed requests") && table.contains("never non-use"), "{table}");
}

#[test]
fn audit_use_outweighs_an_agent_that_saw_no_read() {
    // Watched from start and idle by the agent's count: safe — unless the API server saw its
    // token (read before the agent attached, or through a path the agent cannot see).
    let mut f = Fixture::new();
    f.sa("shop", "web", None);
    let uids = f.workload("shop", "web", "web", 1, 1, &[("app", IDLE)], None);
    assert_eq!(f.plan().workloads[0].verdict, Verdict::SafeToDisable);
    let name = pod_name(&f, &uids[0]);
    with_audit(&mut f, &[request(1, "shop", "web", Some((&name, &uids[0])), 200, "10.0.0.1")]);
    let plan = f.plan();
    assert_eq!(verdict(&plan, "shop", "web").0, Verdict::UsesToken);
    assert!(plan.changes.is_empty(), "{:#?}", plan.changes);
}

#[test]
fn gone_pods_and_tokens_bound_to_no_pod_are_shown_on_their_service_account() {
    let mut f = Fixture::new();
    f.sa("ci", "builder", None);
    f.workload("ci", "runner", "builder", 1, 1, &[("app", IDLE)], None);
    with_audit(
        &mut f,
        &[
            request(1, "ci", "builder", Some(("migrate-x7k2p", "gone-uid")), 200, "10.0.0.9"),
            request(2, "ci", "builder", None, 200, "192.0.2.7"),
        ],
    );
    let plan = f.plan();
    let sa = plan.service_accounts.iter().find(|s| s.name == "builder").expect("sa");
    assert_eq!(sa.verdict, Verdict::UsesToken, "{:#?}", sa.reasons);
    assert_eq!(sa.gone_users.len(), 1);
    assert_eq!(
        (sa.gone_users[0].workload.as_str(), sa.gone_users[0].api_requests),
        ("pod/migrate-x7k2p (owner unknown)", 1)
    );
    assert!(sa.reasons.iter().any(|r| r.contains("1 API requests seen by the API server")), "{:#?}", sa.reasons);
    assert!(sa.reasons.iter().any(|r| r.contains("tokens bound to no pod")), "{:#?}", sa.reasons);
    // The runner itself is still judged by its own evidence.
    assert_eq!(verdict(&plan, "ci", "runner").0, Verdict::SafeToDisable);
    assert!(plan.changes.iter().all(|c| c.target.kind != "ServiceAccount"), "{:#?}", plan.changes);
}

#[test]
fn verify_reports_stale_tokens_and_401s_matched_by_ip() {
    let mut f = Fixture::new();
    f.sa("shop", "web", None);
    // Migrated: the template turns automount off, its pod has no token volume.
    let rs = f.deployment("shop", "web", "web", 1, Some(false));
    let uid = f.pod("shop", &format!("{rs}-0"), Some(("ReplicaSet", &rs)), "web", &["app"], false, Some(false));
    let pod = f.pod_mut(&uid);
    let status = pod.status.as_mut().expect("status");
    status.pod_ip = Some("10.0.0.5".into());
    status.start_time =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-11-18T07:00:00Z".parse().expect("time")));
    let mut stale = request(3, "shop", "other", Some(("other-0", "other-uid")), 200, "10.0.0.6");
    stale["annotations"] = json!({"authentication.k8s.io/stale-token": "subject: system:serviceaccount:shop:other, seconds after warning threshold: 10"});
    with_audit(&mut f, &[request(1, "", "", None, 401, "10.0.0.5"), request(2, "", "", None, 401, "10.9.9.9"), stale]);
    let found = verify::verify(&f.inputs, &Fixture::policy());
    let audit = found.audit.expect("audit findings");
    assert_eq!(audit.unauthenticated_by_ip.len(), 1, "{audit:#?}");
    let m = &audit.unauthenticated_by_ip[0];
    assert_eq!(
        (m.workload.name.as_str(), m.ip.as_str(), m.requests, m.matched),
        ("web", "10.0.0.5", 1, "matched by IP")
    );
    assert_eq!(audit.stale_tokens.len(), 1);
    assert_eq!(audit.stale_tokens[0].pod, "other-0");
    let table = output::verify_table(&verify::verify(&f.inputs, &Fixture::policy()));
    assert!(table.contains("matched by IP") && table.contains("expired tokens"), "{table}");
}

#[test]
fn audit_lists_each_pods_audited_requests() {
    let mut f = Fixture::new();
    f.sa("shop", "web", None);
    let uids = f.workload("shop", "web", "web", 2, 2, &[("app", IDLE)], None);
    assert!(audit::audit(&f.inputs).iter().all(|r| r.api_requests.is_none()), "no audit log, no column");
    let name = pod_name(&f, &uids[0]);
    with_audit(&mut f, &[request(1, "shop", "web", Some((&name, &uids[0])), 200, "10.0.0.1")]);
    let rows = audit::audit(&f.inputs);
    let of = |n: &str| rows.iter().find(|r| r.pod == n).and_then(|r| r.api_requests);
    assert_eq!(of(&name), Some(1));
    assert_eq!(of(&pod_name(&f, &uids[1])), Some(0));
    assert!(output::audit_table(&rows).contains("API REQUESTS (AUDIT)"));
}
