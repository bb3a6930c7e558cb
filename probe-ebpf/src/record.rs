//! The one place events are counted.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_ktime_get_boot_ns,
    },
};
use aya_log_ebpf::error;
use probe_common::{
    config::key_kind,
    counters::{CountKey, CountValue, session},
    notice::Notice,
    stats,
};

use crate::{
    kernel::{read, read_ptr},
    maps::{TP_COUNTERS, TP_EXEC_TASKS, TP_NOTICES, TP_STATS, bump_stat, config},
};

const BPF_NOEXIST: u64 = 1;
const EEXIST: i64 = 17;

/// The current task's container key: its cgroup v2 id, or its mount namespace's inode.
#[inline(always)]
unsafe fn container_key() -> Option<(u32, u64)> {
    if config!(key_kind) == key_kind::MOUNT_NS {
        let task = bpf_get_current_task() as *const u8;
        let nsproxy = read_ptr(task, config!(offsets.task_nsproxy))?;
        let mnt_ns = read_ptr(nsproxy, config!(offsets.nsproxy_mnt_ns))?;
        let inum: u32 = read(mnt_ns, config!(offsets.mnt_ns_inum))?;
        Some((key_kind::MOUNT_NS, u64::from(inum)))
    } else {
        Some((key_kind::CGROUP, bpf_get_current_cgroup_id()))
    }
}

/// Whether the current process is marked as part of an exec session.
#[inline(always)]
fn current_session(tgid: u32) -> u32 {
    if config!(exec_tracking) != 0 && TP_EXEC_TASKS.get_ptr(tgid).is_some() { session::EXEC } else { session::APP }
}

/// Counts one event of `kind` against `target` for the current task's container.
#[inline(always)]
pub unsafe fn count<C: EbpfContext>(ctx: &C, target: u32, kind: u32) {
    let Some((key_kind, key_id)) = container_key() else {
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let key = CountKey { key_kind, session: current_session(tgid), key_id, target, kind };
    let now = bpf_ktime_get_boot_ns();
    bump_stat(stats::EVENTS);

    if add(&key, now) {
        return;
    }
    let value = CountValue { count: 1, first_ns: now, last_ns: now };
    match TP_COUNTERS.insert(key, value, BPF_NOEXIST) {
        Ok(()) => notice(key, pid_tgid, now),
        // Another CPU inserted the key between our lookup and insert.
        Err(err) if i64::from(err) == -EEXIST => {
            add(&key, now);
        }
        Err(_) => map_full(ctx, &key),
    }
}

/// Counts a lost event and logs it, on the 1st, 2nd, 4th, 8th… loss per CPU so a full map
/// cannot flood the log.
#[inline(always)]
fn map_full<C: EbpfContext>(ctx: &C, key: &CountKey) {
    bump_stat(stats::COUNTER_MAP_FULL);
    if let Some(lost) = TP_STATS.get_ptr(stats::COUNTER_MAP_FULL) {
        // SAFETY: per-CPU slot of this CPU.
        let lost = unsafe { *lost };
        if lost.is_power_of_two() {
            error!(
                ctx,
                "counters map full: {} events lost on this CPU (cgroup {}, kind {})", lost, key.key_id, key.kind
            );
        }
    }
}

/// Adds one to an existing counter; false when the key is not there yet.
#[inline(always)]
unsafe fn add(key: &CountKey, now: u64) -> bool {
    let Some(value) = TP_COUNTERS.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: the pointer comes from a successful lookup and stays valid for this program run.
    // The count is shared between CPUs, hence the atomic add (a BPF `lock xadd`; core's
    // `AtomicU64::fetch_add` is not available on the BPF target).
    atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*value).count, 1);
    (*value).last_ns = now;
    true
}

/// Emits the "first time this key was seen" notice, or counts its loss.
#[inline(always)]
fn notice(key: CountKey, pid_tgid: u64, now: u64) {
    let Some(mut entry) = TP_NOTICES.reserve::<Notice>(0) else {
        bump_stat(stats::NOTICE_DROPS);
        return;
    };
    let comm = bpf_get_current_comm().unwrap_or_default();
    entry.write(Notice { key, tgid: (pid_tgid >> 32) as u32, pid: pid_tgid as u32, ts_ns: now, comm });
    entry.submit(0);
}
