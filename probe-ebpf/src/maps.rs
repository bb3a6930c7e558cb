//! Map definitions. Each static is named exactly like its constant in `probe_common::maps`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use probe_common::{
    config::Config,
    counters::{CountKey, CountValue},
    maps as m,
    targets::{TargetKey, TargetValue},
    volumes::VolumeValue,
};

#[map]
pub static TP_VOLUMES: HashMap<u32, VolumeValue> = HashMap::with_max_entries(m::VOLUMES_MAX, 0);

#[map]
pub static TP_TARGETS: HashMap<TargetKey, TargetValue> = HashMap::with_max_entries(m::TARGETS_MAX, 0);

#[map]
pub static TP_COUNTERS: HashMap<CountKey, CountValue> = HashMap::with_max_entries(m::COUNTERS_MAX, 0);

#[map]
pub static TP_NOTICES: RingBuf = RingBuf::with_byte_size(m::NOTICES_BYTES, 0);

#[map]
pub static TP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(probe_common::stats::LEN, 0);

#[map]
pub static TP_EXEC_TASKS: HashMap<u32, u32> = HashMap::with_max_entries(m::EXEC_TASKS_MAX, 0);

#[map]
pub static TP_PENDING_OPENS: HashMap<u64, u32> = HashMap::with_max_entries(m::PENDING_OPENS_MAX, 0);

#[map]
pub static TP_VOLUME_BITS: Array<u64> = Array::with_max_entries(probe_common::volumes::BITMAP_WORDS + 1, 0);

#[map]
pub static TP_PORT_BITS: Array<u64> = Array::with_max_entries(probe_common::targets::PORT_WORDS, 0);

#[map]
pub static TP_CGROUP_EVENTS: RingBuf = RingBuf::with_byte_size(m::CGROUP_EVENTS_BYTES, 0);

#[map]
pub static TP_CGROUPS_SEEN: HashMap<m::CgroupRef, u32> = HashMap::with_max_entries(m::CGROUPS_SEEN_MAX, 0);

/// Load-time configuration, patched by the agent (`probe_common::config::GLOBAL`).
#[unsafe(no_mangle)]
pub static TP_CONFIG: Config = Config {
    key_kind: probe_common::config::key_kind::CGROUP,
    exec_tracking: 0,
    missing_token: 0,
    exec_hierarchy: 0,
    offsets: probe_common::config::Offsets {
        task_files: 0,
        files_fdt: 0,
        fdt_max_fds: 0,
        fdt_fd: 0,
        file_f_inode: 0,
        file_f_flags: 0,
        file_f_path_dentry: 0,
        inode_i_sb: 0,
        inode_i_mode: 0,
        sb_s_dev: 0,
        dentry_d_name_name: 0,
        task_nsproxy: 0,
        nsproxy_mnt_ns: 0,
        mnt_ns_inum: 0,
        task_tgid: 0,
        task_pid: 0,
        cgroup_kn: 0,
        kn_id: 0,
        cgroup_root: 0,
        root_hierarchy_id: 0,
        regs_orig_ax: 0,
        files_fd_array: 0,
    },
};

/// Reads one field of [`TP_CONFIG`] without letting the compiler fold the zero default in.
macro_rules! config {
    ($($field:ident).+) => {
        // SAFETY: TP_CONFIG is a plain static; the volatile read keeps the loader-patched value.
        unsafe { core::ptr::read_volatile(&raw const $crate::maps::TP_CONFIG.$($field).+) }
    };
}
pub(crate) use config;

/// Adds one to a per-CPU statistics slot.
#[inline(always)]
pub fn bump_stat(index: u32) {
    if let Some(slot) = TP_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *slot += 1 };
    }
}
