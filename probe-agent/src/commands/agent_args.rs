//! Options shared by `watch` and `run`.

use std::{path::PathBuf, time::Duration};

use crate::{
    cli::{parse_duration, parse_endpoint},
    probe::{ConnectHook, FileHook},
    watch::{ContainerKeyMode, WatchConfig},
};

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The kubelet's root directory.
    #[arg(long, default_value = "/var/lib/kubelet")]
    kubelet_dir: PathBuf,
    /// An API server address to count connects to (repeatable; IPv6 as [`::1`]:6443).
    #[arg(long = "api-endpoint", value_name = "ADDR:PORT", value_parser = parse_endpoint)]
    api_endpoints: Vec<std::net::SocketAddr>,
    /// File-open hook: `auto` tries lsm, fentry, kprobe, tracepoint in that order.
    #[arg(long, value_enum, default_value_t = FileHook::Auto)]
    file_hook: FileHook,
    /// API-connect hook: `auto` tries cgroup, lsm, fentry in that order.
    #[arg(long, value_enum, default_value_t = ConnectHook::Auto)]
    connect_hook: ConnectHook,
    /// How containers are told apart: cgroup v2 ids, or mount namespaces on nodes whose
    /// containers share a cgroup v2 group (cgroup v1).
    #[arg(long, value_enum, default_value_t = ContainerKeyMode::Auto)]
    container_key: ContainerKeyMode,
    /// Do not tell exec sessions (kubectl exec/cp) apart from the application.
    #[arg(long)]
    no_exec_tracking: bool,
    /// Count failed opens of the default token paths (`missingTokenOpens`, for `verify` after
    /// turning tokens off). Costs every open: enable while a migration is verified.
    #[arg(long)]
    detect_missing_token: bool,
    /// The host mount table to follow.
    #[arg(long, default_value = "/proc/1/mountinfo")]
    mountinfo: PathBuf,
    /// The host's cgroup v2 mount (default: found in the mount table).
    #[arg(long)]
    cgroup_root: Option<PathBuf>,
    /// The cgroup v1 hierarchy to find containers in with `--container-key mntns`.
    #[arg(long)]
    cgroup_v1_root: Option<PathBuf>,
    /// How often to rescan the whole node (mount table and cgroup tree). Containers and volumes
    /// are followed by kernel events and mount-table polling in between; where those are not
    /// available the node is rescanned every 2 s (or this, if shorter).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    rescan_interval: Duration,
    /// Entries of the in-kernel counters map (one per container, target and kind of event);
    /// `mapFull` in the evidence says when it was too small.
    #[arg(long, default_value_t = probe_common::maps::COUNTERS_MAX)]
    counters_capacity: u32,
    /// Entries of the in-kernel connect-target map.
    #[arg(long, default_value_t = probe_common::maps::TARGETS_MAX)]
    targets_capacity: u32,
    /// The kernel's BTF (struct offsets are read from it at load time).
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    btf_path: PathBuf,
    /// Keep the evidence across restarts in this directory.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Save the state this often (with --state-dir; also at exit). Counts since the last save
    /// are lost if the agent is killed (SIGKILL, OOM); a restart is recorded as a gap.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    save_interval: Duration,
    /// Fold containers gone longer than this into per-workload totals.
    #[arg(long, value_parser = parse_duration, default_value = "24h")]
    retention: Duration,
    /// Runtime class names of sandboxed runtimes (gVisor, Kata), comma-separated: their pods'
    /// file access never reaches the host kernel's view, so their containers are reported as not
    /// covered (`run` mode). `""` for none.
    #[arg(long, value_delimiter = ',', default_value = "gvisor,runsc,kata,kata-qemu,kata-clh,kata-fc,kata-dragonball")]
    sandboxed_runtime_class: Vec<String>,
}

impl AgentArgs {
    /// The agent configuration, for node `node_name` (`None`: the host name).
    pub fn config(self, node_name: Option<String>) -> WatchConfig {
        let mut config = WatchConfig::new(self.kubelet_dir);
        if let Some(name) = node_name {
            config.node_name = name;
        }
        config.api_endpoints = self.api_endpoints;
        config.file_hook = self.file_hook;
        config.connect_hook = self.connect_hook;
        config.container_key = self.container_key;
        config.exec_tracking = !self.no_exec_tracking;
        config.missing_token = self.detect_missing_token;
        config.mountinfo = self.mountinfo;
        config.cgroup_root = self.cgroup_root;
        config.cgroup_v1_root = self.cgroup_v1_root;
        config.rescan_interval = self.rescan_interval;
        config.counters_capacity = self.counters_capacity;
        config.targets_capacity = self.targets_capacity;
        config.state_dir = self.state_dir;
        config.save_interval = self.save_interval;
        config.btf_path = self.btf_path;
        config.retention = self.retention;
        config.sandboxed_runtime_classes = self.sandboxed_runtime_class.into_iter().filter(|c| !c.is_empty()).collect();
        config
    }
}
