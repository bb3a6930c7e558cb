//! File-open detector: every mode resolves a `struct file *` and calls [`on_file_open`].

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_task, bpf_probe_read_kernel_str_bytes},
    macros::{fentry, kprobe, lsm, tracepoint},
    programs::{FEntryContext, LsmContext, ProbeContext, TracePointContext},
};
use probe_common::{
    config::{O_PATH, S_IFDIR, S_IFMT, SYS_EXIT_RET_OFFSET},
    counters::kind,
};

use crate::{
    kernel::{read, read_ptr},
    maps::{TP_VOLUMES, config},
    record::count,
};

/// Counts an open of `file` when it lies on a watched volume.
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
    // The fast path for every other open on the machine ends here.
    let Some(volume) = TP_VOLUMES.get_ptr(dev) else {
        return;
    };
    let volume_id = (*volume).id;

    // O_PATH opens carry no data (LSM and fentry never see them); directories are not files of
    // the volume, listing one is not a read.
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
    // SAFETY: `file` is the hook's `struct file *`; every read goes through probe reads.
    unsafe { on_file_open(&ctx, file) };
    ret
}

/// `fentry` mode: `security_file_open(struct file *file)`.
#[fentry(function = "security_file_open")]
pub fn tp_file_open_fentry(ctx: FEntryContext) -> u32 {
    let file: *const u8 = ctx.arg(0);
    // SAFETY: as above.
    unsafe { on_file_open(&ctx, file) };
    0
}

/// `kprobe` mode: `security_file_open(struct file *file)`.
#[kprobe]
pub fn tp_file_open_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(file) = ctx.arg::<*const u8>(0) {
        // SAFETY: as above.
        unsafe { on_file_open(&ctx, file) };
    }
    0
}

/// `tracepoint` mode, attached to `syscalls/sys_exit_{open,openat,openat2,creat,open_by_handle_at}`:
/// on success, resolve the returned fd to its `struct file` through the current task.
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
