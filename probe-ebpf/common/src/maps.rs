//! Map names and sizes, shared so `take_map` cannot drift from the kernel side.
//!
//! The kernel side names its statics exactly like these constants (aya's `#[map]` uses the
//! static's name), and a test in the agent checks that the object defines each of them.

/// `HashMap<u32 /* kernel s_dev */, VolumeValue>`: the watched projected volumes.
pub const VOLUMES: &str = "TP_VOLUMES";
/// `HashMap<TargetKey, TargetValue>`: API server addresses.
pub const TARGETS: &str = "TP_TARGETS";
/// `HashMap<CountKey, CountValue>`: the counters.
pub const COUNTERS: &str = "TP_COUNTERS";
/// `RingBuf` of [`crate::notice::Notice`]: "first time this counter key was seen".
pub const NOTICES: &str = "TP_NOTICES";
/// `PerCpuArray<u64>` indexed by [`crate::stats`].
pub const STATS: &str = "TP_STATS";
/// `HashMap<u32 /* tgid */, u32 /* flags */>`: processes in exec sessions.
pub const EXEC_TASKS: &str = "TP_EXEC_TASKS";
/// `HashMap<CgroupRef, u32>`: cgroups that already had a process join them. The first process
/// to join a container's cgroup is its init; later ones entered from outside (exec sessions).
pub const CGROUPS_SEEN: &str = "TP_CGROUPS_SEEN";

/// `HashMap<u64 /* pid_tgid */, u32>`: opens of a default token path in flight (the
/// missing-token detector).
pub const PENDING_OPENS: &str = "TP_PENDING_OPENS";
/// `RingBuf` of [`crate::cgroups::CgroupEvent`]: container cgroups as they are created.
pub const CGROUP_EVENTS: &str = "TP_CGROUP_EVENTS";
/// `Array<u64>` of [`crate::volumes::BITMAP_WORDS`] + 1: the minors of watched volumes, checked
/// before any hash lookup (an inlined array lookup rejects nearly every open), then
/// [`crate::volumes::OTHER_DEVICES`].
pub const VOLUME_BITS: &str = "TP_VOLUME_BITS";
/// `Array<u64>` of [`crate::targets::PORT_WORDS`]: the ports of watched targets.
pub const PORT_BITS: &str = "TP_PORT_BITS";
/// `RingBuf` of [`crate::bench::PathEvent`]: in the benchmark's own object only (the
/// path-streaming baseline), never in the agent's.
pub const BENCH_PATHS: &str = "TP_BENCH_PATHS";

/// Every map the object defines.
pub const ALL: [&str; 11] = [
    VOLUMES,
    TARGETS,
    COUNTERS,
    NOTICES,
    STATS,
    EXEC_TASKS,
    CGROUPS_SEEN,
    PENDING_OPENS,
    CGROUP_EVENTS,
    VOLUME_BITS,
    PORT_BITS,
];

pub const VOLUMES_MAX: u32 = 8192;
pub const TARGETS_MAX: u32 = 256;
pub const COUNTERS_MAX: u32 = 32768;
pub const NOTICES_BYTES: u32 = 256 * 1024;
pub const EXEC_TASKS_MAX: u32 = 16384;
pub const CGROUPS_SEEN_MAX: u32 = 16384;
pub const PENDING_OPENS_MAX: u32 = 4096;
pub const CGROUP_EVENTS_BYTES: u32 = 64 * 1024;
pub const BENCH_PATHS_BYTES: u32 = 4 * 1024 * 1024;

/// Key of [`CGROUPS_SEEN`]: a cgroup in a hierarchy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CgroupRef {
    /// `cgroup_root.hierarchy_id` (0: cgroup v2).
    pub hierarchy: u32,
    /// Explicit padding; always zero.
    pub reserved: u32,
    /// The cgroup id (its kernfs node id: the directory's inode on 64-bit hosts).
    pub id: u64,
}
