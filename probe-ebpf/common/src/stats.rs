//! Indices into the per-CPU statistics array.

/// A first-seen notice was lost because the ring buffer was full (its counts are kept).
pub const NOTICE_DROPS: u32 = 0;
/// A new counter key could not be inserted because the counters map was full: counts lost.
pub const COUNTER_MAP_FULL: u32 = 1;
/// A kernel read (`bpf_probe_read_kernel`) failed while inspecting an event.
pub const READ_ERRORS: u32 = 2;
/// Events that matched a watched volume or target and were counted.
pub const EVENTS: u32 = 3;
/// Processes marked as exec sessions (entered a container from outside, or their children).
pub const EXEC_MARKED: u32 = 4;
/// An exec-session mark or a seen cgroup could not be stored (map full).
pub const EXEC_MAP_FULL: u32 = 5;
/// A created cgroup could not be reported (its ring buffer was full): a container that ends
/// before the next scan may be missed.
pub const CGROUP_EVENT_DROPS: u32 = 6;
/// Number of slots.
pub const LEN: u32 = 7;
