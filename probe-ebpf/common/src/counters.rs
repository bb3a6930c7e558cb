//! In-kernel counters: one entry per (container key, target, kind, session).

/// What was done.
pub mod kind {
    /// Opened `token` in a watched volume.
    pub const READ_TOKEN: u32 = 1;
    /// Opened `ca.crt` in a watched volume.
    pub const READ_CA_CRT: u32 = 2;
    /// Opened `namespace` in a watched volume.
    pub const READ_NAMESPACE: u32 = 3;
    /// Opened any other file in a watched volume.
    pub const READ_OTHER: u32 = 4;
    /// Connected to an API server target.
    pub const API_CONNECT: u32 = 5;
    /// Failed (`-ENOENT`) open of a default token path (the `verify` detector).
    pub const MISSING_TOKEN: u32 = 6;

    /// Whether `kind` is one of the file-read kinds.
    #[must_use]
    pub const fn is_read(kind: u32) -> bool {
        kind >= READ_TOKEN && kind <= READ_OTHER
    }
}

/// Who did it.
pub mod session {
    /// The container's own processes.
    pub const APP: u32 = 0;
    /// A process that entered the container from outside (`kubectl exec`/`cp`) or its children.
    pub const EXEC: u32 = 1;
}

/// Key of the counters hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountKey {
    /// One of [`crate::config::key_kind`].
    pub key_kind: u32,
    /// One of [`session`].
    pub session: u32,
    /// The cgroup id or mount-namespace inode.
    pub key_id: u64,
    /// The volume id (reads), target id (connects) or 0 (missing token).
    pub target: u32,
    /// One of [`kind`].
    pub kind: u32,
}

/// Value of the counters hash map. Times are `bpf_ktime_get_boot_ns()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountValue {
    pub count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}
