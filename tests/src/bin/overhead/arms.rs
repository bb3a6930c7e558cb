//! The configurations measured side by side: nothing attached, tokenprobe in each mode, an empty
//! program on each mode's hooks (its floor) and the path-streaming design.

use std::{
    fs::File,
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, RingBuf},
    programs::{BtfTracePoint, CgroupAttachMode, CgroupSockAddr, FEntry, Lsm, TracePoint},
};
use probe_agent::{
    probe::{ConnectHook, FileHook, TracepointVariant},
    watch::{Agent, WatchConfig},
};
use probe_common::bench::PathEvent;
use tokio::runtime::Runtime;

/// The per-syscall exit tracepoints tokenprobe's per-syscall variant attaches to.
const OPEN_SYSCALLS: [&str; 5] = ["openat", "openat2", "open", "creat", "open_by_handle_at"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    Detached,
    /// Empty programs on the raw `sys_exit` tracepoint and `cgroup/connect4`.
    FloorRaw,
    /// tokenprobe, `tracepoint` mode on the raw `sys_exit` tracepoint, `cgroup` connects.
    TokenprobeRaw,
    /// Empty programs on the per-syscall exit tracepoints and `cgroup/connect4`.
    FloorPerSyscall,
    /// tokenprobe, `tracepoint` mode on the per-syscall exit tracepoints, `cgroup` connects.
    TokenprobePerSyscall,
    /// Every `openat`'s path through a ring buffer to a user-space matcher.
    Stream,
    /// Empty `lsm/file_open` and `lsm/socket_connect`.
    FloorLsm,
    TokenprobeLsm,
    /// Empty `fentry` on `security_file_open` and `tcp_v4_connect`.
    FloorFentry,
    TokenprobeFentry,
}

impl Arm {
    pub const HOST: [Self; 6] = [
        Self::Detached,
        Self::FloorRaw,
        Self::TokenprobeRaw,
        Self::FloorPerSyscall,
        Self::TokenprobePerSyscall,
        Self::Stream,
    ];
    pub const VM: [Self; 5] =
        [Self::Detached, Self::FloorLsm, Self::TokenprobeLsm, Self::FloorFentry, Self::TokenprobeFentry];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Detached => "detached",
            Self::FloorRaw => "floor: empty raw sys_exit",
            Self::TokenprobeRaw => "tokenprobe tracepoint (raw sys_exit)",
            Self::FloorPerSyscall => "floor: empty sys_exit_*",
            Self::TokenprobePerSyscall => "tokenprobe tracepoint (sys_exit_*)",
            Self::Stream => "path streaming (sys_enter_openat)",
            Self::FloorLsm => "floor: empty lsm",
            Self::TokenprobeLsm => "tokenprobe lsm",
            Self::FloorFentry => "floor: empty fentry",
            Self::TokenprobeFentry => "tokenprobe fentry",
        }
    }

    pub const fn key(self) -> &'static str {
        match self {
            Self::Detached => "detached",
            Self::FloorRaw => "floor_raw_sys_exit",
            Self::TokenprobeRaw => "tokenprobe_raw_sys_exit",
            Self::FloorPerSyscall => "floor_per_syscall",
            Self::TokenprobePerSyscall => "tokenprobe_per_syscall",
            Self::Stream => "path_streaming",
            Self::FloorLsm => "floor_lsm",
            Self::TokenprobeLsm => "tokenprobe_lsm",
            Self::FloorFentry => "floor_fentry",
            Self::TokenprobeFentry => "tokenprobe_fentry",
        }
    }

    /// The floor a tokenprobe arm is judged against.
    pub const fn floor(self) -> Option<Self> {
        match self {
            Self::TokenprobeRaw => Some(Self::FloorRaw),
            Self::TokenprobePerSyscall => Some(Self::FloorPerSyscall),
            Self::TokenprobeLsm => Some(Self::FloorLsm),
            Self::TokenprobeFentry => Some(Self::FloorFentry),
            _ => None,
        }
    }

    /// Kernel names (15 characters at most) of the programs that run on file opens and on
    /// connects in this arm, for `bpf_stats`.
    pub const fn programs(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Self::Detached => (&[], &[]),
            Self::FloorRaw => (&["bench_sys_exit"], &["bench_connect4"]),
            Self::TokenprobeRaw => (&["tp_file_open_sy"], &["tp_connect4_cgr", "tp_connect6_cgr"]),
            Self::FloorPerSyscall => (&["bench_tp_exit"], &["bench_connect4"]),
            Self::TokenprobePerSyscall => (&["tp_file_open_tr"], &["tp_connect4_cgr", "tp_connect6_cgr"]),
            Self::Stream => (&["bench_stream"], &[]),
            Self::FloorLsm => (&["bench_lsm_open"], &["bench_lsm_conn"]),
            Self::TokenprobeLsm => (&["tp_file_open_ls"], &["tp_connect_lsm"]),
            Self::FloorFentry => (&["bench_fent_open"], &["bench_fent_conn"]),
            Self::TokenprobeFentry => (&["tp_file_open_fe"], &["tp_connect4_fen", "tp_connect6_fen"]),
        }
    }
}

/// What the bench needs to attach any arm.
pub struct Ctx {
    pub rt: Runtime,
    pub btf: Btf,
    pub cgroup_root: PathBuf,
    /// The fake node's agent configuration (its volume, a made-up API address).
    pub config: WatchConfig,
}

/// An attached arm; dropping it detaches everything.
pub struct Live {
    agent: Option<Agent>,
    _ebpf: Option<Ebpf>,
    pub stream: Option<Consumer>,
}

impl Live {
    /// Detaches (stops the agent cleanly).
    pub fn stop(mut self, ctx: &Ctx) {
        if let Some(agent) = self.agent.take()
            && let Err(e) = ctx.rt.block_on(agent.stop())
        {
            eprintln!("warning: agent stop: {e}");
        }
        if let Some(stream) = self.stream.take() {
            stream.stop();
        }
    }

    pub fn agent(&self) -> Option<&Agent> {
        self.agent.as_ref()
    }
}

fn describe(e: impl std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Ctx {
    /// Attaches `arm`; `Err` says why this kernel does not allow it.
    pub fn attach(&self, arm: Arm) -> Result<Live, String> {
        let live = |agent, ebpf, stream| Ok(Live { agent, _ebpf: ebpf, stream });
        match arm {
            Arm::Detached => live(None, None, None),
            Arm::TokenprobeRaw => live(
                Some(self.agent(FileHook::Tracepoint, ConnectHook::Cgroup, TracepointVariant::RawSysExit)?),
                None,
                None,
            ),
            Arm::TokenprobePerSyscall => live(
                Some(self.agent(FileHook::Tracepoint, ConnectHook::Cgroup, TracepointVariant::PerSyscall)?),
                None,
                None,
            ),
            Arm::TokenprobeLsm => {
                live(Some(self.agent(FileHook::Lsm, ConnectHook::Lsm, TracepointVariant::RawSysExit)?), None, None)
            }
            Arm::TokenprobeFentry => live(
                Some(self.agent(FileHook::Fentry, ConnectHook::Fentry, TracepointVariant::RawSysExit)?),
                None,
                None,
            ),
            Arm::FloorRaw => {
                let mut ebpf = self.bench_object()?;
                btf_tp(&mut ebpf, &self.btf, "bench_sys_exit", "sys_exit")?;
                connect4(&mut ebpf, &self.cgroup_root)?;
                live(None, Some(ebpf), None)
            }
            Arm::FloorPerSyscall => {
                let mut ebpf = self.bench_object()?;
                tracepoints(&mut ebpf, "bench_tp_exit", &OPEN_SYSCALLS.map(|s| format!("sys_exit_{s}")))?;
                connect4(&mut ebpf, &self.cgroup_root)?;
                live(None, Some(ebpf), None)
            }
            Arm::Stream => {
                let mut ebpf = self.bench_object()?;
                let ring =
                    ebpf.take_map(probe_common::maps::BENCH_PATHS).ok_or("no ring buffer in the bench object")?;
                let ring = RingBuf::try_from(ring).map_err(describe)?;
                tracepoints(&mut ebpf, "bench_stream", &["sys_enter_openat".to_owned()])?;
                live(None, Some(ebpf), Some(Consumer::start(ring)))
            }
            Arm::FloorLsm => {
                let mut ebpf = self.bench_object()?;
                lsm(&mut ebpf, &self.btf, "bench_lsm_open", "file_open")?;
                lsm(&mut ebpf, &self.btf, "bench_lsm_conn", "socket_connect")?;
                live(None, Some(ebpf), None)
            }
            Arm::FloorFentry => {
                let mut ebpf = self.bench_object()?;
                fentry(&mut ebpf, &self.btf, "bench_fent_open", "security_file_open")?;
                fentry(&mut ebpf, &self.btf, "bench_fent_conn", "tcp_v4_connect")?;
                live(None, Some(ebpf), None)
            }
        }
    }

    fn agent(&self, file: FileHook, connect: ConnectHook, variant: TracepointVariant) -> Result<Agent, String> {
        let mut config = self.config.clone();
        config.file_hook = file;
        config.connect_hook = connect;
        config.tracepoint_variants = vec![variant];
        config.exec_tracking = true;
        probe_agent::probe::retain_parsed_btf();
        self.rt.block_on(Agent::start(config)).map_err(describe)
    }

    fn bench_object(&self) -> Result<Ebpf, String> {
        EbpfLoader::new().btf(Some(&self.btf)).load(probe_agent::ebpf::BENCH_OBJECT).map_err(describe)
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name).ok_or_else(|| format!("no program {name}"))?.try_into().map_err(describe)
}

fn btf_tp(ebpf: &mut Ebpf, btf: &Btf, name: &str, tracepoint: &str) -> Result<(), String> {
    let p: &mut BtfTracePoint = program(ebpf, name)?;
    p.load(tracepoint, btf).map_err(describe)?;
    p.attach().map(drop).map_err(describe)
}

fn tracepoints(ebpf: &mut Ebpf, name: &str, events: &[String]) -> Result<(), String> {
    let p: &mut TracePoint = program(ebpf, name)?;
    p.load().map_err(describe)?;
    let mut attached = 0;
    for event in events {
        if p.attach("syscalls", event).is_ok() {
            attached += 1;
        }
    }
    if attached == 0 { Err(format!("{name}: no tracepoint of {events:?} attached")) } else { Ok(()) }
}

fn connect4(ebpf: &mut Ebpf, cgroup_root: &Path) -> Result<(), String> {
    let cgroup = File::open(cgroup_root).map_err(|e| format!("{}: {e}", cgroup_root.display()))?;
    let p: &mut CgroupSockAddr = program(ebpf, "bench_connect4")?;
    p.load().map_err(describe)?;
    p.attach(cgroup.as_fd(), CgroupAttachMode::Single).map(drop).map_err(describe)
}

fn lsm(ebpf: &mut Ebpf, btf: &Btf, name: &str, hook: &str) -> Result<(), String> {
    let p: &mut Lsm = program(ebpf, name)?;
    p.load(hook, btf).map_err(describe)?;
    p.attach().map(drop).map_err(describe)
}

fn fentry(ebpf: &mut Ebpf, btf: &Btf, name: &str, function: &str) -> Result<(), String> {
    let p: &mut FEntry = program(ebpf, name)?;
    p.load(function, btf).map_err(describe)?;
    p.attach().map(drop).map_err(describe)
}

/// The user-space half of the path-streaming design: reads every event and matches its path
/// against the token's file name, as path-based detectors do.
pub struct Consumer {
    stop: Arc<AtomicBool>,
    pub events: Arc<AtomicU64>,
    pub matched: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Consumer {
    fn start(mut ring: RingBuf<MapData>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(AtomicU64::new(0));
        let matched = Arc::new(AtomicU64::new(0));
        let (s, e, m) = (stop.clone(), events.clone(), matched.clone());
        let thread = std::thread::spawn(move || {
            let fd = ring.as_raw_fd();
            loop {
                let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&raw mut pfd, 1, 20) };
                while let Some(item) = ring.next() {
                    if item.len() >= size_of::<PathEvent>() {
                        // SAFETY: the program writes whole `PathEvent`s; unaligned read of POD.
                        let event: PathEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                        let len = (event.len as usize).min(event.path.len());
                        let path = &event.path[..len];
                        let path = path.strip_suffix(b"\0").unwrap_or(path);
                        if path.ends_with(b"/serviceaccount/token") || path.ends_with(b"/token") {
                            m.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    e.fetch_add(1, Ordering::Relaxed);
                }
                if s.load(Ordering::Relaxed) {
                    return;
                }
            }
        });
        Self { stop, events, matched, thread: Some(thread) }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            drop(t.join());
        }
    }
}

/// `run_time` and `run_count` summed over the loaded programs named `names`.
pub fn program_stats(names: &[&str]) -> (u64, u64) {
    let mut time = 0u64;
    let mut count = 0u64;
    for info in aya::programs::loaded_programs().flatten() {
        if info.name_as_str().is_some_and(|n| names.contains(&n)) {
            time += u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
            count += info.run_count();
        }
    }
    (time, count)
}
