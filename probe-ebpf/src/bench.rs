//! The benchmark's reference programs, in an object of their own (`cargo xtask bench`; never
//! loaded by the agent). Names fit the kernel's 15 characters, so `bpf_stats` tells them apart:
//! - empty programs on every hook tokenprobe uses: the cost of merely having a program there,
//!   the floor each mode is measured against;
//! - the design path-based detectors use: every `openat` sends its path through a ring buffer to
//!   user space, which matches it there.
#![no_std]
#![no_main]
#![expect(clippy::needless_pass_by_value, reason = "program signatures are fixed by aya's macros")]

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user_str_bytes},
    macros::{btf_tracepoint, cgroup_sock_addr, fentry, lsm, map, tracepoint},
    maps::RingBuf,
    programs::{BtfTracePointContext, FEntryContext, LsmContext, SockAddrContext, TracePointContext},
};
use probe_common::{bench::PathEvent, maps::BENCH_PATHS_BYTES};

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[map]
static TP_BENCH_PATHS: RingBuf = RingBuf::with_byte_size(BENCH_PATHS_BYTES, 0);

/// Floor of the `tracepoint` file-open mode on `sys_exit`.
#[btf_tracepoint(function = "sys_exit")]
pub fn bench_sys_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// Floor of the classic `syscalls/sys_exit_*` tracepoints.
#[tracepoint]
pub fn bench_tp_exit(_ctx: TracePointContext) -> u32 {
    0
}

/// Floor of the `cgroup` connect mode.
#[cgroup_sock_addr(connect4)]
pub fn bench_connect4(_ctx: SockAddrContext) -> i32 {
    1
}

/// Floor of the `lsm` file-open mode.
#[lsm(hook = "file_open")]
pub fn bench_lsm_open(ctx: LsmContext) -> i32 {
    ctx.arg(1)
}

/// Floor of the `fentry` file-open mode.
#[fentry(function = "security_file_open")]
pub fn bench_fent_open(_ctx: FEntryContext) -> u32 {
    0
}

/// Floor of the `lsm` connect mode.
#[lsm(hook = "socket_connect")]
pub fn bench_lsm_conn(ctx: LsmContext) -> i32 {
    ctx.arg(3)
}

/// Floor of the `fentry` connect mode.
#[fentry(function = "tcp_v4_connect")]
pub fn bench_fent_conn(_ctx: FEntryContext) -> u32 {
    0
}

/// Offset of `filename` in the `syscalls/sys_enter_openat` record.
const FILENAME_AT: usize = 24;

/// The path-streaming baseline, on `syscalls/sys_enter_openat`: every open's path to user space.
#[tracepoint]
pub fn bench_stream(ctx: TracePointContext) -> u32 {
    // SAFETY: `filename` is a user pointer at the offset the tracepoint's format gives; the
    // string is read with the user-string helper into the reserved entry.
    unsafe {
        let Ok(filename) = ctx.read_at::<*const u8>(FILENAME_AT) else {
            return 0;
        };
        let Some(mut entry) = TP_BENCH_PATHS.reserve::<PathEvent>(0) else {
            return 0;
        };
        let event = entry.as_mut_ptr();
        (*event).tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let len = bpf_probe_read_user_str_bytes(filename, &mut (*event).path).map_or(0, <[u8]>::len);
        // At most the path buffer's size, which fits a u32.
        (*event).len = u32::try_from(len).unwrap_or(u32::MAX);
        entry.submit(0);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
