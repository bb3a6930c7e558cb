//! A property test over generated clusters. The oracle checks, from the raw inputs and without
//! the planner's model, that no `safe-to-disable` verdict lacks proof and that no change removes
//! a token from a workload or ServiceAccount with use:
//!
//! - every current pod of a safe workload runs the current template (its `ReplicaSet` has the
//!   highest revision), on a node whose agent is fresh, loss-free and sees opens and connects,
//!   and each of its containers has an entry from that node, observed from start;
//! - the current template was watched at least the minimum time, on such a node;
//! - no entry or retired total of the workload, of any revision or node, shows use;
//! - a ServiceAccount set to `false` has no use within the retention window by any workload
//!   under it that is neither pinned nor explicitly `true`.

use proptest::prelude::*;

use super::*;

/// A small deterministic generator (xorshift), so a failing seed reproduces the cluster.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const SAS: [&str; 3] = ["default", "shared", "solo"];

fn random_seen(rng: &mut Rng) -> Seen {
    let used = rng.chance(20);
    Seen {
        token: if used && rng.chance(50) { 1 + rng.below(5) } else { 0 },
        connects: if used && rng.chance(50) { 1 + rng.below(5) } else { 0 },
        files: u64::from(rng.chance(8)),
        exec: u64::from(rng.chance(10)),
        hours: i64::try_from(rng.below(60)).expect("hours"),
        from_start: rng.chance(85),
    }
}

/// Agents on some nodes, each stale, lossy or partly blind at random.
fn random_agents(f: &mut Fixture, rng: &mut Rng) {
    for node in NODES {
        if rng.chance(10) {
            continue; // no agent there
        }
        let agent = &mut f.node(node).agent;
        if rng.chance(15) {
            agent.generated_at = Some(now() - Duration::from_mins(5 + rng.below(5000)));
        }
        if rng.chance(10) {
            agent.drops = 1;
        }
        if rng.chance(10) {
            agent.map_full = 1;
        }
        if rng.chance(20) {
            agent.hooks.file_open = Some("tracepoint".into());
        }
        if rng.chance(5) {
            agent.hooks.connect = None;
        }
        if rng.chance(5) {
            agent.targets.clear();
        }
        if rng.chance(5) {
            agent.targets_not_watched = vec!["10.0.0.9:443".into()];
        }
        if rng.chance(8) {
            agent.unattributed.keys = 1;
            agent.unattributed.api_connects = 1;
            agent.unattributed.last_seen = Some(now());
        }
    }
}

/// Builds a random cluster.
fn cluster(seed: u64) -> Fixture {
    let mut rng = Rng(seed | 1);
    let mut f = Fixture::new();
    random_agents(&mut f, &mut rng);
    for sa in SAS {
        let field = match rng.below(6) {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        f.sa("ns", sa, field);
    }
    for w in 0..(2 + rng.below(6)) {
        let name = format!("w{w}");
        let sa = SAS[usize::try_from(rng.below(3)).expect("index")];
        let field = if rng.chance(10) { Some(rng.chance(50)) } else { None };
        let replicas = i32::try_from(rng.below(4)).expect("replicas");
        let rs = f.deployment("ns", &name, sa, replicas, field);
        let rolled = rng.chance(25);
        let current_rs = if rolled { f.replica_set("ns", &name, "8c2e", 2) } else { rs.clone() };
        let containers: Vec<&str> = if rng.chance(30) { vec!["app", "sidecar"] } else { vec!["app"] };
        // Past pods of either revision.
        for p in 0..rng.below(3) {
            let hash = if rolled && rng.chance(50) {
                HASH
            } else if rolled {
                "8c2e"
            } else {
                HASH
            };
            f.node = NODES[usize::try_from(rng.below(3)).expect("index")].into();
            let s = random_seen(&mut rng);
            f.past("ns", &format!("{name}-past-{p}"), &containers, ("Deployment", &name), sa, Some(hash), "Running", s);
        }
        let extra = rng.below(2);
        for i in 0..(u64::try_from(replicas).expect("replicas") + extra) {
            f.node = NODES[usize::try_from(rng.below(3)).expect("index")].into();
            let owner = if rolled && rng.chance(15) { rs.clone() } else { current_rs.clone() };
            let pod = format!("{owner}-{i}");
            let uid = f.pod("ns", &pod, Some(("ReplicaSet", &owner)), sa, &containers, rng.chance(95), field);
            for c in &containers {
                if rng.chance(8) {
                    continue; // no entry
                }
                if rng.chance(5) {
                    // reported by another node
                    f.node = NODES[usize::try_from(rng.below(3)).expect("index")].into();
                }
                let s = random_seen(&mut rng);
                f.seen(&uid, "ns", &pod, c, ("Deployment", &name), sa, s);
                if rng.chance(5) {
                    let node = f.node.clone();
                    if let Some(e) = f.node(&node).containers.last_mut() {
                        e.uncovered = vec!["the token is on a device that is not watched".into()];
                    }
                }
            }
        }
    }
    // Gone workloads under some ServiceAccount.
    for g in 0..rng.below(3) {
        let sa = SAS[usize::try_from(rng.below(3)).expect("index")];
        let mut s = random_seen(&mut rng);
        if rng.chance(50) {
            s.token = 1;
        }
        let uid = f.past(
            "ns",
            &format!("gone-{g}"),
            &["job"],
            ("Job", &format!("gone-{g}")),
            sa,
            Some("tpl-x"),
            "Succeeded",
            s,
        );
        if rng.chance(30) {
            let node = f.node.clone();
            for e in &mut f.node(&node).containers {
                if e.pod_uid.as_deref() == Some(uid.as_str()) {
                    e.last_seen = Some(now() - Duration::from_hours(24 * 45));
                }
            }
        }
    }
    f
}

fn uses(e: &ContainerEvidence, ignore_exec: bool) -> bool {
    let exec = if ignore_exec { 0 } else { e.exec_reads.total() + e.exec_api_connects };
    e.reads.total() + e.api_connects + exec > 0
}

/// Whether a node's agent may vouch for non-use of pods running there now.
fn good_node(f: &Fixture, node: &str, policy: &Policy, current: bool) -> bool {
    let Some(ev) = f.inputs.evidence.iter().find(|e| e.node == node) else { return false };
    let a = &ev.agent;
    let file_ok = matches!(a.hooks.file_open.as_deref(), Some("lsm" | "fentry" | "kprobe"))
        || (policy.accept_tracepoint && a.hooks.file_open.as_deref() == Some("tracepoint"));
    let fresh = a.generated_at.is_some_and(|t| policy.now - t <= time::Duration::seconds(180));
    file_ok
        && a.map_full == 0
        && a.hooks.connect.is_some()
        && !a.targets.is_empty()
        && a.targets_not_watched.is_empty()
        && a.unattributed.is_empty()
        && (!current || (fresh && a.drops == 0))
}

/// The oracle's "safe": proof from the raw inputs.
fn proven_safe(f: &Fixture, policy: &Policy, name: &str) -> Result<(), String> {
    let current_hash = f
        .inputs
        .replica_sets
        .iter()
        .filter(|rs| rs.metadata.name.as_deref().is_some_and(|n| n.starts_with(&format!("{name}-"))))
        .max_by_key(|rs| {
            rs.metadata.annotations.as_ref().and_then(|a| a["deployment.kubernetes.io/revision"].parse::<u32>().ok())
        })
        .and_then(|rs| rs.metadata.labels.as_ref().map(|l| l["pod-template-hash"].clone()))
        .ok_or("no ReplicaSet")?;
    let pods: Vec<_> = f
        .inputs
        .pods
        .iter()
        .filter(|p| p.metadata.name.as_deref().is_some_and(|n| n.starts_with(&format!("{name}-"))))
        .collect();
    if pods.is_empty() {
        return Err("no pods".into());
    }
    let all: Vec<(&str, &ContainerEvidence)> =
        f.inputs.evidence.iter().flat_map(|ev| ev.containers.iter().map(move |c| (ev.node.as_str(), c))).collect();
    for pod in &pods {
        let hash = pod.metadata.labels.as_ref().map(|l| l["pod-template-hash"].clone()).unwrap_or_default();
        if hash != current_hash {
            return Err(format!("pod of an earlier revision {hash}"));
        }
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        if !good_node(f, &node, policy, true) {
            return Err(format!("node {node} cannot vouch"));
        }
        for status in pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).into_iter().flatten() {
            let id = status.container_id.as_deref().unwrap_or_default().trim_start_matches("containerd://");
            let entry = all.iter().find(|(n, e)| *n == node && e.container_id.as_deref() == Some(id));
            if entry.is_none_or(|(_, e)| e.observed_from_start != Some(true) || !e.uncovered.is_empty()) {
                return Err(format!("{id}: no from-start entry from node {node}"));
            }
        }
    }
    let watched = all.iter().any(|(n, e)| {
        e.workload.as_ref().is_some_and(|w| w.name == name)
            && e.revision.as_deref() == Some(current_hash.as_str())
            && good_node(f, n, policy, false)
            && e.observed_since
                .is_some_and(|s| policy.now - s >= time::Duration::try_from(policy.min_observation).expect("d"))
    });
    if !watched {
        return Err("current template not watched long enough".into());
    }
    if let Some((_, e)) = all
        .iter()
        .find(|(_, e)| e.workload.as_ref().is_some_and(|w| w.name == name) && uses(e, policy.ignore_exec_sessions))
    {
        return Err(format!("use by {:?}", e.pod));
    }
    Ok(())
}

/// A workload whose current pods have no automount volume (a volume of their own at the token
/// path) and that never used the token loses nothing when its ServiceAccount turns it off.
fn unmounted_and_unused(f: &Fixture, policy: &Policy, name: &str) -> bool {
    let mut pods = f
        .inputs
        .pods
        .iter()
        .filter(|p| p.metadata.name.as_deref().is_some_and(|n| n.starts_with(&format!("{name}-"))))
        .peekable();
    let unmounted = pods.peek().is_some()
        && pods.all(|p| p.spec.as_ref().is_none_or(|s| s.volumes.as_ref().is_none_or(Vec::is_empty)));
    let unused = !f
        .inputs
        .evidence
        .iter()
        .flat_map(|ev| &ev.containers)
        .any(|e| e.workload.as_ref().is_some_and(|w| w.name == name) && uses(e, policy.ignore_exec_sessions));
    unmounted && unused
}

fn check(seed: u64, ignore_exec: bool, accept_tracepoint: bool) {
    let f = cluster(seed);
    let mut policy = Fixture::policy();
    policy.ignore_exec_sessions = ignore_exec;
    policy.accept_tracepoint = accept_tracepoint;
    let plan = plan(&f.inputs, &policy);
    for w in plan.workloads.iter().filter(|w| w.verdict == Verdict::SafeToDisable) {
        if let Err(why) = proven_safe(&f, &policy, &w.workload.name) {
            panic!("seed {seed}: {} is safe-to-disable without proof: {why}\n{w:#?}", w.workload.name);
        }
    }
    let cutoff = policy.now - policy.retention;
    for c in plan.changes.iter().filter(|c| !c.automount) {
        if c.target.kind == "Deployment" {
            assert!(proven_safe(&f, &policy, &c.target.name).is_ok(), "seed {seed}: {c:#?}");
            continue;
        }
        // A ServiceAccount: every user under it is pinned or sets the field itself.
        let kept = |workload: &str| {
            plan.changes.iter().any(|p| p.automount && p.target.name == workload)
                || f.inputs.deployments.iter().any(|d| {
                    d.metadata.name.as_deref() == Some(workload)
                        && d.spec
                            .as_ref()
                            .and_then(|s| s.template.spec.as_ref())
                            .and_then(|s| s.automount_service_account_token)
                            .is_some()
                })
        };
        for ev in &f.inputs.evidence {
            for e in &ev.containers {
                let under = e.service_account.as_deref() == Some(c.target.name.as_str());
                let recent = e.last_seen.is_none_or(|t| t >= cutoff);
                let workload = e.workload.as_ref().map(|w| w.name.as_str()).unwrap_or_default();
                if under && recent && uses(e, policy.ignore_exec_sessions) {
                    assert!(
                        kept(workload),
                        "seed {seed}: ServiceAccount {} set false, but {workload} used it",
                        c.target.name
                    );
                }
            }
        }
        for d in &f.inputs.deployments {
            let spec = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("template");
            let name = d.metadata.name.as_deref().unwrap_or_default();
            if spec.service_account_name.as_deref() == Some(c.target.name.as_str())
                && spec.automount_service_account_token.is_none()
                && !kept(name)
                && !unmounted_and_unused(&f, &policy, name)
            {
                assert!(
                    proven_safe(&f, &policy, name).is_ok(),
                    "seed {seed}: {name} follows {} unproven",
                    c.target.name
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn no_safe_verdict_or_change_without_proof(seed in any::<u64>(), ignore_exec in any::<bool>(), accept in any::<bool>()) {
        check(seed, ignore_exec, accept);
    }
}

/// The generator is not vacuous: across seeds, the planner finds safe workloads and makes
/// changes of both kinds — the property is tested on plans that do something.
#[test]
fn generated_clusters_have_safe_workloads_and_changes() {
    let (mut safe, mut sa_changes, mut template_changes) = (0, 0, 0);
    for seed in 1..400 {
        let f = cluster(seed);
        let mut policy = Fixture::policy();
        policy.accept_tracepoint = true;
        let plan = plan(&f.inputs, &policy);
        safe += plan.workloads.iter().filter(|w| w.verdict == Verdict::SafeToDisable).count();
        sa_changes += plan.changes.iter().filter(|c| !c.automount && c.target.kind == "ServiceAccount").count();
        template_changes += plan.changes.iter().filter(|c| !c.automount && c.target.kind != "ServiceAccount").count();
    }
    assert!(
        safe > 50 && sa_changes > 5 && template_changes > 5,
        "safe {safe}, SA changes {sa_changes}, template changes {template_changes}"
    );
}
