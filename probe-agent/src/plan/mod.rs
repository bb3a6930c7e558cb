//! The planner: evidence × Pods × ServiceAccounts × owners → verdicts → changes → phases.
//!
//! [`plan`] is a pure function; reading files or the cluster ([`inputs`], [`live`]) and
//! writing outputs ([`output`]) are at the edges.

pub mod apply;
pub mod audit;
pub mod inputs;
pub mod live;
mod model;
pub mod output;
pub(crate) mod placement;
pub mod records;
mod rules;
pub mod stream;
#[cfg(test)]
mod tests;
pub mod verify;

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

pub use self::inputs::Inputs;
use crate::evidence::Workload;

/// What counts as enough evidence, and how to phase the rollout.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Each workload must have been watched at least this long.
    pub min_observation: Duration,
    /// Run-to-completion workloads (Jobs, CronJobs): runs observed from start.
    pub min_runs: u64,
    /// Agent restarts up to this long during a container's life are tolerated.
    pub max_gap: Duration,
    /// Namespaces whose name has one of these words (split at `-`/`_`) go first.
    pub dev_words: Vec<String>,
    /// Share of the remaining changes in the canary phase (at least one).
    pub canary_fraction: f64,
    /// Exec-session use of pods without exec probes/hooks was people (`kubectl exec`), not the
    /// application: do not let it keep the token.
    pub ignore_exec_sessions: bool,
    /// Accept nodes whose file-open hook runs in tracepoint mode (blind to `io_uring`, 32-bit
    /// syscalls and received file descriptors); their blind spot is stated in every verdict.
    pub accept_tracepoint: bool,
    /// Use by workloads that are gone keeps their ServiceAccount's token for this long after it
    /// was last seen.
    pub retention: Duration,
    /// The planner's "now": its clock live; offline the newest report among the inputs.
    pub now: OffsetDateTime,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_observation: Duration::from_hours(24),
            min_runs: 3,
            max_gap: Duration::from_mins(5),
            dev_words: ["dev", "development", "test", "testing", "staging", "qa", "sandbox"].map(String::from).to_vec(),
            canary_fraction: 0.1,
            ignore_exec_sessions: false,
            accept_tracepoint: false,
            retention: Duration::from_hours(24 * 30),
            now: OffsetDateTime::now_utc(),
        }
    }
}

/// One verdict per workload and per ServiceAccount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// A container read the token or connected to the API server (outside exec sessions).
    UsesToken,
    /// No token use, but `ca.crt` or `namespace` were read: disabling removes them too.
    UsesVolumeFiles,
    /// Observed enough, never used.
    SafeToDisable,
    /// Not observed enough to say (the reasons say what is missing).
    InsufficientEvidence,
    /// The effective setting is already false.
    AlreadyDisabled,
    /// The setting says true, but the pods have no automount volume.
    NotMounted,
}

impl Verdict {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::UsesToken => "uses-token",
            Self::UsesVolumeFiles => "uses-volume-files",
            Self::SafeToDisable => "safe-to-disable",
            Self::InsufficientEvidence => "insufficient-evidence",
            Self::AlreadyDisabled => "already-disabled",
            Self::NotMounted => "not-mounted",
        }
    }
}

/// A workload, identified as an operator would.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

impl WorkloadRef {
    #[must_use]
    pub fn new(namespace: &str, workload: &Workload) -> Self {
        Self { namespace: namespace.to_owned(), kind: workload.kind.clone(), name: workload.name.clone() }
    }

    /// `kind/name` as kubectl writes it.
    #[must_use]
    pub fn display(&self) -> String {
        format!("{}/{}", self.kind.to_ascii_lowercase(), self.name)
    }

    /// Whether the API lets tokenprobe patch its pod template.
    #[must_use]
    pub fn patchable(&self) -> bool {
        matches!(self.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet" | "CronJob")
    }

    /// Run-to-completion workloads are judged by runs.
    #[must_use]
    pub fn runs_to_completion(&self) -> bool {
        matches!(self.kind.as_str(), "Job" | "CronJob")
    }
}

/// How a container used the token (for `uses-token` and the evidence text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerUse {
    pub container: String,
    pub token_reads: u64,
    pub api_connects: u64,
    pub volume_file_reads: u64,
    pub exec_reads: u64,
    pub exec_api_connects: u64,
}

/// The verdict on one workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReport {
    pub workload: WorkloadRef,
    pub service_account: String,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    /// The pod template's own field (`None`: unset, the ServiceAccount decides).
    pub template_automount: Option<bool>,
    pub effective_automount: bool,
    /// Per container name.
    pub usage: Vec<ContainerUse>,
    /// Replicas (or runs) expected and seen with every container observed.
    pub replicas_expected: u64,
    pub replicas_seen: u64,
    /// How long the workload has been watched.
    pub observed_seconds: Option<u64>,
    /// One line for the annotation and the tables.
    pub summary: String,
}

/// The verdict on one ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountReport {
    pub namespace: String,
    pub name: String,
    pub automount: Option<bool>,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    /// Workloads under it that follow its setting (no field of their own).
    pub workloads: Vec<WorkloadRef>,
    /// Use under it by workloads that no longer exist (within the retention window): they
    /// keep the ServiceAccount from turning automount off.
    pub gone_users: Vec<GoneUse>,
}

/// Use of a token by a workload that no longer exists (a deleted Job, a bare pod, retired
/// totals of a removed Deployment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GoneUse {
    pub workload: String,
    pub container: String,
    pub node: String,
    pub token_reads: u64,
    pub api_connects: u64,
    pub file_reads: u64,
    /// Exec-session use (0 with `--ignore-exec-sessions`).
    pub exec_use: u64,
    /// Requests with the pod's token that the API server's audit log shows.
    #[serde(skip_serializing_if = "is_zero")]
    pub api_requests: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
}

#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
const fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What the audit log added to the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditSummary {
    pub files: Vec<String>,
    /// Completed requests read (every user).
    pub requests: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub first: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last: Option<OffsetDateTime>,
    /// Pods whose token made requests, and of those the pods of no current workload.
    pub pods: usize,
    pub pods_gone: usize,
    /// What the audit policy hides ("policy unknown" without `--audit-policy`).
    pub policy: String,
    /// What audit evidence cannot show.
    pub limits: String,
    pub notes: Vec<String>,
}

/// What a change sets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One change to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub target: Target,
    /// The value of `automountServiceAccountToken` it sets.
    pub automount: bool,
    /// Pins run before the ServiceAccount change that needs them.
    pub pin: bool,
    /// False for objects the API does not let us patch (bare pods, Jobs): change the manifest.
    pub patchable: bool,
    pub reason: String,
    /// The evidence, for the `tokenprobe.dev/evidence` annotation.
    pub evidence: String,
    /// Workloads to restart so their pods pick the change up.
    pub restart: Vec<WorkloadRef>,
    /// Changes that belong together (a ServiceAccount and its pins) share a unit.
    pub unit: usize,
}

/// A phase of the migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    pub name: String,
    pub description: String,
    /// Indexes into [`Plan::changes`], in order.
    pub changes: Vec<usize>,
    pub restarts: Vec<WorkloadRef>,
    pub watch: Vec<String>,
}

/// The result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    pub workloads: Vec<WorkloadReport>,
    pub service_accounts: Vec<ServiceAccountReport>,
    pub changes: Vec<Change>,
    pub phases: Vec<Phase>,
    /// Whether one node's agent can write another node's evidence.
    pub integrity: crate::k8s::integrity::Integrity,
    /// What the audit log added (`--audit-log`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSummary>,
}

/// This process's resident memory in MiB (`VmRSS`), for the planner's debug log; 0 where
/// `/proc` does not tell.
#[must_use]
pub fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib / 1024)
}

/// What audit evidence cannot show, stated with every plan that uses it.
pub const AUDIT_LIMITS: &str = "audit evidence proves use, never non-use: a token shown to anything but the API server (Vault, any TokenReview user) leaves no request attributed to its pod";

/// The planner: verdicts, placement, phases.
#[must_use]
pub fn plan(inputs: &Inputs, policy: &Policy) -> Plan {
    let started = std::time::Instant::now();
    let mut plan = model::Model::with(inputs, |model| plan_model(model, policy, started));
    plan.integrity = inputs.integrity.clone();
    plan.audit = inputs.audit.as_ref().map(|a| AuditSummary {
        files: a.files.clone(),
        requests: a.requests_read,
        first: a.first,
        last: a.last,
        pods: a.pods.len(),
        pods_gone: plan.service_accounts.iter().flat_map(|s| &s.gone_users).filter(|g| g.api_requests > 0).count(),
        policy: a.policy_line(),
        limits: AUDIT_LIMITS.into(),
        notes: a.notes.clone(),
    });
    plan
}

fn plan_model(model: &model::Model<'_>, policy: &Policy, started: std::time::Instant) -> Plan {
    tracing::debug!(elapsed = ?started.elapsed(), rss_mib = rss_mib(), "model built");
    let workloads = rules::judge_workloads(model, policy);
    tracing::debug!(elapsed = ?started.elapsed(), rss_mib = rss_mib(), "workloads judged");
    let service_accounts = rules::judge_service_accounts(model, &workloads, policy);
    tracing::debug!(elapsed = ?started.elapsed(), rss_mib = rss_mib(), "service accounts judged");
    let changes = placement::changes(model, &workloads, &service_accounts);
    let phases = placement::phases(&changes, policy);
    tracing::debug!(elapsed = ?started.elapsed(), rss_mib = rss_mib(), "changes placed");
    Plan {
        generated_at: policy.now,
        workloads,
        service_accounts,
        changes,
        phases,
        integrity: crate::k8s::integrity::Integrity::default(),
        audit: None,
    }
}

/// Human duration: `3d4h`, `5h12m`, `40m`, `12s`.
#[must_use]
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}
