//! Reports (wgpolicyk8s.io PolicyReports and their successor, openreports.io Reports) and the
//! Markdown migration plan.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::{Value, json};

use crate::plan::{Plan, Verdict, WorkloadReport};

fn result(v: Verdict) -> &'static str {
    match v {
        // A mounted token nothing uses: the finding the report is about.
        Verdict::SafeToDisable => "fail",
        Verdict::UsesVolumeFiles => "warn",
        Verdict::InsufficientEvidence => "skip",
        Verdict::UsesToken | Verdict::AlreadyDisabled | Verdict::NotMounted => "pass",
    }
}

fn entry(w: &WorkloadReport, seconds: i64) -> Value {
    json!({
        "policy": "tokenprobe-automount",
        "rule": "unused-service-account-token",
        "category": "ServiceAccount tokens",
        "severity": "medium",
        "result": result(w.verdict),
        "source": "tokenprobe",
        "message": format!("{}: {}", w.verdict.name(), w.reasons.first().cloned().unwrap_or_else(|| w.summary.clone())),
        "timestamp": {"seconds": seconds, "nanos": 0},
        "resources": [{
            "apiVersion": crate::plan::placement::workload_target(&w.workload).api_version,
            "kind": w.workload.kind, "name": w.workload.name, "namespace": w.workload.namespace
        }],
        "properties": {"verdict": w.verdict.name(), "evidence": w.summary, "serviceAccount": w.service_account}
    })
}

/// The two report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportKind {
    /// `wgpolicyk8s.io/v1alpha2` `PolicyReport`.
    Policyreport,
    /// `openreports.io/v1alpha1` `Report`, the successor format.
    Openreport,
}

impl ReportKind {
    /// API group, version, kind and plural resource name.
    #[must_use]
    pub const fn resource(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Self::Policyreport => ("wgpolicyk8s.io", "v1alpha2", "PolicyReport", "policyreports"),
            Self::Openreport => ("openreports.io", "v1alpha1", "Report", "reports"),
        }
    }
}

/// The name of every report tokenprobe writes (one per namespace).
pub const REPORT_NAME: &str = "tokenprobe-automount";
/// The label on every report tokenprobe writes, and its value.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "tokenprobe");

/// One report per namespace that has workloads in the plan; `source` goes at the report's top
/// level where the format has it.
#[must_use]
pub fn report_objects(plan: &Plan, kind: ReportKind) -> Vec<Value> {
    let (group, version, kind_name, _) = kind.resource();
    let api_version = format!("{group}/{version}");
    let mut by_ns: BTreeMap<&str, Vec<&WorkloadReport>> = BTreeMap::new();
    for w in &plan.workloads {
        by_ns.entry(&w.workload.namespace).or_default().push(w);
    }
    let seconds = plan.generated_at.unix_timestamp();
    by_ns
        .into_iter()
        .map(|(namespace, workloads)| {
            let results: Vec<Value> = workloads.iter().map(|w| entry(w, seconds)).collect();
            let count = |r: &str| results.iter().filter(|x| x["result"] == r).count();
            let mut report = json!({
                "apiVersion": api_version,
                "kind": kind_name,
                "metadata": {"name": REPORT_NAME, "namespace": namespace, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
                "summary": {"pass": count("pass"), "fail": count("fail"), "warn": count("warn"), "error": 0, "skip": count("skip")},
                "results": results
            });
            if kind == ReportKind::Openreport {
                report["source"] = "tokenprobe".into();
            }
            report
        })
        .collect()
}

fn reports(plan: &Plan, kind: ReportKind) -> String {
    let mut out = String::new();
    for report in report_objects(plan, kind) {
        out.push_str(&serde_yaml::to_string(&report).unwrap_or_default());
        out.push_str("---\n");
    }
    out
}

/// One wgpolicyk8s.io/v1alpha2 PolicyReport per namespace (multi-document YAML).
#[must_use]
pub fn policy_reports(plan: &Plan) -> String {
    reports(plan, ReportKind::Policyreport)
}

/// One openreports.io/v1alpha1 Report per namespace (multi-document YAML): the format Kyverno
/// and Policy Reporter moved to, with the same results and `source` on the report too.
#[must_use]
pub fn open_reports(plan: &Plan) -> String {
    reports(plan, ReportKind::Openreport)
}

/// The phased migration plan, for people.
#[must_use]
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let w = &mut out;
    writeln!(w, "# tokenprobe migration plan\n\nGenerated {}.\n", super::rfc3339(plan.generated_at)).expect("write");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &plan.workloads {
        *counts.entry(r.verdict.name()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    writeln!(w, "Workloads: {}.\n", summary.join(", ")).expect("write");
    writeln!(w, "Evidence integrity between nodes: {}.\n", plan.integrity.detail).expect("write");
    if let Some(a) = &plan.audit {
        writeln!(w, "{}", super::audit_line(a)).expect("write");
    }
    if plan.phases.is_empty() {
        writeln!(w, "Nothing is safe to disable yet: see the reasons below.\n").expect("write");
    }
    let numbered: Vec<(usize, &crate::plan::Phase, &crate::plan::Change)> = super::in_order(plan).collect();
    for (n, phase) in plan.phases.iter().enumerate() {
        writeln!(w, "## Phase {}: {}\n\n{}.\n\n### Changes\n", n + 1, phase.name, phase.description).expect("write");
        for (i, _, c) in numbered.iter().filter(|(_, p, _)| std::ptr::eq(*p, phase)) {
            writeln!(
                w,
                "{}. `{}/{}` in `{}`: `automountServiceAccountToken: {}`{} — {}.  \n   Evidence: {}",
                i,
                c.target.kind,
                c.target.name,
                c.target.namespace,
                c.automount,
                if c.pin { " (first)" } else { "" },
                c.reason,
                c.evidence
            )
            .expect("write");
        }
        if phase.restarts.is_empty() {
            writeln!(w, "\n### Restart\n\nPod template changes roll out by themselves.\n").expect("write");
        } else {
            writeln!(w, "\n### Restart\n").expect("write");
            for r in &phase.restarts {
                writeln!(w, "- `kubectl -n {} rollout restart {}`", r.namespace, r.display()).expect("write");
            }
            w.push('\n');
        }
        writeln!(w, "### Watch\n").expect("write");
        for item in &phase.watch {
            writeln!(w, "- {item}").expect("write");
        }
        w.push('\n');
    }
    writeln!(w, "## Not changed\n").expect("write");
    for r in plan.workloads.iter().filter(|r| r.verdict != Verdict::SafeToDisable) {
        writeln!(
            w,
            "- `{}` {}: **{}** — {}",
            r.workload.namespace,
            r.workload.display(),
            r.verdict.name(),
            r.reasons.first().cloned().unwrap_or_else(|| r.summary.clone())
        )
        .expect("write");
    }
    out
}
