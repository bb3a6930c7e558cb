//! Turning the node model and the kernel's counters into evidence, enriched with what the API
//! server says about the pods (`run` mode).

use std::collections::{BTreeMap, HashMap};

use super::{Container, Node};
use crate::{
    clock::Clock,
    evidence::{ContainerEvidence, ContainerKey, KeyKind, OtherVolume, Reads, VolumeEvidence},
    k8s::podinfo::PodInfo,
};
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
        // Process start times (tick resolution) decide; without a process to look at, the
        // container's startedAt from the pod status (second resolution, rounded down).
        let observed_from_start = match (c.oldest_start, since) {
            (Some(start), Some(since)) => Some(start >= since),
            (None, Some(since)) => meta.and_then(|m| m.started_at).map(|started| started >= clock.wall(since)),
            _ => None,
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
            gone_since: c.gone_since.map(|t| clock.wall(t)),
        }
    }

    /// Whether a volume is its pod's automount volume: the pod spec says so when known,
    /// else its name (`kube-api-access-*`).
    fn is_automount(volume: &super::Volume, pod: Option<&PodInfo>) -> bool {
        pod.map_or(volume.automount, |p| p.automount_volume.as_deref() == Some(volume.name.as_str()))
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
                if volume.pod_uid == c.pod_uid && Self::is_automount(volume, pod) {
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
