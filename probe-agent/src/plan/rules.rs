//! The verdicts (DESIGN.md, "Planner").

use std::{collections::BTreeMap, time::Duration};

use time::OffsetDateTime;

use super::{
    ContainerUse, Policy, ServiceAccountReport, Verdict, WorkloadRef, WorkloadReport, human,
    model::{Model, WorkloadView},
};
use crate::evidence::ContainerEvidence;

/// Usage per container name, over current and past containers and retired totals.
fn usage(v: &WorkloadView<'_>) -> Vec<ContainerUse> {
    let mut by_name: BTreeMap<String, ContainerUse> = BTreeMap::new();
    let mut add = |name: &str, token: u64, connects: u64, files: u64, exec: u64, exec_connects: u64| {
        let u = by_name.entry(name.to_owned()).or_insert_with(|| ContainerUse {
            container: name.to_owned(),
            token_reads: 0,
            api_connects: 0,
            volume_file_reads: 0,
            exec_reads: 0,
            exec_api_connects: 0,
        });
        u.token_reads += token;
        u.api_connects += connects;
        u.volume_file_reads += files;
        u.exec_reads += exec;
        u.exec_api_connects += exec_connects;
    };
    let entries = v.pods.iter().flat_map(|p| p.entries.iter()).chain(v.past.iter());
    for e in entries {
        let name = e.container.as_deref().unwrap_or("?");
        add(
            name,
            e.reads.token,
            e.api_connects,
            e.reads.ca_crt + e.reads.namespace + e.reads.other,
            e.exec_reads.total(),
            e.exec_api_connects,
        );
    }
    for r in &v.retired {
        let name = r.container.as_deref().unwrap_or("?");
        add(
            name,
            r.reads.token,
            r.api_connects,
            r.reads.ca_crt + r.reads.namespace + r.reads.other,
            r.exec_reads.total(),
            r.exec_api_connects,
        );
    }
    by_name.into_values().collect()
}

/// Whether every regular container of a pod has evidence.
fn pod_seen(containers: &[String], entries: &[&ContainerEvidence]) -> bool {
    !containers.is_empty() && containers.iter().all(|c| entries.iter().any(|e| e.container.as_deref() == Some(c)))
}

fn earliest_observation(v: &WorkloadView<'_>) -> Option<OffsetDateTime> {
    let entries = v.pods.iter().flat_map(|p| p.entries.iter()).chain(v.past.iter()).filter_map(|e| e.observed_since);
    entries.chain(v.retired.iter().filter_map(|r| r.observed_since)).min()
}

/// What keeps the evidence of a (non-using) workload from being sufficient.
fn gaps_in_evidence(model: &Model<'_>, v: &WorkloadView<'_>, policy: &Policy) -> (Vec<String>, u64, u64) {
    let mut missing = Vec::new();
    let (expected, seen) = if v.workload.runs_to_completion() {
        // Runs: finished or current pods whose containers were all observed from their start.
        let current_runs = v.pods.iter().filter(|p| {
            pod_seen(&p.containers, &p.entries) && p.entries.iter().all(|e| e.observed_from_start == Some(true))
        });
        let mut past_pods: BTreeMap<&str, bool> = BTreeMap::new();
        for e in &v.past {
            let ok = e.observed_from_start == Some(true);
            let slot = past_pods.entry(e.pod_uid.as_deref().unwrap_or("?")).or_insert(true);
            *slot &= ok;
        }
        let retired: u64 = v.retired.iter().map(|r| r.observed_from_start).sum();
        let runs = current_runs.count() as u64 + past_pods.values().filter(|ok| **ok).count() as u64 + retired;
        if runs < policy.min_runs {
            missing.push(format!("{runs} of the required {} runs observed from start", policy.min_runs));
        }
        (policy.min_runs, runs)
    } else {
        let expected = v.expected_replicas.unwrap_or(v.pods.len() as u64);
        let seen = v.pods.iter().filter(|p| pod_seen(&p.containers, &p.entries)).count() as u64;
        if expected == 0 {
            missing.push("no running replicas to observe".into());
        } else if seen < expected {
            missing.push(format!("replicas unseen: {seen}/{expected} observed (is the agent running on every node?)"));
        }
        let late: Vec<String> = v
            .pods
            .iter()
            .flat_map(|p| p.entries.iter().map(move |e| (p, e)))
            .filter(|(_, e)| e.observed_from_start != Some(true) && e.container.is_some())
            .map(|(p, e)| format!("{}/{}", p.name, e.container.as_deref().unwrap_or("?")))
            .collect();
        if !late.is_empty() {
            missing.push(format!(
                "not seen from start (started before the agent; many apps read the token only at start-up): {}",
                late.join(", ")
            ));
        }
        (expected, seen)
    };
    match earliest_observation(v) {
        Some(since) => {
            let watched = Duration::try_from(policy.now - since).unwrap_or_default();
            if watched < policy.min_observation {
                missing.push(format!(
                    "too short: observed for {} of the required {}",
                    human(watched),
                    human(policy.min_observation)
                ));
            }
        }
        None if !v.pods.is_empty() => missing.push("no observation window recorded".into()),
        None => {}
    }
    let gap = v.pods.iter().flat_map(|p| p.entries.iter()).map(|e| e.unobserved_seconds).max().unwrap_or(0);
    if gap > policy.max_gap.as_secs() {
        missing
            .push(format!("the agent was not watching for {} of a container's life", human(Duration::from_secs(gap))));
    }
    let mut nodes: Vec<&str> = v.pods.iter().filter_map(|p| p.node.as_deref()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    for node in nodes {
        match model.agents.get(node) {
            Some(agent) if agent.drops > 0 || agent.map_full > 0 => missing.push(format!(
                "the agent on node {node} lost events (drops {}, counter map full {})",
                agent.drops, agent.map_full
            )),
            Some(_) => {}
            None => missing.push(format!("no evidence from node {node}")),
        }
    }
    (missing, expected, seen)
}

fn judge(model: &Model<'_>, v: &WorkloadView<'_>, policy: &Policy) -> WorkloadReport {
    let effective = model.effective(v);
    let usage = usage(v);
    let mut reasons = Vec::new();
    let (missing, expected, seen) = gaps_in_evidence(model, v, policy);
    let observed_seconds = earliest_observation(v).and_then(|s| u64::try_from((policy.now - s).whole_seconds()).ok());
    for u in usage.iter().filter(|u| u.exec_reads + u.exec_api_connects > 0) {
        reasons.push(format!(
            "exec sessions into {} used the token ({} reads, {} API connects): people running kubectl exec there will not find it",
            u.container, u.exec_reads, u.exec_api_connects
        ));
    }
    let users: Vec<&ContainerUse> = usage.iter().filter(|u| u.token_reads + u.api_connects > 0).collect();
    let file_users: Vec<&ContainerUse> = usage.iter().filter(|u| u.volume_file_reads > 0).collect();
    let verdict = if !effective {
        reasons.insert(
            0,
            match v.template_field {
                Some(false) => "the pod template sets automountServiceAccountToken: false".into(),
                _ => format!("ServiceAccount {} sets automountServiceAccountToken: false", v.service_account),
            },
        );
        Verdict::AlreadyDisabled
    } else if !v.pods.is_empty() && v.pods.iter().all(|p| !p.has_automount_volume) {
        reasons.insert(
            0,
            "automount is on, but the pods have no automount volume (a volume of their own replaced it?)".into(),
        );
        Verdict::NotMounted
    } else if !users.is_empty() {
        for u in &users {
            reasons.insert(
                0,
                format!(
                    "container {} read the token {} times and connected to the API server {} times",
                    u.container, u.token_reads, u.api_connects
                ),
            );
        }
        Verdict::UsesToken
    } else if !file_users.is_empty() {
        for u in &file_users {
            reasons.insert(0, format!(
                "container {} read ca.crt/namespace {} times: mount them explicitly (kube-root-ca.crt ConfigMap, downward API) before disabling",
                u.container, u.volume_file_reads
            ));
        }
        Verdict::UsesVolumeFiles
    } else if missing.is_empty() {
        Verdict::SafeToDisable
    } else {
        reasons.splice(0..0, missing.iter().cloned());
        Verdict::InsufficientEvidence
    };
    let summary = summary(v, verdict, expected, seen, observed_seconds, &users);
    WorkloadReport {
        workload: v.workload.clone(),
        service_account: v.service_account.clone(),
        verdict,
        reasons,
        template_automount: v.template_field,
        effective_automount: effective,
        usage,
        replicas_expected: expected,
        replicas_seen: seen,
        observed_seconds,
        summary,
    }
}

fn summary(
    v: &WorkloadView<'_>,
    verdict: Verdict,
    expected: u64,
    seen: u64,
    observed: Option<u64>,
    users: &[&ContainerUse],
) -> String {
    let over = observed.map_or_else(String::new, |s| format!(" over {}", human(Duration::from_secs(s))));
    let unit = if v.workload.runs_to_completion() { "runs" } else { "replicas" };
    match verdict {
        Verdict::SafeToDisable => format!("no token use by {seen}/{expected} {unit}{over}, seen from start"),
        Verdict::UsesToken => {
            let names: Vec<&str> = users.iter().map(|u| u.container.as_str()).collect();
            format!("token used by container {}{over}", names.join(", "))
        }
        Verdict::UsesVolumeFiles => format!("ca.crt/namespace read{over}, no token use"),
        Verdict::InsufficientEvidence => format!("{seen}/{expected} {unit} observed{over}, not enough to decide"),
        Verdict::AlreadyDisabled => "automount already off".into(),
        Verdict::NotMounted => "no automount volume in its pods".into(),
    }
}

pub(super) fn judge_workloads(model: &Model<'_>, policy: &Policy) -> Vec<WorkloadReport> {
    model.workloads.values().map(|v| judge(model, v, policy)).collect()
}

pub(super) fn judge_service_accounts(model: &Model<'_>, workloads: &[WorkloadReport]) -> Vec<ServiceAccountReport> {
    let mut by_sa: BTreeMap<(String, String), Vec<&WorkloadReport>> = BTreeMap::new();
    for w in workloads {
        by_sa.entry((w.workload.namespace.clone(), w.service_account.clone())).or_default().push(w);
    }
    by_sa
        .into_iter()
        .map(|((namespace, name), reports)| {
            let automount = model.service_accounts.get(&(namespace.clone(), name.clone())).copied().flatten();
            // Workloads that follow the ServiceAccount's setting.
            let following: Vec<&&WorkloadReport> = reports.iter().filter(|w| w.template_automount.is_none()).collect();
            let list = |v: Verdict| -> Vec<String> {
                following.iter().filter(|w| w.verdict == v).map(|w| w.workload.display()).collect()
            };
            let (verdict, reasons) = if automount == Some(false) {
                (Verdict::AlreadyDisabled, vec!["automountServiceAccountToken: false".to_owned()])
            } else if following.is_empty() {
                (Verdict::NotMounted, vec!["every workload under it sets the field itself".to_owned()])
            } else if !list(Verdict::UsesToken).is_empty() {
                (Verdict::UsesToken, vec![format!("token used by {}", list(Verdict::UsesToken).join(", "))])
            } else if !list(Verdict::UsesVolumeFiles).is_empty() {
                (
                    Verdict::UsesVolumeFiles,
                    vec![format!("ca.crt/namespace read by {}", list(Verdict::UsesVolumeFiles).join(", "))],
                )
            } else if following.iter().all(|w| matches!(w.verdict, Verdict::SafeToDisable | Verdict::NotMounted)) {
                (
                    Verdict::SafeToDisable,
                    vec![format!("every workload under it is safe: {}", list(Verdict::SafeToDisable).join(", "))],
                )
            } else {
                (
                    Verdict::InsufficientEvidence,
                    vec![format!("not enough evidence for {}", list(Verdict::InsufficientEvidence).join(", "))],
                )
            };
            ServiceAccountReport {
                namespace,
                name,
                automount,
                verdict,
                reasons,
                workloads: following.iter().map(|w| w.workload.clone()).collect::<Vec<WorkloadRef>>(),
            }
        })
        .collect()
}
