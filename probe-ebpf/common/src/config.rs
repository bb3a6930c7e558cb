//! The `.rodata` configuration the agent writes into the object before loading it.
//!
//! rustc and bpf-linker emit no CO-RE relocations, so every kernel struct offset the programs
//! need is resolved by the agent from the running kernel's BTF and patched in here.

/// Name of the global (in `.rodata`) that holds a [`Config`].
pub const GLOBAL: &str = "TP_CONFIG";

/// What identifies a container in counters and notices.
pub mod key_kind {
    /// The cgroup v2 id of the task (`bpf_get_current_cgroup_id()`, the cgroup directory's inode).
    pub const CGROUP: u32 = 1;
    /// The inode of the task's mount namespace (`task->nsproxy->mnt_ns->ns.inum`), for nodes
    /// whose containers do not each have a cgroup v2 group of their own.
    pub const MOUNT_NS: u32 = 2;
}

/// Load-time configuration of the kernel programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// One of [`key_kind`].
    pub key_kind: u32,
    /// Non-zero: attribute tasks marked in the exec-session map to [`crate::counters::session::EXEC`].
    pub exec_tracking: u32,
    /// Non-zero: count failed opens of the default token paths (the `verify` detector).
    pub missing_token: u32,
    /// The cgroup hierarchy that holds the containers, whose attach events mark exec sessions
    /// and whose created cgroups are reported: 0 is cgroup v2; a cgroup v1 hierarchy id on nodes
    /// keyed by mount namespace.
    pub exec_hierarchy: u32,
    pub offsets: Offsets,
}

/// Byte offsets of the kernel struct members the programs read, from the running kernel's BTF.
///
/// Composite paths (`f_path.dentry`) are pre-added by the agent, so each program step is one
/// read at one offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    /// `task_struct.files`
    pub task_files: u32,
    /// `files_struct.fdt`
    pub files_fdt: u32,
    /// `fdtable.max_fds`
    pub fdt_max_fds: u32,
    /// `fdtable.fd`
    pub fdt_fd: u32,
    /// `file.f_inode`
    pub file_f_inode: u32,
    /// `file.f_flags`
    pub file_f_flags: u32,
    /// `file.f_path.dentry`
    pub file_f_path_dentry: u32,
    /// `inode.i_sb`
    pub inode_i_sb: u32,
    /// `inode.i_mode`
    pub inode_i_mode: u32,
    /// `super_block.s_dev`
    pub sb_s_dev: u32,
    /// `dentry.d_name.name`
    pub dentry_d_name_name: u32,
    /// `task_struct.nsproxy`
    pub task_nsproxy: u32,
    /// `nsproxy.mnt_ns`
    pub nsproxy_mnt_ns: u32,
    /// `mnt_namespace.ns.inum`
    pub mnt_ns_inum: u32,
    /// `task_struct.tgid`
    pub task_tgid: u32,
    /// `task_struct.pid`
    pub task_pid: u32,
    /// `cgroup.kn`
    pub cgroup_kn: u32,
    /// `kernfs_node.id`
    pub kn_id: u32,
    /// `cgroup.root`
    pub cgroup_root: u32,
    /// `cgroup_root.hierarchy_id`
    pub root_hierarchy_id: u32,
    /// `pt_regs.orig_ax`: the syscall number at `sys_exit` (`x86_64`); [`Offsets::ABSENT`] where
    /// the kernel has no such member (the `sys_exit` program is then not used).
    pub regs_orig_ax: u32,
    /// `files_struct.fd_array`: the embedded table of the first [`FD_ARRAY_LEN`] descriptors.
    pub files_fd_array: u32,
}

impl Offsets {
    /// Number of `u32` fields, for the layout assertion.
    pub const FIELDS: usize = 22;
    /// An offset the running kernel's BTF does not have.
    pub const ABSENT: u32 = u32::MAX;
}

/// `NR_OPEN_DEFAULT`: descriptors below it live in `files_struct.fd_array` until the table grows.
pub const FD_ARRAY_LEN: u32 = 64;

/// `x86_64` syscall numbers of the calls that open a file (the `sys_exit` file-open program
/// resolves their returned fd).
pub mod syscalls {
    pub const OPEN: u64 = 2;
    pub const CREAT: u64 = 85;
    pub const OPENAT: u64 = 257;
    pub const OPEN_BY_HANDLE_AT: u64 = 304;
    pub const OPENAT2: u64 = 437;
}

/// `O_PATH` on every architecture tokenprobe builds for (`x86_64`, aarch64).
pub const O_PATH: u32 = 0o10_000_000;
/// `S_IFMT` and `S_IFDIR` of `inode.i_mode`.
pub const S_IFMT: u16 = 0o170_000;
pub const S_IFDIR: u16 = 0o040_000;

/// Offset of `ret` in every `syscalls/sys_exit_*` tracepoint record (checked by the agent
/// against the tracepoint's `format` before it attaches).
pub const SYS_EXIT_RET_OFFSET: usize = 16;
