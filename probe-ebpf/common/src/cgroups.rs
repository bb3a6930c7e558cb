//! Container cgroups as they are created and removed: the `cgroup_mkdir` and `cgroup_rmdir` raw
//! tracepoints report every cgroup made or removed in the hierarchy that holds the containers,
//! with its path, so the agent records a container the moment it exists — an init container or
//! a fast job that lives 100 ms comes and goes between two scans of the cgroup tree — and follows
//! containers without walking the tree every few seconds.

/// Longest cgroup path carried (kubepods paths are about 250 bytes; longer ones are cut and
/// the agent falls back to its scans for them).
pub const PATH_MAX: usize = 512;

/// [`CgroupEvent::kind`] values.
pub mod kind {
    pub const CREATED: u32 = 0;
    pub const REMOVED: u32 = 1;
}

/// A cgroup created or removed in the containers' hierarchy.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupEvent {
    /// The cgroup id (kernfs node id: the directory's inode on 64-bit hosts).
    pub id: u64,
    /// `bpf_ktime_get_boot_ns()` at creation.
    pub ts_ns: u64,
    /// `cgroup_root.hierarchy_id` (0: cgroup v2).
    pub hierarchy: u32,
    /// Bytes of `path` used, without the NUL.
    pub path_len: u32,
    /// One of [`kind`].
    pub kind: u32,
    /// Explicit padding; zero.
    pub reserved: u32,
    /// The path from the hierarchy's root (`/kubepods.slice/…`), NUL-terminated.
    pub path: [u8; PATH_MAX],
}

impl Default for CgroupEvent {
    fn default() -> Self {
        Self { id: 0, ts_ns: 0, hierarchy: 0, path_len: 0, kind: kind::CREATED, reserved: 0, path: [0; PATH_MAX] }
    }
}
