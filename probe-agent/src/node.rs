//! The node model: watched volumes and the containers of their pods, kept in step with the
//! host's mounts and cgroups, and turned together with the kernel's counters into evidence.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use probe_common::counters::{CountKey, CountValue, kind, session};

use crate::{
    cgroup::{FoundCgroup, Runtime},
    clock::Clock,
    evidence::{ContainerEvidence, ContainerKey, KeyKind, OtherVolume, Reads, VolumeEvidence},
    mountinfo::{ProjectedMount, is_automount_volume},
};

/// Most process names kept per container.
pub const MAX_PROCESSES: usize = 32;

/// A watched projected volume (one tmpfs mount lifetime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: u32,
    pub dev: u32,
    pub pod_uid: String,
    pub name: String,
    pub automount: bool,
    pub mount_point: String,
    /// Boot-time ns when the volume went into the kernel map: opens are counted from then on.
    pub watched_since: u64,
    pub mounted: bool,
}

/// A container of a pod with a watched volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub pod_uid: String,
    pub container_id: String,
    pub runtime: Option<Runtime>,
    pub cgroup_path: String,
    /// The container's cgroup and every nested one (crun), by id.
    pub cgroup_ids: BTreeSet<u64>,
    /// Start of its oldest process (boot-time ns, rounded down to a tick), once known.
    pub oldest_start: Option<u64>,
    pub gone: bool,
    pub processes: BTreeSet<String>,
}

/// Volumes to add to and remove from the kernel map.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountChanges {
    /// (kernel dev, volume id)
    pub added: Vec<(u32, u32)>,
    pub removed: Vec<u32>,
}

/// The node model.
#[derive(Debug, Default)]
pub struct Node {
    volumes: BTreeMap<u32, Volume>,
    /// Mounted volumes by kernel dev.
    by_dev: HashMap<u32, u32>,
    next_volume_id: u32,
    containers: BTreeMap<(String, String), Container>,
    by_cgroup: HashMap<u64, (String, String)>,
    /// Boot-time ns when the programs were attached.
    pub attached_at: u64,
}

impl Node {
    #[must_use]
    pub fn new(attached_at: u64) -> Self {
        Self { next_volume_id: 1, attached_at, ..Self::default() }
    }

    /// Brings the volumes in line with the projected mounts now present. `holds_token` says
    /// whether a non-automount volume has a `token` file (it must not open it).
    pub fn sync_mounts(
        &mut self,
        mounts: &[ProjectedMount],
        holds_token: impl Fn(&ProjectedMount) -> bool,
        now: u64,
    ) -> MountChanges {
        let mut changes = MountChanges::default();
        let mut present: HashMap<u32, &ProjectedMount> = HashMap::new();
        for m in mounts {
            // Bind mounts of one tmpfs share a device: the first line names the volume.
            present.entry(m.dev).or_insert(m);
        }
        let stale: Vec<u32> = self
            .by_dev
            .iter()
            .filter(|(dev, id)| {
                present.get(dev).is_none_or(|m| {
                    let v = &self.volumes[*id];
                    m.pod_uid != v.pod_uid || m.volume != v.name
                })
            })
            .map(|(dev, _)| *dev)
            .collect();
        for dev in stale {
            if let Some(id) = self.by_dev.remove(&dev)
                && let Some(v) = self.volumes.get_mut(&id)
            {
                v.mounted = false;
            }
            changes.removed.push(dev);
        }
        let mut new: Vec<&ProjectedMount> =
            present.values().filter(|m| !self.by_dev.contains_key(&m.dev)).copied().collect();
        new.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        for m in new {
            let automount = is_automount_volume(&m.volume);
            if !automount && !holds_token(m) {
                continue;
            }
            let id = self.next_volume_id;
            self.next_volume_id += 1;
            self.volumes.insert(
                id,
                Volume {
                    id,
                    dev: m.dev,
                    pod_uid: m.pod_uid.clone(),
                    name: m.volume.clone(),
                    automount,
                    mount_point: m.mount_point.clone(),
                    watched_since: now,
                    mounted: true,
                },
            );
            self.by_dev.insert(m.dev, id);
            changes.added.push((m.dev, id));
        }
        changes
    }

    /// Sets when a volume went into the kernel map (after the insert succeeded).
    pub fn set_watched_since(&mut self, id: u32, boot_ns: u64) {
        if let Some(v) = self.volumes.get_mut(&id) {
            v.watched_since = boot_ns;
        }
    }

    /// Drops a volume that could not be watched, so the next sync tries it again.
    pub fn forget_volume(&mut self, id: u32) {
        if let Some(v) = self.volumes.remove(&id) {
            self.by_dev.remove(&v.dev);
        }
    }

    /// Pods with a watched volume.
    #[must_use]
    pub fn watched_pods(&self) -> BTreeSet<&str> {
        self.volumes.values().map(|v| v.pod_uid.as_str()).collect()
    }

    /// Brings the containers in line with a cgroup scan. Returns the cgroup ids of containers
    /// that are gone since the last scan. `oldest_start` gives the start of the oldest process
    /// in a container cgroup (and below), when it has any.
    pub fn sync_cgroups(&mut self, found: &[FoundCgroup], oldest_start: impl Fn(&str) -> Option<u64>) -> Vec<u64> {
        let pods: BTreeSet<String> = self.watched_pods().into_iter().map(str::to_owned).collect();
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        for f in found.iter().filter(|f| pods.contains(&f.container.pod_uid)) {
            let id = (f.container.pod_uid.clone(), f.container.container_id.clone());
            let c = self.containers.entry(id.clone()).or_insert_with(|| Container {
                pod_uid: id.0.clone(),
                container_id: id.1.clone(),
                runtime: f.container.runtime,
                cgroup_path: f.container.container_path.clone(),
                cgroup_ids: BTreeSet::new(),
                oldest_start: None,
                gone: false,
                processes: BTreeSet::new(),
            });
            c.gone = false;
            c.cgroup_ids.insert(f.id);
            self.by_cgroup.insert(f.id, id.clone());
            seen.insert(id);
        }
        let mut gone = Vec::new();
        for (id, c) in &mut self.containers {
            if seen.contains(id) {
                if c.oldest_start.is_none() {
                    c.oldest_start = oldest_start(&c.cgroup_path);
                }
            } else if !c.gone {
                c.gone = true;
                gone.extend(c.cgroup_ids.iter().copied());
            }
        }
        gone
    }

    /// Whether a cgroup id belongs to a known container.
    #[must_use]
    pub fn knows_cgroup(&self, id: u64) -> bool {
        self.by_cgroup.contains_key(&id)
    }

    /// Records the name of a process seen in a container's cgroup.
    pub fn note_process(&mut self, cgroup_id: u64, comm: &str) {
        if let Some(id) = self.by_cgroup.get(&cgroup_id)
            && let Some(c) = self.containers.get_mut(id)
            && c.processes.len() < MAX_PROCESSES
            && !comm.is_empty()
        {
            c.processes.insert(comm.to_owned());
        }
    }

    pub fn volumes(&self) -> impl Iterator<Item = &Volume> {
        self.volumes.values()
    }

    pub fn containers(&self) -> impl Iterator<Item = &Container> {
        self.containers.values()
    }

    /// Boot-time ns from which a pod's containers are watched: when its automount volume (or,
    /// without one, its first watched volume) went into the kernel map, but not before attach.
    fn pod_watched_since(&self, pod_uid: &str) -> Option<u64> {
        let pod_volumes = self.volumes.values().filter(|v| v.pod_uid == pod_uid);
        let automount = pod_volumes.clone().filter(|v| v.automount).map(|v| v.watched_since).min();
        automount.or_else(|| pod_volumes.map(|v| v.watched_since).min()).map(|t| t.max(self.attached_at))
    }

    /// The evidence for every container, from the counters (live and retired, merged).
    #[must_use]
    pub fn container_evidence(
        &self,
        counters: &HashMap<CountKey, CountValue>,
        clock: &Clock,
    ) -> Vec<ContainerEvidence> {
        let mut by_cgroup: HashMap<u64, Vec<(&CountKey, &CountValue)>> = HashMap::new();
        for (k, v) in counters {
            if k.key_kind == probe_common::config::key_kind::CGROUP {
                by_cgroup.entry(k.key_id).or_default().push((k, v));
            }
        }
        let mut out = Vec::new();
        for c in self.containers.values() {
            let mut ev = self.empty_evidence(c, clock);
            let mut first: Option<u64> = None;
            let mut last: Option<u64> = None;
            let mut others: BTreeMap<String, OtherVolume> = BTreeMap::new();
            for (key, value) in c.cgroup_ids.iter().filter_map(|id| by_cgroup.get(id)).flatten() {
                first = Some(first.map_or(value.first_ns, |f| f.min(value.first_ns)));
                last = Some(last.map_or(value.last_ns, |l| l.max(value.last_ns)));
                self.add_count(&mut ev, &mut others, c, key, value.count);
            }
            ev.other_volumes = others.into_values().collect();
            ev.first_seen = first.map(|t| clock.wall(t));
            ev.last_seen = last.map(|t| clock.wall(t));
            out.push(ev);
        }
        out
    }

    fn empty_evidence(&self, c: &Container, clock: &Clock) -> ContainerEvidence {
        let since = self.pod_watched_since(&c.pod_uid);
        ContainerEvidence {
            key: ContainerKey { kind: KeyKind::Cgroup, id: c.cgroup_ids.first().copied().unwrap_or(0) },
            cgroup_path: Some(c.cgroup_path.clone()),
            pod_uid: Some(c.pod_uid.clone()),
            container_id: Some(c.container_id.clone()),
            namespace: None,
            pod: None,
            container: None,
            service_account: None,
            workload: None,
            reads: Reads::default(),
            api_connects: 0,
            exec_reads: Reads::default(),
            exec_api_connects: 0,
            missing_token_opens: 0,
            other_volumes: Vec::new(),
            processes: c.processes.iter().cloned().collect(),
            first_seen: None,
            last_seen: None,
            observed_since: since.map(|t| clock.wall(t)),
            observed_from_start: match (c.oldest_start, since) {
                (Some(start), Some(since)) => Some(start >= since),
                _ => None,
            },
        }
    }

    fn add_count(
        &self,
        ev: &mut ContainerEvidence,
        others: &mut BTreeMap<String, OtherVolume>,
        c: &Container,
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
                if volume.automount && volume.pod_uid == c.pod_uid {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::ContainerCgroup;

    const POD: &str = "0f4a3c2e-1b2d-4c5e-8f90-123456789abc";
    const OTHER_POD: &str = "1f4a3c2e-1b2d-4c5e-8f90-123456789abc";

    fn mount(pod: &str, name: &str, dev: u32) -> ProjectedMount {
        ProjectedMount {
            pod_uid: pod.into(),
            volume: name.into(),
            mount_point: format!("/k/pods/{pod}/volumes/kubernetes.io~projected/{name}"),
            dev,
        }
    }

    fn found(pod: &str, cid: &str, id: u64, nested: &str) -> FoundCgroup {
        let path = format!("/kubepods/pod{pod}/{cid}");
        FoundCgroup {
            id,
            path: format!("{path}{nested}"),
            container: ContainerCgroup {
                pod_uid: pod.into(),
                container_id: cid.into(),
                runtime: None,
                container_path: path,
            },
        }
    }

    fn key(cgroup: u64, target: u32, kind: u32, session: u32) -> CountKey {
        CountKey { key_kind: probe_common::config::key_kind::CGROUP, session, key_id: cgroup, target, kind }
    }

    fn value(count: u64, first: u64, last: u64) -> CountValue {
        CountValue { count, first_ns: first, last_ns: last }
    }

    #[test]
    fn mounts_come_and_go() {
        let mut node = Node::new(10);
        let c = node.sync_mounts(
            &[mount(POD, "kube-api-access-a", 5), mount(POD, "istio-token", 6), mount(POD, "config", 7)],
            |m| m.volume != "config",
            100,
        );
        // Sorted by mount point: istio-token (dev 6) before kube-api-access-a (dev 5); config
        // holds no token and is not watched.
        assert_eq!(c.added, vec![(6, 1), (5, 2)]);
        assert!(c.removed.is_empty());
        // Same mounts again: nothing changes.
        let c = node.sync_mounts(&[mount(POD, "kube-api-access-a", 5), mount(POD, "istio-token", 6)], |_| true, 200);
        assert_eq!(c, MountChanges::default());
        // The pod goes away; its volumes stay known for the evidence, unmounted.
        let c = node.sync_mounts(&[], |_| true, 300);
        assert_eq!(c.removed.len(), 2);
        assert!(node.volumes().all(|v| !v.mounted));
        // A new tmpfs reusing device 5 is a new volume with a new id.
        let c = node.sync_mounts(&[mount(OTHER_POD, "kube-api-access-b", 5)], |_| true, 400);
        assert_eq!(c.added, vec![(5, 3)]);
    }

    #[test]
    fn evidence_attributes_counts_to_containers() {
        let mut node = Node::new(50);
        node.sync_mounts(&[mount(POD, "kube-api-access-a", 5), mount(POD, "istio-token", 6)], |_| true, 100);
        // Volumes sorted by mount point: istio-token gets id 1, kube-api-access-a id 2.
        let automount = node.volumes().find(|v| v.automount).unwrap().id;
        let istio = node.volumes().find(|v| !v.automount).unwrap().id;
        let gone = node.sync_cgroups(
            &[
                found(POD, "aaaa", 1000, ""),
                found(POD, "aaaa", 1001, "/nested"),
                found(POD, "bbbb", 2000, ""),
                found(OTHER_POD, "cccc", 3000, ""),
            ],
            |path| if path.ends_with("aaaa") { Some(150) } else { Some(20) },
        );
        assert!(gone.is_empty());
        let counters: HashMap<CountKey, CountValue> = [
            (key(1000, automount, kind::READ_TOKEN, session::APP), value(2, 200, 300)),
            (key(1001, automount, kind::READ_TOKEN, session::APP), value(1, 250, 400)),
            (key(1000, automount, kind::READ_CA_CRT, session::EXEC), value(1, 260, 260)),
            (key(1000, istio, kind::READ_TOKEN, session::APP), value(5, 210, 210)),
            (key(1000, 9, kind::API_CONNECT, session::APP), value(3, 220, 220)),
            (key(3000, automount, kind::READ_TOKEN, session::APP), value(9, 1, 1)),
            (key(4000, automount, kind::READ_TOKEN, session::APP), value(9, 1, 1)),
        ]
        .into_iter()
        .collect();
        let clock = Clock::with_offset(0);
        let ev = node.container_evidence(&counters, &clock);
        assert_eq!(ev.len(), 2, "only containers of watched pods: {ev:#?}");
        let a = ev.iter().find(|e| e.container_id.as_deref() == Some("aaaa")).unwrap();
        assert_eq!(a.reads, Reads { token: 3, ..Reads::default() });
        assert_eq!(a.exec_reads, Reads { ca_crt: 1, ..Reads::default() });
        assert_eq!(a.api_connects, 3);
        assert_eq!(a.other_volumes.len(), 1);
        assert_eq!(a.other_volumes[0].name, "istio-token");
        assert_eq!(a.other_volumes[0].reads.token, 5);
        assert_eq!(a.first_seen, Some(clock.wall(200)));
        assert_eq!(a.last_seen, Some(clock.wall(400)));
        assert_eq!(a.observed_since, Some(clock.wall(100)));
        assert_eq!(a.observed_from_start, Some(true));
        let b = ev.iter().find(|e| e.container_id.as_deref() == Some("bbbb")).unwrap();
        assert_eq!(b.reads, Reads::default(), "idle container is present with zeros");
        assert_eq!(b.first_seen, None);
        assert_eq!(b.observed_from_start, Some(false), "started before the volume was watched");
    }

    #[test]
    fn gone_containers_are_reported_once() {
        let mut node = Node::new(0);
        node.sync_mounts(&[mount(POD, "kube-api-access-a", 5)], |_| true, 0);
        node.sync_cgroups(&[found(POD, "aaaa", 1000, ""), found(POD, "aaaa", 1001, "/n")], |_| None);
        let mut gone = node.sync_cgroups(&[], |_| None);
        gone.sort_unstable();
        assert_eq!(gone, vec![1000, 1001]);
        assert!(node.sync_cgroups(&[], |_| None).is_empty());
        assert_eq!(node.containers().count(), 1, "kept for the evidence");
    }

    #[test]
    fn process_names_are_capped() {
        let mut node = Node::new(0);
        node.sync_mounts(&[mount(POD, "kube-api-access-a", 5)], |_| true, 0);
        node.sync_cgroups(&[found(POD, "aaaa", 1000, "")], |_| None);
        for i in 0..100 {
            node.note_process(1000, &format!("p{i}"));
        }
        node.note_process(99, "unknown");
        assert_eq!(node.containers().next().unwrap().processes.len(), MAX_PROCESSES);
    }
}
