//! The one owner of the agent's state: the probe's maps, the node model, pod metadata, saved
//! totals. Everything else reaches it through the command channel.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::Path,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use probe_common::{
    cgroups::CgroupEvent,
    counters::{CountKey, CountValue},
    maps::CgroupRef,
    notice::Notice,
    stats,
    targets::{TargetKey, TargetValue},
    volumes::VolumeValue,
};
use time::OffsetDateTime;
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::{Command, Metrics, PodEvent, WatchConfig, keying::Keying, persist};
use crate::{
    canary::CANARY_ID,
    cgroup,
    clock::{self, Clock},
    counters::{self, CounterStore},
    evidence::{
        AgentInfo, ContainerEvidence, Evidence, Gap, Hooks, KeyTotals, Losses, RejectedHook, RetiredTotals,
        fold_retired,
    },
    k8s::podinfo::PodInfo,
    mountinfo,
    node::{ContainerRef, Inspection, Node},
    probe::Probe,
    targets,
};

/// Most gaps (restarts) kept in the evidence: the latest. (Each container's `unobservedSeconds`
/// keeps counting every gap it lived through.)
pub const MAX_GAPS: usize = 16;
/// How often containers past the retention window are folded.
const RETIRE_EVERY: Duration = Duration::from_mins(1);
/// Longest wait before a change the kernel or the mount table reported is rescanned (changes
/// are coalesced, so a burst of pods starting costs one rescan), and how often losses are
/// checked. Without those reports, the whole node is rescanned this often.
const HOUSEKEEPING: Duration = Duration::from_secs(2);

pub(super) struct State {
    probe: Probe,
    ring: AsyncFd<RingBuf<MapData>>,
    /// Container cgroups as they are created (`None` when the kernel refused the program).
    cgroup_events: Option<AsyncFd<RingBuf<MapData>>>,
    node: Node,
    store: CounterStore,
    clock: Clock,
    started_at: OffsetDateTime,
    keying: Keying,
    config: WatchConfig,
    last_mountinfo_errors: usize,
    pods: HashMap<String, PodInfo>,
    deleted_pods: HashSet<String>,
    /// Watched target keys and their ids.
    targets: HashMap<TargetKey, u32>,
    next_target_id: u32,
    targets_not_watched: Vec<String>,
    /// Cgroups already recorded as populated for exec-session detection.
    seen_marked: HashSet<u64>,
    /// Totals saved by an earlier run of the agent, by container.
    base: HashMap<ContainerRef, ContainerEvidence>,
    /// When the earlier run saved them (the gap since then was not watched).
    base_saved_at: Option<OffsetDateTime>,
    retired: Vec<RetiredTotals>,
    gaps: Vec<Gap>,
    last_retire: u64,
    save_errors: u64,
    /// Losses of earlier runs (saved), and of this run with when they were first noticed.
    losses_saved: Losses,
    losses: Losses,
    /// The statistics as last read (to notice increases).
    last_stats: [u64; stats::LEN as usize],
    /// Counters moved out of the kernel map: host keys', and unattributed keys' (with earlier
    /// runs' totals).
    host_folded: KeyTotals,
    unattributed_folded: KeyTotals,
    /// Kernel keys seen unattributed, with when first (boot-time ns).
    unknown_since: HashMap<u64, u64>,
    /// A change was reported since the last rescan.
    dirty: bool,
    /// Rescans of the whole node (mount table and cgroup tree) so far.
    full_rescans: u64,
}

fn key_of(c: &ContainerEvidence) -> Option<ContainerRef> {
    Some((c.pod_uid.clone()?, c.container_id.clone()?))
}

impl State {
    pub(super) fn new(
        probe: Probe,
        ring: AsyncFd<RingBuf<MapData>>,
        cgroup_events: Option<AsyncFd<RingBuf<MapData>>>,
        keying: Keying,
        config: WatchConfig,
    ) -> Self {
        let attached_at = clock::boot_ns();
        let mut node = Node::new(attached_at, keying.kind);
        node.sandboxed = config.sandboxed_runtime_classes.iter().cloned().collect();
        node.host_mnt_ns = host_mount_namespace(&config.mountinfo);
        let mut state = Self {
            node,
            probe,
            ring,
            cgroup_events,
            store: CounterStore::default(),
            clock: Clock::new(),
            started_at: OffsetDateTime::now_utc(),
            keying,
            last_mountinfo_errors: 0,
            pods: HashMap::new(),
            deleted_pods: HashSet::new(),
            targets: HashMap::new(),
            next_target_id: 1,
            targets_not_watched: Vec::new(),
            seen_marked: HashSet::new(),
            base: HashMap::new(),
            base_saved_at: None,
            retired: Vec::new(),
            gaps: Vec::new(),
            last_retire: attached_at,
            save_errors: 0,
            losses_saved: Losses::default(),
            losses: Losses::default(),
            last_stats: [0; stats::LEN as usize],
            host_folded: KeyTotals::default(),
            unattributed_folded: KeyTotals::default(),
            unknown_since: HashMap::new(),
            dirty: false,
            full_rescans: 0,
            config,
        };
        state.restore();
        state
    }

    /// Loads what an earlier run saved; the time since it saved was not watched.
    fn restore(&mut self) {
        let Some(dir) = &self.config.state_dir else { return };
        let Some(saved) = persist::load(dir, &self.config.node_name) else { return };
        let now = OffsetDateTime::now_utc();
        self.started_at = saved.started_at;
        self.gaps = saved.gaps;
        self.gaps.push(Gap { from: saved.saved_at, to: now });
        let excess = self.gaps.len().saturating_sub(MAX_GAPS);
        self.gaps.drain(..excess);
        self.retired = saved.retired;
        self.losses_saved = saved.losses;
        self.host_folded = saved.host;
        self.unattributed_folded = saved.unattributed;
        self.base = saved.containers.into_iter().filter_map(|c| Some((key_of(&c)?, c))).collect();
        self.base_saved_at = Some(saved.saved_at);
        tracing::info!(
            containers = self.base.len(),
            saved_at = %saved.saved_at,
            "continuing from saved evidence"
        );
    }

    /// Fills the configured targets, scans once, and warns when the node looks empty.
    pub(super) fn start(&mut self) {
        self.set_targets(&[]);
        self.rescan();
        self.warn_if_empty();
    }

    /// A kubelet directory or cgroup tree with no pod is almost always a wrong path (another
    /// `--kubelet-dir`, an unmounted host path): say so rather than report an empty node.
    fn warn_if_empty(&self) {
        let pods = self.config.kubelet_dir.join("pods");
        if !pods.is_dir() {
            tracing::warn!(dir = %pods.display(), "the kubelet directory has no pods/ directory: is --kubelet-dir right (and mounted into the agent)? No pod will be watched");
        } else if pod_dirs(&self.config.kubelet_dir).is_empty() {
            tracing::warn!(dir = %pods.display(), "the kubelet directory holds no pod yet: is --kubelet-dir right?");
        }
        if cgroup::scan(&self.keying.scan_root).is_empty() {
            tracing::warn!(root = %self.keying.scan_root.display(), "no container cgroup (kubepods) under the cgroup root yet: is it the host's cgroup tree?");
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut mounts: mpsc::Receiver<()>) {
        let mut rescan = tokio::time::interval(self.config.rescan_interval);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING.min(self.config.rescan_interval));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut save = tokio::time::interval(self.config.save_interval);
        save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ring_ok = true;
        let mut events_ok = self.cgroup_events.is_some();
        let mut mounts_ok = true;
        let mut was_event_driven = true;
        loop {
            // Containers and volumes are followed by events only while the kernel reports cgroups
            // made and removed and the mount table can be polled; else the node is rescanned
            // every housekeeping tick, as if every tick had a change.
            let event_driven = events_ok && mounts_ok && self.probe.container_creation && self.probe.container_removal;
            if event_driven != was_event_driven {
                if !event_driven {
                    tracing::warn!(every = ?housekeeping.period(), "containers and volumes are not followed by events: rescanning the node periodically");
                }
                was_event_driven = event_driven;
            }
            let notices = tokio::select! {
                ready = readable(self.cgroup_events.as_mut()), if events_ok => match ready {
                    Ok(events) => {
                        for event in events {
                            self.on_cgroup_event(&event);
                        }
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cgroup event ring buffer failed; containers are found by scans only");
                        events_ok = false;
                        Vec::new()
                    }
                },
                ready = self.ring.readable_mut(), if ring_ok => match ready {
                    Ok(mut guard) => {
                        let batch = super::tasks::drain(guard.get_inner_mut());
                        guard.clear_ready();
                        batch
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "notice ring buffer failed; no more first-seen notices");
                        ring_ok = false;
                        Vec::new()
                    }
                },
                command = commands.recv() => {
                    if self.on_command(command) {
                        return;
                    }
                    Vec::new()
                }
                mount = mounts.recv(), if mounts_ok => {
                    if mount.is_some() {
                        // New volumes are watched at once (a container may read its token as it
                        // starts); the cgroup tree waits for the next housekeeping tick.
                        self.rescan_mounts();
                        self.dirty = true;
                    } else {
                        mounts_ok = false;
                    }
                    Vec::new()
                }
                _ = housekeeping.tick() => {
                    if self.dirty || !event_driven {
                        self.rescan();
                    } else {
                        self.housekeeping();
                    }
                    Vec::new()
                }
                _ = rescan.tick() => {
                    self.rescan();
                    Vec::new()
                }
                _ = save.tick() => {
                    if self.config.state_dir.is_some() {
                        let evidence = self.evidence();
                        self.save_evidence(&evidence);
                    }
                    Vec::new()
                }
            };
            for notice in &notices {
                self.on_notice(notice);
            }
        }
    }

    /// Notices and created cgroups the rings hold now, so evidence reflects every event
    /// counted before it.
    fn drain_notices(&mut self) {
        let events = self.cgroup_events.as_mut().map(|r| super::tasks::drain_cgroup_events(r.get_mut()));
        for event in events.into_iter().flatten() {
            self.on_cgroup_event(&event);
        }
        for notice in super::tasks::drain(self.ring.get_mut()) {
            self.on_notice(&notice);
        }
    }

    /// A cgroup was created or removed in the containers' hierarchy. A container's new cgroup is
    /// recorded now (it may end before the next scan); either makes the next housekeeping tick
    /// rescan the cgroup tree.
    fn on_cgroup_event(&mut self, event: &CgroupEvent) {
        let len = (event.path_len as usize).min(event.path.len());
        let path = String::from_utf8_lossy(&event.path[..len]).into_owned();
        let Some(container) = cgroup::parse_path(&path) else { return };
        self.dirty = true;
        if event.kind == probe_common::cgroups::kind::REMOVED {
            tracing::debug!(%path, "container cgroup removed");
            return;
        }
        let found = cgroup::FoundCgroup { id: event.id, path, container };
        if !self.node.record_created(&found, event.ts_ns) {
            // Its pod's directory or volume may be newer than the last scan.
            self.rescan_mounts();
            if !self.node.record_created(&found, event.ts_ns) {
                tracing::debug!(path = %found.path, "created cgroup of a pod that is not watched");
                return;
            }
        }
        tracing::debug!(path = %found.path, "container cgroup created");
    }

    /// Handles one command; true when the agent must stop.
    fn on_command(&mut self, command: Option<Command>) -> bool {
        match command {
            Some(Command::Snapshot(tx)) => {
                self.drain_notices();
                self.rescan();
                if tx.send(self.evidence()).is_err() {
                    tracing::debug!("snapshot requester went away");
                }
            }
            Some(Command::Metrics(tx)) => {
                if tx.send(self.metrics()).is_err() {
                    tracing::debug!("metrics requester went away");
                }
            }
            Some(Command::Pod(event)) => self.on_pod(event),
            Some(Command::Targets(addresses, tx)) => {
                self.set_targets(&addresses);
                if tx.send(self.targets_not_watched.clone()).is_err() {
                    tracing::debug!("targets requester went away");
                }
            }
            Some(Command::Stop(tx)) => {
                self.drain_notices();
                self.rescan();
                let evidence = self.evidence();
                self.save_evidence(&evidence);
                if tx.send(evidence).is_err() {
                    tracing::debug!("stop requester went away");
                }
                return true;
            }
            None => return true,
        }
        false
    }

    fn on_pod(&mut self, event: PodEvent) {
        match event {
            PodEvent::Upsert(info) => {
                self.deleted_pods.remove(&info.uid);
                self.pods.insert(info.uid.clone(), *info);
            }
            PodEvent::Delete(uid) => {
                self.deleted_pods.insert(uid);
            }
        }
    }

    fn on_notice(&mut self, notice: &Notice) {
        if notice.key.target == CANARY_ID {
            return;
        }
        let comm = notice.comm.split(|&b| b == 0).next().unwrap_or_default();
        let comm = String::from_utf8_lossy(comm);
        if !self.node.knows_key(notice.key.key_id) {
            // Possibly a container that appeared since the last scan (a short-lived one, too).
            self.rescan_cgroups();
        }
        tracing::debug!(key = notice.key.key_id, kind = notice.key.kind, tgid = notice.tgid, comm = %comm, "first seen");
        let exec = notice.key.session == probe_common::counters::session::EXEC;
        self.node.note_process(notice.key.key_id, &comm, exec);
    }

    /// Makes the target map hold the configured addresses and `found`; reports the ones that
    /// did not fit.
    fn set_targets(&mut self, found: &[SocketAddr]) {
        let mut wanted: Vec<TargetKey> = Vec::new();
        for address in self.config.api_endpoints.iter().chain(found) {
            for key in targets::keys_for(*address) {
                if !wanted.contains(&key) {
                    wanted.push(key);
                }
            }
        }
        let stale: Vec<TargetKey> = self.targets.keys().filter(|k| !wanted.contains(k)).copied().collect();
        for key in stale {
            match self.probe.targets.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {
                    self.targets.remove(&key);
                    tracing::info!(target = %targets::render(&key), "no longer watching connects");
                }
                Err(e) => tracing::warn!(target = %targets::render(&key), error = %e, "cannot unwatch a target"),
            }
        }
        let mut not_watched = Vec::new();
        let new: Vec<TargetKey> = wanted.into_iter().filter(|k| !self.targets.contains_key(k)).collect();
        for key in new {
            let id = self.next_target_id;
            match self.probe.targets.insert(key, TargetValue { id, flags: 0 }) {
                Ok(()) => {
                    self.next_target_id += 1;
                    self.targets.insert(key, id);
                    tracing::info!(target = %targets::render(&key), "watching connects");
                }
                Err(e) => {
                    tracing::error!(target = %targets::render(&key), error = %e, "cannot watch an API server address (target map full?): connects to it are missed");
                    not_watched.push(targets::render(&key));
                }
            }
        }
        self.targets_not_watched = not_watched;
    }

    /// Rescans the whole node: mount table, pod directories, cgroup tree.
    fn rescan(&mut self) {
        self.dirty = false;
        self.full_rescans += 1;
        self.rescan_mounts();
        self.rescan_cgroups();
        self.housekeeping();
    }

    /// What is due every few seconds even when nothing changed: losses, retirement.
    fn housekeeping(&mut self) {
        self.note_losses();
        let now = clock::boot_ns();
        if now.saturating_sub(self.last_retire) >= u64::try_from(RETIRE_EVERY.as_nanos()).unwrap_or(u64::MAX) {
            self.last_retire = now;
            self.retire_old();
        }
    }

    fn rescan_mounts(&mut self) {
        let text = match std::fs::read_to_string(&self.config.mountinfo) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %self.config.mountinfo.display(), error = %e, "cannot read the mount table");
                return;
            }
        };
        let (entries, errors) = mountinfo::parse(&text);
        if errors.len() != self.last_mountinfo_errors {
            for e in &errors {
                tracing::warn!(error = %e, "skipping a malformed mountinfo line");
            }
            self.last_mountinfo_errors = errors.len();
        }
        let mounts: Vec<_> =
            entries.iter().filter_map(|e| mountinfo::pod_volume(e, &self.config.kubelet_dir)).collect();
        let pod_dirs = pod_dirs(&self.config.kubelet_dir);
        self.node.sync_pod_dirs(&pod_dirs, clock::boot_ns());
        let changes = self.node.sync_mounts(&mounts, |m| holds_token(Path::new(&m.mount_point)), clock::boot_ns());
        for dev in changes.removed {
            match self.probe.volumes.remove(dev) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => tracing::warn!(dev, error = %e, "cannot remove a volume from the kernel map"),
            }
        }
        for (dev, id) in changes.added {
            match self.probe.volumes.insert(dev, VolumeValue { id, flags: 0 }) {
                Ok(()) => {
                    self.node.set_watched_since(id, clock::boot_ns());
                    tracing::info!(dev, volume = id, "watching volume");
                }
                Err(e) => {
                    tracing::error!(dev, error = %e, "cannot watch a volume (volume map full?); it is retried on the next rescan");
                    self.node.forget_volume(id, &format!("adding it to the kernel's volume map failed: {e}"));
                }
            }
        }
    }

    fn rescan_cgroups(&mut self) {
        let scan = cgroup::scan_tree(&self.keying.scan_root);
        let found = scan.containers;
        self.node.set_host_ids(scan.host_ids);
        let root = self.keying.scan_root.clone();
        self.mark_populated(&found);
        let gone = self.node.sync_cgroups(&found, clock::boot_ns(), |path, sa| inspect(&root, path, sa));
        if gone.is_empty() {
            return;
        }
        let mut keys = HashSet::new();
        for id in &gone {
            if let Some(c) = self.node.container(id) {
                keys.extend(self.node.keys(c).iter().copied());
                for cgroup_id in &c.cgroup_ids {
                    let seen = CgroupRef { hierarchy: self.keying.hierarchy, reserved: 0, id: *cgroup_id };
                    self.probe.cgroups_seen.remove(&seen).ok();
                    self.seen_marked.remove(cgroup_id);
                }
            }
        }
        match self.store.retire(&mut self.probe.counters, &keys) {
            Ok(n) => tracing::debug!(counters = n, "moved counters of containers that are gone"),
            Err(e) => tracing::warn!(error = %e, "cannot move counters"),
        }
    }

    /// Records populated container cgroups as seen, so a process joining them later (an exec
    /// session) is told apart from their init, also for containers older than the agent.
    fn mark_populated(&mut self, found: &[cgroup::FoundCgroup]) {
        if !self.probe.exec_tracking {
            return;
        }
        let unmarked: Vec<&cgroup::FoundCgroup> = found.iter().filter(|f| !self.seen_marked.contains(&f.id)).collect();
        for f in unmarked {
            let dir = self.keying.scan_root.join(f.path.trim_start_matches('/'));
            let populated = std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty());
            if !populated {
                continue;
            }
            let key = CgroupRef { hierarchy: self.keying.hierarchy, reserved: 0, id: f.id };
            match self.probe.cgroups_seen.insert(key, 1, 1 /* BPF_NOEXIST */) {
                Ok(()) => {}
                Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => {
                    tracing::warn!(cgroup = %f.path, error = %e, "cannot record a populated cgroup; exec sessions into it count as the application");
                    continue;
                }
            }
            self.seen_marked.insert(f.id);
        }
    }

    /// Every counter: the kernel map's and those moved out of it.
    fn all_counters(&self) -> HashMap<CountKey, CountValue> {
        let live = counters::read_live(&self.probe.counters).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the counters map");
            HashMap::new()
        });
        self.store.merged(live)
    }

    /// Every container's evidence: live counts on top of what earlier runs saved.
    fn container_entries(&self, all: &HashMap<CountKey, CountValue>) -> Vec<ContainerEvidence> {
        let mut entries = self.node.container_evidence(all, &self.clock, &self.pods);
        if self.base.is_empty() {
            return entries;
        }
        let restart_gap = match (self.base_saved_at, self.gaps.last()) {
            (Some(_), Some(gap)) => u64::try_from((gap.to - gap.from).whole_seconds()).unwrap_or(0),
            _ => 0,
        };
        let mut merged: HashSet<ContainerRef> = HashSet::new();
        for e in &mut entries {
            if let Some(key) = key_of(e)
                && let Some(earlier) = self.base.get(&key)
            {
                e.absorb(earlier);
                // It ran through the restart: the gap was not watched.
                if e.gone_since.is_none() {
                    e.unobserved_seconds = e.unobserved_seconds.saturating_add(restart_gap);
                }
                merged.insert(key);
            }
        }
        for (key, earlier) in &self.base {
            if !merged.contains(key) {
                let mut e = earlier.clone();
                // Not found again after the restart: it ended while the agent was away.
                e.gone_since = e.gone_since.or(self.base_saved_at);
                entries.push(e);
            }
        }
        entries
    }

    /// Folds containers gone longer than the retention window into per-workload totals and
    /// forgets them, keeping the evidence bounded.
    fn retire_old(&mut self) {
        self.fold_foreign_keys();
        let cutoff = OffsetDateTime::now_utc() - self.config.retention;
        let entries = self.container_entries(&self.all_counters());
        // Whole pods only, so a pod is folded with all its containers and counted as a run
        // (or not) once.
        let mut pod_past: HashMap<Option<String>, bool> = HashMap::new();
        for e in &entries {
            let past = pod_past.entry(e.pod_uid.clone()).or_insert(true);
            *past &= e.gone_since.is_some_and(|g| g < cutoff);
        }
        let old: Vec<ContainerEvidence> =
            entries.into_iter().filter(|e| pod_past.get(&e.pod_uid).copied().unwrap_or(false)).collect();
        if old.is_empty() {
            return;
        }
        fold_retired(&mut self.retired, &old);
        let mut keys = HashSet::new();
        for e in &old {
            let Some(id) = key_of(e) else { continue };
            self.base.remove(&id);
            if let Some(c) = self.node.remove_container(&id) {
                keys.extend(match self.node.key_kind {
                    crate::evidence::KeyKind::Cgroup => c.cgroup_ids,
                    crate::evidence::KeyKind::MountNs => c.mnt_ns,
                });
            }
        }
        self.store.forget(&keys);
        self.node.prune_volumes();
        let live_pods: HashSet<&str> = self.node.containers().map(|c| c.pod_uid.as_str()).collect();
        let gone_pods: Vec<String> =
            self.deleted_pods.iter().filter(|p| !live_pods.contains(p.as_str())).cloned().collect();
        for uid in gone_pods {
            self.pods.remove(&uid);
            self.deleted_pods.remove(&uid);
        }
        tracing::info!(containers = old.len(), "folded containers past the retention window into totals");
    }

    /// Notes increases of the loss statistics, with when they were noticed.
    fn note_losses(&mut self) {
        let stats = match self.probe.stats() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the statistics map");
                return;
            }
        };
        let now = OffsetDateTime::now_utc();
        let losses = &mut self.losses;
        for (index, loss) in [
            (stats::NOTICE_DROPS, &mut losses.notice_drops),
            (stats::COUNTER_MAP_FULL, &mut losses.counter_map_full),
            (stats::READ_ERRORS, &mut losses.read_errors),
            (stats::EXEC_MAP_FULL, &mut losses.exec_map_full),
            (stats::CGROUP_EVENT_DROPS, &mut losses.cgroup_event_drops),
        ] {
            let i = index as usize;
            loss.add(stats[i].saturating_sub(self.last_stats[i]), now);
        }
        self.last_stats = stats;
    }

    /// Moves counters of keys that are no container's out of the kernel map, so it cannot fill
    /// up over days: the host's at once, unattributed ones after a retire interval (a
    /// container's keys are known well before that).
    fn fold_foreign_keys(&mut self) {
        let live = match counters::read_live(&self.probe.counters) {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the counters map");
                return;
            }
        };
        let wanted = match self.node.key_kind {
            crate::evidence::KeyKind::Cgroup => probe_common::config::key_kind::CGROUP,
            crate::evidence::KeyKind::MountNs => probe_common::config::key_kind::MOUNT_NS,
        };
        let now = clock::boot_ns();
        let patience = u64::try_from(RETIRE_EVERY.as_nanos()).unwrap_or(u64::MAX);
        for (key, value) in live {
            if key.key_kind != wanted || key.target == CANARY_ID || self.node.knows_key(key.key_id) {
                continue;
            }
            let folded = if self.node.is_host_key(key.key_id) {
                &mut self.host_folded
            } else if now.saturating_sub(*self.unknown_since.entry(key.key_id).or_insert(now)) >= patience {
                &mut self.unattributed_folded
            } else {
                continue;
            };
            crate::node::add_to_totals(folded, &key, &value, &self.clock);
            match self.probe.counters.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => tracing::warn!(error = %e, "cannot remove a folded counter"),
            }
        }
        self.unknown_since.retain(|k, _| !self.node.knows_key(*k));
    }

    fn evidence(&self) -> Evidence {
        let mut losses = self.losses_saved;
        losses.merge(&self.losses);
        let all = self.all_counters();
        let (mut host, mut unattributed) = self.node.key_totals(&all, &self.clock);
        host.merge(&self.host_folded);
        unattributed.merge(&self.unattributed_folded);
        let mut watched: Vec<String> = self.targets.keys().map(targets::render).collect();
        watched.sort();
        Evidence {
            node: self.config.node_name.clone(),
            agent: AgentInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at: self.started_at,
                generated_at: Some(OffsetDateTime::now_utc()),
                hooks: Hooks {
                    file_open: self.probe.file_mode.map(|m| m.name().to_owned()),
                    connect: self.probe.connect_mode.map(|m| m.name().to_owned()),
                },
                rejected_hooks: self
                    .probe
                    .rejections
                    .iter()
                    .map(|r| RejectedHook {
                        detector: r.detector.to_owned(),
                        mode: r.mode.to_owned(),
                        reason: r.reason.clone(),
                    })
                    .collect(),
                drops: losses.notice_drops.count,
                map_full: losses.counter_map_full.count,
                container_key: self.node.key_kind,
                exec_tracking: self.probe.exec_tracking,
                missing_token_detector: self.probe.missing_token,
                targets: watched,
                targets_not_watched: self.targets_not_watched.clone(),
                gaps: self.gaps.clone(),
                publish_interval_seconds: self.config.publish_interval.map(|d| d.as_secs().max(1)),
                container_creation: self.probe.container_creation,
                container_removal: self.probe.container_removal,
                losses,
                unattributed,
                host,
                truncated: None,
            },
            containers: self.container_entries(&all),
            retired: self.retired.clone(),
            volumes: self.node.volume_evidence(&self.clock),
        }
    }

    fn save_evidence(&mut self, evidence: &Evidence) {
        let Some(dir) = &self.config.state_dir else { return };
        let saved = persist::Saved::of(evidence, self.started_at);
        if let Err(e) = persist::save(dir, &saved) {
            self.save_errors += 1;
            tracing::warn!(dir = %dir.display(), error = %e, "cannot save the evidence; it stays in memory");
        }
    }

    fn metrics(&self) -> Metrics {
        Metrics {
            file_mode: self.probe.file_mode.map(|m| m.name().to_owned()),
            connect_mode: self.probe.connect_mode.map(|m| m.name().to_owned()),
            exec_tracking: self.probe.exec_tracking,
            stats: self.probe.stats().map(|s| s.to_vec()).unwrap_or_default(),
            counters_used: self.probe.counters.keys().count(),
            counters_capacity: self.config.counters_capacity,
            containers: self.node.containers().filter(|c| c.gone_since.is_none()).count(),
            volumes: self.node.volumes().filter(|v| v.mounted).count(),
            targets: self.targets.len(),
            targets_not_watched: self.targets_not_watched.len(),
            state_save_errors: self.save_errors,
            full_rescans: self.full_rescans,
        }
    }
}

/// The pod UIDs the kubelet has directories for (`<kubelet-dir>/pods/<uid>`).
fn pod_dirs(kubelet_dir: &Path) -> Vec<String> {
    std::fs::read_dir(kubelet_dir.join("pods"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| mountinfo::is_pod_uid(name))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a projected volume holds a `token` (checked without opening it).
fn holds_token(mount_point: &Path) -> bool {
    std::fs::symlink_metadata(mount_point.join("token")).is_ok()
}

/// The mount-namespace inode of a process (`/proc/<pid>/ns/mnt` → `mnt:[4026531840]`).
///
/// Reading another process's namespace links takes `CAP_SYS_PTRACE`; without it, containers
/// cannot be keyed by mount namespace, which is said once rather than silently losing them.
fn mount_namespace(pid: u32) -> Option<u64> {
    static REFUSED: std::sync::Once = std::sync::Once::new();
    let link = match std::fs::read_link(format!("/proc/{pid}/ns/mnt")) {
        Ok(link) => link,
        Err(e) => {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                REFUSED.call_once(|| {
                    tracing::warn!(
                        pid,
                        error = %e,
                        "cannot read a container process's mount namespace (needs CAP_SYS_PTRACE): \
                         on nodes keyed by mount namespace its events cannot be attributed"
                    );
                });
            }
            return None;
        }
    };
    let text = link.to_str()?;
    text.strip_prefix("mnt:[")?.strip_suffix(']')?.parse().ok()
}

/// Start of the oldest process in a container cgroup and below, their mount namespaces, and —
/// when `want_sa` — the mount at the service-account path in one's mount table.
fn inspect(root: &Path, cgroup_path: &str, want_sa: bool) -> Inspection {
    let dir = root.join(cgroup_path.trim_start_matches('/'));
    let pids = cgroup::pids(&dir);
    let mut mnt_ns: Vec<u64> = pids.iter().filter_map(|p| mount_namespace(*p)).collect();
    mnt_ns.sort_unstable();
    mnt_ns.dedup();
    let sa_mount = if want_sa {
        pids.iter()
            .find_map(|p| std::fs::read_to_string(format!("/proc/{p}/mountinfo")).ok())
            .and_then(|text| mountinfo::service_account_mount(&mountinfo::parse(&text).0))
    } else {
        None
    };
    Inspection { oldest_start: pids.into_iter().filter_map(clock::process_start_boot_ns).min(), mnt_ns, sa_mount }
}

/// The mount namespace of the process whose mount table the agent reads as the host's (PID 1
/// with hostPID): counts under it are the host's on nodes keyed by mount namespace.
fn host_mount_namespace(mountinfo: &Path) -> Option<u64> {
    let ns = mountinfo.parent()?.join("ns/mnt");
    let link = std::fs::read_link(ns).ok()?;
    link.to_str()?.strip_prefix("mnt:[")?.strip_suffix(']')?.parse().ok()
}

/// Waits until a ring of created cgroups has events and takes them (never, without a ring).
async fn readable(ring: Option<&mut AsyncFd<RingBuf<MapData>>>) -> std::io::Result<Vec<CgroupEvent>> {
    let Some(ring) = ring else { return std::future::pending().await };
    let mut guard = ring.readable_mut().await?;
    let events = super::tasks::drain_cgroup_events(guard.get_inner_mut());
    guard.clear_ready();
    Ok(events)
}
