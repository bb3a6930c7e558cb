//! The ring-buffer event: a counter key seen for the first time.

use crate::counters::CountKey;

/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notice {
    pub key: CountKey,
    /// Thread group id (the process id in user space terms).
    pub tgid: u32,
    /// Thread id.
    pub pid: u32,
    /// `bpf_ktime_get_boot_ns()` of the event.
    pub ts_ns: u64,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}
