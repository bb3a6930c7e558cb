//! The evidence model: what `watch --output`, `/v1/evidence` and `NodeTokenEvidence` carry.
//!
//! Serialized Kubernetes style (camelCase); unknown values are `null`, never guessed.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One node's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub node: String,
    pub agent: AgentInfo,
    pub containers: Vec<ContainerEvidence>,
    /// Containers gone longer than the retention window, folded into totals per workload and
    /// container name (keeps a node's object bounded).
    #[serde(default)]
    pub retired: Vec<RetiredTotals>,
    /// The watched volumes (debugging aid; the planner reads `containers`).
    #[serde(default)]
    pub volumes: Vec<VolumeEvidence>,
}

/// About the agent that produced the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[expect(clippy::struct_excessive_bools, reason = "independent facts of the wire format, each documented")]
pub struct AgentInfo {
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub started_at: OffsetDateTime,
    /// When this evidence was assembled.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<String>")]
    pub generated_at: Option<OffsetDateTime>,
    pub hooks: Hooks,
    /// Modes tried and refused, best first, with the kernel's reason.
    #[serde(default)]
    pub rejected_hooks: Vec<RejectedHook>,
    /// First-seen notices lost to a full ring buffer (counts are unaffected).
    pub drops: u64,
    /// Events lost because the in-kernel counters map was full.
    pub map_full: u64,
    /// How containers are keyed in the kernel.
    #[serde(default = "default_key_kind")]
    pub container_key: KeyKind,
    /// Whether exec sessions are told apart from the application.
    #[serde(default)]
    pub exec_tracking: bool,
    /// Whether failed opens of the default token paths are counted (`missingTokenOpens`).
    #[serde(default)]
    pub missing_token_detector: bool,
    /// API server addresses whose connects are counted.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Addresses that could not be watched (target map full): connects to them are missed.
    #[serde(default)]
    pub targets_not_watched: Vec<String>,
    /// Times the agent was not running (restarts), newest last.
    #[serde(default)]
    pub gaps: Vec<Gap>,
    /// How often the agent publishes and renews its liveness Lease (`run` mode; `null`
    /// standalone). The planner judges the evidence stale after a few intervals without a
    /// renewal.
    #[serde(default)]
    pub publish_interval_seconds: Option<u64>,
    /// Whether container cgroups are recorded as they are created (else only by scans, and a
    /// container that lives shorter than a scan interval can be missed).
    #[serde(default)]
    pub container_creation: bool,
    /// Whether container cgroups are reported as they are removed (the agent then follows
    /// containers by events and rescans the whole node rarely).
    #[serde(default)]
    pub container_removal: bool,
    /// Everything the agent lost, cumulative across its restarts, with when.
    #[serde(default)]
    pub losses: Losses,
    /// Counts under container-shaped kernel keys the agent could not attribute to a container:
    /// non-zero makes the node's coverage partial.
    #[serde(default)]
    pub unattributed: KeyTotals,
    /// Counts of host processes (the kubelet writing and re-reading volumes on rotation, node
    /// agents calling the API server): reported apart; they say nothing about containers.
    #[serde(default)]
    pub host: KeyTotals,
    /// What the published object left out to stay within the size the API server accepts
    /// (absent: nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
}

/// What a published object left out to fit, in the order it was shed: process names, then
/// retired totals that show no use (oldest first), and only when the container entries alone do
/// not fit, entries that show no use — then the node's coverage is partial. Nothing that shows
/// use is ever left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Truncated {
    /// The size the object had to fit, in bytes of JSON.
    pub limit_bytes: u64,
    /// What was shed, in order (e.g. "process names", "12 retired totals without use").
    pub shed: Vec<String>,
    /// Container entries without use left out: non-zero makes the node's coverage partial.
    #[serde(default)]
    pub entries_without_use: u64,
}

/// A kind of loss: how many, first and last time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Loss {
    pub count: u64,
    #[serde(with = "time::serde::rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub first: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub last: Option<OffsetDateTime>,
}

impl Loss {
    /// Adds `n` events seen lost at `at`.
    pub fn add(&mut self, n: u64, at: OffsetDateTime) {
        if n == 0 {
            return;
        }
        self.count = self.count.saturating_add(n);
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
    }

    /// Adds another record of the same kind of loss.
    pub fn merge(&mut self, other: &Self) {
        self.count = self.count.saturating_add(other.count);
        self.first = earliest(self.first, other.first);
        self.last = latest(self.last, other.last);
    }

    /// Whether anything was lost at or after `since` (`None`: ever).
    #[must_use]
    pub fn since(&self, since: Option<OffsetDateTime>) -> bool {
        self.count > 0 && since.is_none_or(|s| self.last.is_none_or(|l| l >= s))
    }
}

/// Everything lost, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Losses {
    /// First-seen notices lost to a full ring buffer (counts unaffected; process names lost).
    #[serde(default)]
    pub notice_drops: Loss,
    /// Events lost because the in-kernel counter map was full (counts lost).
    #[serde(default)]
    pub counter_map_full: Loss,
    /// Kernel reads that failed while inspecting an event (the event may have gone uncounted).
    #[serde(default)]
    pub read_errors: Loss,
    /// Exec-session marks that did not fit (those sessions count as the application's).
    #[serde(default)]
    pub exec_map_full: Loss,
    /// Created cgroups not reported (a short-lived container may be missed).
    #[serde(default)]
    pub cgroup_event_drops: Loss,
}

impl Losses {
    /// Adds another run's losses.
    pub fn merge(&mut self, other: &Self) {
        self.notice_drops.merge(&other.notice_drops);
        self.counter_map_full.merge(&other.counter_map_full);
        self.read_errors.merge(&other.read_errors);
        self.exec_map_full.merge(&other.exec_map_full);
        self.cgroup_event_drops.merge(&other.cgroup_event_drops);
    }

    /// Losses that can hide use (counts or events gone), at or after `since`.
    #[must_use]
    pub fn hide_use_since(&self, since: Option<OffsetDateTime>) -> bool {
        self.counter_map_full.since(since) || self.read_errors.since(since)
    }
}

/// Counts summed over kernel keys that are not a container's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyTotals {
    /// Distinct kernel keys.
    #[serde(default)]
    pub keys: u64,
    #[serde(default)]
    pub reads: Reads,
    #[serde(default)]
    pub api_connects: u64,
    #[serde(with = "time::serde::rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub first_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub last_seen: Option<OffsetDateTime>,
}

impl KeyTotals {
    /// Whether anything was counted.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.reads.total() == 0 && self.api_connects == 0
    }

    /// Adds another set of totals.
    pub fn merge(&mut self, other: &Self) {
        self.keys = self.keys.saturating_add(other.keys);
        self.reads.merge(&other.reads);
        self.api_connects = self.api_connects.saturating_add(other.api_connects);
        self.first_seen = earliest(self.first_seen, other.first_seen);
        self.last_seen = latest(self.last_seen, other.last_seen);
    }
}

impl AgentInfo {
    /// An agent header with nothing attached or lost yet.
    #[must_use]
    pub fn new(version: &str, started_at: OffsetDateTime) -> Self {
        Self {
            version: version.to_owned(),
            started_at,
            generated_at: Some(started_at),
            hooks: Hooks { file_open: None, connect: None },
            rejected_hooks: Vec::new(),
            drops: 0,
            map_full: 0,
            container_key: KeyKind::Cgroup,
            exec_tracking: false,
            missing_token_detector: false,
            targets: Vec::new(),
            targets_not_watched: Vec::new(),
            gaps: Vec::new(),
            publish_interval_seconds: None,
            container_creation: false,
            container_removal: false,
            losses: Losses::default(),
            unattributed: KeyTotals::default(),
            host: KeyTotals::default(),
            truncated: None,
        }
    }
}

const fn default_key_kind() -> KeyKind {
    KeyKind::Cgroup
}

/// A time the agent was not watching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub to: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    pub file_open: Option<String>,
    pub connect: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectedHook {
    pub detector: String,
    pub mode: String,
    pub reason: String,
}

/// How the agent tells containers apart in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KeyKind {
    Cgroup,
    MountNs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct ContainerKey {
    pub kind: KeyKind,
    pub id: u64,
}

/// Opens of the files of a projected volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reads {
    #[serde(default)]
    pub token: u64,
    #[serde(rename = "ca.crt", default)]
    pub ca_crt: u64,
    #[serde(default)]
    pub namespace: u64,
    #[serde(default)]
    pub other: u64,
}

impl Reads {
    /// Adds `count` opens of a file of `kind` (`probe_common::counters::kind::READ_*`).
    pub fn add(&mut self, kind: u32, count: u64) {
        use probe_common::counters::kind as k;
        let slot = match kind {
            k::READ_TOKEN => &mut self.token,
            k::READ_CA_CRT => &mut self.ca_crt,
            k::READ_NAMESPACE => &mut self.namespace,
            _ => &mut self.other,
        };
        *slot = slot.saturating_add(count);
    }

    /// Whether nothing was counted.
    #[must_use]
    pub const fn is_zero(&self) -> bool {
        self.total() == 0
    }

    #[must_use]
    pub const fn total(&self) -> u64 {
        self.token.saturating_add(self.ca_crt).saturating_add(self.namespace).saturating_add(self.other)
    }

    /// Adds another count set.
    pub const fn merge(&mut self, other: &Self) {
        self.token = self.token.saturating_add(other.token);
        self.ca_crt = self.ca_crt.saturating_add(other.ca_crt);
        self.namespace = self.namespace.saturating_add(other.namespace);
        self.other = self.other.saturating_add(other.other);
    }
}

/// Adds other-volume counts into `into`, by volume name.
pub fn merge_other_volumes(into: &mut Vec<OtherVolume>, from: &[OtherVolume]) {
    for v in from {
        if let Some(existing) = into.iter_mut().find(|e| e.name == v.name) {
            existing.reads.merge(&v.reads);
            existing.exec_reads.merge(&v.exec_reads);
        } else {
            into.push(v.clone());
        }
    }
}

/// The earlier of two optional times (either, when one is missing).
pub(crate) fn earliest(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// The later of two optional times (either, when one is missing).
pub(crate) fn latest(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

impl ContainerEvidence {
    /// Adds counts the same container gathered in another agent run (after a restart): counts
    /// add, times widen, coverage keeps the earlier start.
    pub fn absorb(&mut self, earlier: &Self) {
        self.reads.merge(&earlier.reads);
        self.exec_reads.merge(&earlier.exec_reads);
        self.api_connects = self.api_connects.saturating_add(earlier.api_connects);
        self.exec_api_connects = self.exec_api_connects.saturating_add(earlier.exec_api_connects);
        self.missing_token_opens = self.missing_token_opens.saturating_add(earlier.missing_token_opens);
        merge_other_volumes(&mut self.other_volumes, &earlier.other_volumes);
        for p in &earlier.processes {
            if !self.processes.contains(p) {
                self.processes.push(p.clone());
            }
        }
        for p in &earlier.exec_processes {
            if !self.exec_processes.contains(p) {
                self.exec_processes.push(p.clone());
            }
        }
        self.first_seen = earliest(self.first_seen, earlier.first_seen);
        self.last_seen = latest(self.last_seen, earlier.last_seen);
        self.observed_since = earliest(earlier.observed_since, self.observed_since);
        if earlier.observed_from_start.is_some() {
            self.observed_from_start = earlier.observed_from_start;
        }
        self.unobserved_seconds = self.unobserved_seconds.saturating_add(earlier.unobserved_seconds);
        for (mine, theirs) in [
            (&mut self.namespace, &earlier.namespace),
            (&mut self.pod, &earlier.pod),
            (&mut self.container, &earlier.container),
            (&mut self.service_account, &earlier.service_account),
        ] {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        }
        if self.workload.is_none() {
            self.workload.clone_from(&earlier.workload);
        }
    }
}

impl RetiredTotals {
    /// Totals of one retired container (its pod is counted by [`fold_retired`]).
    fn of(c: &ContainerEvidence) -> Self {
        Self {
            namespace: c.namespace.clone(),
            workload: c.workload.clone(),
            container: c.container.clone(),
            service_account: c.service_account.clone(),
            revision: c.revision.clone(),
            containers: 1,
            observed_from_start: u64::from(c.observed_from_start == Some(true)),
            pods: 0,
            runs: 0,
            reads: c.reads,
            api_connects: c.api_connects,
            exec_reads: c.exec_reads,
            exec_api_connects: c.exec_api_connects,
            missing_token_opens: c.missing_token_opens,
            other_volumes: c.other_volumes.clone(),
            first_seen: c.first_seen,
            last_seen: c.last_seen,
            observed_since: c.observed_since,
            unobserved_seconds: c.unobserved_seconds,
        }
    }

    /// Whether `other` belongs in the same fold.
    #[must_use]
    pub fn same_group(&self, other: &Self) -> bool {
        self.namespace == other.namespace
            && self.workload == other.workload
            && self.container == other.container
            && self.service_account == other.service_account
            && self.revision == other.revision
    }

    pub fn merge(&mut self, other: &Self) {
        self.containers = self.containers.saturating_add(other.containers);
        self.observed_from_start = self.observed_from_start.saturating_add(other.observed_from_start);
        self.pods = self.pods.saturating_add(other.pods);
        self.runs = self.runs.saturating_add(other.runs);
        self.reads.merge(&other.reads);
        self.exec_reads.merge(&other.exec_reads);
        self.api_connects = self.api_connects.saturating_add(other.api_connects);
        self.exec_api_connects = self.exec_api_connects.saturating_add(other.exec_api_connects);
        self.missing_token_opens = self.missing_token_opens.saturating_add(other.missing_token_opens);
        merge_other_volumes(&mut self.other_volumes, &other.other_volumes);
        self.first_seen = earliest(self.first_seen, other.first_seen);
        self.last_seen = latest(self.last_seen, other.last_seen);
        self.observed_since = earliest(self.observed_since, other.observed_since);
        self.unobserved_seconds = self.unobserved_seconds.saturating_add(other.unobserved_seconds);
    }
}

/// Whether a pod phase means the pod ran to completion.
#[must_use]
pub fn finished(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Folds retired containers into `into`, one entry per group. `containers` holds whole pods
/// (every container of each pod it names): a pod is a run when it finished and every one of
/// its containers was observed from its start.
pub fn fold_retired(into: &mut Vec<RetiredTotals>, containers: &[ContainerEvidence]) {
    let mut runs: BTreeMap<Option<&str>, bool> = BTreeMap::new();
    for c in containers {
        let run = runs.entry(c.pod_uid.as_deref()).or_insert(true);
        *run &= finished(c.pod_phase.as_deref()) && c.observed_from_start == Some(true);
    }
    let mut counted: BTreeSet<(usize, Option<&str>)> = BTreeSet::new();
    for c in containers {
        let totals = RetiredTotals::of(c);
        let group = if let Some(i) = into.iter().position(|r| r.same_group(&totals)) {
            into[i].merge(&totals);
            i
        } else {
            into.push(totals);
            into.len() - 1
        };
        let pod = c.pod_uid.as_deref();
        if counted.insert((group, pod)) {
            into[group].pods += 1;
            into[group].runs += u64::from(runs.get(&pod).copied().unwrap_or(false));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub kind: String,
    pub name: String,
}

/// Whether counts show any use of the token volume, of other token volumes, of the API server,
/// or a reach for a missing token: what must never be left out.
fn any_use(reads: [&Reads; 2], connects: [u64; 2], missing: u64, others: &[OtherVolume]) -> bool {
    reads.iter().any(|r| r.total() > 0)
        || connects.iter().any(|&c| c > 0)
        || missing > 0
        || others.iter().any(|v| v.reads.total() > 0 || v.exec_reads.total() > 0)
}

impl ContainerEvidence {
    /// See [`any_use`].
    #[must_use]
    pub fn shows_use(&self) -> bool {
        any_use(
            [&self.reads, &self.exec_reads],
            [self.api_connects, self.exec_api_connects],
            self.missing_token_opens,
            &self.other_volumes,
        )
    }
}

impl RetiredTotals {
    /// See [`any_use`].
    #[must_use]
    pub fn shows_use(&self) -> bool {
        any_use(
            [&self.reads, &self.exec_reads],
            [self.api_connects, self.exec_api_connects],
            self.missing_token_opens,
            &self.other_volumes,
        )
    }
}

/// A projected volume other than the automount one that holds a token (custom audience, Vault,
/// Istio): automount does not control it, so it is reported apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtherVolume {
    pub name: String,
    pub reads: Reads,
    #[serde(default)]
    pub exec_reads: Reads,
}

/// One container (a container id: a restarted container is a new entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEvidence {
    pub key: ContainerKey,
    /// The container's cgroup (a debugging aid; left out of the published object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub service_account: Option<String>,
    pub workload: Option<Workload>,
    /// The pod's template revision: its `pod-template-hash` (Deployments) or
    /// `controller-revision-hash` (StatefulSets, DaemonSets) label, or a fingerprint of its
    /// Job's pod template (Jobs, CronJobs). `null` when unknown (standalone mode, bare pods).
    #[serde(default)]
    pub revision: Option<String>,
    /// The pod's phase when the agent last saw it (`Succeeded`/`Failed`: the pod ran to
    /// completion — a run of a Job).
    #[serde(default)]
    pub pod_phase: Option<String>,
    /// Opens of the automount volume's files by the container's own processes.
    pub reads: Reads,
    pub api_connects: u64,
    /// The same, by processes that entered the container from outside (exec sessions).
    /// Counts that are rare — exec sessions, missing-token opens, other volumes, gaps — are left
    /// out of the JSON when zero or empty, to keep a node's object small; absent means zero.
    #[serde(default, skip_serializing_if = "Reads::is_zero")]
    pub exec_reads: Reads,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub exec_api_connects: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing_token_opens: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_volumes: Vec<OtherVolume>,
    /// Names (`comm`) of processes seen using the volume or the API server.
    pub processes: Vec<String>,
    /// The same, of exec-session processes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec_processes: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub first_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub last_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub observed_since: Option<OffsetDateTime>,
    /// The agent was watching before the container's first process started.
    pub observed_from_start: Option<bool>,
    /// Seconds of the container's life the agent was not running (restarts).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unobserved_seconds: u64,
    /// Why the agent could not see everything this container did (its token volume not
    /// watched, its mount namespace unreadable, a sandboxed runtime, …); absent when covered. A
    /// container with a reason here can never be judged safe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncovered: Vec<String>,
    /// The container id this one replaced when restarted in place (from the pod status'
    /// `lastState`): the earlier instance keeps its own entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_container_id: Option<String>,
    /// When its cgroup went away; absent while it runs.
    #[serde(with = "time::serde::rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub gone_since: Option<OffsetDateTime>,
}

#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
const fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Containers folded after the retention window, per (namespace, workload, container name,
/// `ServiceAccount`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiredTotals {
    pub namespace: Option<String>,
    pub workload: Option<Workload>,
    pub container: Option<String>,
    pub service_account: Option<String>,
    /// The pod template revision of the folded containers' pods (as a container's
    /// `revision`).
    #[serde(default)]
    pub revision: Option<String>,
    /// How many containers were folded in.
    pub containers: u64,
    /// How many of them were observed from their start.
    pub observed_from_start: u64,
    /// How many distinct pods they belonged to.
    #[serde(default)]
    pub pods: u64,
    /// How many of those pods ran to completion (`Succeeded` or `Failed`) with every container
    /// observed from its start: the runs of a Job or CronJob.
    #[serde(default)]
    pub runs: u64,
    pub reads: Reads,
    pub api_connects: u64,
    pub exec_reads: Reads,
    pub exec_api_connects: u64,
    pub missing_token_opens: u64,
    pub other_volumes: Vec<OtherVolume>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub first_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub last_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub observed_since: Option<OffsetDateTime>,
    #[serde(default)]
    pub unobserved_seconds: u64,
}

/// A watched volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeEvidence {
    pub pod_uid: String,
    pub name: String,
    pub automount: bool,
    pub mount_point: String,
    /// Kernel `s_dev` of its tmpfs.
    pub device: u32,
    pub mounted: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub watched_since: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_serialize_with_the_file_names() {
        let mut r = Reads::default();
        r.add(probe_common::counters::kind::READ_CA_CRT, 2);
        r.add(probe_common::counters::kind::READ_TOKEN, 1);
        r.add(99, 1);
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json, serde_json::json!({"token": 1, "ca.crt": 2, "namespace": 0, "other": 1}));
        assert_eq!(r.total(), 4);
    }

    #[test]
    fn key_kind_is_camel_case() {
        let key = ContainerKey { kind: KeyKind::MountNs, id: 7 };
        assert_eq!(serde_json::to_string(&key).unwrap(), r#"{"kind":"mountNs","id":7}"#);
    }
}
