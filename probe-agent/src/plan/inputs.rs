//! What the planner reads: evidence and cluster objects, from files (`--evidence`,
//! `--objects`) or live from the cluster, and the merge rules for evidence.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet},
    batch::v1::Job,
    coordination::v1::Lease,
    core::v1::{Pod, ServiceAccount},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    records::{DeploymentRecord, PodRecord, ReplicaSetRecord, lean},
    stream,
};
use crate::{
    evidence::{ContainerEvidence, Evidence},
    k8s::workloads::CronJobLite,
};

/// Everything the planner looks at.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// One per node (merged).
    pub evidence: Vec<Evidence>,
    pub pods: Vec<Pod>,
    pub service_accounts: Vec<ServiceAccount>,
    pub replica_sets: Vec<ReplicaSet>,
    pub jobs: Vec<Job>,
    pub deployments: Vec<Deployment>,
    pub stateful_sets: Vec<StatefulSet>,
    pub daemon_sets: Vec<DaemonSet>,
    pub cron_jobs: Vec<CronJobLite>,
    /// Tell a `DaemonSet`'s current pod template revision.
    pub controller_revisions: Vec<ControllerRevision>,
    /// The agents' liveness Leases (those labelled as the agent's; others are ignored).
    pub leases: Vec<Lease>,
    /// Pods, `ReplicaSet`s and Deployments reduced to what the planner needs as they were read
    /// (files, live pages); the planner reads them together with the typed ones above.
    pub pod_records: Vec<PodRecord>,
    pub replica_set_records: Vec<ReplicaSetRecord>,
    pub deployment_records: Vec<DeploymentRecord>,
    /// Whether agents can write only their own node's evidence (read live; unknown from files).
    pub integrity: crate::k8s::integrity::Integrity,
    /// The API server's audit events (`--audit-log`): proof of use, never of non-use.
    pub audit: Option<crate::auditlog::AuditEvidence>,
}

impl Inputs {
    /// The inputs with typed pods, `ReplicaSet`s and Deployments reduced to records, as the
    /// planner reads them (`None`: they already are).
    #[must_use]
    pub fn as_records(&self) -> Option<Self> {
        if self.pods.is_empty() && self.replica_sets.is_empty() && self.deployments.is_empty() {
            return None;
        }
        let mut records = Self { pods: Vec::new(), replica_sets: Vec::new(), deployments: Vec::new(), ..self.clone() };
        records.pod_records =
            self.pods.iter().filter_map(PodRecord::of).chain(self.pod_records.iter().cloned()).collect();
        records.replica_set_records = self
            .replica_sets
            .iter()
            .filter_map(ReplicaSetRecord::of)
            .chain(self.replica_set_records.iter().cloned())
            .collect();
        records.deployment_records =
            self.deployments.iter().map(DeploymentRecord::of).chain(self.deployment_records.iter().cloned()).collect();
        Some(records)
    }

    /// The newest report among the inputs: the latest `generatedAt` or Lease renewal (offline,
    /// the planner's "now" unless `--now` is given).
    #[must_use]
    pub fn newest_report(&self) -> Option<time::OffsetDateTime> {
        let generated = self.evidence.iter().filter_map(|e| e.agent.generated_at);
        let renewed = self.leases.iter().filter_map(crate::k8s::liveness::read).map(|l| l.renewed);
        generated.chain(renewed).max()
    }
}

/// A file that cannot be used, said plainly.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{file}: {message}")]
    Bad { file: String, message: String },
}

fn bad(file: &str, message: impl Into<String>) -> InputError {
    InputError::Bad { file: file.to_owned(), message: message.into() }
}

/// Parses JSON, or YAML with one or more documents, into JSON values.
fn documents(file: &str, text: &str) -> Result<Vec<Value>, InputError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let value: Value = serde_json::from_str(text).map_err(|e| bad(file, format!("invalid JSON: {e}")))?;
        return Ok(match value {
            Value::Array(items) => items,
            v => vec![v],
        });
    }
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value: Value =
            serde::Deserialize::deserialize(document).map_err(|e| bad(file, format!("invalid YAML: {e}")))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// Lists (`kind: List` or any `*List`) are flattened into their items.
fn flatten(values: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for v in values {
        let is_list =
            v.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) && v.get("items").is_some();
        if is_list {
            if let Some(Value::Array(items)) = v.get("items") {
                out.extend(flatten(items.clone()));
            }
        } else {
            out.push(v);
        }
    }
    out
}

fn typed<T: DeserializeOwned>(file: &str, kind: &str, value: Value) -> Result<T, InputError> {
    serde_json::from_value(value).map_err(|e| bad(file, format!("malformed {kind}: {e}")))
}

/// Parses an evidence file: the JSON of `probe-agent watch`/`/v1/evidence`, NodeTokenEvidence
/// objects (JSON or YAML, one or many), or a List of them.
///
/// # Errors
/// A clear message for anything that is not evidence; nothing is guessed.
pub fn parse_evidence(file: &str, text: &str) -> Result<Vec<Evidence>, InputError> {
    if is_json(text.as_bytes()) {
        return read_evidence(file, text.as_bytes());
    }
    let mut out = Vec::new();
    for_each_yaml_object(file, text, |kind, _, bytes| evidence_object(file, kind, bytes, &mut out))?;
    Ok(out)
}

/// [`parse_evidence`] of a JSON document read object by object (never held whole), parsed on
/// every core.
///
/// # Errors
/// As [`parse_evidence`], and read errors.
pub fn read_evidence(file: &str, reader: impl std::io::Read) -> Result<Vec<Evidence>, InputError> {
    let mut out = Vec::new();
    stream::par_map_objects(
        reader,
        |o| {
            let mut parsed = Vec::new();
            evidence_object(file, o.kind, o.bytes, &mut parsed).map_err(|InputError::Bad { message, .. }| message)?;
            Ok(parsed)
        },
        |parsed| {
            out.extend(parsed);
            Ok(())
        },
    )
    .map_err(|e| bad(file, e.to_string()))?;
    Ok(out)
}

/// The evidence of a `NodeTokenEvidence` object counts as the evidence of the node the object is
/// named after — the only node whose agent may write it where the admission policy
/// (deploy/kustomize/components/evidence-integrity) is in force. An object that says it is
/// another node's is taken as its writer's: it can show use by that node's pods, but it cannot
/// vouch that they did not use their tokens (only a pod's own node can).
#[must_use]
pub fn published_by(object_name: &str, mut status: Evidence) -> Evidence {
    if status.node != object_name {
        tracing::warn!(
            object = object_name,
            claims = %status.node,
            "a NodeTokenEvidence object carries evidence it says is another node's: counted as the object's own node's, it shows use but cannot vouch for that node's pods"
        );
        object_name.clone_into(&mut status.node);
    }
    status
}

fn evidence_object(file: &str, kind: Option<&str>, bytes: &[u8], out: &mut Vec<Evidence>) -> Result<(), InputError> {
    #[derive(serde::Deserialize)]
    struct Published {
        #[serde(default)]
        metadata: Named,
        status: Option<Evidence>,
    }
    #[derive(serde::Deserialize, Default)]
    struct Named {
        name: Option<String>,
    }
    match kind {
        Some("NodeTokenEvidence") => {
            let o: Published = from_bytes(file, "NodeTokenEvidence", bytes)?;
            let name = o.metadata.name.unwrap_or_else(|| "?".into());
            let status = o
                .status
                .ok_or_else(|| bad(file, format!("NodeTokenEvidence {name} has no status (nothing published yet)")))?;
            out.push(published_by(&name, status));
        }
        Some(k) if k.ends_with("List") => {
            stream::for_each_object(bytes, |o| {
                if o.bytes.len() == bytes.len() {
                    // A List without items comes back as itself.
                    return Ok(());
                }
                evidence_object(file, o.kind, o.bytes, out).map_err(|InputError::Bad { message, .. }| message)
            })
            .map_err(|e| bad(file, e.to_string()))?;
        }
        Some(other) => return Err(bad(file, format!("expected evidence, found a {other}"))),
        None => {
            #[derive(serde::Deserialize)]
            struct Shape {
                node: Option<serde::de::IgnoredAny>,
                containers: Option<serde::de::IgnoredAny>,
            }
            let shape: Shape = from_bytes(file, "evidence", bytes)?;
            if shape.node.is_none() || shape.containers.is_none() {
                return Err(bad(file, "expected evidence (a `node` and `containers`) or NodeTokenEvidence objects"));
            }
            out.push(from_bytes(file, "evidence", bytes)?);
        }
    }
    Ok(())
}

/// A file's first bytes, to tell JSON (read object by object) from YAML (read whole), and a
/// reader of the whole file.
fn open(path: &std::path::Path) -> std::io::Result<(bool, impl std::io::Read)> {
    use std::io::Read as _;
    // Unbuffered: the JSON reader reads in large chunks of its own.
    let mut file = std::fs::File::open(path)?;
    let mut head = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        if file.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
        if !byte[0].is_ascii_whitespace() {
            break;
        }
    }
    Ok((is_json(&head), std::io::Cursor::new(head).chain(file)))
}

/// Reads an evidence file: JSON object by object, YAML whole (see [`parse_evidence`]).
///
/// # Errors
/// As [`parse_evidence`], and read errors.
pub fn read_evidence_file(path: &std::path::Path) -> Result<Vec<Evidence>, InputError> {
    let name = path.display().to_string();
    let (json, mut reader) = open(path).map_err(|e| bad(&name, format!("cannot read it: {e}")))?;
    if json {
        return read_evidence(&name, reader);
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader, &mut text).map_err(|e| bad(&name, format!("cannot read it: {e}")))?;
    parse_evidence(&name, &text)
}

/// Reads a file of cluster objects: JSON object by object, YAML whole (see [`parse_objects`]).
///
/// # Errors
/// As [`parse_objects`], and read errors.
pub fn read_objects_file(path: &std::path::Path, inputs: &mut Inputs) -> Result<usize, InputError> {
    let name = path.display().to_string();
    let (json, mut reader) = open(path).map_err(|e| bad(&name, format!("cannot read it: {e}")))?;
    if json {
        return read_objects(&name, reader, inputs);
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader, &mut text).map_err(|e| bad(&name, format!("cannot read it: {e}")))?;
    parse_objects(&name, &text, inputs)
}

fn from_bytes<T: DeserializeOwned>(file: &str, kind: &str, bytes: &[u8]) -> Result<T, InputError> {
    // Validated once as a whole, the text's strings need no validation each (as from a slice).
    let text = std::str::from_utf8(bytes).map_err(|e| bad(file, format!("malformed {kind}: not UTF-8: {e}")))?;
    serde_json::from_str(text).map_err(|e| bad(file, format!("malformed {kind}: {e}")))
}

fn is_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()).is_none_or(|b| matches!(b, b'{' | b'['))
}

/// Each object of YAML documents (Lists flattened), as JSON bytes.
fn for_each_yaml_object(
    file: &str,
    text: &str,
    mut each: impl FnMut(Option<&str>, Option<&str>, &[u8]) -> Result<(), InputError>,
) -> Result<(), InputError> {
    for v in flatten(documents(file, text)?) {
        let bytes = serde_json::to_vec(&v).map_err(|e| bad(file, e.to_string()))?;
        each(v.get("kind").and_then(Value::as_str), v.get("apiVersion").and_then(Value::as_str), &bytes)?;
    }
    Ok(())
}

/// Adds the objects of a `kubectl get … -o json|yaml` file to `inputs`. Kinds the planner does
/// not use are skipped.
///
/// # Errors
/// Malformed files or objects.
pub fn parse_objects(file: &str, text: &str, inputs: &mut Inputs) -> Result<usize, InputError> {
    if is_json(text.as_bytes()) {
        return read_objects(file, text.as_bytes(), inputs);
    }
    let mut used = 0;
    for_each_yaml_object(file, text, |kind, api_version, bytes| {
        used += object(file, kind, api_version, bytes, inputs)?;
        Ok(())
    })?;
    Ok(used)
}

/// [`parse_objects`] of a JSON document read object by object, parsed on every core: pods,
/// `ReplicaSet`s and Deployments are kept as compact records, so memory grows with the records,
/// not the file.
///
/// # Errors
/// As [`parse_objects`], and read errors.
pub fn read_objects(file: &str, reader: impl std::io::Read, inputs: &mut Inputs) -> Result<usize, InputError> {
    let mut used = 0;
    stream::par_map_objects(
        reader,
        |o| parse_object(file, o.kind, o.api_version, o.bytes).map_err(|InputError::Bad { message, .. }| message),
        |parsed| {
            used += parsed.apply(inputs);
            Ok(())
        },
    )
    .map_err(|e| bad(file, e.to_string()))?;
    Ok(used)
}

/// One object into `inputs`; how many objects were used.
fn object(
    file: &str,
    kind: Option<&str>,
    api_version: Option<&str>,
    bytes: &[u8],
    inputs: &mut Inputs,
) -> Result<usize, InputError> {
    Ok(parse_object(file, kind, api_version, bytes)?.apply(inputs))
}

/// An object parsed into what the planner keeps of it.
#[expect(
    clippy::large_enum_variant,
    reason = "moved once from the parser into its vector; boxing pods would add an allocation per pod"
)]
enum Parsed {
    Pod(PodRecord),
    ReplicaSet(ReplicaSetRecord),
    Deployment(DeploymentRecord),
    ServiceAccount(Box<ServiceAccount>),
    Job(Box<Job>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
    ControllerRevision(Box<ControllerRevision>),
    Lease(Box<Lease>),
    CronJob(Box<CronJobLite>),
    List(Vec<Self>),
    /// A kind the planner does not use, or an object it does not keep.
    Unused,
    /// An object of a kind it uses, with nothing to keep.
    Read,
}

impl Parsed {
    fn apply(self, inputs: &mut Inputs) -> usize {
        match self {
            Self::Pod(r) => inputs.pod_records.push(r),
            Self::ReplicaSet(r) => inputs.replica_set_records.push(r),
            Self::Deployment(r) => inputs.deployment_records.push(r),
            Self::ServiceAccount(o) => inputs.service_accounts.push(*o),
            Self::Job(o) => inputs.jobs.push(*o),
            Self::StatefulSet(o) => inputs.stateful_sets.push(*o),
            Self::DaemonSet(o) => inputs.daemon_sets.push(*o),
            Self::ControllerRevision(o) => inputs.controller_revisions.push(*o),
            Self::Lease(o) => inputs.leases.push(*o),
            Self::CronJob(o) => inputs.cron_jobs.push(*o),
            Self::List(items) => return items.into_iter().map(|p| p.apply(inputs)).sum(),
            Self::Unused => return 0,
            Self::Read => {}
        }
        1
    }
}

fn parse_object(file: &str, kind: Option<&str>, api_version: Option<&str>, bytes: &[u8]) -> Result<Parsed, InputError> {
    let kind = kind.unwrap_or_default();
    let api_version = api_version.unwrap_or_default();
    Ok(match kind {
        "Pod" => {
            let pod: Pod = from_bytes::<lean::LeanPod>(file, kind, bytes)?.into();
            // A pod without a UID is not a real object: read, but nothing to judge.
            PodRecord::of(&pod).map_or(Parsed::Read, Parsed::Pod)
        }
        "ReplicaSet" => {
            let rs: ReplicaSet = from_bytes::<lean::LeanReplicaSet>(file, kind, bytes)?.into();
            ReplicaSetRecord::of(&rs).map_or(Parsed::Unused, Parsed::ReplicaSet)
        }
        "Deployment" => {
            let d: Deployment = from_bytes::<lean::LeanDeployment>(file, kind, bytes)?.into();
            Parsed::Deployment(DeploymentRecord::of(&d))
        }
        "ServiceAccount" => Parsed::ServiceAccount(from_bytes(file, kind, bytes)?),
        "Job" => Parsed::Job(from_bytes(file, kind, bytes)?),
        "StatefulSet" => Parsed::StatefulSet(from_bytes(file, kind, bytes)?),
        "DaemonSet" => Parsed::DaemonSet(from_bytes(file, kind, bytes)?),
        "ControllerRevision" => Parsed::ControllerRevision(from_bytes(file, kind, bytes)?),
        "Lease" if api_version.starts_with("coordination.k8s.io/") => {
            let lease: Lease = from_bytes(file, kind, bytes)?;
            if crate::k8s::liveness::read(&lease).is_none() {
                return Ok(Parsed::Unused);
            }
            Parsed::Lease(Box::new(lease))
        }
        "CronJob" if api_version.starts_with("batch/") => {
            let v: Value = from_bytes(file, kind, bytes)?;
            let metadata = typed(file, "CronJob metadata", v.get("metadata").cloned().unwrap_or_default())?;
            Parsed::CronJob(Box::new(crate::k8s::workloads::cronjob_from_json(
                metadata,
                v.get("spec").unwrap_or(&Value::Null),
            )))
        }
        k if k.ends_with("List") => {
            let mut items = Vec::new();
            stream::for_each_object(bytes, |o| {
                if o.bytes.len() == bytes.len() {
                    // A List without items comes back as itself.
                    return Ok(());
                }
                items.push(
                    parse_object(file, o.kind, o.api_version, o.bytes)
                        .map_err(|InputError::Bad { message, .. }| message)?,
                );
                Ok(())
            })
            .map_err(|e| bad(file, e.to_string()))?;
            Parsed::List(items)
        }
        _ => Parsed::Unused,
    })
}

fn later(a: &ContainerEvidence, b: &ContainerEvidence) -> bool {
    match (a.last_seen, b.last_seen) {
        (Some(x), Some(y)) if x != y => x > y,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        // Same time (or none): the larger totals are the later export (counters are cumulative).
        _ => {
            a.reads.total() + a.api_connects + a.exec_reads.total()
                >= b.reads.total() + b.api_connects + b.exec_reads.total()
        }
    }
}

/// Merges exports: one evidence per node; per (node, podUid, containerId) the entry with the
/// latest `lastSeen` (counters are cumulative, so entries are never added); the agent header and
/// retired totals of the latest export.
#[must_use]
pub fn merge_evidence(exports: Vec<Evidence>) -> Vec<Evidence> {
    let mut by_node: BTreeMap<String, Evidence> = BTreeMap::new();
    for export in exports {
        let Some(existing) = by_node.get_mut(&export.node) else {
            by_node.insert(export.node.clone(), export);
            continue;
        };
        let newer = export.agent.generated_at > existing.agent.generated_at;
        let mut containers: BTreeMap<(Option<String>, Option<String>), ContainerEvidence> = BTreeMap::new();
        for c in existing.containers.drain(..).chain(export.containers.iter().cloned()) {
            let key = (c.pod_uid.clone(), c.container_id.clone());
            match containers.get(&key) {
                Some(kept) if later(kept, &c) => {}
                _ => {
                    containers.insert(key, c);
                }
            }
        }
        existing.containers = containers.into_values().collect();
        if newer {
            existing.agent = export.agent;
            existing.retired = export.retired;
            existing.volumes = export.volumes;
        }
    }
    by_node.into_values().collect()
}
