//! Exec sessions: processes that entered a container from outside (`kubectl exec`/`cp`, a
//! runtime's exec) and their descendants are not the application.
//!
//! A container's first process (its init) is the first task to join the container's cgroup;
//! every later task that *joins* it came from outside (the application's own children are
//! forked inside and never join). So, on `cgroup_attach_task`: the first join of a cgroup is
//! remembered in `TP_CGROUPS_SEEN`; a join of a cgroup seen before marks the joining process
//! in `TP_EXEC_TASKS`. Marks are inherited on fork and dropped on exit. The agent pre-marks
//! cgroups that were already populated when it started. Raw tracepoints: no tracefs needed.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use probe_common::{maps::CgroupRef, stats};

use crate::{
    kernel::{read, read_ptr},
    maps::{TP_CGROUPS_SEEN, TP_EXEC_TASKS, bump_stat, config},
};

const BPF_NOEXIST: u64 = 1;

/// `cgroup_attach_task(struct cgroup *dst_cgrp, const char *path, struct task_struct *task, bool threadgroup)`
#[raw_tracepoint(tracepoint = "cgroup_attach_task")]
pub fn tp_exec_attach(ctx: RawTracePointContext) -> i32 {
    let cgroup: *const u8 = ctx.arg(0);
    let task: *const u8 = ctx.arg(2);
    // SAFETY: probe reads of the tracepoint's kernel pointers.
    unsafe { on_attach(cgroup, task) };
    0
}

#[inline(always)]
unsafe fn on_attach(cgroup: *const u8, task: *const u8) -> Option<()> {
    if config!(exec_tracking) == 0 {
        return None;
    }
    let root = read_ptr(cgroup, config!(offsets.cgroup_root))?;
    let hierarchy: u32 = read(root, config!(offsets.root_hierarchy_id))?;
    if hierarchy != config!(exec_hierarchy) {
        return None;
    }
    let kn = read_ptr(cgroup, config!(offsets.cgroup_kn))?;
    let id: u64 = read(kn, config!(offsets.kn_id))?;
    let key = CgroupRef { hierarchy, reserved: 0, id };
    if TP_CGROUPS_SEEN.get_ptr(key).is_none() {
        // The cgroup's first process: the container's init, the application.
        if TP_CGROUPS_SEEN.insert(key, 1, BPF_NOEXIST).is_err() {
            bump_stat(stats::EXEC_MAP_FULL);
        }
        return None;
    }
    let tgid: u32 = read(task, config!(offsets.task_tgid))?;
    mark(tgid);
    None
}

#[inline(always)]
fn mark(tgid: u32) {
    match TP_EXEC_TASKS.insert(tgid, 1, 0) {
        Ok(()) => bump_stat(stats::EXEC_MARKED),
        Err(_) => bump_stat(stats::EXEC_MAP_FULL),
    }
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`: children of an
/// exec session belong to it.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn tp_exec_fork(ctx: RawTracePointContext) -> i32 {
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    // SAFETY: probe reads of the tracepoint's kernel pointers.
    unsafe { on_fork(parent, child) };
    0
}

#[inline(always)]
unsafe fn on_fork(parent: *const u8, child: *const u8) -> Option<()> {
    if config!(exec_tracking) == 0 {
        return None;
    }
    let parent_tgid: u32 = read(parent, config!(offsets.task_tgid))?;
    TP_EXEC_TASKS.get_ptr(parent_tgid)?;
    let child_tgid: u32 = read(child, config!(offsets.task_tgid))?;
    if child_tgid != parent_tgid {
        mark(child_tgid);
    }
    None
}

/// `sched_process_exit(struct task_struct *p, …)`: a process's mark goes with its leader.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn tp_exec_exit(ctx: RawTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    // SAFETY: probe reads of the tracepoint's kernel pointers.
    unsafe { on_exit(task) };
    0
}

#[inline(always)]
unsafe fn on_exit(task: *const u8) -> Option<()> {
    if config!(exec_tracking) == 0 {
        return None;
    }
    let pid: u32 = read(task, config!(offsets.task_pid))?;
    let tgid: u32 = read(task, config!(offsets.task_tgid))?;
    if pid == tgid {
        // Absent keys are the common case; nothing to count.
        TP_EXEC_TASKS.remove(tgid).ok();
    }
    None
}
