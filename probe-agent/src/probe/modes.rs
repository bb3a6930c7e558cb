//! The hook modes of each detector, best first, and the CLI names that select them.

use std::fmt;

/// `--file-hook`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileHook {
    Auto,
    Lsm,
    Fentry,
    Kprobe,
    Tracepoint,
}

/// `--connect-hook`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConnectHook {
    Auto,
    Cgroup,
    Lsm,
    Fentry,
}

/// How the `tracepoint` file-open mode attaches. Both run at syscall exit and see the same
/// opens; they differ only in cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TracepointVariant {
    /// The BTF-typed raw tracepoint `sys_exit` (Linux ≥ 5.5, `x86_64`): typed loads instead of
    /// helper calls, no `perf_event_open`; it runs at every syscall's exit and leaves at once
    /// unless the syscall opened a file.
    RawSysExit,
    /// The classic per-syscall tracepoints `syscalls/sys_exit_{open,openat,…}` (perf events).
    PerSyscall,
}

impl TracepointVariant {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::RawSysExit => "raw-sys-exit",
            Self::PerSyscall => "per-syscall",
        }
    }
}

/// The file-open mode in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileMode {
    Lsm,
    Fentry,
    Kprobe,
    Tracepoint,
}

/// The connect mode in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectMode {
    Cgroup,
    Lsm,
    Fentry,
}

impl FileMode {
    /// Best first.
    pub const CHAIN: [Self; 4] = [Self::Lsm, Self::Fentry, Self::Kprobe, Self::Tracepoint];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Lsm => "lsm",
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::Tracepoint => "tracepoint",
        }
    }

    /// The programs this mode attaches.
    #[must_use]
    pub const fn programs(self) -> &'static [&'static str] {
        match self {
            Self::Lsm => &["tp_file_open_lsm"],
            Self::Fentry => &["tp_file_open_fentry"],
            Self::Kprobe => &["tp_file_open_kprobe"],
            Self::Tracepoint => &["tp_file_open_sys_exit", "tp_file_open_tracepoint"],
        }
    }

    pub(super) fn candidates(hook: FileHook) -> Vec<Self> {
        match hook {
            FileHook::Auto => Self::CHAIN.to_vec(),
            FileHook::Lsm => vec![Self::Lsm],
            FileHook::Fentry => vec![Self::Fentry],
            FileHook::Kprobe => vec![Self::Kprobe],
            FileHook::Tracepoint => vec![Self::Tracepoint],
        }
    }
}

impl ConnectMode {
    /// Best first.
    pub const CHAIN: [Self; 3] = [Self::Cgroup, Self::Lsm, Self::Fentry];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cgroup => "cgroup",
            Self::Lsm => "lsm",
            Self::Fentry => "fentry",
        }
    }

    /// The programs this mode attaches.
    #[must_use]
    pub const fn programs(self) -> &'static [&'static str] {
        match self {
            Self::Cgroup => &["tp_connect4_cgroup", "tp_connect6_cgroup"],
            Self::Lsm => &["tp_connect_lsm"],
            Self::Fentry => &["tp_connect4_fentry", "tp_connect6_fentry"],
        }
    }

    pub(super) fn candidates(hook: ConnectHook) -> Vec<Self> {
        match hook {
            ConnectHook::Auto => Self::CHAIN.to_vec(),
            ConnectHook::Cgroup => vec![Self::Cgroup],
            ConnectHook::Lsm => vec![Self::Lsm],
            ConnectHook::Fentry => vec![Self::Fentry],
        }
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for ConnectMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A mode that was tried and refused, with the kernel's reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    pub detector: &'static str,
    pub mode: &'static str,
    pub reason: String,
}

/// The kernel's lockdown level (`none`, `integrity`, `confidentiality`); `None` without the
/// lockdown LSM or securityfs.
#[must_use]
pub fn lockdown_level() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/security/lockdown").ok()?;
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_owned())
}

/// Adds what usually causes a refusal to the kernel's bare reason.
pub(super) fn hint(mode: &str, reason: String) -> String {
    hint_under(mode, reason, lockdown_level().as_deref())
}

fn hint_under(mode: &str, reason: String, lockdown: Option<&str>) -> String {
    let eperm = reason.contains("os error 1)");
    let refused = eperm || reason.contains("os error 22)");
    if lockdown == Some("confidentiality") && refused {
        // Measured in the VM matrix: every file-open program is refused under it.
        return format!(
            "{reason} (kernel lockdown is `confidentiality`, which forbids BPF programs to read kernel memory: tokenprobe needs lockdown `integrity` or `none`)"
        );
    }
    match mode {
        "lsm" | "fentry" if eperm => format!("{reason} (this kernel refuses BPF trampoline programs)"),
        "lsm" if reason.contains("self-test") => {
            format!("{reason} (BPF LSM is built in but not active: add `bpf` to the kernel's `lsm=` list)")
        }
        "kprobe" if reason.contains("kprobe/type") => {
            format!("{reason} (kprobes are not available: kernel built without CONFIG_KPROBES)")
        }
        _ => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidentiality_lockdown_is_named_in_refusals() {
        let refused = "the BPF_PROG_LOAD syscall returned Invalid argument (os error 22)".to_owned();
        let h = hint_under("tracepoint", refused.clone(), Some("confidentiality"));
        assert!(h.contains("kernel lockdown is `confidentiality`"), "{h}");
        assert_eq!(hint_under("tracepoint", refused.clone(), Some("integrity")), refused);
        assert_eq!(hint_under("tracepoint", refused.clone(), None), refused);
    }
}
