//! The planner's outputs (`-o table|json|yaml|patch|script|policyreport|openreport|plan`).

mod kubectl;
mod report;
mod table;

use serde::Serialize;

pub use self::kubectl::{EVIDENCE_ANNOTATION, patch_body, patches, patches_of, rollback_script, script};
pub use self::report::{MANAGED_BY, REPORT_NAME, ReportKind, markdown, open_reports, policy_reports, report_objects};
pub use self::table::{audit_table, plan_table, verify_table};

/// `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Like kubectl: workloads, ServiceAccounts, changes.
    Table,
    Json,
    Yaml,
    /// One strategic-merge patch per object (multi-document YAML).
    Patch,
    /// kubectl commands: patch, annotate with the evidence, rollout restart, phase by phase.
    Script,
    /// wgpolicyk8s.io/v1alpha2 PolicyReports, one per namespace.
    Policyreport,
    /// openreports.io/v1alpha1 Reports (PolicyReport's successor), one per namespace.
    Openreport,
    /// The phased migration plan (Markdown).
    Plan,
}

/// RFC 3339, as Kubernetes writes times.
#[must_use]
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The changes in the order they are applied (phase by phase, pins first), numbered from 1.
pub fn in_order(
    plan: &crate::plan::Plan,
) -> impl Iterator<Item = (usize, &crate::plan::Phase, &crate::plan::Change)> + '_ {
    plan.phases
        .iter()
        .flat_map(move |p| p.changes.iter().map(move |i| (p, &plan.changes[*i])))
        .enumerate()
        .map(|(n, (p, c))| (n + 1, p, c))
}

/// JSON or YAML of anything serializable.
///
/// # Errors
/// Serialization errors (not expected).
pub fn structured<T: Serialize>(value: &T, format: Format) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    write_structured(&mut out, value, format)?;
    String::from_utf8(out).map_err(serde::ser::Error::custom)
}

/// [`structured`], written to `out` as it is made (a big plan is never held as text).
///
/// # Errors
/// Write and serialization errors.
pub fn write_structured<T: Serialize>(
    mut out: impl std::io::Write,
    value: &T,
    format: Format,
) -> Result<(), serde_json::Error> {
    if format == Format::Yaml {
        serde_yaml::to_writer(out, value).map_err(serde::ser::Error::custom)
    } else {
        serde_json::to_writer_pretty(&mut out, value)?;
        out.write_all(b"\n").map_err(serde_json::Error::io)
    }
}

/// The plan's audit-log paragraph: what was read, what the policy hides, what audit evidence
/// cannot show.
#[must_use]
pub fn audit_line(a: &crate::plan::AuditSummary) -> String {
    let span = match (a.first, a.last) {
        (Some(f), Some(l)) => format!(", {} to {}", rfc3339(f), rfc3339(l)),
        _ => String::new(),
    };
    let mut out = format!(
        "Audit log: {} completed requests read from {} file(s){span}; requests by {} pod(s)' tokens ({} of no current workload); {}; {}.\n",
        a.requests,
        a.files.len(),
        a.pods,
        a.pods_gone,
        a.policy,
        a.limits
    );
    for n in &a.notes {
        out.push_str("  note: ");
        out.push_str(n);
        out.push('\n');
    }
    out
}
