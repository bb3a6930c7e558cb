//! The node model: watched volumes and the containers of their pods, kept in step with the
//! host's mounts and cgroups, and turned together with the kernel's counters into evidence
//! ([`evidence`]).

mod evidence;

pub use self::evidence::add_to_totals;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::{
    cgroup::{FoundCgroup, Runtime},
    evidence::KeyKind,
    mountinfo::{Plugin, PodMount, is_automount_volume},
};

/// How many scans look for a container's service-account mount before giving up (its runtime
/// may still be setting up mounts at the first one).
const SA_MOUNT_TRIES: u8 = 10;

/// Most process names kept per container.
pub const MAX_PROCESSES: usize = 16;

/// A watched projected volume (one tmpfs mount lifetime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: u32,
    pub dev: u32,
    pub pod_uid: String,
    pub name: String,
    pub plugin: Plugin,
    /// A projected volume named like the automount volume (`run` mode confirms it against the
    /// pod spec; a Secret volume is confirmed by a container's own mount table).
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
    /// Mount namespaces of its processes (the key on nodes keyed by mount namespace).
    pub mnt_ns: BTreeSet<u64>,
    /// Start of its oldest process (boot-time ns, rounded down to a tick), once known.
    pub oldest_start: Option<u64>,
    /// Boot-time ns of the scan that found its cgroups gone.
    pub gone_since: Option<u64>,
    pub processes: BTreeSet<String>,
    pub exec_processes: BTreeSet<String>,
    /// Boot-time ns when the kernel reported its cgroup created (after the programs attached):
    /// every process of it started after that.
    pub created_ns: Option<u64>,
    /// The mount at the service-account path in its own mount table: (path, kernel dev).
    pub sa_mount: Option<(String, u32)>,
    /// Scans left that look for `sa_mount`.
    pub sa_mount_tries: u8,
    /// A mount-namespace inode of it was also another container's (reused after one ended).
    pub mnt_ns_conflict: bool,
}

impl Container {
    fn new(found: &FoundCgroup) -> Self {
        Self {
            pod_uid: found.container.pod_uid.clone(),
            container_id: found.container.container_id.clone(),
            runtime: found.container.runtime,
            cgroup_path: found.container.container_path.clone(),
            cgroup_ids: BTreeSet::new(),
            mnt_ns: BTreeSet::new(),
            oldest_start: None,
            gone_since: None,
            processes: BTreeSet::new(),
            exec_processes: BTreeSet::new(),
            created_ns: None,
            sa_mount: None,
            sa_mount_tries: SA_MOUNT_TRIES,
            mnt_ns_conflict: false,
        }
    }
}

/// What a scan learns from a container's processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    pub oldest_start: Option<u64>,
    pub mnt_ns: Vec<u64>,
    /// The mount at the service-account path in a process's mount table (when asked for).
    pub sa_mount: Option<(String, u32)>,
}

/// Volumes to add to and remove from the kernel map.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountChanges {
    /// (kernel dev, volume id)
    pub added: Vec<(u32, u32)>,
    pub removed: Vec<u32>,
}

/// (pod UID, container id)
pub type ContainerRef = (String, String);

/// The node model.
#[derive(Debug)]
pub struct Node {
    volumes: BTreeMap<u32, Volume>,
    /// Mounted volumes by kernel dev.
    by_dev: HashMap<u32, u32>,
    next_volume_id: u32,
    containers: BTreeMap<ContainerRef, Container>,
    by_key: HashMap<u64, ContainerRef>,
    /// Pods the kubelet has a directory for, with when the agent first saw it (boot-time ns):
    /// their containers are reported even without a token volume (automount off).
    pod_dirs: BTreeMap<String, u64>,
    /// How the kernel keys containers: by cgroup id or by mount-namespace inode.
    pub key_kind: KeyKind,
    /// Boot-time ns when the programs were attached.
    pub attached_at: u64,
    /// Cgroups of the containers' hierarchy that are not under kubepods (the host's), from the
    /// last scan: counts under them are host counts.
    host_ids: HashSet<u64>,
    /// The host's mount namespace (counts under it are host counts on mount-namespace nodes).
    pub host_mnt_ns: Option<u64>,
    /// Volumes found but not watched, by (pod UID, name), with why.
    failed_volumes: BTreeMap<(String, String), String>,
    /// `RuntimeClass` names whose pods' file access never reaches the host kernel's view.
    pub sandboxed: BTreeSet<String>,
}

impl Node {
    #[must_use]
    pub fn new(attached_at: u64, key_kind: KeyKind) -> Self {
        Self {
            volumes: BTreeMap::new(),
            by_dev: HashMap::new(),
            next_volume_id: 1,
            containers: BTreeMap::new(),
            by_key: HashMap::new(),
            pod_dirs: BTreeMap::new(),
            key_kind,
            attached_at,
            host_ids: HashSet::new(),
            host_mnt_ns: None,
            failed_volumes: BTreeMap::new(),
            sandboxed: BTreeSet::new(),
        }
    }

    /// Brings the volumes in line with the projected mounts now present. `holds_token` says
    /// whether a non-automount volume has a `token` file (it must not open it).
    pub fn sync_mounts(
        &mut self,
        mounts: &[PodMount],
        holds_token: impl Fn(&PodMount) -> bool,
        now: u64,
    ) -> MountChanges {
        let mut changes = MountChanges::default();
        let mut present: HashMap<u32, &PodMount> = HashMap::new();
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
        let mut new: Vec<&PodMount> = present.values().filter(|m| !self.by_dev.contains_key(&m.dev)).copied().collect();
        new.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        for m in new {
            let automount = m.plugin == Plugin::Projected && is_automount_volume(&m.volume);
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
                    plugin: m.plugin,
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

    /// Drops a volume that could not be watched, so the next sync tries it again; until it is
    /// watched, its pod's containers say why they are not covered.
    pub fn forget_volume(&mut self, id: u32, reason: &str) {
        if let Some(v) = self.volumes.remove(&id) {
            self.by_dev.remove(&v.dev);
            self.failed_volumes.insert((v.pod_uid, v.name), reason.to_owned());
        }
    }

    /// Sets the host's cgroups (not under kubepods) found by the last scan.
    pub fn set_host_ids(&mut self, ids: HashSet<u64>) {
        self.host_ids = ids;
    }

    /// Records a container cgroup the kernel reported created at boot-time `created_ns`: the
    /// container exists from now on, even if it ends before the next scan. False when its pod
    /// is not watched (no volume, no kubelet directory known yet).
    pub fn record_created(&mut self, found: &FoundCgroup, created_ns: u64) -> bool {
        if !self.watched_pods().contains(found.container.pod_uid.as_str()) {
            return false;
        }
        let id = (found.container.pod_uid.clone(), found.container.container_id.clone());
        let c = self.containers.entry(id.clone()).or_insert_with(|| Container::new(found));
        c.created_ns = Some(c.created_ns.map_or(created_ns, |t| t.min(created_ns)));
        c.cgroup_ids.insert(found.id);
        if self.key_kind == KeyKind::Cgroup {
            self.by_key.insert(found.id, id);
        }
        true
    }

    /// Whether a kernel key (cgroup id or mount-namespace inode) belongs to the host.
    #[must_use]
    pub fn is_host_key(&self, key: u64) -> bool {
        match self.key_kind {
            KeyKind::Cgroup => self.host_ids.contains(&key),
            KeyKind::MountNs => self.host_mnt_ns == Some(key),
        }
    }

    /// Brings the pods in line with the kubelet's pod directories now present.
    pub fn sync_pod_dirs(&mut self, uids: &[String], now: u64) {
        let present: BTreeSet<&String> = uids.iter().collect();
        self.pod_dirs.retain(|uid, _| present.contains(uid));
        for uid in uids {
            self.pod_dirs.entry(uid.clone()).or_insert(now);
        }
    }

    /// Pods whose containers are reported: those with a watched volume or a kubelet directory.
    #[must_use]
    pub fn watched_pods(&self) -> BTreeSet<&str> {
        self.volumes.values().map(|v| v.pod_uid.as_str()).chain(self.pod_dirs.keys().map(String::as_str)).collect()
    }

    /// Brings the containers in line with a cgroup scan at boot-time `now`. Returns the
    /// containers found gone since the last scan. `inspect` looks at the processes of a
    /// container cgroup (and below), and at one's mount table when asked.
    pub fn sync_cgroups(
        &mut self,
        found: &[FoundCgroup],
        now: u64,
        inspect: impl Fn(&str, bool) -> Inspection,
    ) -> Vec<ContainerRef> {
        let pods: BTreeSet<String> = self.watched_pods().into_iter().map(str::to_owned).collect();
        let mut seen: BTreeSet<ContainerRef> = BTreeSet::new();
        for f in found.iter().filter(|f| pods.contains(&f.container.pod_uid)) {
            let id = (f.container.pod_uid.clone(), f.container.container_id.clone());
            let c = self.containers.entry(id.clone()).or_insert_with(|| Container::new(f));
            c.gone_since = None;
            c.cgroup_ids.insert(f.id);
            if self.key_kind == KeyKind::Cgroup {
                self.by_key.insert(f.id, id.clone());
            }
            seen.insert(id);
        }
        let mut gone = Vec::new();
        let mut conflicts: Vec<(u64, ContainerRef)> = Vec::new();
        for (id, c) in &mut self.containers {
            if seen.contains(id) {
                let look_for_sa = c.sa_mount.is_none() && c.sa_mount_tries > 0;
                // Processes are only looked at for what is still unknown: the start of the
                // oldest (once known, later ones are younger), the service-account mount, and
                // the mount namespaces containers are keyed by.
                if c.oldest_start.is_some() && !look_for_sa && self.key_kind == KeyKind::Cgroup {
                    continue;
                }
                let inspection = inspect(&c.cgroup_path, look_for_sa);
                if c.oldest_start.is_none() {
                    c.oldest_start = inspection.oldest_start;
                }
                if look_for_sa {
                    c.sa_mount_tries -= 1;
                    c.sa_mount = inspection.sa_mount;
                }
                if self.key_kind == KeyKind::MountNs {
                    for ns in inspection.mnt_ns {
                        if c.mnt_ns.insert(ns) {
                            conflicts.push((ns, id.clone()));
                        }
                    }
                }
            } else if c.gone_since.is_none() {
                c.gone_since = Some(now);
                gone.push(id.clone());
            }
        }
        for (ns, id) in conflicts {
            // A mount-namespace inode is reused once its namespace is freed: if another
            // container still holds it, counts under it may belong to either.
            if let Some(other) = self.by_key.insert(ns, id.clone())
                && other != id
            {
                for c in [&other, &id] {
                    if let Some(c) = self.containers.get_mut(c) {
                        c.mnt_ns_conflict = true;
                    }
                }
            }
        }
        if self.key_kind == KeyKind::MountNs {
            // A gone container's namespaces may be reused by the next container.
            for id in &gone {
                if let Some(c) = self.containers.get(id) {
                    for ns in &c.mnt_ns {
                        if self.by_key.get(ns) == Some(id) {
                            self.by_key.remove(ns);
                        }
                    }
                }
            }
        }
        gone
    }

    /// Whether a kernel container key (cgroup id or mount-namespace inode) is known.
    #[must_use]
    pub fn knows_key(&self, key: u64) -> bool {
        self.by_key.contains_key(&key)
    }

    /// Records the name of a process seen in a container (by its kernel key).
    pub fn note_process(&mut self, key: u64, comm: &str, exec: bool) {
        if let Some(id) = self.by_key.get(&key)
            && let Some(c) = self.containers.get_mut(id)
            && !comm.is_empty()
        {
            let names = if exec { &mut c.exec_processes } else { &mut c.processes };
            if names.len() < MAX_PROCESSES {
                names.insert(comm.to_owned());
            }
        }
    }

    /// A container by its reference.
    #[must_use]
    pub fn container(&self, id: &ContainerRef) -> Option<&Container> {
        self.containers.get(id)
    }

    /// The kernel keys of a container under this node's key kind.
    #[must_use]
    pub fn keys<'c>(&self, c: &'c Container) -> &'c BTreeSet<u64> {
        match self.key_kind {
            KeyKind::Cgroup => &c.cgroup_ids,
            KeyKind::MountNs => &c.mnt_ns,
        }
    }

    /// Forgets a container for good (folded into retired totals).
    pub fn remove_container(&mut self, id: &ContainerRef) -> Option<Container> {
        let c = self.containers.remove(id)?;
        for key in c.cgroup_ids.iter().chain(c.mnt_ns.iter()) {
            self.by_key.remove(key);
        }
        Some(c)
    }

    /// Forgets volumes that are unmounted and belong to no remaining container's pod.
    pub fn prune_volumes(&mut self) {
        let pods: BTreeSet<&str> = self.containers.values().map(|c| c.pod_uid.as_str()).collect();
        self.volumes.retain(|_, v| v.mounted || pods.contains(v.pod_uid.as_str()));
    }

    pub fn volumes(&self) -> impl Iterator<Item = &Volume> {
        self.volumes.values()
    }

    pub fn containers(&self) -> impl Iterator<Item = &Container> {
        self.containers.values()
    }
}
