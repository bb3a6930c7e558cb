//! Container cgroups as they are created and removed (see `probe_common::cgroups`).

use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, bpf_probe_read_kernel_str_bytes},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use probe_common::{
    cgroups::{CgroupEvent, kind},
    stats,
};

use crate::{
    kernel::{read, read_ptr},
    maps::{TP_CGROUP_EVENTS, bump_stat, config},
};

/// `cgroup_mkdir(struct cgroup *cgrp, const char *path)`
#[raw_tracepoint(tracepoint = "cgroup_mkdir")]
pub fn tp_cgroup_mkdir(ctx: RawTracePointContext) -> i32 {
    let cgroup: *const u8 = ctx.arg(0);
    let path: *const u8 = ctx.arg(1);
    // SAFETY: probe reads of the tracepoint's kernel pointers.
    unsafe { report(cgroup, path, kind::CREATED) };
    0
}

/// `cgroup_rmdir(struct cgroup *cgrp, const char *path)`
#[raw_tracepoint(tracepoint = "cgroup_rmdir")]
pub fn tp_cgroup_rmdir(ctx: RawTracePointContext) -> i32 {
    let cgroup: *const u8 = ctx.arg(0);
    let path: *const u8 = ctx.arg(1);
    // SAFETY: as above.
    unsafe { report(cgroup, path, kind::REMOVED) };
    0
}

#[inline(always)]
unsafe fn report(cgroup: *const u8, path: *const u8, what: u32) -> Option<()> {
    let root = read_ptr(cgroup, config!(offsets.cgroup_root))?;
    let hierarchy: u32 = read(root, config!(offsets.root_hierarchy_id))?;
    if hierarchy != config!(exec_hierarchy) {
        return None;
    }
    let kn = read_ptr(cgroup, config!(offsets.cgroup_kn))?;
    let id: u64 = read(kn, config!(offsets.kn_id))?;
    let Some(mut entry) = TP_CGROUP_EVENTS.reserve::<CgroupEvent>(0) else {
        bump_stat(stats::CGROUP_EVENT_DROPS);
        return None;
    };
    let event = entry.as_mut_ptr();
    (*event).id = id;
    (*event).ts_ns = bpf_ktime_get_boot_ns();
    (*event).hierarchy = hierarchy;
    (*event).kind = what;
    (*event).reserved = 0;
    let len = if let Ok(bytes) = bpf_probe_read_kernel_str_bytes(path, &mut (*event).path) {
        bytes.len() as u32
    } else {
        // Reported like a lost event: the agent finds the container by its scans then.
        bump_stat(stats::CGROUP_EVENT_DROPS);
        0
    };
    (*event).path_len = len;
    entry.submit(0);
    None
}
