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
}

impl Inputs {
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
    let mut out = Vec::new();
    for v in flatten(documents(file, text)?) {
        match v.get("kind").and_then(Value::as_str) {
            Some("NodeTokenEvidence") => {
                let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?").to_owned();
                let status = v.get("status").cloned().ok_or_else(|| {
                    bad(file, format!("NodeTokenEvidence {name} has no status (nothing published yet)"))
                })?;
                out.push(typed(file, "NodeTokenEvidence status", status)?);
            }
            Some(other) => return Err(bad(file, format!("expected evidence, found a {other}"))),
            None if v.get("containers").is_some() && v.get("node").is_some() => out.push(typed(file, "evidence", v)?),
            None => {
                return Err(bad(file, "expected evidence (a `node` and `containers`) or NodeTokenEvidence objects"));
            }
        }
    }
    Ok(out)
}

/// Adds the objects of a `kubectl get … -o json|yaml` file to `inputs`. Kinds the planner does
/// not use are skipped.
///
/// # Errors
/// Malformed files or objects.
pub fn parse_objects(file: &str, text: &str, inputs: &mut Inputs) -> Result<usize, InputError> {
    let mut used = 0;
    for v in flatten(documents(file, text)?) {
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
        let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        match kind.as_str() {
            "Pod" => inputs.pods.push(typed(file, &kind, v)?),
            "ServiceAccount" => inputs.service_accounts.push(typed(file, &kind, v)?),
            "ReplicaSet" => inputs.replica_sets.push(typed(file, &kind, v)?),
            "Job" => inputs.jobs.push(typed(file, &kind, v)?),
            "Deployment" => inputs.deployments.push(typed(file, &kind, v)?),
            "StatefulSet" => inputs.stateful_sets.push(typed(file, &kind, v)?),
            "DaemonSet" => inputs.daemon_sets.push(typed(file, &kind, v)?),
            "ControllerRevision" => inputs.controller_revisions.push(typed(file, &kind, v)?),
            "Lease" if api_version.starts_with("coordination.k8s.io/") => {
                let lease: Lease = typed(file, &kind, v)?;
                if crate::k8s::liveness::read(&lease).is_none() {
                    continue;
                }
                inputs.leases.push(lease);
            }
            "CronJob" if api_version.starts_with("batch/") => {
                let metadata = typed(file, "CronJob metadata", v.get("metadata").cloned().unwrap_or_default())?;
                inputs
                    .cron_jobs
                    .push(crate::k8s::workloads::cronjob_from_json(metadata, v.get("spec").unwrap_or(&Value::Null)));
            }
            _ => continue,
        }
        used += 1;
    }
    Ok(used)
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
