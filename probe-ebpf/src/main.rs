//! tokenprobe's kernel programs.
//!
//! Two detectors, each in several modes; the agent loads and attaches the best mode the
//! running kernel allows (see `docs/architecture.md`, "The kernel side"):
//! - file open: `lsm` (`lsm/file_open`), `fentry` and `kprobe` (`security_file_open`),
//!   `tracepoint` (the typed raw tracepoint `sys_exit`, else
//!   `syscalls/sys_exit_{open,openat,openat2,creat,open_by_handle_at}`);
//! - API connect: `cgroup` (`cgroup/connect4`, `connect6`), `lsm` (`lsm/socket_connect`),
//!   `fentry` (`tcp_v4_connect`, `tcp_v6_connect`).
//!
//! Every mode funnels into [`record::count`], which counts per (container key, target, kind,
//! session) in a hash map and emits a ring-buffer notice only the first time a key is seen.
//! Programs observe only: LSM programs return the `ret` they were given.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features, reason = "atomic_xadd: the BPF target has no AtomicU64::fetch_add")]
#![expect(
    unsafe_op_in_unsafe_fn,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "kernel-side code: every read is a probe read of kernel memory; casts mirror C types"
)]
#![expect(clippy::inline_always, reason = "BPF: helpers are inlined into each program on purpose")]
#![expect(clippy::needless_pass_by_value, reason = "program signatures are fixed by aya's macros")]

mod cgroups;
mod connect;
mod exec;
mod file;
mod kernel;
mod maps;
mod missing;
mod record;

/// The license section: GPL-compatible, required for `bpf_probe_read_kernel` and LSM programs.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
