//! Where to turn automount off, and in which order.
//!
//! A ServiceAccount goes to `false` when every workload following it is safe — or uses the token
//! but can be pinned with an explicit `true` in its pod template first — and none lacks
//! evidence; otherwise each safe workload's pod template gets `false`. No change removes a token
//! some observed container used.

use std::collections::{BTreeMap, BTreeSet};

use super::{Change, Phase, Policy, ServiceAccountReport, Target, Verdict, WorkloadRef, WorkloadReport, model::Model};

fn api_version(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        _ => "v1",
    }
}

/// The object whose pod template a workload's change patches.
#[must_use]
pub fn workload_target(w: &WorkloadRef) -> Target {
    Target {
        api_version: api_version(&w.kind).into(),
        kind: w.kind.clone(),
        namespace: w.namespace.clone(),
        name: w.name.clone(),
    }
}

/// Workloads whose pods must be recreated to pick up a ServiceAccount change (a pod template
/// change rolls out by itself).
fn restartable(w: &WorkloadRef) -> bool {
    matches!(w.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet")
}

pub(super) fn changes(
    _model: &Model<'_>,
    workloads: &[WorkloadReport],
    service_accounts: &[ServiceAccountReport],
) -> Vec<Change> {
    let by_ref: BTreeMap<&WorkloadRef, &WorkloadReport> = workloads.iter().map(|w| (&w.workload, w)).collect();
    let mut out = Vec::new();
    let mut unit = 0;
    let mut handled: BTreeSet<&WorkloadRef> = BTreeSet::new();
    for sa in service_accounts.iter().filter(|sa| sa.verdict != Verdict::AlreadyDisabled) {
        let following: Vec<&WorkloadReport> = sa.workloads.iter().filter_map(|r| by_ref.get(r).copied()).collect();
        let safe: Vec<&WorkloadReport> =
            following.iter().copied().filter(|w| w.verdict == Verdict::SafeToDisable).collect();
        let users: Vec<&WorkloadReport> = following
            .iter()
            .copied()
            .filter(|w| matches!(w.verdict, Verdict::UsesToken | Verdict::UsesVolumeFiles))
            .collect();
        let undecided = following.iter().any(|w| w.verdict == Verdict::InsufficientEvidence);
        let pinnable = users.iter().all(|u| u.workload.patchable());
        if safe.is_empty() {
            continue;
        }
        // Gone workloads that used the token cannot be pinned: the ServiceAccount keeps it.
        if !undecided && pinnable && sa.gone_users.is_empty() {
            unit += 1;
            for u in &users {
                out.push(Change {
                    target: workload_target(&u.workload),
                    automount: true,
                    pin: true,
                    patchable: true,
                    reason: format!(
                        "keeps its token when ServiceAccount {} turns automount off ({})",
                        sa.name,
                        u.verdict.name()
                    ),
                    evidence: u.summary.clone(),
                    restart: Vec::new(),
                    unit,
                });
            }
            let names: Vec<String> = safe.iter().map(|w| w.workload.display()).collect();
            out.push(Change {
                target: Target {
                    api_version: "v1".into(),
                    kind: "ServiceAccount".into(),
                    namespace: sa.namespace.clone(),
                    name: sa.name.clone(),
                },
                automount: false,
                pin: false,
                patchable: true,
                reason: if users.is_empty() {
                    format!("every workload following it is safe: {}", names.join(", "))
                } else {
                    format!("safe: {}; token users pinned to true first", names.join(", "))
                },
                evidence: safe
                    .iter()
                    .map(|w| format!("{}: {}", w.workload.display(), w.summary))
                    .collect::<Vec<_>>()
                    .join("; "),
                restart: safe.iter().map(|w| w.workload.clone()).filter(restartable).collect(),
                unit,
            });
            handled.extend(following.iter().map(|w| &w.workload));
        }
    }
    // Pod-template changes for the rest: safe workloads whose pods get the token.
    for w in workloads {
        if handled.contains(&w.workload) || w.verdict != Verdict::SafeToDisable || !w.effective_automount {
            continue;
        }
        unit += 1;
        let patchable = w.workload.patchable();
        out.push(Change {
            target: workload_target(&w.workload),
            automount: false,
            pin: false,
            patchable,
            reason: if patchable {
                "safe to disable; the pod template change rolls out by itself".into()
            } else {
                format!(
                    "safe to disable; a {} cannot be patched: set the field in its manifest and recreate it",
                    w.workload.kind
                )
            },
            evidence: w.summary.clone(),
            restart: Vec::new(),
            unit,
        });
    }
    out
}

fn is_dev(namespace: &str, words: &[String]) -> bool {
    namespace.split(['-', '_']).any(|t| words.iter().any(|w| w == t))
}

fn phase(name: &str, description: &str, changes: &[Change], units: &[usize]) -> Phase {
    let units: BTreeSet<usize> = units.iter().copied().collect();
    let mut indexes: Vec<usize> = (0..changes.len()).filter(|i| units.contains(&changes[*i].unit)).collect();
    // Pins before the changes that need them.
    indexes.sort_by_key(|i| (changes[*i].unit, !changes[*i].pin));
    let mut restarts: Vec<WorkloadRef> = indexes.iter().flat_map(|i| changes[*i].restart.iter().cloned()).collect();
    restarts.sort();
    restarts.dedup();
    let watch = vec![
        "after the rollout: `probe-agent verify` (agents running with --detect-missing-token) lists containers that tried the missing token or still call the API server".into(),
        "kubectl get nodetokenevidences -o json: missingTokenOpens and apiConnects of the changed workloads stay 0".into(),
        "application logs: `open /var/run/secrets/kubernetes.io/serviceaccount/token: no such file or directory`, HTTP 401/403 from the API server".into(),
        "rollback: `probe-agent verify -o patch` gives the patch that restores the token".into(),
    ];
    Phase { name: name.into(), description: description.into(), changes: indexes, restarts, watch }
}

pub(super) fn phases(changes: &[Change], policy: &Policy) -> Vec<Phase> {
    let mut units: BTreeMap<usize, (String, String)> = BTreeMap::new();
    for c in changes {
        units.entry(c.unit).or_insert_with(|| (c.target.namespace.clone(), c.target.name.clone()));
    }
    let (dev, mut rest): (Vec<_>, Vec<_>) = units.into_iter().partition(|(_, (ns, _))| is_dev(ns, &policy.dev_words));
    rest.sort_by(|a, b| a.1.cmp(&b.1));
    let mut out = Vec::new();
    if !dev.is_empty() {
        let ids: Vec<usize> = dev.iter().map(|(u, _)| *u).collect();
        out.push(phase(
            "development",
            "namespaces that look like development (dev, test, staging, …): break nothing that matters first",
            changes,
            &ids,
        ));
    }
    if !rest.is_empty() {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a small count"
        )]
        let canary = ((rest.len() as f64 * policy.canary_fraction).ceil() as usize).clamp(1, rest.len());
        let ids: Vec<usize> = rest[..canary].iter().map(|(u, _)| *u).collect();
        out.push(phase("canary", "a first slice of the remaining changes; watch it before going on", changes, &ids));
        if canary < rest.len() {
            let ids: Vec<usize> = rest[canary..].iter().map(|(u, _)| *u).collect();
            out.push(phase("rest", "everything else", changes, &ids));
        }
    }
    out
}
