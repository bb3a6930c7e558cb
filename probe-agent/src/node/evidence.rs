//! Turning the node model and the kernel's counters into evidence, enriched with what the API
//! server says about the pods (`run` mode).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Container, Node};
use crate::mountinfo::Plugin;
use crate::{
    canary::CANARY_ID,
    clock::Clock,
    evidence::{ContainerEvidence, ContainerKey, KeyKind, KeyTotals, OtherVolume, Reads, VolumeEvidence},
    k8s::podinfo::PodInfo,
};

/// Adds one counter to totals of keys that are no container's.
pub fn add_to_totals(totals: &mut KeyTotals, k: &CountKey, v: &CountValue, clock: &Clock) {
    match k.kind {
        kind::API_CONNECT => totals.api_connects = totals.api_connects.saturating_add(v.count),
        k if kind::is_read(k) => totals.reads.add(k, v.count),
        _ => return,
    }
    let (first, last) = (clock.wall(v.first_ns), clock.wall(v.last_ns));
    totals.first_seen = Some(totals.first_seen.map_or(first, |t| t.min(first)));
    totals.last_seen = Some(totals.last_seen.map_or(last, |t| t.max(last)));
}
use probe_common::{
    config::key_kind,
    counters::{CountKey, CountValue, kind, session},
};

impl Node {
    /// Boot-time ns from which each pod's containers are watched: when its automount volume
    /// (or, without one, its first watched volume, or without any, its kubelet directory) was
    /// first seen, but not before attach.
    fn pods_watched_since(&self) -> HashMap<&str, u64> {
        let mut automount: HashMap<&str, u64> = HashMap::new();
        let mut any: HashMap<&str, u64> = HashMap::new();
        for v in self.volumes.values() {
            let slot = any.entry(v.pod_uid.as_str()).or_insert(v.watched_since);
            *slot = (*slot).min(v.watched_since);
            if v.automount {
                let slot = automount.entry(v.pod_uid.as_str()).or_insert(v.watched_since);
                *slot = (*slot).min(v.watched_since);
            }
        }
        let mut out: HashMap<&str, u64> = self.pod_dirs.iter().map(|(uid, seen)| (uid.as_str(), *seen)).collect();
        out.extend(any);
        out.extend(automount);
        for t in out.values_mut() {
            *t = (*t).max(self.attached_at);
        }
        out
    }

    /// The evidence for every container, from the counters (live and retired, merged) and,
    /// where known, the pods' metadata. A pod's sandbox (pause) container — a cgroup whose id
    /// the pod's status does not list while it lists others — is left out.
    #[must_use]
    pub fn container_evidence(
        &self,
        counters: &HashMap<CountKey, CountValue>,
        clock: &Clock,
        pods: &HashMap<String, PodInfo>,
    ) -> Vec<ContainerEvidence> {
        let wanted = match self.key_kind {
            KeyKind::Cgroup => key_kind::CGROUP,
            KeyKind::MountNs => key_kind::MOUNT_NS,
        };
        let mut by_key: HashMap<u64, Vec<(&CountKey, &CountValue)>> = HashMap::new();
        for (k, v) in counters.iter().filter(|(k, _)| k.key_kind == wanted) {
            by_key.entry(k.key_id).or_default().push((k, v));
        }
        let watched_since = self.pods_watched_since();
        let mut out = Vec::new();
        for c in self.containers.values() {
            let pod = pods.get(&c.pod_uid);
            if let Some(p) = pod
                && !p.containers.is_empty()
                && !p.containers.contains_key(&c.container_id)
            {
                continue;
            }
            let mut ev = self.empty_evidence(c, clock, pod, watched_since.get(c.pod_uid.as_str()).copied());
            let mut first: Option<u64> = None;
            let mut last: Option<u64> = None;
            let mut others: BTreeMap<String, OtherVolume> = BTreeMap::new();
            for (key, value) in self.keys(c).iter().filter_map(|id| by_key.get(id)).flatten() {
                first = Some(first.map_or(value.first_ns, |f| f.min(value.first_ns)));
                last = Some(last.map_or(value.last_ns, |l| l.max(value.last_ns)));
                self.add_count(&mut ev, &mut others, c, pod, key, value.count);
            }
            ev.other_volumes = others.into_values().collect();
            ev.first_seen = first.map(|t| clock.wall(t));
            ev.last_seen = last.map(|t| clock.wall(t));
            out.push(ev);
        }
        out
    }

    fn empty_evidence(
        &self,
        c: &Container,
        clock: &Clock,
        pod: Option<&PodInfo>,
        since: Option<u64>,
    ) -> ContainerEvidence {
        let meta = pod.and_then(|p| p.containers.get(&c.container_id));
        // Either proves it: the kernel reported its cgroup created after its pod's volume was
        // watched (every process of it started later), or its oldest process started after that
        // (tick resolution, rounded down). Without either, the container's startedAt from the
        // pod status (second resolution, rounded down).
        let created = c.created_ns.zip(since).map(|(created, since)| created >= since);
        let started = c.oldest_start.zip(since).map(|(start, since)| start >= since);
        let observed_from_start = match (created, started) {
            (Some(a), Some(b)) => Some(a || b),
            (Some(x), None) | (None, Some(x)) => Some(x),
            (None, None) => since.and_then(|since| meta.and_then(|m| m.started_at).map(|s| s >= clock.wall(since))),
        };
        let key_id = self.keys(c).first().copied().unwrap_or(0);
        ContainerEvidence {
            key: ContainerKey { kind: self.key_kind, id: key_id },
            cgroup_path: Some(c.cgroup_path.clone()),
            pod_uid: Some(c.pod_uid.clone()),
            container_id: Some(c.container_id.clone()),
            namespace: pod.map(|p| p.namespace.clone()),
            pod: pod.map(|p| p.name.clone()),
            container: meta.map(|m| m.name.clone()),
            service_account: pod.and_then(|p| p.service_account.clone()),
            workload: pod.and_then(|p| p.workload.clone()),
            revision: pod.and_then(|p| p.revision.clone()),
            pod_phase: pod.and_then(|p| p.phase.clone()),
            reads: Reads::default(),
            api_connects: 0,
            exec_reads: Reads::default(),
            exec_api_connects: 0,
            missing_token_opens: 0,
            other_volumes: Vec::new(),
            processes: c.processes.iter().cloned().collect(),
            exec_processes: c.exec_processes.iter().cloned().collect(),
            first_seen: None,
            last_seen: None,
            observed_since: since.map(|t| clock.wall(t)),
            observed_from_start,
            unobserved_seconds: 0,
            uncovered: self.uncovered(c, pod),
            previous_container_id: meta.and_then(|m| m.previous_id.clone()),
            gone_since: c.gone_since.map(|t| clock.wall(t)),
        }
    }

    /// Why the agent cannot vouch for everything a container did.
    fn uncovered(&self, c: &Container, pod: Option<&PodInfo>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(class) = pod.and_then(|p| p.runtime_class.as_deref())
            && self.sandboxed.contains(class)
        {
            out.push(format!(
                "sandboxed runtime (RuntimeClass {class}): its file access never reaches the host kernel's view"
            ));
        }
        if let Some(name) = pod.and_then(|p| p.automount_volume.as_deref())
            && !self.volumes.values().any(|v| v.pod_uid == c.pod_uid && v.name == name)
        {
            out.push(match self.failed_volumes.get(&(c.pod_uid.clone(), name.to_owned())) {
                Some(reason) => format!("its automount volume {name} could not be watched: {reason}"),
                None => format!(
                    "its automount volume {name} was not found in the host mount table under the kubelet directory (a kubelet directory elsewhere, e.g. behind a symlink?)"
                ),
            });
        }
        if let Some((path, dev)) = &c.sa_mount
            && !self.volumes.values().any(|v| v.dev == *dev)
        {
            let (major, minor) = probe_common::volumes::split_dev(*dev);
            out.push(format!(
                "the token at {path} in the container is on device {major}:{minor}, which is not watched"
            ));
        }
        if self.key_kind == KeyKind::MountNs
            && c.gone_since.is_none()
            && c.oldest_start.is_some()
            && c.mnt_ns.is_empty()
        {
            out.push(
                "its processes' mount namespaces could not be read (CAP_SYS_PTRACE?): its events cannot be attributed"
                    .into(),
            );
        }
        if c.mnt_ns_conflict {
            out.push("a mount-namespace inode of it was also another container's: their counts may be merged".into());
        }
        out
    }

    /// Counts under kernel keys that are no container's: the host's, and the ones the agent
    /// could not attribute.
    #[must_use]
    pub fn key_totals(&self, counters: &HashMap<CountKey, CountValue>, clock: &Clock) -> (KeyTotals, KeyTotals) {
        let wanted = match self.key_kind {
            KeyKind::Cgroup => key_kind::CGROUP,
            KeyKind::MountNs => key_kind::MOUNT_NS,
        };
        let mut host = KeyTotals::default();
        let mut unattributed = KeyTotals::default();
        let mut host_keys = HashSet::new();
        let mut other_keys = HashSet::new();
        for (k, v) in counters.iter().filter(|(k, _)| k.key_kind == wanted && !self.by_key.contains_key(&k.key_id)) {
            if k.target == CANARY_ID || k.kind == kind::MISSING_TOKEN {
                continue;
            }
            let (totals, keys) = if self.is_host_key(k.key_id) {
                (&mut host, &mut host_keys)
            } else {
                (&mut unattributed, &mut other_keys)
            };
            keys.insert(k.key_id);
            add_to_totals(totals, k, v, clock);
        }
        host.keys = host_keys.len() as u64;
        unattributed.keys = other_keys.len() as u64;
        (host, unattributed)
    }

    /// Whether a volume is its pod's automount volume: the pod spec says so when known; else
    /// a projected volume's name (`kube-api-access-*`), or — a Secret volume (clusters without
    /// bound tokens) — the container's own mount table showing it at the service-account path.
    fn is_automount(volume: &super::Volume, c: &Container, pod: Option<&PodInfo>) -> bool {
        match pod {
            Some(p) => p.automount_volume.as_deref() == Some(volume.name.as_str()),
            None => match volume.plugin {
                Plugin::Projected => volume.automount,
                Plugin::Secret => c.sa_mount.as_ref().is_some_and(|(_, dev)| *dev == volume.dev),
            },
        }
    }

    fn add_count(
        &self,
        ev: &mut ContainerEvidence,
        others: &mut BTreeMap<String, OtherVolume>,
        c: &Container,
        pod: Option<&PodInfo>,
        key: &CountKey,
        count: u64,
    ) {
        let exec = key.session == session::EXEC;
        match key.kind {
            kind::API_CONNECT => {
                let slot = if exec { &mut ev.exec_api_connects } else { &mut ev.api_connects };
                *slot = slot.saturating_add(count);
            }
            kind::MISSING_TOKEN => ev.missing_token_opens = ev.missing_token_opens.saturating_add(count),
            k if kind::is_read(k) => {
                let Some(volume) = self.volumes.get(&key.target) else { return };
                if volume.pod_uid == c.pod_uid && Self::is_automount(volume, c, pod) {
                    let reads = if exec { &mut ev.exec_reads } else { &mut ev.reads };
                    reads.add(k, count);
                } else {
                    // Another volume of the pod, or (rarely) a volume of another pod.
                    let name = if volume.pod_uid == c.pod_uid {
                        volume.name.clone()
                    } else {
                        format!("{}/{}", volume.pod_uid, volume.name)
                    };
                    let entry = others.entry(name.clone()).or_insert_with(|| OtherVolume {
                        name,
                        reads: Reads::default(),
                        exec_reads: Reads::default(),
                    });
                    let reads = if exec { &mut entry.exec_reads } else { &mut entry.reads };
                    reads.add(k, count);
                }
            }
            _ => {}
        }
    }

    /// The watched volumes as evidence.
    #[must_use]
    pub fn volume_evidence(&self, clock: &Clock) -> Vec<VolumeEvidence> {
        self.volumes
            .values()
            .map(|v| VolumeEvidence {
                pod_uid: v.pod_uid.clone(),
                name: v.name.clone(),
                automount: v.automount,
                mount_point: v.mount_point.clone(),
                device: v.dev,
                mounted: v.mounted,
                watched_since: clock.wall(v.watched_since),
            })
            .collect()
    }
}
