//! Reads of kernel memory at BTF-resolved offsets.

use aya_ebpf::helpers::bpf_probe_read_kernel;

use crate::maps::bump_stat;

/// Reads a `T` at `base + offset`; counts a failed read in the statistics.
#[inline(always)]
pub unsafe fn read<T>(base: *const u8, offset: u32) -> Option<T> {
    let value = bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()).ok();
    if value.is_none() {
        bump_stat(probe_common::stats::READ_ERRORS);
    }
    value
}

/// Reads a pointer at `base + offset`; `None` for a failed read or a NULL pointer.
#[inline(always)]
pub unsafe fn read_ptr(base: *const u8, offset: u32) -> Option<*const u8> {
    let ptr: *const u8 = read(base, offset)?;
    if ptr.is_null() { None } else { Some(ptr) }
}

/// A plain load of a `T` at `base + offset`, for BTF-typed pointers (the verifier checks the
/// access against the kernel's types; `offset` comes from frozen `.rodata`, a constant to it).
#[inline(always)]
pub unsafe fn load<T: Copy>(base: *const u8, offset: u32) -> T {
    core::ptr::read_volatile(base.wrapping_add(offset as usize).cast::<T>())
}
