//! Tables in the style of kubectl: upper-case headers, columns padded to the widest cell.

use std::fmt::Write as _;

use crate::plan::{
    Plan,
    audit::PodAudit,
    verify::{Regression, Verification},
};

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len() - 1;
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                write!(out, "{cell:<w$}   ").expect("write to a String");
            }
        }
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn setting(v: Option<bool>) -> String {
    v.map_or_else(|| "-".to_owned(), |b| b.to_string())
}

#[must_use]
pub fn plan_table(plan: &Plan) -> String {
    let workloads: Vec<Vec<String>> = plan
        .workloads
        .iter()
        .map(|w| {
            vec![
                w.workload.namespace.clone(),
                w.workload.kind.clone(),
                w.workload.name.clone(),
                w.service_account.clone(),
                w.effective_automount.to_string(),
                w.verdict.name().to_owned(),
                w.reasons.first().cloned().unwrap_or_else(|| w.summary.clone()),
            ]
        })
        .collect();
    let sas: Vec<Vec<String>> = plan
        .service_accounts
        .iter()
        .map(|s| {
            vec![
                s.namespace.clone(),
                s.name.clone(),
                setting(s.automount),
                s.verdict.name().to_owned(),
                s.workloads.iter().map(crate::plan::WorkloadRef::display).collect::<Vec<_>>().join(","),
                s.reasons.join("; "),
            ]
        })
        .collect();
    let changes: Vec<Vec<String>> = super::in_order(plan)
        .map(|(i, phase, c)| {
            vec![
                i.to_string(),
                phase.name.clone(),
                c.target.namespace.clone(),
                format!("{}/{}", c.target.kind.to_ascii_lowercase(), c.target.name),
                c.automount.to_string(),
                c.reason.clone(),
            ]
        })
        .collect();
    let mut out = table(&["NAMESPACE", "KIND", "NAME", "SERVICEACCOUNT", "AUTOMOUNT", "VERDICT", "WHY"], &workloads);
    out.push('\n');
    out.push_str(&table(&["NAMESPACE", "SERVICEACCOUNT", "AUTOMOUNT", "VERDICT", "FOLLOWED BY", "WHY"], &sas));
    out.push('\n');
    if changes.is_empty() {
        out.push_str("No changes: nothing is safe to disable yet.\n");
    } else {
        out.push_str(&table(&["#", "PHASE", "NAMESPACE", "OBJECT", "SET", "WHY"], &changes));
    }
    out.push_str("\nEvidence integrity between nodes: ");
    out.push_str(&plan.integrity.detail);
    out.push_str(".\n");
    if let Some(a) = &plan.audit {
        out.push_str(&super::audit_line(a));
    }
    out
}

#[must_use]
pub fn audit_table(rows: &[PodAudit]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                r.namespace.clone(),
                r.pod.clone(),
                r.service_account.clone(),
                setting(r.pod_field),
                setting(r.service_account_field),
                r.effective.to_string(),
                format!("{:?}", r.source).to_ascii_lowercase(),
                r.status.to_owned(),
            ];
            if let Some(n) = r.api_requests {
                row.push(n.to_string());
            }
            row
        })
        .collect();
    let mut headers = vec!["NAMESPACE", "POD", "SERVICEACCOUNT", "POD FIELD", "SA FIELD", "EFFECTIVE", "FROM", "TOKEN"];
    if rows.iter().any(|r| r.api_requests.is_some()) {
        headers.push("API REQUESTS (AUDIT)");
    }
    let mut out = table(&headers, &cells);
    let misjudged = rows.iter().filter(|r| r.naive_audit_says_on && !r.effective).count();
    if misjudged > 0 {
        writeln!(
            out,
            "\n{misjudged} pod(s) have no token because their ServiceAccount says false; an audit of the pod field alone would flag them."
        )
        .expect("write to a String");
    }
    out
}

#[must_use]
pub fn verify_table(found: &Verification) -> String {
    let mut out = regressions_table(&found.regressions);
    if !found.unverified.is_empty() {
        let rows: Vec<Vec<String>> = found
            .unverified
            .iter()
            .map(|u| vec![u.workload.namespace.clone(), u.workload.display(), u.pod.clone(), u.reason.clone()])
            .collect();
        writeln!(out, "\n{} token-less pod(s) could not be verified: their attempts would go unseen.", rows.len())
            .expect("write to a String");
        out.push_str(&table(&["NAMESPACE", "WORKLOAD", "POD", "WHY"], &rows));
    }
    if let Some(a) = &found.audit {
        out.push_str("\nAudit log (");
        out.push_str(&a.policy);
        out.push_str("):\n");
        if a.stale_tokens.is_empty() {
            out.push_str("No pod presented an expired token.\n");
        } else {
            let rows: Vec<Vec<String>> = a
                .stale_tokens
                .iter()
                .map(|t| vec![t.namespace.clone(), t.pod.clone(), t.service_account.clone(), t.requests.to_string()])
                .collect();
            out.push_str(
                "Pods presenting expired tokens the API server accepts only because it extends their expiry:\n",
            );
            out.push_str(&table(&["NAMESPACE", "POD", "SERVICEACCOUNT", "REQUESTS"], &rows));
        }
        if a.unauthenticated_by_ip.is_empty() {
            out.push_str("No unauthenticated request came from a token-less pod's address.\n");
        } else {
            let rows: Vec<Vec<String>> = a
                .unauthenticated_by_ip
                .iter()
                .map(|m| {
                    vec![
                        m.workload.namespace.clone(),
                        m.workload.display(),
                        m.pod.clone(),
                        m.ip.clone(),
                        m.requests.to_string(),
                        m.matched.to_owned(),
                    ]
                })
                .collect();
            out.push_str("Unauthenticated requests (401, anonymous 403) from token-less pods' addresses:\n");
            out.push_str(&table(&["NAMESPACE", "WORKLOAD", "POD", "IP", "REQUESTS", "HOW"], &rows));
        }
    }
    out
}

fn regressions_table(regressions: &[Regression]) -> String {
    if regressions.is_empty() {
        return "No regressions: no container without a token reached for one.\n".into();
    }
    let rows: Vec<Vec<String>> = regressions
        .iter()
        .flat_map(|r| {
            r.attempts.iter().map(move |a| {
                vec![
                    r.workload.namespace.clone(),
                    r.workload.display(),
                    format!("{}/{}", a.pod, a.container),
                    a.missing_token_opens.to_string(),
                    a.api_connects.to_string(),
                ]
            })
        })
        .collect();
    let mut out = table(&["NAMESPACE", "WORKLOAD", "CONTAINER", "MISSING TOKEN OPENS", "API CONNECTS"], &rows);
    out.push_str("\nRollback: `probe-agent verify -o patch` (or -o script) restores their tokens.\n");
    out
}
