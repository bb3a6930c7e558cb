//! The agent: programs attached, volumes and containers followed, evidence on demand. Used by
//! `probe-agent watch` (standalone) and `probe-agent run` (which feeds it pod metadata and API
//! server addresses). One task owns all state; the ring-buffer reader, the log forwarder and
//! the mount watcher feed it through channels; callers talk to it through an [`AgentHandle`].

pub mod keying;
mod persist;
mod state;
mod tasks;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

pub use self::keying::ContainerKeyMode;
pub use self::state::MAX_GAPS;
use self::state::State;
use crate::{
    evidence::Evidence,
    k8s::podinfo::PodInfo,
    mountinfo,
    probe::{ConnectHook, FileHook, Probe, ProbeError, ProbeOptions, bump_memlock, check_btf},
};

/// `RuntimeClass` names sandboxed runtimes are usually installed under.
pub const DEFAULT_SANDBOXED: [&str; 7] =
    ["gvisor", "runsc", "kata", "kata-qemu", "kata-clh", "kata-fc", "kata-dragonball"];

/// What the agent needs to know.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub node_name: String,
    pub kubelet_dir: PathBuf,
    /// API server addresses always watched (`--api-endpoint`), besides those `run` finds.
    pub api_endpoints: Vec<SocketAddr>,
    pub file_hook: FileHook,
    pub connect_hook: ConnectHook,
    /// The host's mount table (`/proc/1/mountinfo` with hostPID).
    pub mountinfo: PathBuf,
    /// The host's cgroup v2 mount; found in `mountinfo` when `None`.
    pub cgroup_root: Option<PathBuf>,
    /// How containers are keyed in the kernel.
    pub container_key: ContainerKeyMode,
    /// The cgroup v1 hierarchy to find containers in when keying by mount namespace (default:
    /// the first one holding kubepods cgroups).
    pub cgroup_v1_root: Option<PathBuf>,
    pub btf_path: PathBuf,
    /// How often the whole node is rescanned; containers and volumes are followed by events in
    /// between (every 2 s at most, or this if shorter, when events are not available).
    pub rescan_interval: Duration,
    /// Entries of the in-kernel counters map.
    pub counters_capacity: u32,
    /// Entries of the in-kernel connect-target map.
    pub targets_capacity: u32,
    /// Tell exec sessions apart from the application.
    pub exec_tracking: bool,
    /// Count failed opens of the default token paths (`verify` during a migration).
    pub missing_token: bool,
    /// Where the evidence is persisted across restarts (`None`: not persisted).
    pub state_dir: Option<PathBuf>,
    /// How often the state is saved (also at stop).
    pub save_interval: Duration,
    /// Containers gone longer than this are folded into per-workload totals.
    pub retention: Duration,
    /// How often `run` publishes (recorded in the evidence; `None` standalone).
    pub publish_interval: Option<Duration>,
    /// `RuntimeClass` names of sandboxed runtimes (gVisor, Kata): their pods' file access never
    /// reaches the host kernel's view, so their containers are reported uncovered.
    pub sandboxed_runtime_classes: Vec<String>,
    /// How the `tracepoint` file-open mode may attach, best first (the benchmark pins one).
    pub tracepoint_variants: Vec<crate::probe::TracepointVariant>,
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
            container_key: ContainerKeyMode::Auto,
            cgroup_v1_root: None,
            btf_path: PathBuf::from("/sys/kernel/btf/vmlinux"),
            rescan_interval: Duration::from_secs(30),
            counters_capacity: probe_common::maps::COUNTERS_MAX,
            targets_capacity: probe_common::maps::TARGETS_MAX,
            exec_tracking: true,
            missing_token: false,
            state_dir: None,
            save_interval: Duration::from_secs(30),
            retention: Duration::from_hours(24),
            publish_interval: None,
            sandboxed_runtime_classes: DEFAULT_SANDBOXED.iter().map(|s| (*s).to_owned()).collect(),
            tracepoint_variants: vec![
                crate::probe::TracepointVariant::RawSysExit,
                crate::probe::TracepointVariant::PerSyscall,
            ],
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
    #[error("no cgroup v2 mount in {path}: the cgroup connect mode attaches to the host's cgroup v2 root")]
    NoCgroup2 { path: PathBuf },
    #[error("cannot key containers: {0}")]
    Keying(String),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("cannot watch the notice ring buffer")]
    RingBuf(#[source] std::io::Error),
    #[error("the agent task has stopped")]
    Stopped,
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
}

/// A change of a pod on this node (`run` mode).
#[derive(Debug, Clone)]
pub enum PodEvent {
    Upsert(Box<PodInfo>),
    /// The pod was deleted (its containers stay in the evidence until retired).
    Delete(String),
}

/// Live numbers for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub file_mode: Option<String>,
    pub connect_mode: Option<String>,
    pub exec_tracking: bool,
    /// Indexed by `probe_common::stats`.
    pub stats: Vec<u64>,
    pub counters_used: usize,
    pub counters_capacity: u32,
    pub containers: usize,
    pub volumes: usize,
    pub targets: usize,
    pub targets_not_watched: usize,
    pub state_save_errors: u64,
    /// Rescans of the whole node (mount table and cgroup tree): rare while changes are
    /// followed by events.
    pub full_rescans: u64,
}

enum Command {
    Snapshot(oneshot::Sender<Evidence>),
    Metrics(oneshot::Sender<Metrics>),
    Pod(PodEvent),
    Targets(Vec<SocketAddr>, oneshot::Sender<Vec<String>>),
    Stop(oneshot::Sender<Evidence>),
}

/// A cheap, cloneable way to talk to the agent.
#[derive(Clone)]
pub struct AgentHandle {
    commands: mpsc::Sender<Command>,
}

impl AgentHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, WatchError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| WatchError::Stopped)?;
        rx.await.map_err(|_| WatchError::Stopped)
    }

    /// Rescans mounts and cgroups and returns the evidence so far.
    ///
    /// # Errors
    /// [`WatchError::Stopped`] if the agent task ended.
    pub async fn snapshot(&self) -> Result<Evidence, WatchError> {
        self.ask(Command::Snapshot).await
    }

    /// Numbers for `/metrics`.
    ///
    /// # Errors
    /// [`WatchError::Stopped`] if the agent task ended.
    pub async fn metrics(&self) -> Result<Metrics, WatchError> {
        self.ask(Command::Metrics).await
    }

    /// Tells the agent about a pod on its node.
    ///
    /// # Errors
    /// [`WatchError::Stopped`] if the agent task ended.
    pub async fn pod(&self, event: PodEvent) -> Result<(), WatchError> {
        self.commands.send(Command::Pod(event)).await.map_err(|_| WatchError::Stopped)
    }

    /// Replaces the API server addresses found in the cluster (the configured ones stay).
    /// Returns the addresses that could not be watched (target map full).
    ///
    /// # Errors
    /// [`WatchError::Stopped`] if the agent task ended.
    pub async fn set_targets(&self, targets: Vec<SocketAddr>) -> Result<Vec<String>, WatchError> {
        self.ask(|tx| Command::Targets(targets, tx)).await
    }
}

/// A running agent.
pub struct Agent {
    handle: AgentHandle,
    task: JoinHandle<()>,
    helpers: Vec<JoinHandle<()>>,
    /// Tells the kernel-log forwarder to flush once more and end.
    logs_done: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Agent {
    /// Loads and attaches the programs (ring-buffer reader first), fills the target map, loads
    /// saved state, scans volumes and containers once and starts following them.
    ///
    /// # Errors
    /// Anything that keeps the agent from measuring: BTF, the mount table, no cgroup v2, no
    /// attachable mode for a detector.
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
        let keying =
            keying::choose(config.container_key, &entries, Some(&cgroup_root), config.cgroup_v1_root.as_deref())
                .map_err(WatchError::Keying)?;
        let mut options = ProbeOptions::new(cgroup_root);
        options.file_hook = config.file_hook;
        options.connect_hook = config.connect_hook;
        options.key_kind = match keying.kind {
            crate::evidence::KeyKind::Cgroup => probe_common::config::key_kind::CGROUP,
            crate::evidence::KeyKind::MountNs => probe_common::config::key_kind::MOUNT_NS,
        };
        options.btf_path.clone_from(&config.btf_path);
        options.counters_capacity = config.counters_capacity;
        options.targets_capacity = config.targets_capacity;
        options.exec_tracking = config.exec_tracking;
        options.exec_hierarchy = keying.hierarchy;
        options.missing_token = config.missing_token;
        options.tracepoint_variants.clone_from(&config.tracepoint_variants);
        let mut probe = Probe::load(options)?;

        // Readers first, so no early notice or log line is lost (the state owner reads the
        // notice ring itself, so a snapshot can drain it first).
        let ring = probe.take_notices().ok_or(WatchError::Stopped)?;
        let ring = tasks::register_ring(ring).map_err(WatchError::RingBuf)?;
        let cgroup_events = match probe.take_cgroup_events().map(tasks::register_ring).transpose() {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the created-cgroup ring buffer; containers are found by scans only");
                None
            }
        };
        let mut helpers = Vec::new();
        let logs_done = probe.take_logger().map(|logger| {
            let (tx, rx) = oneshot::channel();
            (tx, tokio::spawn(tasks::forward_kernel_logs(logger, rx)))
        });
        let (mount_tx, mount_rx) = mpsc::channel(1);
        helpers.push(tokio::spawn(tasks::watch_mounts(config.mountinfo.clone(), mount_tx)));

        probe.attach()?;
        let mut state = State::new(probe, ring, cgroup_events, keying, config);
        state.start();
        let (commands, command_rx) = mpsc::channel(64);
        let task = tokio::spawn(state.run(command_rx, mount_rx));
        Ok(Self { handle: AgentHandle { commands }, task, helpers, logs_done })
    }

    /// A handle to talk to the agent.
    #[must_use]
    pub fn handle(&self) -> AgentHandle {
        self.handle.clone()
    }

    /// See [`AgentHandle::snapshot`].
    ///
    /// # Errors
    /// [`WatchError::Stopped`] if the agent task ended.
    pub async fn snapshot(&self) -> Result<Evidence, WatchError> {
        self.handle.snapshot().await
    }

    /// Stops the agent (state saved, programs detached) and returns the final evidence.
    ///
    /// # Errors
    /// [`WatchError::Stopped`] if the agent task had already ended.
    pub async fn stop(self) -> Result<Evidence, WatchError> {
        let evidence = self.handle.ask(Command::Stop).await?;
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
