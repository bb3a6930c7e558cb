//! Boot-time nanoseconds (what the kernel programs stamp) and wall-clock time.

use time::OffsetDateTime;

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer; CLOCK_BOOTTIME and CLOCK_REALTIME always exist on Linux.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// `CLOCK_BOOTTIME` now, in nanoseconds (the clock of `bpf_ktime_get_boot_ns()`).
#[must_use]
pub fn boot_ns() -> u64 {
    u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0)
}

/// Converts boot-time stamps to wall-clock time, using the offset measured at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Unix time minus boot time, in nanoseconds.
    offset_ns: i128,
}

impl Clock {
    /// Measures the offset now.
    #[must_use]
    pub fn new() -> Self {
        Self { offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME) }
    }

    /// A clock with a fixed offset, for tests.
    #[must_use]
    pub const fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Wall-clock time of a boot-time stamp.
    #[must_use]
    pub fn wall(&self, boot_ns: u64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(boot_ns) + self.offset_ns)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Parses the start time (field 22, clock ticks since boot) from a `/proc/<pid>/stat` line.
/// The command name (field 2) may hold spaces and parentheses: fields count from its last `)`.
#[must_use]
pub fn start_ticks_from_stat(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// When a process started, in boot-time nanoseconds, rounded down to a clock tick.
#[must_use]
pub fn process_start_boot_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = start_ticks_from_stat(&stat)?;
    ticks.checked_mul(1_000_000_000 / ticks_per_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let stat = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(start_ticks_from_stat(stat), Some(987_654));
        assert_eq!(start_ticks_from_stat("garbage"), None);
        assert_eq!(start_ticks_from_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn own_process_started_before_now() {
        let start = process_start_boot_ns(std::process::id()).unwrap();
        assert!(start <= boot_ns());
    }

    #[test]
    fn wall_clock_conversion_is_monotonic_and_offset() {
        let clock = Clock::with_offset(1_000_000_000_000_000_000);
        assert_eq!(clock.wall(0).unix_timestamp(), 1_000_000_000);
        assert!(clock.wall(5) < clock.wall(6));
    }
}
