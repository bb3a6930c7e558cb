//! Publication: one `NodeTokenEvidence` per node, named after it, its evidence in `status`,
//! written by server-side apply when it changed. While the API server is unreachable the
//! agent keeps counting; the next successful publication carries everything (nothing is lost,
//! only later), retried with exponential backoff.
//!
//! Every interval in which the published evidence is current (just published, or unchanged
//! since the last success), the node's liveness Lease is renewed ([`crate::k8s::liveness`]):
//! an agent that stopped, or cannot publish, stops renewing, and the planner stops trusting
//! its evidence.

use std::{
    hash::{DefaultHasher, Hash as _, Hasher as _},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tokio::sync::watch;

use crate::{
    evidence::{ContainerEvidence, Evidence, RetiredTotals},
    k8s::{crd::NodeTokenEvidence, liveness},
    watch::AgentHandle,
};

/// The field manager of the agent's server-side applies.
pub const FIELD_MANAGER: &str = "tokenprobe-agent";
/// Process names kept per container in the published object.
const PUBLISHED_PROCESSES: usize = 8;
const MAX_BACKOFF: Duration = Duration::from_mins(5);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct PublishStats {
    pub published: AtomicU64,
    pub errors: AtomicU64,
    /// Unix seconds of the last success (0: never).
    pub last_success: AtomicU64,
    pub lease_renewals: AtomicU64,
    pub lease_errors: AtomicU64,
    /// Every answer of the API server to the agent's client, retries included.
    pub api: std::sync::Arc<super::api::ApiResponses>,
}

/// The largest published evidence, in bytes of JSON: etcd's default request limit is 1.5 MiB
/// and the object carries its metadata and managed fields besides.
pub const PUBLISH_LIMIT_BYTES: usize = 1_000_000;
/// Room kept for the record of what was shed.
const TRUNCATION_RECORD_BYTES: usize = 512;

/// The evidence as published: without the debugging aids (per-volume list, cgroup paths), with
/// process names capped, and within [`PUBLISH_LIMIT_BYTES`] (see [`published_within`]).
#[must_use]
pub fn published(evidence: &Evidence) -> Evidence {
    published_within(evidence, PUBLISH_LIMIT_BYTES)
}

fn json_len<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// Removes the items that do not `show_use`, in the order of `key` (smallest first), until
/// `size` (the JSON length, lowered by each removal) is within `budget`; returns how many went.
fn shed<T: serde::Serialize, K: Ord>(
    items: &mut Vec<T>,
    size: &mut usize,
    budget: usize,
    shows_use: impl Fn(&T) -> bool,
    key: impl Fn(&T) -> K,
) -> usize {
    let mut idle: Vec<usize> = (0..items.len()).filter(|&i| !shows_use(&items[i])).collect();
    idle.sort_by_key(|&i| (key(&items[i]), i));
    let mut drop = std::collections::HashSet::new();
    for i in idle {
        if *size <= budget {
            break;
        }
        *size = size.saturating_sub(json_len(&items[i]) + 1);
        drop.insert(i);
    }
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        !drop.contains(&(i - 1))
    });
    drop.len()
}

/// [`published`] within `limit` bytes: still one object for the node. Over the limit, detail is
/// shed in this order, and `agent.truncated` says what went: all process names; retired totals
/// that show no use, oldest first; and only when the container entries alone do not fit,
/// entries that show no use (gone ones first, then the least recently seen) — which makes the
/// node's coverage partial. Nothing that shows use is ever left out: if what shows use alone is
/// over the limit, the object is published as it is and the API server may refuse it (a
/// publish error, logged and counted).
#[must_use]
pub fn published_within(evidence: &Evidence, limit: usize) -> Evidence {
    let mut out = evidence.clone();
    out.volumes.clear();
    out.agent.truncated = None;
    for c in &mut out.containers {
        c.cgroup_path = None;
        c.processes.truncate(PUBLISHED_PROCESSES);
        c.exec_processes.truncate(PUBLISHED_PROCESSES);
    }
    if json_len(&out) <= limit {
        return out;
    }
    let budget = limit.saturating_sub(TRUNCATION_RECORD_BYTES);
    let mut truncated = crate::evidence::Truncated { limit_bytes: limit as u64, ..Default::default() };
    for c in &mut out.containers {
        c.processes.clear();
        c.exec_processes.clear();
    }
    truncated.shed.push("process names".into());
    let mut size = json_len(&out);
    if size > budget {
        let n = shed(&mut out.retired, &mut size, budget, RetiredTotals::shows_use, |r| r.last_seen);
        truncated.shed.push(format!("{n} retired total(s) without use"));
        size = json_len(&out);
    }
    if size > budget {
        // Gone entries first, then the least recently seen.
        let n = shed(&mut out.containers, &mut size, budget, ContainerEvidence::shows_use, |c| {
            (c.gone_since.is_none(), c.last_seen.or(c.observed_since))
        });
        truncated.entries_without_use = n as u64;
        truncated.shed.push(format!("{n} container entr(ies) without use"));
        if json_len(&out) > budget {
            truncated.shed.push("nothing more: what remains shows use".into());
        }
    }
    tracing::warn!(limit, shed = ?truncated.shed, "the evidence is over the size the API server accepts: detail shed");
    out.agent.truncated = Some(truncated);
    out
}

/// A fingerprint of the evidence that ignores when it was generated.
fn fingerprint(evidence: &Evidence) -> u64 {
    let mut e = evidence.clone();
    e.agent.generated_at = None;
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(&e).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// Applies the object (spec) and then its status.
///
/// # Errors
/// The API error.
pub async fn publish(api: &Api<NodeTokenEvidence>, node: &str, evidence: &Evidence) -> Result<(), kube::Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let object = json!({
        "apiVersion": "tokenprobe.dev/v1alpha1", "kind": "NodeTokenEvidence",
        "metadata": {"name": node}, "spec": {"nodeName": node}
    });
    api.patch(node, &params, &Patch::Apply(&object)).await?;
    let status = json!({
        "apiVersion": "tokenprobe.dev/v1alpha1", "kind": "NodeTokenEvidence",
        "status": published(evidence)
    });
    api.patch_status(node, &params, &Patch::Apply(&status)).await?;
    Ok(())
}

/// Renews the node's liveness Lease.
async fn renew(api: &Api<Lease>, node: &str, interval: Duration) -> Result<(), kube::Error> {
    let namespace = api.namespace().unwrap_or(liveness::DEFAULT_NAMESPACE).to_owned();
    let object = liveness::lease_object(node, &namespace, interval.as_secs(), time::OffsetDateTime::now_utc());
    api.patch(node, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object)).await.map(drop)
}

/// Where and how often to publish.
pub(super) struct Publisher {
    pub client: Client,
    pub node: String,
    pub lease_namespace: String,
    pub interval: Duration,
    pub stats: std::sync::Arc<PublishStats>,
    /// What the first publication waits for (the node's pods listed, the API server's
    /// addresses looked up), so it does not say "no API server watched" or leave containers
    /// unattributed only because the agent had just started.
    pub ready: Vec<watch::Receiver<bool>>,
}

/// Longest wait for [`Publisher::ready`] before publishing anyway.
const READY_WAIT: Duration = Duration::from_secs(30);

impl Publisher {
    /// Publishes every `interval` when the evidence changed, and renews the Lease while the
    /// published evidence is current, until `stop` turns true; then publishes once more.
    pub(super) async fn follow(self, handle: AgentHandle, mut stop: watch::Receiver<bool>) {
        let api: Api<NodeTokenEvidence> = Api::all(self.client.clone());
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.lease_namespace);
        let stats = &self.stats;
        let mut last: Option<u64> = None;
        let mut backoff = Duration::from_secs(1);
        let mut wait = Duration::ZERO;
        let ready = async {
            for r in &self.ready {
                let mut r = r.clone();
                // A closed channel (its task ended) waits no longer.
                r.wait_for(|ready| *ready).await.ok();
            }
        };
        tokio::select! {
            r = tokio::time::timeout(READY_WAIT, ready) => if r.is_err() {
                tracing::warn!(after = ?READY_WAIT, "publishing before the pods or the API server's addresses are known");
            },
            _ = stop.changed() => {}
        }
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(wait) => false,
                changed = stop.changed() => changed.is_err() || *stop.borrow(),
            } || *stop.borrow();
            let Ok(evidence) = handle.snapshot().await else { return };
            let print = fingerprint(&evidence);
            if last != Some(print) {
                match publish(&api, &self.node, &evidence).await {
                    Ok(()) => {
                        last = Some(print);
                        backoff = Duration::from_secs(1);
                        stats.published.fetch_add(1, Ordering::Relaxed);
                        let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
                        stats.last_success.store(now, Ordering::Relaxed);
                        tracing::debug!(containers = evidence.containers.len(), "evidence published");
                    }
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, retry_in = ?backoff, "cannot publish the evidence; it keeps accumulating (the liveness Lease is not renewed meanwhile)");
                        if stopping {
                            return;
                        }
                        wait = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            if stopping {
                return;
            }
            match renew(&leases, &self.node, self.interval).await {
                Ok(()) => {
                    stats.lease_renewals.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.lease_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, namespace = %self.lease_namespace, "cannot renew the liveness Lease: the planner will judge this node's evidence stale");
                }
            }
            wait = self.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::evidence::{AgentInfo, ContainerEvidence, ContainerKey, Hooks, KeyKind, Reads, Workload};

    /// A realistic entry: long names and ids, counts, timestamps, process names.
    fn entry(i: usize, c: usize) -> ContainerEvidence {
        let t = Some(OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap());
        ContainerEvidence {
            key: ContainerKey { kind: KeyKind::Cgroup, id: 100_000 + (i * 4 + c) as u64 },
            cgroup_path: Some(format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{i:08}_1b2d_4c5e_8f90_123456789abc.slice/cri-containerd-{:064x}.scope",
                i * 4 + c
            )),
            pod_uid: Some(format!("{i:08}-1b2d-4c5e-8f90-123456789abc")),
            container_id: Some(format!("{:064x}", i * 4 + c)),
            namespace: Some("payments-production".into()),
            pod: Some(format!("checkout-api-7d9f8c6b5-{i:05}")),
            container: Some(["app", "istio-proxy", "log-shipper"][c % 3].into()),
            service_account: Some("checkout-api".into()),
            workload: Some(Workload { kind: "Deployment".into(), name: "checkout-api".into() }),
            revision: Some("7d9f8c6b5".into()),
            pod_phase: Some("Running".into()),
            reads: Reads { token: 12, ca_crt: 3, namespace: 1, other: 0 },
            api_connects: 40,
            exec_reads: Reads::default(),
            exec_api_connects: 0,
            missing_token_opens: 0,
            other_volumes: Vec::new(),
            processes: (0..20).map(|p| format!("worker-{p}")).collect(),
            exec_processes: Vec::new(),
            first_seen: t,
            last_seen: t,
            observed_since: t,
            observed_from_start: Some(true),
            unobserved_seconds: 0,
            gone_since: None,
            uncovered: Vec::new(),
            previous_container_id: None,
        }
    }

    #[test]
    fn a_node_with_250_pods_stays_far_below_the_etcd_limit() {
        let t = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let evidence = Evidence {
            node: "ip-10-0-12-34.eu-west-1.compute.internal".into(),
            agent: AgentInfo {
                hooks: Hooks { file_open: Some("lsm".into()), connect: Some("cgroup".into()) },
                exec_tracking: true,
                targets: vec!["10.96.0.1:443".into()],
                ..AgentInfo::new("0.1.0", t)
            },
            // 250 pods with three containers each (sandboxes are not reported).
            containers: (0..250).flat_map(|i| (0..3).map(move |c| entry(i, c))).collect(),
            retired: Vec::new(),
            volumes: Vec::new(),
        };
        let size = serde_json::to_vec(&published(&evidence)).unwrap().len();
        eprintln!("published size of 750 containers: {size} bytes");
        // etcd's default request limit is 1.5 MiB; stay well under half of it.
        assert!(size < 640 * 1024, "{size} bytes");
        assert!(published(&evidence).containers.iter().all(|c| c.processes.len() == PUBLISHED_PROCESSES));
    }

    /// A node whose evidence is over the limit still publishes one object within it, sheds in
    /// the stated order, and never leaves out what shows use.
    #[test]
    fn over_the_limit_detail_is_shed_in_order_and_use_is_kept() {
        let t = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let mut containers: Vec<ContainerEvidence> = (0..400).flat_map(|i| (0..3).map(move |c| entry(i, c))).collect();
        for (i, c) in containers.iter_mut().enumerate() {
            c.reads = Reads { token: u64::from(i % 10 == 0), ..Reads::default() };
            c.api_connects = 0;
        }
        let users = containers.iter().filter(|c| c.shows_use()).count();
        let evidence = Evidence {
            node: "n".into(),
            agent: AgentInfo::new("0.1.0", t),
            containers,
            retired: Vec::new(),
            volumes: Vec::new(),
        };
        let full = serde_json::to_vec(&published_within(&evidence, usize::MAX)).unwrap().len();
        // Room for everything but the process names.
        let no_names = {
            let mut e = published_within(&evidence, usize::MAX);
            e.containers.iter_mut().for_each(|c| {
                c.processes.clear();
                c.exec_processes.clear();
            });
            serde_json::to_vec(&e).unwrap().len()
        };
        let limit = no_names + TRUNCATION_RECORD_BYTES + 100;
        assert!(limit < full);
        let out = published_within(&evidence, limit);
        assert!(serde_json::to_vec(&out).unwrap().len() <= limit);
        let t1 = out.agent.truncated.clone().expect("truncated");
        assert_eq!(t1.shed, ["process names"]);
        assert_eq!(t1.entries_without_use, 0);
        assert_eq!(out.containers.len(), evidence.containers.len(), "entries are not detail");
        // Half of that: only entries without use can go, and the node says its coverage is partial.
        let out = published_within(&evidence, limit / 2);
        assert!(serde_json::to_vec(&out).unwrap().len() <= limit / 2);
        let t2 = out.agent.truncated.clone().expect("truncated");
        assert!(t2.entries_without_use > 0, "{t2:?}");
        assert_eq!(t2.shed.len(), 3, "{t2:?}");
        assert_eq!(out.containers.iter().filter(|c| c.shows_use()).count(), users, "every entry showing use kept");
        assert_eq!(out.containers.len() as u64 + t2.entries_without_use, evidence.containers.len() as u64);
        // Too small even for the users: nothing that shows use is dropped.
        let out = published_within(&evidence, 1000);
        assert_eq!(out.containers.len(), users);
        assert!(out.agent.truncated.expect("truncated").shed.last().is_some_and(|s| s.starts_with("nothing more")));
        // Under the limit nothing is said.
        assert!(published_within(&evidence, usize::MAX).agent.truncated.is_none());
    }

    #[test]
    fn fingerprint_ignores_generation_time() {
        let mut a = Evidence {
            node: "n".into(),
            agent: AgentInfo::new("0", OffsetDateTime::UNIX_EPOCH),
            containers: Vec::new(),
            retired: Vec::new(),
            volumes: Vec::new(),
        };
        let before = fingerprint(&a);
        a.agent.generated_at = Some(OffsetDateTime::now_utc());
        assert_eq!(fingerprint(&a), before);
        a.agent.drops = 1;
        assert_ne!(fingerprint(&a), before);
    }
}
