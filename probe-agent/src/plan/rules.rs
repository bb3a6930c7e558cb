//! The verdicts. `safe-to-disable` needs proof: every current pod of the current template
//! seen from its start on a node whose agent is alive, loss-free and able to see, for long
//! enough, and no use anywhere — current pods, earlier pods and revisions, retired totals. What
//! is missing is said in the reasons, and the verdict is then `insufficient-evidence`.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use time::OffsetDateTime;

use super::{
    ContainerUse, GoneUse, Policy, ServiceAccountReport, Verdict, WorkloadRef, WorkloadReport, human,
    model::{Entry, Model, PodView, Revision, WorkloadView},
};
use crate::{
    auditlog::PodRequests,
    evidence::{Loss, Losses, finished},
};

fn new_use(name: &str) -> ContainerUse {
    ContainerUse {
        container: name.to_owned(),
        token_reads: 0,
        api_connects: 0,
        volume_file_reads: 0,
        exec_reads: 0,
        exec_api_connects: 0,
    }
}

/// Usage per container name, over current and past containers (every revision, every node)
/// and retired totals: use is never discounted.
fn usage(v: &WorkloadView<'_>) -> Vec<ContainerUse> {
    let mut by_name: BTreeMap<String, ContainerUse> = BTreeMap::new();
    let entries = v.pods.iter().flat_map(|p| p.entries.iter()).chain(v.past.iter()).map(|en| en.e);
    for e in entries {
        let name = e.container.as_deref().unwrap_or("?");
        let u = by_name.entry(name.to_owned()).or_insert_with(|| new_use(name));
        u.token_reads += e.reads.token;
        u.api_connects += e.api_connects;
        u.volume_file_reads += e.reads.ca_crt + e.reads.namespace + e.reads.other;
        u.exec_reads += e.exec_reads.total();
        u.exec_api_connects += e.exec_api_connects;
    }
    for (_, r) in &v.retired {
        let name = r.container.as_deref().unwrap_or("?");
        let u = by_name.entry(name.to_owned()).or_insert_with(|| new_use(name));
        u.token_reads += r.reads.token;
        u.api_connects += r.api_connects;
        u.volume_file_reads += r.reads.ca_crt + r.reads.namespace + r.reads.other;
        u.exec_reads += r.exec_reads.total();
        u.exec_api_connects += r.exec_api_connects;
    }
    by_name.into_values().collect()
}

/// What a node's agent could not vouch for. `missing` makes non-use evidence from it
/// insufficient; `caveats` are blind spots accepted by a flag, stated in the reasons.
#[derive(Debug, Default)]
struct NodeFindings {
    missing: BTreeSet<String>,
    caveats: BTreeSet<String>,
}

/// A node's losses; evidence of agents that did not time their losses counts them as "ever".
fn losses_of(agent: &crate::evidence::AgentInfo) -> Losses {
    let mut losses = agent.losses;
    if losses.counter_map_full.count == 0 && agent.map_full > 0 {
        losses.counter_map_full = Loss { count: agent.map_full, first: None, last: None };
    }
    if losses.notice_drops.count == 0 && agent.drops > 0 {
        losses.notice_drops = Loss { count: agent.drops, first: None, last: None };
    }
    losses
}

fn at(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(String::new, |t| format!(", last at {}", super::output::rfc3339(t)))
}

/// What a node's agent could not see, at or after `since` (`None`: ever): the blind spots of
/// its hooks, events it lost, counts it could not attribute. They apply to every entry it
/// reported from then on.
fn blind_spots(model: &Model<'_>, node: &str, policy: &Policy, since: Option<OffsetDateTime>, out: &mut NodeFindings) {
    let Some(n) = model.nodes.get(node) else {
        out.missing.insert(format!("no evidence from node {node} (no agent there, or it never published)"));
        return;
    };
    let agent = n.agent;
    let losses = losses_of(agent);
    if losses.hide_use_since(since) {
        let last = losses.counter_map_full.last.max(losses.read_errors.last);
        out.missing.insert(format!(
            "the agent on node {node} lost events (counter map full {}, failed kernel reads {}{})",
            losses.counter_map_full.count,
            losses.read_errors.count,
            at(last)
        ));
    }
    if let Some(t) = agent.truncated.as_ref().filter(|t| t.entries_without_use > 0) {
        out.missing.insert(format!(
            "the agent on node {node} left {} container entr(ies) without use out of its evidence to stay under {} bytes: its coverage is partial",
            t.entries_without_use, t.limit_bytes
        ));
    }
    let unattributed = &agent.unattributed;
    if !unattributed.is_empty() && since.is_none_or(|s| unattributed.last_seen.is_none_or(|l| l >= s)) {
        out.missing.insert(format!(
            "the agent on node {node} counted {} reads and {} API connects under {} kernel key(s) it could not attribute to a container{}: its coverage is partial",
            unattributed.reads.total(),
            unattributed.api_connects,
            unattributed.keys,
            at(unattributed.last_seen)
        ));
    }
    match agent.hooks.file_open.as_deref() {
        None => {
            out.missing
                .insert(format!("the agent on node {node} has no file-open hook: token reads there were not seen"));
        }
        Some("tracepoint") => {
            let spot = format!(
                "node {node} watches file opens in tracepoint mode, blind to opens through io_uring, by 32-bit syscalls and through file descriptors received from other processes"
            );
            if policy.accept_tracepoint {
                out.caveats.insert(format!("{spot} (accepted by --accept-tracepoint-mode)"));
            } else {
                out.missing.insert(format!("{spot}; --accept-tracepoint-mode accepts that"));
            }
        }
        Some(_) => {}
    }
    if agent.hooks.connect.is_none() {
        out.missing.insert(format!("the agent on node {node} has no connect hook: API connects there were not seen"));
    } else if agent.targets.is_empty() {
        out.missing.insert(format!(
            "the agent on node {node} watches no API server address: API connects there were not seen"
        ));
    }
    if !agent.targets_not_watched.is_empty() {
        out.missing.insert(format!(
            "the agent on node {node} could not watch API server address(es) {}: connects to them were not seen",
            agent.targets_not_watched.join(", ")
        ));
    }
}

/// Findings for a node that runs current pods, watched since `since`: besides its blind spots,
/// it must be alive and must not have lost first-seen notices or created-cgroup reports.
fn current_node(model: &Model<'_>, node: &str, policy: &Policy, since: Option<OffsetDateTime>, out: &mut NodeFindings) {
    blind_spots(model, node, policy, since, out);
    let Some(n) = model.nodes.get(node) else { return };
    let losses = losses_of(n.agent);
    if losses.notice_drops.since(since) || losses.cgroup_event_drops.since(since) {
        out.missing.insert(format!(
            "the agent on node {node} lost events (first-seen notices {}, created-cgroup reports {}{})",
            losses.notice_drops.count,
            losses.cgroup_event_drops.count,
            at(losses.notice_drops.last.max(losses.cgroup_event_drops.last))
        ));
    }
    let how = if n.from_lease { "" } else { " (no liveness Lease for it: judged by its evidence's generatedAt)" };
    match n.last_report {
        Some(t) if Duration::try_from(policy.now - t).unwrap_or_default() > Duration::from_secs(n.valid_seconds) => {
            out.missing.insert(format!(
                "agent on node {node} last reported {} ago{how}: its pods are unobserved since",
                human(Duration::try_from(policy.now - t).unwrap_or_default())
            ));
        }
        Some(_) => {}
        None => {
            out.missing.insert(format!("agent on node {node} never said when it reported{how}"));
        }
    }
}

/// Whether non-use that `node` reported for a container watched since `since` may be relied on.
fn trusted(model: &Model<'_>, node: &str, policy: &Policy, since: Option<OffsetDateTime>) -> bool {
    let mut f = NodeFindings::default();
    blind_spots(model, node, policy, since, &mut f);
    f.missing.is_empty()
}

/// The entries standing for a current pod's containers now, from its own node: per expected
/// container its current instance (by container id), or — without a status — by name.
/// `Err` says what is missing.
fn current_instances<'p>(p: &'p PodView<'_>) -> Result<Vec<Entry<'p>>, String> {
    let Some(node) = p.node.as_deref() else { return Err(format!("pod {} is not scheduled to a node", p.name)) };
    let own: Vec<Entry<'_>> = p.own_entries().copied().collect();
    let mut out = Vec::new();
    match &p.containers {
        Some(expected) if expected.is_empty() => return Err(format!("pod {} has not started", p.name)),
        Some(expected) => {
            for c in expected {
                let Some(id) = &c.id else { return Err(format!("{}/{} has not started", p.name, c.name)) };
                match own.iter().find(|en| en.e.container_id.as_deref() == Some(id.as_str())) {
                    Some(en) => out.push(*en),
                    None => return Err(format!("no evidence for {}/{} from node {node}", p.name, c.name)),
                }
            }
        }
        None => {
            if p.spec_containers.is_empty() {
                return Err(format!("pod {} has no containers to observe", p.name));
            }
            for name in &p.spec_containers {
                match own.iter().find(|en| en.e.container.as_deref() == Some(name.as_str())) {
                    Some(en) => out.push(*en),
                    None => return Err(format!("no evidence for {}/{name} from node {node}", p.name)),
                }
            }
        }
    }
    Ok(out)
}

/// Whether a pod counts as seen: every current container instance seen from its start, and
/// covered (nothing the agent says it could not see).
fn covered(p: &PodView<'_>) -> bool {
    current_instances(p)
        .is_ok_and(|es| es.iter().all(|en| en.e.observed_from_start == Some(true) && en.e.uncovered.is_empty()))
}

/// Runs of the current template observed from start: pods (current, past, retired) that ran to
/// completion with every container observed from its start.
fn runs(model: &Model<'_>, v: &WorkloadView<'_>, policy: &Policy) -> u64 {
    let current = v
        .pods
        .iter()
        .filter(|p| v.is_current(p.revision.as_deref(), true) && finished(p.phase.as_deref()) && covered(p))
        .count() as u64;
    let mut past: BTreeMap<&str, bool> = BTreeMap::new();
    for en in v.past.iter().filter(|en| v.is_current(en.e.revision.as_deref(), false)) {
        let ok = !en.disputed
            && en.e.observed_from_start == Some(true)
            && finished(en.e.pod_phase.as_deref())
            && en.e.uncovered.is_empty()
            && trusted(model, en.node, policy, en.e.observed_since);
        let slot = past.entry(en.e.pod_uid.as_deref().unwrap_or("?")).or_insert(true);
        *slot &= ok;
    }
    // Retired totals count pods per container name: per node, the largest count of any name.
    let mut retired: BTreeMap<&str, u64> = BTreeMap::new();
    for (node, r) in &v.retired {
        if v.is_current(r.revision.as_deref(), false) && trusted(model, node, policy, r.observed_since) {
            let slot = retired.entry(node).or_insert(0);
            *slot = (*slot).max(r.runs);
        }
    }
    current + past.values().filter(|ok| **ok).count() as u64 + retired.values().sum::<u64>()
}

/// What keeps the evidence of a workload from proving non-use.
struct Coverage {
    missing: Vec<String>,
    caveats: Vec<String>,
    expected: u64,
    seen: u64,
    /// When the current template's observation began.
    since: Option<OffsetDateTime>,
}

/// What the nodes of a workload's current pods could not vouch for: each node judged from
/// when it began watching the earliest of them.
fn node_findings(model: &Model<'_>, v: &WorkloadView<'_>, policy: &Policy) -> NodeFindings {
    let mut nodes = NodeFindings::default();
    let mut pod_nodes: BTreeMap<&str, Option<OffsetDateTime>> = BTreeMap::new();
    for p in &v.pods {
        if let Some(node) = p.node.as_deref() {
            let first = p.own_entries().filter_map(|en| en.e.observed_since).min();
            let slot = pod_nodes.entry(node).or_insert(first);
            *slot = match (*slot, first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
        }
    }
    for (node, since) in &pod_nodes {
        current_node(model, node, policy, *since, &mut nodes);
    }
    nodes
}

/// What the current pods lack: an earlier template, evidence, coverage, observation from start.
fn pod_findings(v: &WorkloadView<'_>, policy: &Policy) -> Vec<String> {
    let mut missing = Vec::new();
    let earlier: Vec<&str> =
        v.pods.iter().filter(|p| !v.is_current(p.revision.as_deref(), true)).map(|p| p.name.as_str()).collect();
    if !earlier.is_empty() && !matches!(v.current, Revision::Unknown(_)) {
        missing.push(format!(
            "rollout in progress: pod(s) of an earlier pod template still exist: {}",
            earlier.join(", ")
        ));
    }
    let mut unseen = Vec::new();
    let mut late = Vec::new();
    let mut blind = Vec::new();
    let mut gap = 0;
    for p in &v.pods {
        match current_instances(p) {
            Err(why) => unseen.push(why),
            Ok(es) => {
                for en in es {
                    let name = format!("{}/{}", p.name, en.e.container.as_deref().unwrap_or("?"));
                    if en.e.observed_from_start != Some(true) {
                        late.push(name.clone());
                    }
                    if !en.e.uncovered.is_empty() {
                        blind.push(format!("{name} ({})", en.e.uncovered.join("; ")));
                    }
                    gap = gap.max(en.e.unobserved_seconds);
                }
            }
        }
    }
    if !unseen.is_empty() {
        missing.push(format!("current pods without evidence: {}", unseen.join("; ")));
    }
    if !blind.is_empty() {
        missing.push(format!("not covered by the agent: {}", blind.join(", ")));
    }
    if !late.is_empty() {
        missing.push(format!(
            "not seen from start (started before the agent; many apps read the token only at start-up): {}",
            late.join(", ")
        ));
    }
    if gap > policy.max_gap.as_secs() {
        missing
            .push(format!("the agent was not watching for {} of a container's life", human(Duration::from_secs(gap))));
    }
    missing
}

/// When the current template's observation began: its earliest container watched, covered,
/// on a node that could see.
fn window_start(model: &Model<'_>, v: &WorkloadView<'_>, policy: &Policy) -> Option<OffsetDateTime> {
    let current_pod_entries = v
        .pods
        .iter()
        .filter(|p| v.is_current(p.revision.as_deref(), true))
        .flat_map(|p| p.own_entries().copied().collect::<Vec<_>>());
    let past_entries =
        v.past.iter().filter(|en| !en.disputed && v.is_current(en.e.revision.as_deref(), false)).copied();
    current_pod_entries
        .chain(past_entries)
        .filter(|en| en.e.uncovered.is_empty() && trusted(model, en.node, policy, en.e.observed_since))
        .filter_map(|en| en.e.observed_since)
        .chain(
            v.retired
                .iter()
                .filter(|(node, r)| {
                    v.is_current(r.revision.as_deref(), false) && trusted(model, node, policy, r.observed_since)
                })
                .filter_map(|(_, r)| r.observed_since),
        )
        .min()
}

fn coverage(model: &Model<'_>, v: &WorkloadView<'_>, policy: &Policy) -> Coverage {
    let mut missing = Vec::new();
    if let Revision::Unknown(why) = &v.current {
        missing.push(why.clone());
    }
    let nodes = node_findings(model, v, policy);
    missing.extend(pod_findings(v, policy));
    let seen_pods = v.pods.iter().filter(|p| v.is_current(p.revision.as_deref(), true) && covered(p)).count() as u64;
    let (expected, seen) = if v.workload.runs_to_completion() {
        let runs = runs(model, v, policy);
        if runs < policy.min_runs {
            missing.push(format!("{runs} of the required {} runs observed from start", policy.min_runs));
        }
        (policy.min_runs, runs)
    } else {
        let expected = v.expected_replicas.unwrap_or(0).max(v.pods.len() as u64);
        if expected == 0 {
            missing.push("no running replicas to observe".into());
        } else if seen_pods < expected {
            missing.push(format!(
                "replicas unseen: {seen_pods}/{expected} observed (is the agent running on every node?)"
            ));
        }
        (expected, seen_pods)
    };
    let since = window_start(model, v, policy);
    match since {
        Some(since) => {
            let watched = Duration::try_from(policy.now - since).unwrap_or_default();
            if watched < policy.min_observation {
                missing.push(format!(
                    "too short: observed for {} of the required {} (the current pod template's pods only)",
                    human(watched),
                    human(policy.min_observation)
                ));
            }
        }
        None if !matches!(v.current, Revision::Unknown(_)) => {
            missing.push("no observation of the current pod template recorded".into());
        }
        None => {}
    }
    missing.extend(nodes.missing);
    Coverage { missing, caveats: nodes.caveats.into_iter().collect(), expected, seen, since }
}

fn judge(model: &Model<'_>, v: &WorkloadView<'_>, policy: &Policy) -> WorkloadReport {
    let effective = model.effective(v);
    let usage = usage(v);
    let mut reasons = Vec::new();
    let cov = coverage(model, v, policy);
    let observed_seconds = cov.since.and_then(|s| u64::try_from((policy.now - s).whole_seconds()).ok());
    let users: Vec<&ContainerUse> = usage.iter().filter(|u| u.token_reads + u.api_connects > 0).collect();
    let exec_users: Vec<&ContainerUse> = usage.iter().filter(|u| u.exec_reads + u.exec_api_connects > 0).collect();
    let file_users: Vec<&ContainerUse> = usage.iter().filter(|u| u.volume_file_reads > 0).collect();
    let sessions = |u: &ContainerUse| {
        let processes = exec_processes(v, &u.container);
        let by = if processes.is_empty() { String::new() } else { format!(", by {}", processes.join(", ")) };
        format!("{} ({} reads, {} API connects{by})", u.container, u.exec_reads, u.exec_api_connects)
    };
    let audited = model.audit.get(&v.workload).map_or(&[][..], Vec::as_slice);
    let api_requests: u64 = audited.iter().map(|p| p.tally.requests).sum();
    let verdict = if !effective {
        reasons.push(match v.template_field {
            Some(false) => "the pod template sets automountServiceAccountToken: false".into(),
            _ => format!("ServiceAccount {} sets automountServiceAccountToken: false", v.service_account),
        });
        Verdict::AlreadyDisabled
    } else if !users.is_empty() || api_requests > 0 || (v.exec_hooks && !exec_users.is_empty()) {
        if api_requests > 0 {
            reasons.push(audit_reason(audited, api_requests));
        }
        for u in &users {
            reasons.push(format!(
                "container {} read the token {} times and connected to the API server {} times",
                u.container, u.token_reads, u.api_connects
            ));
        }
        if v.exec_hooks {
            for u in &exec_users {
                reasons.push(format!(
                    "exec sessions used the token; the pod has exec probes/hooks, which the kernel cannot tell from kubectl exec: {}",
                    sessions(u)
                ));
            }
        }
        Verdict::UsesToken
    } else if !file_users.is_empty() {
        for u in &file_users {
            reasons.push(format!(
                "container {} read ca.crt/namespace {} times: mount them explicitly (kube-root-ca.crt ConfigMap, downward API) before disabling",
                u.container, u.volume_file_reads
            ));
        }
        Verdict::UsesVolumeFiles
    } else if !exec_users.is_empty() && !policy.ignore_exec_sessions {
        for u in &exec_users {
            reasons.push(format!(
                "exec sessions into {} used the token: kubectl exec by people, or the application's own exec — the kernel cannot tell them apart (--ignore-exec-sessions if they were people)",
                sessions(u)
            ));
        }
        reasons.extend(cov.missing.iter().cloned());
        Verdict::InsufficientEvidence
    } else if !v.pods.is_empty() && v.pods.iter().all(|p| !p.has_automount_volume) {
        // After use (and unresolved exec-session use): a workload whose earlier pods used the
        // token is a user, whatever its pods mount now.
        reasons
            .push("automount is on, but the pods have no automount volume (a volume of their own replaced it?)".into());
        Verdict::NotMounted
    } else if cov.missing.is_empty() {
        Verdict::SafeToDisable
    } else {
        reasons.extend(cov.missing.iter().cloned());
        Verdict::InsufficientEvidence
    };
    if policy.ignore_exec_sessions
        && !v.exec_hooks
        && matches!(verdict, Verdict::SafeToDisable | Verdict::InsufficientEvidence)
    {
        for u in &exec_users {
            reasons.push(format!(
                "exec sessions into {} used the token (ignored by --ignore-exec-sessions): people running kubectl exec there will not find it",
                sessions(u)
            ));
        }
    }
    if matches!(verdict, Verdict::SafeToDisable | Verdict::InsufficientEvidence) {
        reasons.extend(cov.caveats.iter().cloned());
    }
    let summary = summary(v, verdict, cov.expected, cov.seen, observed_seconds, &users, api_requests);
    WorkloadReport {
        workload: v.workload.clone(),
        service_account: v.service_account.clone(),
        verdict,
        reasons,
        template_automount: v.template_field,
        effective_automount: effective,
        usage,
        replicas_expected: cov.expected,
        replicas_seen: cov.seen,
        observed_seconds,
        summary,
    }
}

/// "N API requests with its token seen by the API server (audit log: ...)".
fn audit_reason(pods: &[&PodRequests], total: u64) -> String {
    let mut names: Vec<&str> = pods.iter().map(|p| p.pod.as_str()).collect();
    names.sort_unstable();
    let verbs: BTreeSet<&str> = pods.iter().flat_map(|p| p.tally.verbs.iter().map(String::as_str)).collect();
    let resources: BTreeSet<&str> = pods.iter().flat_map(|p| p.tally.resources.iter().map(String::as_str)).collect();
    let first = pods.iter().filter_map(|p| p.tally.first).min();
    let last = pods.iter().filter_map(|p| p.tally.last).max();
    let shorten = |v: Vec<&str>| {
        if v.len() > 6 { format!("{}, and {} more", v[..6].join(", "), v.len() - 6) } else { v.join(", ") }
    };
    format!(
        "{total} API requests with its token seen by the API server (audit log: pod {}; {}; {}; from {} to {})",
        shorten(names),
        shorten(verbs.into_iter().collect()),
        shorten(resources.into_iter().collect()),
        when(first),
        when(last)
    )
}

/// Names of exec-session processes seen in a container (any instance).
fn exec_processes(v: &WorkloadView<'_>, container: &str) -> Vec<String> {
    let names: BTreeSet<&str> = v
        .pods
        .iter()
        .flat_map(|p| p.entries.iter())
        .chain(v.past.iter())
        .filter(|en| en.e.container.as_deref() == Some(container))
        .flat_map(|en| en.e.exec_processes.iter().map(String::as_str))
        .collect();
    names.into_iter().map(str::to_owned).collect()
}

fn summary(
    v: &WorkloadView<'_>,
    verdict: Verdict,
    expected: u64,
    seen: u64,
    observed: Option<u64>,
    users: &[&ContainerUse],
    api_requests: u64,
) -> String {
    let over = observed.map_or_else(String::new, |s| format!(" over {}", human(Duration::from_secs(s))));
    let unit = if v.workload.runs_to_completion() { "runs" } else { "replicas" };
    match verdict {
        Verdict::SafeToDisable => format!("no token use by {seen}/{expected} {unit}{over}, seen from start"),
        Verdict::UsesToken if users.is_empty() && api_requests > 0 => {
            format!("token used: {api_requests} API requests seen by the API server")
        }
        Verdict::UsesToken if users.is_empty() => format!("token used by exec probes/hooks{over}"),
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

/// Every workload's verdict, in the model's order; judged on every core (each verdict depends on
/// its workload and the model only).
pub(super) fn judge_workloads(model: &Model<'_>, policy: &Policy) -> Vec<WorkloadReport> {
    let views: Vec<&WorkloadView<'_>> = model.workloads.values().collect();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    // Small inputs are not worth a thread.
    let per_thread = views.len().div_ceil(threads).max(1024);
    std::thread::scope(|scope| {
        let parts: Vec<_> = views
            .chunks(per_thread)
            .map(|part| scope.spawn(move || part.iter().map(|v| judge(model, v, policy)).collect::<Vec<_>>()))
            .collect();
        parts.into_iter().flat_map(|part| part.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// Use by workloads that are gone, per (namespace, ServiceAccount), within the retention window.
fn gone_users(model: &Model<'_>, policy: &Policy) -> BTreeMap<(String, String), Vec<GoneUse>> {
    let cutoff = policy.now - policy.retention;
    let mut out: BTreeMap<(String, String), Vec<GoneUse>> = BTreeMap::new();
    for g in &model.gone {
        let exec = if policy.ignore_exec_sessions { 0 } else { g.exec };
        if g.token_reads + g.api_connects + g.file_reads + exec == 0 || g.last_seen.is_some_and(|t| t < cutoff) {
            continue;
        }
        out.entry((g.namespace.to_owned(), g.service_account.to_owned())).or_default().push(GoneUse {
            workload: g.workload.clone(),
            container: g.container.to_owned(),
            node: g.node.to_owned(),
            token_reads: g.token_reads,
            api_connects: g.api_connects,
            file_reads: g.file_reads,
            exec_use: exec,
            last_seen: g.last_seen,
            api_requests: 0,
        });
    }
    for (workload, p) in &model.audit_gone {
        if p.tally.last.is_some_and(|t| t < cutoff) {
            continue;
        }
        out.entry((p.namespace.clone(), p.service_account.clone())).or_default().push(GoneUse {
            workload: workload.clone(),
            container: String::new(),
            node: p.node.clone().unwrap_or_default(),
            token_reads: 0,
            api_connects: 0,
            file_reads: 0,
            exec_use: 0,
            last_seen: p.tally.last,
            api_requests: p.tally.requests,
        });
    }
    out
}

pub(super) fn judge_service_accounts(
    model: &Model<'_>,
    workloads: &[WorkloadReport],
    policy: &Policy,
) -> Vec<ServiceAccountReport> {
    let mut by_sa: BTreeMap<(String, String), Vec<&WorkloadReport>> = BTreeMap::new();
    for w in workloads {
        by_sa.entry((w.workload.namespace.clone(), w.service_account.clone())).or_default().push(w);
    }
    let mut gone = gone_users(model, policy);
    for key in gone.keys() {
        by_sa.entry(key.clone()).or_default();
    }
    by_sa
        .into_iter()
        .map(|((namespace, name), reports)| {
            let automount = model.service_accounts.get(&(namespace.clone(), name.clone())).copied().flatten();
            let gone_users = gone.remove(&(namespace.clone(), name.clone())).unwrap_or_default();
            // Workloads that follow the ServiceAccount's setting.
            let following: Vec<&&WorkloadReport> = reports.iter().filter(|w| w.template_automount.is_none()).collect();
            let list = |v: Verdict| -> Vec<String> {
                following.iter().filter(|w| w.verdict == v).map(|w| w.workload.display()).collect()
            };
            let gone_list = |f: fn(&GoneUse) -> bool| -> Vec<String> {
                gone_users
                    .iter()
                    .filter(|g| f(g))
                    .map(|g| {
                        if g.api_requests > 0 {
                            format!(
                                "{} ({} API requests seen by the API server, the last {})",
                                g.workload,
                                g.api_requests,
                                when(g.last_seen)
                            )
                        } else {
                            format!("{} (container {}, last seen {})", g.workload, g.container, when(g.last_seen))
                        }
                    })
                    .collect()
            };
            let gone_token = gone_list(|g| g.token_reads + g.api_connects + g.exec_use + g.api_requests > 0);
            let gone_files = gone_list(|g| g.file_reads > 0);
            let (verdict, reasons) = if automount == Some(false) {
                (Verdict::AlreadyDisabled, vec!["automountServiceAccountToken: false".to_owned()])
            } else if !list(Verdict::UsesToken).is_empty() || !gone_token.is_empty() {
                let mut reasons = Vec::new();
                if !list(Verdict::UsesToken).is_empty() {
                    reasons.push(format!("token used by {}", list(Verdict::UsesToken).join(", ")));
                }
                if !gone_token.is_empty() {
                    reasons.push(format!(
                        "token used by workloads that are gone (within the {} retention window): {}",
                        human(policy.retention),
                        gone_token.join(", ")
                    ));
                }
                (Verdict::UsesToken, reasons)
            } else if following.is_empty() && gone_files.is_empty() {
                (Verdict::NotMounted, vec!["every workload under it sets the field itself".to_owned()])
            } else if !list(Verdict::UsesVolumeFiles).is_empty() || !gone_files.is_empty() {
                let mut users = list(Verdict::UsesVolumeFiles);
                users.extend(gone_files);
                (Verdict::UsesVolumeFiles, vec![format!("ca.crt/namespace read by {}", users.join(", "))])
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
            let mut reasons = reasons;
            if let Some(u) = model.audit_unbound.get(&(namespace.clone(), name.clone())) {
                reasons.push(format!(
                    "{} API requests by this ServiceAccount with tokens bound to no pod (a legacy token Secret, or a TokenRequest token handed elsewhere), the last {}: automount does not issue those tokens, so turning it off neither breaks nor stops them — find and revoke them separately",
                    u.tally.requests,
                    when(u.tally.last)
                ));
            }
            ServiceAccountReport {
                namespace,
                name,
                automount,
                verdict,
                reasons,
                workloads: following.iter().map(|w| w.workload.clone()).collect::<Vec<WorkloadRef>>(),
                gone_users,
            }
        })
        .collect()
}

fn when(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(|| "at an unknown time".into(), super::output::rfc3339)
}
