//! Loading the kernel programs and choosing, per detector, the best hook the kernel allows.
//!
//! Modes are chosen by loading and attaching the real programs, best first, never by guessing
//! from a kernel version or `/sys/kernel/security/lsm` (which lists `bpf` on kernels that still
//! refuse LSM programs). Each rejected mode is kept with its reason.

use std::{fs::File, os::fd::AsFd as _, path::Path, sync::Arc};

use aya::{
    Btf as AyaBtf, Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{CgroupAttachMode, CgroupSockAddr, FEntry, KProbe, Lsm, RawTracePoint, TracePoint},
};
use probe_common::{
    config::{self, Config},
    counters::{CountKey, CountValue},
    maps, stats,
};

use crate::{btf::Btf, canary, offsets};

mod modes;
mod programs;
pub mod watched;

use modes::hint;
pub use modes::{ConnectHook, ConnectMode, FileHook, FileMode, Rejection, TracepointVariant, lockdown_level};
use programs::{describe, program, unload};

/// Errors loading the programs or attaching a detector.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot resolve kernel struct offsets")]
    Btf(#[from] crate::btf::BtfError),
    #[error("cannot load the eBPF object")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the eBPF object has no map `{name}`")]
    MissingMap { name: &'static str },
    #[error("map `{name}` has an unexpected type")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("no {detector} mode could be attached: {}", summarize(.rejections))]
    NoMode { detector: &'static str, rejections: Vec<Rejection> },
}

fn summarize(rejections: &[Rejection]) -> String {
    rejections.iter().map(|r| format!("{}: {}", r.mode, r.reason)).collect::<Vec<_>>().join("; ")
}

/// How to load.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub file_hook: FileHook,
    pub connect_hook: ConnectHook,
    /// The host's cgroup v2 root, where the `cgroup` connect mode attaches.
    pub cgroup_root: std::path::PathBuf,
    /// One of [`config::key_kind`].
    pub key_kind: u32,
    pub btf_path: std::path::PathBuf,
    /// Entries of the in-kernel counters map (one per container, target and kind).
    pub counters_capacity: u32,
    /// Entries of the in-kernel connect-target map.
    pub targets_capacity: u32,
    /// Tell exec sessions apart from the application (raw tracepoints on cgroup attach, fork
    /// and exit).
    pub exec_tracking: bool,
    /// The cgroup hierarchy whose attach events mark exec sessions (0: cgroup v2).
    pub exec_hierarchy: u32,
    /// Count failed opens of the default token paths (`verify`; costs every open).
    pub missing_token: bool,
    /// The `tracepoint` variants to try, best first (the benchmark pins one).
    pub tracepoint_variants: Vec<TracepointVariant>,
}

impl ProbeOptions {
    /// Defaults: auto modes, cgroup keys, exec tracking on v2, the ABI's map sizes.
    #[must_use]
    pub fn new(cgroup_root: std::path::PathBuf) -> Self {
        Self {
            file_hook: FileHook::Auto,
            connect_hook: ConnectHook::Auto,
            cgroup_root,
            key_kind: config::key_kind::CGROUP,
            btf_path: std::path::PathBuf::from("/sys/kernel/btf/vmlinux"),
            counters_capacity: maps::COUNTERS_MAX,
            targets_capacity: maps::TARGETS_MAX,
            exec_tracking: true,
            exec_hierarchy: 0,
            missing_token: false,
            tracepoint_variants: vec![TracepointVariant::RawSysExit, TracepointVariant::PerSyscall],
        }
    }
}

/// The loaded programs and the maps the agent fills and reads.
#[expect(clippy::struct_excessive_bools, reason = "one flag per optional detector, independent of each other")]
pub struct Probe {
    ebpf: Ebpf,
    /// The kernel's parsed BTF, needed only while attaching (then dropped).
    btf: Option<Arc<AyaBtf>>,
    pub file_mode: Option<FileMode>,
    pub connect_mode: Option<ConnectMode>,
    pub rejections: Vec<Rejection>,
    pub volumes: watched::Volumes,
    pub targets: watched::Targets,
    pub counters: HashMap<MapData, CountKey, CountValue>,
    /// Cgroups that already had a process join them (exec-session detection).
    pub cgroups_seen: HashMap<MapData, maps::CgroupRef, u32>,
    /// Whether exec sessions are being told apart (the raw tracepoints attached).
    pub exec_tracking: bool,
    /// Whether failed opens of the default token paths are counted.
    pub missing_token: bool,
    /// Whether container cgroups are reported as they are created.
    pub container_creation: bool,
    /// Whether container cgroups are reported as they are removed (containers are then followed
    /// by events, and full rescans of the cgroup tree can be rare).
    pub container_removal: bool,
    /// How the `tracepoint` file-open mode attached, when it is the mode in use.
    pub tracepoint_variant: Option<TracepointVariant>,
    offsets: probe_common::config::Offsets,
    stats: PerCpuArray<MapData, u64>,
    notices: Option<RingBuf<MapData>>,
    cgroup_events: Option<RingBuf<MapData>>,
    /// Kernel-side diagnostics (aya-log). Its map must stay open until the programs are loaded.
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    options: ProbeOptions,
}

/// A detector's modes: how to attach one and how to prove it sees events.
trait Mode: Copy {
    const DETECTOR: &'static str;
    fn name(self) -> &'static str;
    fn programs(self) -> &'static [&'static str];
    fn attach(self, probe: &mut Probe) -> Result<(), String>;
    fn self_test(probe: &mut Probe) -> Result<(), String>;
}

impl Mode for FileMode {
    const DETECTOR: &'static str = "file-open";

    fn name(self) -> &'static str {
        Self::name(self)
    }

    fn programs(self) -> &'static [&'static str] {
        Self::programs(self)
    }

    fn attach(self, probe: &mut Probe) -> Result<(), String> {
        probe.attach_file(self)
    }

    fn self_test(probe: &mut Probe) -> Result<(), String> {
        canary::file_open_seen(&mut probe.volumes, &mut probe.counters)
    }
}

impl Mode for ConnectMode {
    const DETECTOR: &'static str = "connect";

    fn name(self) -> &'static str {
        Self::name(self)
    }

    fn programs(self) -> &'static [&'static str] {
        Self::programs(self)
    }

    fn attach(self, probe: &mut Probe) -> Result<(), String> {
        probe.attach_connect(self)
    }

    fn self_test(probe: &mut Probe) -> Result<(), String> {
        canary::connect_seen(&mut probe.targets, &mut probe.counters)
    }
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, ProbeError> {
    let map = ebpf.take_map(name).ok_or(ProbeError::MissingMap { name })?;
    T::try_from(map).map_err(|source| ProbeError::Map { name, source })
}

static RETAIN_BTF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Keeps the kernel's parsed BTF for the life of the process, for processes that load the
/// programs many times (the test suites, the benchmark). An agent loads once and frees it as
/// soon as its programs are attached: parsed, the kernel's BTF takes tens of MB.
pub fn retain_parsed_btf() {
    RETAIN_BTF.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The offsets and aya's parsed BTF for `path`; parsed once per process when
/// [`retain_parsed_btf`] was called, else every time (and dropped after attaching).
fn kernel_btf(path: &Path) -> Result<(probe_common::config::Offsets, Option<Arc<AyaBtf>>), ProbeError> {
    type Parsed = (std::path::PathBuf, probe_common::config::Offsets, Option<Arc<AyaBtf>>);
    static CACHE: std::sync::Mutex<Option<Parsed>> = std::sync::Mutex::new(None);
    let retain = RETAIN_BTF.load(std::sync::atomic::Ordering::Relaxed);
    let mut cache = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((cached, offsets, btf)) = cache.as_ref()
        && cached == path
    {
        return Ok((*offsets, btf.clone()));
    }
    let offsets = offsets::resolve(&Btf::from_file(path)?)?;
    let btf = AyaBtf::parse_file(path, aya::Endianness::default()).ok().map(Arc::new);
    if retain {
        *cache = Some((path.to_path_buf(), offsets, btf.clone()));
    }
    Ok((offsets, btf))
}

/// Raises `RLIMIT_MEMLOCK` for kernels that still account BPF memory there (< 5.11); a failure is
/// only a warning, newer kernels charge the memory cgroup instead.
pub fn bump_memlock() {
    let limit = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const limit) } != 0 {
        let error = std::io::Error::last_os_error();
        if kernel_at_least(5, 11) {
            tracing::debug!(%error, "could not raise RLIMIT_MEMLOCK; not needed, this kernel charges BPF memory to the memory cgroup");
        } else {
            tracing::warn!(%error, "could not raise RLIMIT_MEMLOCK; loading may fail on this kernel (< 5.11)");
        }
    }
}

/// Whether the running kernel's release is at least `major.minor` (unknown counts as yes).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(uts) = nix::sys::utsname::uname() else { return true };
    let release = uts.release().to_string_lossy();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => true,
    }
}

impl Probe {
    /// Resolves offsets from BTF, patches them into the object and creates its maps. Programs
    /// are not loaded yet: [`Probe::attach`] does that, mode by mode.
    ///
    /// # Errors
    /// Missing or unreadable BTF, or the object failing to load.
    pub fn load(options: ProbeOptions) -> Result<Self, ProbeError> {
        let (offsets, aya_btf) = kernel_btf(&options.btf_path)?;
        let config = Config {
            key_kind: options.key_kind,
            exec_tracking: u32::from(options.exec_tracking),
            missing_token: u32::from(options.missing_token),
            exec_hierarchy: options.exec_hierarchy,
            offsets,
        };
        let mut ebpf = EbpfLoader::new()
            .btf(aya_btf.as_deref())
            .override_global(config::GLOBAL, &config, true)
            .map_max_entries(maps::COUNTERS, options.counters_capacity)
            .map_max_entries(maps::TARGETS, options.targets_capacity)
            .load(crate::ebpf::OBJECT)
            .map_err(|e| ProbeError::Load(Box::new(e)))?;
        let logger = aya_log::EbpfLogger::init(&mut ebpf)
            .map_err(|e| tracing::warn!(error = %e, "kernel-side diagnostics unavailable"))
            .ok();
        Ok(Self {
            logger,
            volumes: watched::Volumes::new(take(&mut ebpf, maps::VOLUMES)?, take(&mut ebpf, maps::VOLUME_BITS)?),
            targets: watched::Targets::new(take(&mut ebpf, maps::TARGETS)?, take(&mut ebpf, maps::PORT_BITS)?),
            counters: take(&mut ebpf, maps::COUNTERS)?,
            cgroups_seen: take(&mut ebpf, maps::CGROUPS_SEEN)?,
            exec_tracking: false,
            missing_token: false,
            container_creation: false,
            container_removal: false,
            tracepoint_variant: None,
            offsets,
            stats: take(&mut ebpf, maps::STATS)?,
            notices: Some(take(&mut ebpf, maps::NOTICES)?),
            cgroup_events: Some(take(&mut ebpf, maps::CGROUP_EVENTS)?),
            ebpf,
            btf: aya_btf,
            file_mode: None,
            connect_mode: None,
            rejections: Vec::new(),
            options,
        })
    }

    /// The notice ring buffer; take it and start reading before [`Probe::attach`].
    pub fn take_notices(&mut self) -> Option<RingBuf<MapData>> {
        self.notices.take()
    }

    /// The created-cgroup ring buffer; take it and start reading before [`Probe::attach`].
    pub fn take_cgroup_events(&mut self) -> Option<RingBuf<MapData>> {
        self.cgroup_events.take()
    }

    /// The kernel-side log reader; take it and start flushing it before [`Probe::attach`].
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        self.logger.take()
    }

    /// Attaches both detectors with the best mode each allows.
    ///
    /// # Errors
    /// [`ProbeError::NoMode`] when no candidate mode of a detector attaches.
    pub fn attach(&mut self) -> Result<(), ProbeError> {
        let mut rejected = Vec::new();
        self.file_mode = self.choose(FileMode::candidates(self.options.file_hook), &mut rejected);
        if self.file_mode.is_none() {
            return Err(ProbeError::NoMode { detector: FileMode::DETECTOR, rejections: rejected });
        }
        let file_rejected = rejected.len();
        self.connect_mode = self.choose(ConnectMode::candidates(self.options.connect_hook), &mut rejected);
        if self.connect_mode.is_none() {
            return Err(ProbeError::NoMode {
                detector: ConnectMode::DETECTOR,
                rejections: rejected.split_off(file_rejected),
            });
        }
        if self.options.exec_tracking {
            match self.attach_exec_tracking() {
                Ok(()) => self.exec_tracking = true,
                Err(reason) => {
                    tracing::warn!(%reason, "exec sessions cannot be told apart; their use counts as the application's");
                    rejected.push(Rejection { detector: "exec-session", mode: "raw_tp", reason });
                }
            }
        }
        match self.attach_raw("tp_cgroup_mkdir", "cgroup_mkdir") {
            Ok(()) => self.container_creation = true,
            Err(reason) => {
                tracing::warn!(%reason, "container cgroups are not reported as they are created: containers that end between two scans can be missed");
                rejected.push(Rejection { detector: "container-creation", mode: "raw_tp", reason });
            }
        }
        match self.attach_raw("tp_cgroup_rmdir", "cgroup_rmdir") {
            Ok(()) => self.container_removal = true,
            Err(reason) => {
                tracing::warn!(%reason, "container cgroups are not reported as they are removed: the cgroup tree is rescanned every few seconds instead");
                rejected.push(Rejection { detector: "container-removal", mode: "raw_tp", reason });
            }
        }
        if self.options.missing_token {
            match self.attach_missing_token() {
                Ok(()) => self.missing_token = true,
                Err(reason) => {
                    tracing::warn!(%reason, "failed opens of the token paths cannot be counted");
                    rejected.push(Rejection { detector: "missing-token", mode: "tracepoint", reason });
                }
            }
        }
        for r in &rejected {
            tracing::info!(detector = r.detector, mode = r.mode, reason = %r.reason, "hook mode rejected");
        }
        tracing::info!(
            file_open = %self.file_mode.map_or("none", FileMode::name),
            file_open_via = %self.tracepoint_variant.map_or("-", TracepointVariant::name),
            connect = %self.connect_mode.map_or("none", ConnectMode::name),
            "hooks attached"
        );
        self.rejections = rejected;
        // Attached: the parsed BTF is not needed again.
        self.btf = None;
        Ok(())
    }

    /// Tries the candidate modes best first; the first that attaches and passes its self-test
    /// is kept, each one before it is recorded as rejected with its reason.
    fn choose<M: Mode>(&mut self, candidates: Vec<M>, rejected: &mut Vec<Rejection>) -> Option<M> {
        for mode in candidates {
            let attached =
                mode.attach(self).and_then(|()| M::self_test(self).inspect_err(|_| self.unload_all(mode.programs())));
            match attached {
                Ok(()) => return Some(mode),
                Err(reason) => {
                    rejected.push(Rejection {
                        detector: M::DETECTOR,
                        mode: mode.name(),
                        reason: hint(mode.name(), reason),
                    });
                }
            }
        }
        None
    }

    /// One raw tracepoint program.
    fn attach_raw(&mut self, name: &str, tracepoint: &str) -> Result<(), String> {
        let program = program::<RawTracePoint>(&mut self.ebpf, name)?;
        program.load().map_err(describe)?;
        if let Err(e) = program.attach(tracepoint) {
            let reason = describe(e);
            unload(program);
            return Err(format!("{tracepoint}: {reason}"));
        }
        Ok(())
    }

    /// The exec-session raw tracepoints: cgroup attach, fork, exit. All or none.
    fn attach_exec_tracking(&mut self) -> Result<(), String> {
        const PROGRAMS: [(&str, &str); 3] = [
            ("tp_exec_attach", "cgroup_attach_task"),
            ("tp_exec_fork", "sched_process_fork"),
            ("tp_exec_exit", "sched_process_exit"),
        ];
        for (name, tracepoint) in PROGRAMS {
            let result = program::<RawTracePoint>(&mut self.ebpf, name).and_then(|p| {
                p.load().map_err(describe)?;
                p.attach(tracepoint).map(drop).map_err(describe)
            });
            if let Err(reason) = result {
                self.unload_all(&PROGRAMS.map(|(n, _)| n));
                return Err(format!("{tracepoint}: {reason}"));
            }
        }
        Ok(())
    }

    /// The missing-token detector: syscall entry (path) and exit (result) of every x86-64
    /// syscall that opens or looks up a path — clients that only look (`stat` before `open`)
    /// reach for the token too. `openat` is required; the others are attached where the kernel
    /// has them.
    fn attach_missing_token(&mut self) -> Result<(), String> {
        const PROGRAMS: [&str; 3] = ["tp_missing_enter_at", "tp_missing_enter_open", "tp_missing_exit"];
        /// (syscall, offset of `filename` in its `sys_enter_*` record, entry program)
        const SYSCALLS: [(&str, usize, &str); 11] = [
            ("openat", 24, "tp_missing_enter_at"),
            ("openat2", 24, "tp_missing_enter_at"),
            ("open", 16, "tp_missing_enter_open"),
            ("newstat", 16, "tp_missing_enter_open"),
            ("newlstat", 16, "tp_missing_enter_open"),
            ("newfstatat", 24, "tp_missing_enter_at"),
            ("statx", 24, "tp_missing_enter_at"),
            ("access", 16, "tp_missing_enter_open"),
            ("faccessat", 24, "tp_missing_enter_at"),
            ("faccessat2", 24, "tp_missing_enter_at"),
            ("creat", 16, "tp_missing_enter_open"),
        ];
        let tracefs = crate::tracefs::ensure_mounted()?;
        let fail = |probe: &mut Self, reason: String| {
            probe.unload_all(&PROGRAMS);
            Err(reason)
        };
        for name in PROGRAMS {
            if let Err(reason) = program::<TracePoint>(&mut self.ebpf, name).and_then(|p| p.load().map_err(describe)) {
                return fail(self, format!("{name}: {reason}"));
            }
        }
        for (syscall, offset, entry) in SYSCALLS {
            let enter = format!("sys_enter_{syscall}");
            let exit = format!("sys_exit_{syscall}");
            let attached = crate::tracefs::check_field(&tracefs, &enter, "filename", offset).and_then(|()| {
                let attach = |probe: &mut Self, name: &str, event: &str| {
                    program::<TracePoint>(&mut probe.ebpf, name)
                        .and_then(|p| p.attach("syscalls", event).map(drop).map_err(describe))
                };
                attach(self, "tp_missing_exit", &exit)?;
                attach(self, entry, &enter)
            });
            match attached {
                Ok(()) => {}
                Err(reason) if syscall == "openat" => return fail(self, format!("{enter}: {reason}")),
                Err(reason) => {
                    tracing::warn!(syscall, %reason, "failed lookups of the token paths through this syscall are not counted");
                }
            }
        }
        Ok(())
    }

    fn btf(&self) -> Result<Arc<AyaBtf>, String> {
        self.btf.clone().ok_or_else(|| format!("no usable BTF at {}", self.options.btf_path.display()))
    }

    fn attach_file(&mut self, mode: FileMode) -> Result<(), String> {
        match mode {
            FileMode::Lsm => self.lsm(mode.programs()[0], "file_open"),
            FileMode::Fentry => self.fentry(&[(mode.programs()[0], "security_file_open")]),
            FileMode::Kprobe => {
                let program: &mut KProbe = program(&mut self.ebpf, mode.programs()[0])?;
                program.load().map_err(describe)?;
                if let Err(e) = program.attach("security_file_open", 0) {
                    let reason = describe(e);
                    unload(program);
                    return Err(reason);
                }
                Ok(())
            }
            FileMode::Tracepoint => self.tracepoints(),
        }
    }

    fn attach_connect(&mut self, mode: ConnectMode) -> Result<(), String> {
        match mode {
            ConnectMode::Cgroup => {
                let cgroup = File::open(&self.options.cgroup_root)
                    .map_err(|e| format!("cannot open cgroup v2 root {}: {e}", self.options.cgroup_root.display()))?;
                let mut attached: Vec<&'static str> = Vec::new();
                for &name in mode.programs() {
                    let result = program::<CgroupSockAddr>(&mut self.ebpf, name).and_then(|p| {
                        p.load().map_err(describe)?;
                        p.attach(cgroup.as_fd(), CgroupAttachMode::Single).map(drop).map_err(describe)
                    });
                    if let Err(reason) = result {
                        self.unload_all(&attached);
                        self.unload_all(&[name]);
                        return Err(reason);
                    }
                    attached.push(name);
                }
                Ok(())
            }
            ConnectMode::Lsm => self.lsm(mode.programs()[0], "socket_connect"),
            ConnectMode::Fentry => {
                let names = mode.programs();
                self.fentry(&[(names[0], "tcp_v4_connect"), (names[1], "tcp_v6_connect")])
            }
        }
    }

    fn lsm(&mut self, name: &str, hook: &str) -> Result<(), String> {
        let btf = self.btf()?;
        let program: &mut Lsm = program(&mut self.ebpf, name)?;
        program.load(hook, &btf).map_err(describe)?;
        if let Err(e) = program.attach() {
            let reason = describe(e);
            unload(program);
            return Err(reason);
        }
        Ok(())
    }

    fn fentry(&mut self, pairs: &[(&'static str, &str)]) -> Result<(), String> {
        let btf = self.btf()?;
        let mut attached: Vec<&'static str> = Vec::new();
        for (name, function) in pairs {
            let result = program::<FEntry>(&mut self.ebpf, name).and_then(|p| {
                p.load(function, &btf).map_err(describe)?;
                p.attach().map(drop).map_err(describe)
            });
            if let Err(reason) = result {
                self.unload_all(&attached);
                self.unload_all(&[name]);
                return Err(reason);
            }
            attached.push(name);
        }
        Ok(())
    }

    /// The `tracepoint` mode: the first variant of [`ProbeOptions::tracepoint_variants`] that
    /// attaches (each refusal is logged with its reason).
    fn tracepoints(&mut self) -> Result<(), String> {
        let mut reasons = Vec::new();
        for variant in self.options.tracepoint_variants.clone() {
            let attached = match variant {
                TracepointVariant::RawSysExit => self.raw_sys_exit(),
                TracepointVariant::PerSyscall => self.per_syscall_tracepoints(),
            };
            match attached {
                Ok(()) => {
                    self.tracepoint_variant = Some(variant);
                    tracing::debug!(variant = variant.name(), "tracepoint mode attached");
                    return Ok(());
                }
                Err(reason) => {
                    tracing::info!(variant = variant.name(), %reason, "tracepoint variant refused; trying the next");
                    reasons.push(format!("{}: {reason}", variant.name()));
                }
            }
        }
        Err(reasons.join("; "))
    }

    /// The BTF-typed raw tracepoint `sys_exit`, on `x86_64` kernels whose BTF has `pt_regs.orig_ax`.
    fn raw_sys_exit(&mut self) -> Result<(), String> {
        if !cfg!(target_arch = "x86_64") || self.offsets.regs_orig_ax == config::Offsets::ABSENT {
            return Err("needs x86-64 syscall numbers and pt_regs.orig_ax in the kernel's BTF".to_owned());
        }
        let btf = self.btf()?;
        let program: &mut aya::programs::BtfTracePoint = program(&mut self.ebpf, FileMode::Tracepoint.programs()[0])?;
        program.load("sys_exit", &btf).map_err(describe)?;
        if let Err(e) = program.attach() {
            let reason = describe(e);
            unload(program);
            return Err(reason);
        }
        Ok(())
    }

    /// The syscall exit tracepoints: `openat` is required, the others are attached when the
    /// kernel has them.
    fn per_syscall_tracepoints(&mut self) -> Result<(), String> {
        const SYSCALLS: [&str; 5] = ["openat", "openat2", "open", "creat", "open_by_handle_at"];
        let tracefs = crate::tracefs::ensure_mounted()?;
        crate::tracefs::check_sys_exit_ret_offset(&tracefs, "sys_exit_openat")?;
        let program: &mut TracePoint = program(&mut self.ebpf, FileMode::Tracepoint.programs()[1])?;
        program.load().map_err(describe)?;
        for syscall in SYSCALLS {
            let event = format!("sys_exit_{syscall}");
            if let Err(e) = program.attach("syscalls", &event) {
                if syscall == "openat" {
                    let reason = describe(e);
                    unload(program);
                    return Err(reason);
                }
                tracing::warn!(tracepoint = %event, error = %describe(e), "tracepoint unavailable; those opens are not seen");
            }
        }
        Ok(())
    }

    /// Unloads (and so detaches) programs; ones that were never loaded are skipped.
    fn unload_all(&mut self, names: &[&str]) {
        use aya::programs::Program;
        for name in names {
            match self.ebpf.program_mut(name) {
                Some(Program::Lsm(p)) => unload(p),
                Some(Program::FEntry(p)) => unload(p),
                Some(Program::KProbe(p)) => unload(p),
                Some(Program::TracePoint(p)) => unload(p),
                Some(Program::CgroupSockAddr(p)) => unload(p),
                Some(Program::RawTracePoint(p)) => unload(p),
                Some(Program::BtfTracePoint(p)) => unload(p),
                _ => {}
            }
        }
    }

    /// Sums of the per-CPU statistics, indexed by [`probe_common::stats`].
    ///
    /// # Errors
    /// A failed map read.
    pub fn stats(&self) -> Result<[u64; stats::LEN as usize], aya::maps::MapError> {
        let mut out = [0u64; stats::LEN as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            *slot = self.stats.get(&index, 0)?.iter().sum();
        }
        Ok(out)
    }

    /// The options this probe was loaded with.
    #[must_use]
    pub fn options(&self) -> &ProbeOptions {
        &self.options
    }
}

/// Whether BTF exists where the probe expects it, with a message naming the kernel option.
///
/// # Errors
/// When the file is missing.
pub fn check_btf(path: &Path) -> Result<(), String> {
    if path.exists() {
        Ok(())
    } else {
        Err(format!("{} is missing: tokenprobe needs a kernel built with CONFIG_DEBUG_INFO_BTF=y", path.display()))
    }
}
