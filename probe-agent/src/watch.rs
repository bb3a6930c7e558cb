//! The standalone agent (`probe-agent watch`): programs attached, volumes and containers
//! followed, evidence on demand. One task owns all state; the ring-buffer reader and the
//! mount watcher feed it through channels.

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use probe_common::{notice::Notice, stats, targets::TargetValue, volumes::VolumeValue};
use time::OffsetDateTime;
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    cgroup,
    clock::{self, Clock},
    counters::{self, CounterStore},
    evidence::{AgentInfo, Evidence, Hooks, RejectedHook},
    mountinfo,
    node::Node,
    probe::{ConnectHook, FileHook, Probe, ProbeError, ProbeOptions, bump_memlock, check_btf},
    targets,
};

/// What `watch` needs to know.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub node_name: String,
    pub kubelet_dir: PathBuf,
    pub api_endpoints: Vec<SocketAddr>,
    pub file_hook: FileHook,
    pub connect_hook: ConnectHook,
    /// The host's mount table (`/proc/1/mountinfo` with hostPID).
    pub mountinfo: PathBuf,
    /// The host's cgroup v2 mount; found in `mountinfo` when `None`.
    pub cgroup_root: Option<PathBuf>,
    pub btf_path: PathBuf,
    /// How often cgroups are rescanned (mount changes are followed as they happen).
    pub rescan_interval: Duration,
    /// Entries of the in-kernel counters map.
    pub counters_capacity: u32,
}

impl WatchConfig {
    /// Defaults for this host, with the node named after the host name.
    #[must_use]
    pub fn new(kubelet_dir: PathBuf) -> Self {
        Self {
            node_name: nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
            kubelet_dir,
            api_endpoints: Vec::new(),
            file_hook: FileHook::Auto,
            connect_hook: ConnectHook::Auto,
            mountinfo: PathBuf::from("/proc/1/mountinfo"),
            cgroup_root: None,
            btf_path: PathBuf::from("/sys/kernel/btf/vmlinux"),
            rescan_interval: Duration::from_secs(2),
            counters_capacity: probe_common::maps::COUNTERS_MAX,
        }
    }
}

/// Errors starting or running the agent.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{0}")]
    Btf(String),
    #[error("cannot read the host mount table {path}")]
    Mountinfo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no cgroup v2 mount in {path}: the connect detector and container attribution need the host's cgroup v2 hierarchy"
    )]
    NoCgroup2 { path: PathBuf },
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("the connect target map is full: {address} and later targets are not watched")]
    TargetMapFull {
        address: String,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot watch the notice ring buffer")]
    RingBuf(#[source] std::io::Error),
    #[error("the agent task has stopped")]
    Stopped,
}

enum Command {
    Snapshot(oneshot::Sender<Evidence>),
    Stop(oneshot::Sender<Evidence>),
}

/// A running standalone agent.
pub struct Agent {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
    helpers: Vec<JoinHandle<()>>,
    /// Tells the kernel-log forwarder to flush once more and end.
    logs_done: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Agent {
    /// Loads and attaches the programs (ring-buffer reader first), fills the target map, scans
    /// volumes and containers once and starts following them.
    ///
    /// # Errors
    /// Anything that keeps the agent from measuring: BTF, the mount table, no cgroup v2, no
    /// attachable mode for a detector, a full target map.
    #[expect(clippy::unused_async, reason = "spawns tasks, so it must run inside the runtime")]
    pub async fn start(config: WatchConfig) -> Result<Self, WatchError> {
        bump_memlock();
        check_btf(&config.btf_path).map_err(WatchError::Btf)?;
        let text = std::fs::read_to_string(&config.mountinfo)
            .map_err(|source| WatchError::Mountinfo { path: config.mountinfo.clone(), source })?;
        let (entries, _) = mountinfo::parse(&text);
        let cgroup_root = match &config.cgroup_root {
            Some(root) => root.clone(),
            None => mountinfo::cgroup2_mount(&entries)
                .map(PathBuf::from)
                .ok_or_else(|| WatchError::NoCgroup2 { path: config.mountinfo.clone() })?,
        };
        let mut probe = Probe::load(ProbeOptions {
            file_hook: config.file_hook,
            connect_hook: config.connect_hook,
            cgroup_root: cgroup_root.clone(),
            key_kind: probe_common::config::key_kind::CGROUP,
            btf_path: config.btf_path.clone(),
            counters_capacity: config.counters_capacity,
        })?;

        // Readers first, so no early notice is lost.
        let (notice_tx, notice_rx) = mpsc::channel(4096);
        let ring = probe.take_notices().ok_or(WatchError::Stopped)?;
        let ring = unsafe_register(ring).map_err(WatchError::RingBuf)?;
        let mut helpers = vec![tokio::spawn(read_notices(ring, notice_tx))];
        let logs_done = probe.take_logger().map(|logger| {
            let (tx, rx) = oneshot::channel();
            (tx, tokio::spawn(forward_kernel_logs(logger, rx)))
        });
        let (mount_tx, mount_rx) = mpsc::channel(1);
        helpers.push(tokio::spawn(watch_mounts(config.mountinfo.clone(), mount_tx)));

        probe.attach()?;
        let attached_at = clock::boot_ns();
        fill_targets(&mut probe, &config.api_endpoints)?;

        let mut state = State {
            probe,
            node: Node::new(attached_at),
            store: CounterStore::default(),
            clock: Clock::new(),
            started_at: OffsetDateTime::now_utc(),
            cgroup_root,
            config,
            last_mountinfo_errors: 0,
        };
        state.rescan();
        let (commands, command_rx) = mpsc::channel(16);
        let task = tokio::spawn(state.run(command_rx, notice_rx, mount_rx));
        Ok(Self { commands, task, helpers, logs_done })
    }

    /// Rescans mounts and cgroups and returns the evidence so far.
    ///
    /// # Errors
    /// [`WatchError::Stopped`] if the agent task ended.
    pub async fn snapshot(&self) -> Result<Evidence, WatchError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Snapshot(tx)).await.map_err(|_| WatchError::Stopped)?;
        rx.await.map_err(|_| WatchError::Stopped)
    }

    /// Stops the agent (programs detached) and returns the final evidence.
    ///
    /// # Errors
    /// [`WatchError::Stopped`] if the agent task had already ended.
    pub async fn stop(self) -> Result<Evidence, WatchError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Stop(tx)).await.map_err(|_| WatchError::Stopped)?;
        let evidence = rx.await.map_err(|_| WatchError::Stopped)?;
        for h in &self.helpers {
            h.abort();
        }
        if let Some((done, forwarder)) = self.logs_done {
            if done.send(()).is_err() {
                tracing::debug!("the kernel-log forwarder had already ended");
            }
            if let Err(e) = forwarder.await {
                tracing::debug!(error = %e, "kernel-log forwarder ended badly");
            }
        }
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "agent task ended badly");
        }
        Ok(evidence)
    }
}

fn unsafe_register(ring: RingBuf<MapData>) -> std::io::Result<AsyncFd<RingBuf<MapData>>> {
    // SAFETY: the RingBuf owns its fd and keeps it open for as long as it lives inside the AsyncFd.
    unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(std::io::Error::from)
}

fn fill_targets(probe: &mut Probe, endpoints: &[SocketAddr]) -> Result<(), WatchError> {
    for (id, endpoint) in (1u32..).zip(endpoints) {
        for key in targets::keys_for(*endpoint) {
            probe
                .targets
                .insert(key, TargetValue { id, flags: 0 }, 0)
                .map_err(|source| WatchError::TargetMapFull { address: targets::render(&key), source })?;
            tracing::info!(target = %targets::render(&key), "watching connects");
        }
    }
    if endpoints.is_empty() {
        tracing::warn!("no --api-endpoint given: API connects are not watched");
    }
    Ok(())
}

/// Drains the notice ring buffer into the channel.
async fn read_notices(mut ring: AsyncFd<RingBuf<MapData>>, tx: mpsc::Sender<Notice>) {
    loop {
        let batch = {
            let mut guard = match ring.readable_mut().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "notice ring buffer failed; no more first-seen notices");
                    return;
                }
            };
            let mut batch = Vec::new();
            while let Some(item) = guard.get_inner_mut().next() {
                if item.len() >= size_of::<Notice>() {
                    // SAFETY: the kernel wrote a `Notice` (checked length; read unaligned).
                    batch.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Notice>()) });
                }
            }
            guard.clear_ready();
            batch
        };
        for notice in batch {
            if tx.send(notice).await.is_err() {
                return;
            }
        }
    }
}

/// Forwards the programs' own diagnostics (aya-log) to the agent's log, until `done` fires
/// (then once more, so nothing logged before the agent stopped is lost).
async fn forward_kernel_logs(logger: aya_log::EbpfLogger<&'static dyn log::Log>, mut done: oneshot::Receiver<()>) {
    // SAFETY: the logger owns its ring buffer's fd for as long as it lives inside the AsyncFd.
    let registered = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) };
    let mut logger = match registered {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %std::io::Error::from(e), "cannot read kernel-side diagnostics");
            return;
        }
    };
    loop {
        tokio::select! {
            ready = logger.readable_mut() => match ready {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kernel-side diagnostics stopped");
                    return;
                }
            },
            _ = &mut done => {
                logger.get_mut().flush();
                return;
            }
        }
    }
}

/// Signals every change of the mount table (`POLLPRI` on mountinfo). Periodic rescans remain
/// the fallback when this cannot be set up.
async fn watch_mounts(path: PathBuf, tx: mpsc::Sender<()>) {
    let registered = std::fs::File::open(&path).and_then(|file| {
        // SAFETY: the File owns its fd for as long as the AsyncFd lives.
        unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) }.map_err(std::io::Error::from)
    });
    let fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot poll the mount table; relying on periodic rescans");
            return;
        }
    };
    loop {
        match fd.ready(Interest::PRIORITY).await {
            Ok(mut guard) => {
                guard.clear_ready();
                // A full channel already holds a pending rescan.
                if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "mount table polling failed; relying on periodic rescans");
                return;
            }
        }
    }
}

struct State {
    probe: Probe,
    node: Node,
    store: CounterStore,
    clock: Clock,
    started_at: OffsetDateTime,
    cgroup_root: PathBuf,
    config: WatchConfig,
    last_mountinfo_errors: usize,
}

impl State {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut notices: mpsc::Receiver<Notice>,
        mut mounts: mpsc::Receiver<()>,
    ) {
        let mut ticker = tokio::time::interval(self.config.rescan_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Snapshot(tx)) => {
                        self.rescan();
                        if tx.send(self.evidence()).is_err() {
                            tracing::debug!("snapshot requester went away");
                        }
                    }
                    Some(Command::Stop(tx)) => {
                        self.rescan();
                        if tx.send(self.evidence()).is_err() {
                            tracing::debug!("stop requester went away");
                        }
                        return;
                    }
                    None => return,
                },
                Some(notice) = notices.recv() => self.on_notice(&notice),
                Some(()) = mounts.recv() => self.rescan(),
                _ = ticker.tick() => self.rescan(),
            }
        }
    }

    fn on_notice(&mut self, notice: &Notice) {
        if notice.key.target == crate::canary::CANARY_ID {
            return;
        }
        let comm = notice.comm.split(|&b| b == 0).next().unwrap_or_default();
        let comm = String::from_utf8_lossy(comm);
        if notice.key.key_kind == probe_common::config::key_kind::CGROUP && !self.node.knows_cgroup(notice.key.key_id) {
            // Possibly a container that appeared since the last scan.
            self.rescan_cgroups();
        }
        tracing::debug!(cgroup = notice.key.key_id, kind = notice.key.kind, tgid = notice.tgid, comm = %comm, "first seen");
        self.node.note_process(notice.key.key_id, &comm);
    }

    fn rescan(&mut self) {
        self.rescan_mounts();
        self.rescan_cgroups();
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
            entries.iter().filter_map(|e| mountinfo::projected_volume(e, &self.config.kubelet_dir)).collect();
        let changes = self.node.sync_mounts(&mounts, |m| holds_token(Path::new(&m.mount_point)), clock::boot_ns());
        for dev in changes.removed {
            match self.probe.volumes.remove(&dev) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => tracing::warn!(dev, error = %e, "cannot remove a volume from the kernel map"),
            }
        }
        for (dev, id) in changes.added {
            match self.probe.volumes.insert(dev, VolumeValue { id, flags: 0 }, 0) {
                Ok(()) => {
                    self.node.set_watched_since(id, clock::boot_ns());
                    tracing::info!(dev, volume = id, "watching volume");
                }
                Err(e) => {
                    tracing::error!(dev, error = %e, "cannot watch a volume (volume map full?); it is retried on the next rescan");
                    self.node.forget_volume(id);
                }
            }
        }
    }

    fn rescan_cgroups(&mut self) {
        let found = cgroup::scan(&self.cgroup_root);
        let root = self.cgroup_root.clone();
        let gone = self.node.sync_cgroups(&found, |path| oldest_start(&root, path));
        if gone.is_empty() {
            return;
        }
        let gone: HashSet<u64> = gone.into_iter().collect();
        match self.store.retire(&mut self.probe.counters, &gone) {
            Ok(n) => tracing::debug!(counters = n, "retired counters of containers that are gone"),
            Err(e) => tracing::warn!(error = %e, "cannot retire counters"),
        }
    }

    fn evidence(&self) -> Evidence {
        let live = counters::read_live(&self.probe.counters).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the counters map");
            std::collections::HashMap::new()
        });
        let all = self.store.merged(live);
        let stats = self.probe.stats().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the statistics map");
            [0; stats::LEN as usize]
        });
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
                drops: stats[stats::NOTICE_DROPS as usize],
                map_full: stats[stats::COUNTER_MAP_FULL as usize],
            },
            containers: self.node.container_evidence(&all, &self.clock),
            volumes: self.node.volume_evidence(&self.clock),
        }
    }
}

/// Whether a projected volume holds a `token` (checked without opening it).
fn holds_token(mount_point: &Path) -> bool {
    std::fs::symlink_metadata(mount_point.join("token")).is_ok()
}

/// Start of the oldest process in a container cgroup and below.
fn oldest_start(root: &Path, cgroup_path: &str) -> Option<u64> {
    let dir = root.join(cgroup_path.trim_start_matches('/'));
    cgroup::pids(&dir).into_iter().filter_map(clock::process_start_boot_ns).min()
}
