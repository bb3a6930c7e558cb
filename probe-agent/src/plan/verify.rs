//! `verify`: after automount was turned off, which containers still reach for the token.
//!
//! A pod created without the token that tries to open the default token paths
//! (`missingTokenOpens`, counted by agents running with `--detect-missing-token`) or connects to
//! the API server anyway is a regression; its rollback restores the token on the pod template.
//! Token-less pods that `verify` could not watch — no evidence from their node, a node whose
//! agent stopped reporting, an agent without the missing-token detector — are listed as
//! unverified: silence from them proves nothing.

use std::time::Duration;

use serde::Serialize;

use super::{Change, Inputs, Policy, WorkloadRef, human, model::Model, placement::workload_target};

/// A container that reached for a token it no longer has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub pod: String,
    pub container: String,
    pub missing_token_opens: u64,
    pub api_connects: u64,
}

/// A workload that broke, with the patch that undoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Regression {
    pub workload: WorkloadRef,
    pub attempts: Vec<Attempt>,
    pub rollback: Change,
}

/// A token-less pod whose attempts could not have been seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unverified {
    pub workload: WorkloadRef,
    pub pod: String,
    pub reason: String,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub regressions: Vec<Regression>,
    pub unverified: Vec<Unverified>,
    /// What the audit log shows (`--audit-log`), reported apart from the agents' evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditFindings>,
}

/// The audit log's part of `verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditFindings {
    /// Pods whose expired token the API server still accepted only because it extends the
    /// expiry of bound tokens: they get 401s once it stops (a client that never re-reads its
    /// token file).
    pub stale_tokens: Vec<StaleToken>,
    /// Requests the API server could not authenticate (401, or 403 as `system:anonymous`) from
    /// the address of a pod that no longer has its token: matched by IP, not by token — the
    /// address was the pod's while it ran, nothing more proves it was the pod.
    pub unauthenticated_by_ip: Vec<MatchedByIp>,
    /// What the audit policy hides.
    pub policy: String,
}

/// A pod presenting an expired token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaleToken {
    pub namespace: String,
    pub pod: String,
    pub service_account: String,
    pub requests: u64,
}

/// Unauthenticated requests from a token-less pod's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchedByIp {
    pub workload: WorkloadRef,
    pub pod: String,
    pub ip: String,
    pub requests: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last: Option<time::OffsetDateTime>,
    /// Always "matched by IP".
    pub matched: &'static str,
}

fn audit_findings(model: &Model<'_>, audit: &crate::auditlog::AuditEvidence) -> AuditFindings {
    let stale_tokens = audit
        .pods
        .values()
        .filter(|p| p.stale_token > 0)
        .map(|p| StaleToken {
            namespace: p.namespace.clone(),
            pod: p.pod.clone(),
            service_account: p.service_account.clone(),
            requests: p.stale_token,
        })
        .collect();
    let mut unauthenticated_by_ip = Vec::new();
    for v in model.workloads.values().filter(|v| !model.effective(v)) {
        for p in v.pods.iter().filter(|p| !p.has_automount_volume) {
            for ip in &p.ips {
                let matched: Vec<_> = audit
                    .unauthenticated
                    .iter()
                    .filter(|u| u.source_ips.iter().any(|s| s == ip))
                    .filter(|u| match (p.started, u.at) {
                        (Some(started), Some(at)) => at >= started,
                        _ => true,
                    })
                    .collect();
                if !matched.is_empty() {
                    unauthenticated_by_ip.push(MatchedByIp {
                        workload: v.workload.clone(),
                        pod: p.name.clone(),
                        ip: ip.clone(),
                        requests: matched.len() as u64,
                        last: matched.iter().filter_map(|u| u.at).max(),
                        matched: "matched by IP",
                    });
                }
            }
        }
    }
    AuditFindings { stale_tokens, unauthenticated_by_ip, policy: audit.policy_line() }
}

/// Why a token-less pod's attempts could go unseen, if they could.
fn blind(model: &Model<'_>, node: Option<&str>, policy: &Policy) -> Option<String> {
    let Some(node) = node else { return Some("not scheduled to a node".into()) };
    let Some(n) = model.nodes.get(node) else { return Some(format!("no evidence from node {node}")) };
    if let Some(t) = n.last_report {
        let age = Duration::try_from(policy.now - t).unwrap_or_default();
        if age > Duration::from_secs(n.valid_seconds) {
            return Some(format!("agent on node {node} last reported {} ago", human(age)));
        }
    }
    if !n.agent.missing_token_detector {
        return Some(format!(
            "the agent on node {node} runs without --detect-missing-token: failed token opens are not counted there"
        ));
    }
    None
}

/// The regressions, and the token-less pods that could not be verified.
#[must_use]
pub fn verify(inputs: &Inputs, policy: &Policy) -> Verification {
    Model::with(inputs, |model| verify_model(model, policy))
}

fn verify_model(model: &Model<'_>, policy: &Policy) -> Verification {
    let mut regressions = Vec::new();
    let mut unverified = Vec::new();
    for v in model.workloads.values() {
        if model.effective(v) {
            continue;
        }
        let tokenless: Vec<_> = v.pods.iter().filter(|p| !p.has_automount_volume).collect();
        for p in &tokenless {
            if let Some(reason) = blind(model, p.node.as_deref(), policy) {
                unverified.push(Unverified { workload: v.workload.clone(), pod: p.name.clone(), reason });
            }
        }
        // Every report of the pod counts (use is never discounted, whichever node said it).
        let attempts: Vec<Attempt> = tokenless
            .iter()
            .flat_map(|p| p.entries.iter().map(move |en| (p, en.e)))
            .filter(|(_, e)| e.missing_token_opens > 0 || e.api_connects > 0)
            .map(|(p, e)| Attempt {
                pod: p.name.clone(),
                container: e.container.clone().unwrap_or_else(|| "?".into()),
                missing_token_opens: e.missing_token_opens,
                api_connects: e.api_connects,
            })
            .collect();
        if attempts.is_empty() {
            continue;
        }
        let patchable = v.workload.patchable();
        regressions.push(Regression {
            workload: v.workload.clone(),
            rollback: Change {
                target: workload_target(&v.workload),
                automount: true,
                pin: true,
                patchable,
                reason: format!(
                    "restores the token: {} container(s) reached for it after it was turned off",
                    attempts.len()
                ),
                evidence: attempts
                    .iter()
                    .map(|a| {
                        format!(
                            "{}/{}: {} failed token opens, {} API connects",
                            a.pod, a.container, a.missing_token_opens, a.api_connects
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                restart: Vec::new(),
                unit: regressions.len() + 1,
            },
            attempts,
        });
    }
    let audit = model.audit_all.map(|a| audit_findings(model, a));
    Verification { regressions, unverified, audit }
}
