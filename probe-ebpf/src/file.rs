//! File-open detector: every mode resolves a `struct file *` and counts it when it lies on a
//! watched volume. The common case — every other open on the machine — must cost next to
//! nothing: the device is checked against a bitmap (an inlined array lookup) before any hash
//! lookup, and in the `lsm`/`fentry` modes the `struct file *` is BTF-typed, so the reads up to
//! the device are plain loads (no helper calls).

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_task, bpf_get_current_task_btf, bpf_probe_read_kernel_str_bytes},
    macros::{btf_tracepoint, fentry, kprobe, lsm, tracepoint},
    programs::{BtfTracePointContext, FEntryContext, LsmContext, ProbeContext, TracePointContext},
};
use probe_common::{
    config::{FD_ARRAY_LEN, O_PATH, S_IFDIR, S_IFMT, SYS_EXIT_RET_OFFSET, syscalls},
    counters::kind,
    volumes::{OTHER_DEVICES, bit},
};

use crate::{
    kernel::{load, read, read_ptr},
    maps::{TP_VOLUME_BITS, TP_VOLUMES, config},
    record::count,
};

/// The id of the watched volume with kernel device `dev`, if any: the bitmap first (no hash
/// lookup for other devices), then the volumes map.
#[inline(always)]
fn watched(dev: u32) -> Option<u32> {
    if let Some((word, mask)) = bit(dev) {
        if *TP_VOLUME_BITS.get(word)? & mask == 0 {
            return None;
        }
    } else if *TP_VOLUME_BITS.get(OTHER_DEVICES)? == 0 {
        return None;
    }
    // SAFETY: a pointer from a successful lookup, read at once.
    TP_VOLUMES.get_ptr(dev).map(|v| unsafe { (*v).id })
}

/// After the device matched: skip `O_PATH` opens (no data; LSM and fentry never see them) and
/// directories (listing one is not a read), then count by file name.
#[inline(always)]
unsafe fn count_open<C: EbpfContext>(ctx: &C, file: *const u8, inode: *const u8, volume_id: u32) {
    let Some(flags) = read::<u32>(file, config!(offsets.file_f_flags)) else {
        return;
    };
    if flags & O_PATH != 0 {
        return;
    }
    let Some(mode) = read::<u16>(inode, config!(offsets.inode_i_mode)) else {
        return;
    };
    if mode & S_IFMT == S_IFDIR {
        return;
    }
    count(ctx, volume_id, classify(file));
}

/// Counts an open of `file` (an untyped kernel pointer: probe reads).
#[inline(always)]
unsafe fn on_file_open<C: EbpfContext>(ctx: &C, file: *const u8) {
    let Some(inode) = read_ptr(file, config!(offsets.file_f_inode)) else {
        return;
    };
    let Some(sb) = read_ptr(inode, config!(offsets.inode_i_sb)) else {
        return;
    };
    let Some(dev) = read::<u32>(sb, config!(offsets.sb_s_dev)) else {
        return;
    };
    let Some(volume_id) = watched(dev) else {
        return;
    };
    count_open(ctx, file, inode, volume_id);
}

/// Counts an open of `file`, a BTF-typed `struct file *` (LSM and fentry arguments): the reads
/// up to the device are plain loads the verifier checks against the kernel's types.
#[inline(always)]
unsafe fn on_typed_file_open<C: EbpfContext>(ctx: &C, file: *const u8) {
    let inode: *const u8 = load(file, config!(offsets.file_f_inode));
    if inode.is_null() {
        return;
    }
    let sb: *const u8 = load(inode, config!(offsets.inode_i_sb));
    if sb.is_null() {
        return;
    }
    let dev: u32 = load(sb, config!(offsets.sb_s_dev));
    let Some(volume_id) = watched(dev) else {
        return;
    };
    count_open(ctx, file, inode, volume_id);
}

/// Classifies the opened file by its final dentry name.
#[inline(always)]
unsafe fn classify(file: *const u8) -> u32 {
    let Some(dentry) = read_ptr(file, config!(offsets.file_f_path_dentry)) else {
        return kind::READ_OTHER;
    };
    let Some(name) = read_ptr(dentry, config!(offsets.dentry_d_name_name)) else {
        return kind::READ_OTHER;
    };
    let mut buf = [0u8; 16];
    match bpf_probe_read_kernel_str_bytes(name, &mut buf) {
        Ok(b"token") => kind::READ_TOKEN,
        Ok(b"ca.crt") => kind::READ_CA_CRT,
        Ok(b"namespace") => kind::READ_NAMESPACE,
        _ => kind::READ_OTHER,
    }
}

/// `lsm` mode. `file_open(struct file *file)`; the program's `ret` argument is the verdict so far,
/// returned unchanged: tokenprobe never denies.
#[lsm(hook = "file_open")]
pub fn tp_file_open_lsm(ctx: LsmContext) -> i32 {
    let file: *const u8 = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    // SAFETY: `file` is the hook's BTF-typed `struct file *`.
    unsafe { on_typed_file_open(&ctx, file) };
    ret
}

/// `fentry` mode: `security_file_open(struct file *file)`.
#[fentry(function = "security_file_open")]
pub fn tp_file_open_fentry(ctx: FEntryContext) -> u32 {
    let file: *const u8 = ctx.arg(0);
    // SAFETY: as above.
    unsafe { on_typed_file_open(&ctx, file) };
    0
}

/// `kprobe` mode: `security_file_open(struct file *file)`.
#[kprobe]
pub fn tp_file_open_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(file) = ctx.arg::<*const u8>(0) {
        // SAFETY: an untyped kernel pointer: every read is a probe read.
        unsafe { on_file_open(&ctx, file) };
    }
    0
}

/// `tracepoint` mode, on the BTF-typed raw tracepoint `sys_exit(struct pt_regs *regs, long ret)`:
/// it runs at every syscall's exit, so the first thing it does is leave all but the open family.
/// Attached without `perf_event_open`. Descriptors below [`FD_ARRAY_LEN`] of a table that never
/// grew are reached with typed loads only (no helper call); others through one probe read of the
/// slot and probe reads of the file.
#[btf_tracepoint(function = "sys_exit")]
pub fn tp_file_open_sys_exit(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: the tracepoint's BTF-typed arguments; typed loads, probe reads past an untyped slot.
    unsafe { on_sys_exit(&ctx) };
    0
}

#[inline(always)]
unsafe fn on_sys_exit(ctx: &BtfTracePointContext) {
    let ret: i64 = ctx.arg(1);
    if ret < 0 || ret > i64::from(i32::MAX) {
        return;
    }
    let regs: *const u8 = ctx.arg(0);
    let nr: u64 = load(regs, config!(offsets.regs_orig_ax));
    if !matches!(
        nr,
        syscalls::OPENAT | syscalls::OPEN | syscalls::OPENAT2 | syscalls::CREAT | syscalls::OPEN_BY_HANDLE_AT
    ) {
        return;
    }
    let fd = ret as u32;
    let task = bpf_get_current_task_btf() as *const u8;
    let files: *const u8 = load(task, config!(offsets.task_files));
    if files.is_null() {
        return;
    }
    let fdt: *const u8 = load(files, config!(offsets.files_fdt));
    if fdt.is_null() {
        return;
    }
    let max_fds: u32 = load(fdt, config!(offsets.fdt_max_fds));
    if fd >= max_fds {
        return;
    }
    let table: u64 = load(fdt, config!(offsets.fdt_fd));
    let embedded = files as u64 + u64::from(config!(offsets.files_fd_array));
    if table == embedded && fd < FD_ARRAY_LEN {
        let file = embedded_slot(files, fd);
        if !file.is_null() {
            on_typed_file_open(ctx, file);
        }
    } else if let Some(file) = read_ptr(table as *const u8, fd.wrapping_mul(8)) {
        on_file_open(ctx, file);
    }
}

/// `files->fd_array[fd]` for `fd` below [`FD_ARRAY_LEN`], as a typed load: the verifier allows no
/// variable offset into typed memory, so each descriptor is its own constant-offset load.
#[inline(always)]
unsafe fn embedded_slot(files: *const u8, fd: u32) -> *const u8 {
    let base = config!(offsets.files_fd_array);
    macro_rules! slots {
        ($($n:literal)*) => {
            match fd {
                $($n => load(files, base + $n * 8),)*
                _ => core::ptr::null(),
            }
        };
    }
    slots!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
        32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63)
}

/// `tracepoint` mode on kernels without BTF-typed raw tracepoints, attached to
/// `syscalls/sys_exit_{open,openat,openat2,creat,open_by_handle_at}`: on success, resolve the
/// returned fd to its `struct file` through the current task.
#[tracepoint]
pub fn tp_file_open_tracepoint(ctx: TracePointContext) -> u32 {
    // SAFETY: a direct context load at the offset the agent verified against the tracepoint's
    // format (cheaper than a helper call); the record is 8-byte aligned and so is `ret`.
    #[expect(clippy::cast_ptr_alignment, reason = "`ret` sits at an 8-byte aligned offset of the record")]
    let ret = unsafe { *ctx.as_ptr().cast::<u8>().add(SYS_EXIT_RET_OFFSET).cast::<i64>() };
    if ret < 0 {
        return 0;
    }
    // SAFETY: probe reads only.
    unsafe {
        if let Some(file) = file_of_fd(ret as u32) {
            on_file_open(&ctx, file);
        }
    }
    0
}

/// `current->files->fdt->fd[fd]`, bounds-checked against `max_fds`.
#[inline(always)]
unsafe fn file_of_fd(fd: u32) -> Option<*const u8> {
    let task = bpf_get_current_task() as *const u8;
    let files = read_ptr(task, config!(offsets.task_files))?;
    let fdt = read_ptr(files, config!(offsets.files_fdt))?;
    let max_fds: u32 = read(fdt, config!(offsets.fdt_max_fds))?;
    if fd >= max_fds {
        return None;
    }
    let fd_array = read_ptr(fdt, config!(offsets.fdt_fd))?;
    read_ptr(fd_array, fd.wrapping_mul(8))
}
