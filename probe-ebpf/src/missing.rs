//! The `verify` detector: failed (`-ENOENT`) opens and lookups (`stat`, `access`, … — clients
//! that only look) of the default token paths, by containers
//! whose token was turned off. A missing file has no inode, so this one needs the path: the
//! syscall-entry program checks the path string and remembers the thread; the exit program
//! counts it when the open failed with `ENOENT`. It costs every open, so the agent attaches it
//! only when asked (`--detect-missing-token`).

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use probe_common::{config::SYS_EXIT_RET_OFFSET, counters::kind};

use crate::{
    maps::{TP_PENDING_OPENS, config},
    record::count,
};

const ENOENT: i64 = 2;
const VAR_RUN: &[u8] = b"/var/run/secrets/kubernetes.io/serviceaccount/";
const RUN: &[u8] = b"/run/secrets/kubernetes.io/serviceaccount/";

/// Offset of `filename` in `sys_enter_openat`/`openat2` and in `sys_enter_open` records.
const FILENAME_AT: usize = 24;
const FILENAME_OPEN: usize = 16;

#[inline(always)]
fn starts_with(path: &[u8], prefix: &[u8]) -> bool {
    if path.len() < prefix.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if path[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[inline(always)]
fn on_enter(ctx: &TracePointContext, filename_offset: usize) {
    if config!(missing_token) == 0 {
        return;
    }
    // SAFETY: `filename` is a user pointer in the record at an offset checked against the
    // tracepoint's format by the agent; the string is read with the user-string helper.
    let Ok(filename) = (unsafe { ctx.read_at::<*const u8>(filename_offset) }) else { return };
    let mut buf = [0u8; 64];
    // SAFETY: as above.
    let Ok(path) = (unsafe { bpf_probe_read_user_str_bytes(filename, &mut buf) }) else { return };
    if starts_with(path, VAR_RUN) || starts_with(path, RUN) {
        TP_PENDING_OPENS.insert(bpf_get_current_pid_tgid(), 1, 0).ok();
    }
}

/// `syscalls/sys_enter_openat` and `sys_enter_openat2`.
#[tracepoint]
pub fn tp_missing_enter_at(ctx: TracePointContext) -> u32 {
    on_enter(&ctx, FILENAME_AT);
    0
}

/// `syscalls/sys_enter_open`.
#[tracepoint]
pub fn tp_missing_enter_open(ctx: TracePointContext) -> u32 {
    on_enter(&ctx, FILENAME_OPEN);
    0
}

/// `syscalls/sys_exit_{openat,openat2,open}`: counts the remembered opens that failed with
/// `ENOENT`.
#[tracepoint]
pub fn tp_missing_exit(ctx: TracePointContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    if TP_PENDING_OPENS.get_ptr(key).is_none() {
        return 0;
    }
    TP_PENDING_OPENS.remove(key).ok();
    // SAFETY: a direct context load at the offset the agent verified (see file.rs).
    #[expect(clippy::cast_ptr_alignment, reason = "`ret` sits at an 8-byte aligned offset of the record")]
    let ret = unsafe { *ctx.as_ptr().cast::<u8>().add(SYS_EXIT_RET_OFFSET).cast::<i64>() };
    if ret == -ENOENT {
        // SAFETY: counting reads only the current task.
        unsafe { count(&ctx, 0, kind::MISSING_TOKEN) };
    }
    0
}
