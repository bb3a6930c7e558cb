//! Fake container processes.
//!
//! An actor is the current executable re-run with [`ACTOR_ARG`]: it joins a container's cgroup,
//! enters a mount namespace of its own with the pod's volumes bind-mounted where a kubelet
//! would put them, then performs [`Action`]s read from stdin one JSON line at a time, answering
//! each with one line. Closing stdin ends it.

use std::{
    ffi::CString,
    io::{BufRead as _, BufReader, Write as _},
    net::SocketAddr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use nix::{
    fcntl::{OFlag, open, openat},
    mount::{MsFlags, mount},
    sched::{CloneFlags, unshare},
    sys::stat::Mode,
};
use serde::{Deserialize, Serialize};

/// First argument that turns the test executable into an actor.
pub const ACTOR_ARG: &str = "__tokenprobe_actor";

/// How an actor sets itself up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActorSpec {
    /// The cgroup v2 directory to join; `None` stays in the caller's (a host process).
    pub cgroup: Option<PathBuf>,
    /// (volume directory, path inside the actor's mount namespace) bind mounts.
    pub mounts: Vec<(PathBuf, PathBuf)>,
    /// Enter this process's mount namespace instead of making one (an exec session entering a
    /// running container).
    pub enter_mount_ns_of: Option<u32>,
    /// Enter this network namespace (`/run/netns/<name>`).
    pub netns: Option<PathBuf>,
}

/// Something an actor does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// `open(path, O_RDONLY)`, then close.
    Open(PathBuf),
    /// `open(path, O_PATH)`, then close.
    OpenPath(PathBuf),
    /// `chdir(dir)`, `open(name)` (a relative path), `chdir("/")`.
    OpenRelative { dir: PathBuf, name: String },
    /// `openat(open(dir, O_DIRECTORY|O_PATH), name)`.
    OpenAt { dir: PathBuf, name: String },
    /// `openat2(AT_FDCWD, path, {flags: O_RDONLY})`.
    OpenAt2(PathBuf),
    /// An `IORING_OP_OPENAT` through `io_uring` (no open syscall), then close.
    OpenIoUring(PathBuf),
    /// `fork()`; the child opens the file and exits (a descendant of the actor).
    ForkOpen(PathBuf),
    /// A TCP connect (the stand-in must be listening), then close.
    Connect(SocketAddr),
    /// A TCP connect that may be refused (only the attempt matters).
    ConnectAttempt(SocketAddr),
    /// A TCP connect from an IPv6 socket to the IPv4-mapped form of an IPv4 address.
    ConnectMapped(SocketAddr),
    /// `open(path)` from a forked process whose descriptor table is the kernel's embedded 64
    /// (the actor's own may be larger, inherited from the harness).
    OpenFromSmallTable(PathBuf),
    /// `open(path)` while the actor holds more than 64 descriptors (its table outgrew the
    /// embedded one, as a server's does).
    OpenFromLargeTable(PathBuf),
    /// `count` opens (and closes) of `path`, paced to `per_second` (the benchmark's load).
    OpenPaced { path: PathBuf, count: u32, per_second: u32 },
    /// A path-taking lookup syscall on `path` — what clients that only look (Python's and
    /// Ruby's `stat` before `open`) do — made as that raw syscall, not through libc's choice.
    Look(LookCall, PathBuf),
}

/// The x86-64 syscalls that look a path up without opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LookCall {
    Stat,
    Lstat,
    Newfstatat,
    Statx,
    Access,
    Faccessat,
    Faccessat2,
}

impl LookCall {
    pub const ALL: [Self; 7] =
        [Self::Stat, Self::Lstat, Self::Newfstatat, Self::Statx, Self::Access, Self::Faccessat, Self::Faccessat2];
}

/// The answer to an action: `Ok` or the errno it failed with.
pub type Outcome = Result<(), i32>;

/// The harness side of a running actor.
pub struct Actor {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Actor {
    /// Starts an actor and waits until it is set up.
    ///
    /// # Panics
    /// When the actor cannot be started or fails to set up (its error is in the message).
    #[must_use]
    pub fn spawn(spec: &ActorSpec) -> Self {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .arg(ACTOR_ARG)
            .arg(serde_json::to_string(spec).expect("spec serializes"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn actor");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("actor stdout"));
        let mut actor = Self { child, stdin, stdout };
        let line = actor.read_line();
        assert_eq!(line, "ready", "actor failed to set up ({spec:?}): {line}");
        actor
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from actor");
        line.trim_end().to_owned()
    }

    /// The actor's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Performs one action and returns its outcome.
    ///
    /// # Errors
    /// The errno the action failed with, in the actor.
    ///
    /// # Panics
    /// When the actor died or answered nonsense.
    pub fn run(&mut self, action: &Action) -> Outcome {
        let stdin = self.stdin.as_mut().expect("actor still running");
        writeln!(stdin, "{}", serde_json::to_string(action).expect("action serializes")).expect("write to actor");
        stdin.flush().expect("flush to actor");
        let line = self.read_line();
        match line.strip_prefix("err ") {
            None if line == "ok" => Ok(()),
            Some(errno) => Err(errno.parse().unwrap_or_else(|_| panic!("bad answer {line:?}"))),
            None => panic!("actor answered {line:?} to {action:?}"),
        }
    }

    /// Performs an action that must succeed.
    ///
    /// # Panics
    /// When it fails.
    pub fn ok(&mut self, action: &Action) {
        if let Err(errno) = self.run(action) {
            panic!("{action:?} failed: {}", std::io::Error::from_raw_os_error(errno));
        }
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // Closing stdin ends it; kill (only this child, by its pid) if it does not go.
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if let Err(e) = self.child.kill() {
            eprintln!("warning: cannot kill actor {}: {e}", self.child.id());
        }
        if let Err(e) = self.child.wait() {
            eprintln!("warning: cannot reap actor {}: {e}", self.child.id());
        }
    }
}

/// Runs the actor when this process was started as one (every binary that spawns actors calls
/// this first); `Some` exit code then, `None` otherwise.
#[must_use]
pub fn run_if_actor() -> Option<std::process::ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    (args.get(1).map(String::as_str) == Some(ACTOR_ARG)).then(|| {
        actor_main(args.get(2).map_or("", String::as_str));
        std::process::ExitCode::SUCCESS
    })
}

/// Entry point of an actor process. Returns when stdin closes.
///
/// # Panics
/// Never on purpose: setup errors are reported on stdout for the harness to assert on.
pub fn actor_main(spec_json: &str) {
    let mut out = std::io::stdout().lock();
    match serde_json::from_str::<ActorSpec>(spec_json).map_err(|e| e.to_string()).and_then(|s| setup(&s)) {
        Ok(()) => writeln!(out, "ready").expect("stdout"),
        Err(e) => {
            writeln!(out, "setup failed: {e}").expect("stdout");
            return;
        }
    }
    out.flush().expect("stdout");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        let answer = match serde_json::from_str::<Action>(&line) {
            Ok(action) => match perform(&action) {
                Ok(()) => "ok".to_owned(),
                Err(errno) => format!("err {}", errno as i32),
            },
            Err(e) => format!("bad action {e}"),
        };
        writeln!(out, "{answer}").expect("stdout");
        out.flush().expect("stdout");
    }
}

fn setup(spec: &ActorSpec) -> Result<(), String> {
    if let Some(cgroup) = &spec.cgroup {
        std::fs::write(cgroup.join("cgroup.procs"), "0\n").map_err(|e| format!("join {}: {e}", cgroup.display()))?;
    }
    if let Some(netns) = &spec.netns {
        let fd = std::fs::File::open(netns).map_err(|e| format!("open {}: {e}", netns.display()))?;
        nix::sched::setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| format!("enter {}: {e}", netns.display()))?;
    }
    if let Some(pid) = spec.enter_mount_ns_of {
        let fd =
            std::fs::File::open(format!("/proc/{pid}/ns/mnt")).map_err(|e| format!("open mount ns of {pid}: {e}"))?;
        nix::sched::setns(fd, CloneFlags::CLONE_NEWNS).map_err(|e| format!("enter mount ns of {pid}: {e}"))?;
        return Ok(());
    }
    if spec.mounts.is_empty() {
        return Ok(());
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare mount ns: {e}"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("make / private: {e}"))?;
    // A scratch /run of our own, so the kubelet-style mount points can be made anywhere below it
    // without touching the host's.
    mount(Some("tmpfs"), "/run", Some("tmpfs"), MsFlags::empty(), Some("mode=755"))
        .map_err(|e| format!("tmpfs on /run: {e}"))?;
    for (source, target) in &spec.mounts {
        let target = resolve_run(target);
        std::fs::create_dir_all(&target).map_err(|e| format!("mkdir {}: {e}", target.display()))?;
        mount(Some(source.as_path()), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| format!("bind {} on {}: {e}", source.display(), target.display()))?;
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| format!("read-only {}: {e}", target.display()))?;
    }
    Ok(())
}

/// `/var/run/...` is `/run/...` (on hosts where /var/run is not the usual symlink, the mount is
/// made in /run all the same, where the actor's own tmpfs is).
fn resolve_run(path: &Path) -> PathBuf {
    path.strip_prefix("/var/run").map_or_else(|_| path.to_path_buf(), |rest| Path::new("/run").join(rest))
}

fn perform(action: &Action) -> Result<(), nix::errno::Errno> {
    match action {
        Action::Open(path) => open(path.as_path(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map(drop),
        Action::OpenPath(path) => open(path.as_path(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map(drop),
        Action::OpenRelative { dir, name } => {
            nix::unistd::chdir(dir.as_path())?;
            let result = open(name.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map(drop);
            nix::unistd::chdir("/")?;
            result
        }
        Action::OpenAt { dir, name } => {
            let dir = open(dir.as_path(), OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?;
            openat(&dir, name.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map(drop)
        }
        Action::OpenAt2(path) => openat2(path),
        Action::OpenIoUring(path) => open_io_uring(path),
        Action::ForkOpen(path) => fork_open(path),
        Action::Connect(addr) => std::net::TcpStream::connect(addr).map(drop).map_err(|e| errno_of(&e)),
        Action::ConnectAttempt(addr) => {
            match std::net::TcpStream::connect_timeout(addr, std::time::Duration::from_secs(2)) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
                Err(e) => Err(errno_of(&e)),
            }
        }
        Action::ConnectMapped(addr) => connect_mapped(*addr),
        Action::Look(call, path) => look(*call, path),
        Action::OpenPaced { path, count, per_second } => open_paced(path, *count, *per_second),
        Action::OpenFromSmallTable(path) => open_from_small_table(path),
        Action::OpenFromLargeTable(path) => {
            let held: Vec<OwnedFd> = (0..100)
                .map(|_| open("/dev/null", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()))
                .collect::<Result<_, _>>()?;
            let result = open(path.as_path(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map(drop);
            drop(held);
            result
        }
    }
}

/// A fork copies the descriptor table only up to the highest open descriptor: close all but
/// stdio in a child, fork again, and the grandchild's table is the embedded one.
fn open_from_small_table(path: &Path) -> Result<(), nix::errno::Errno> {
    use nix::{
        sys::wait::{WaitStatus, waitpid},
        unistd::{ForkResult, fork},
    };
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: the children only call close_range, fork, waitpid, open, close and _exit.
    match unsafe { fork() }? {
        ForkResult::Child => unsafe {
            libc::close_range(3, u32::MAX, 0);
            let code = match fork() {
                Ok(ForkResult::Child) => {
                    let fd = libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                    if fd >= 0 {
                        libc::close(fd);
                    }
                    libc::_exit(i32::from(!(0..64).contains(&fd)));
                }
                Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => code,
                    _ => 1,
                },
                Err(_) => 1,
            };
            libc::_exit(code);
        },
        ForkResult::Parent { child } => match waitpid(child, None)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            _ => Err(nix::errno::Errno::EIO),
        },
    }
}

fn open_paced(path: &Path, count: u32, per_second: u32) -> Result<(), nix::errno::Errno> {
    let start = std::time::Instant::now();
    let per_second = f64::from(per_second.max(1));
    for i in 0..count {
        // Ahead of schedule: wait (busy, the pace is far finer than a sleep's granularity).
        while start.elapsed().as_secs_f64() < f64::from(i) / per_second {
            std::hint::spin_loop();
        }
        drop(open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?);
    }
    Ok(())
}

fn look(call: LookCall, path: &Path) -> Result<(), nix::errno::Errno> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| nix::errno::Errno::EINVAL)?;
    let p = c_path.as_ptr();
    // Big enough for `struct stat` and `struct statx`.
    let mut buf = [0u8; 512];
    let b = buf.as_mut_ptr();
    // SAFETY: raw syscalls with a valid C string and a buffer larger than any result struct.
    let ret = unsafe {
        match call {
            LookCall::Stat => libc::syscall(libc::SYS_stat, p, b),
            LookCall::Lstat => libc::syscall(libc::SYS_lstat, p, b),
            LookCall::Newfstatat => libc::syscall(libc::SYS_newfstatat, libc::AT_FDCWD, p, b, 0),
            LookCall::Statx => libc::syscall(libc::SYS_statx, libc::AT_FDCWD, p, 0, libc::STATX_BASIC_STATS, b),
            LookCall::Access => libc::syscall(libc::SYS_access, p, libc::R_OK),
            LookCall::Faccessat => libc::syscall(libc::SYS_faccessat, libc::AT_FDCWD, p, libc::R_OK),
            LookCall::Faccessat2 => libc::syscall(libc::SYS_faccessat2, libc::AT_FDCWD, p, libc::R_OK, 0),
        }
    };
    if ret < 0 { Err(nix::errno::Errno::last()) } else { Ok(()) }
}

fn errno_of(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn openat2(path: &Path) -> Result<(), nix::errno::Errno> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow { flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64, mode: 0, resolve: 0 };
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: valid C string and struct pointer with its size, as openat2(2) takes them.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, c_path.as_ptr(), &raw const how, size_of::<OpenHow>())
    };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: a fresh fd we own.
    drop(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).map_err(|_| nix::errno::Errno::EBADF)?) });
    Ok(())
}

/// Opens `path` in a forked child (the actor is single-threaded, so forking is safe).
fn fork_open(path: &Path) -> Result<(), nix::errno::Errno> {
    use nix::{
        sys::wait::{WaitStatus, waitpid},
        unistd::{ForkResult, fork},
    };
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: the child only calls open, close and _exit (async-signal-safe).
    match unsafe { fork() }? {
        ForkResult::Child => {
            // SAFETY: raw syscalls on a valid C string; _exit never returns.
            unsafe {
                let fd = libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    libc::close(fd);
                }
                libc::_exit(i32::from(fd < 0));
            }
        }
        ForkResult::Parent { child } => match waitpid(child, None)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            _ => Err(nix::errno::Errno::EIO),
        },
    }
}

/// Opens a file with `IORING_OP_OPENAT`: the kernel opens it without any open syscall, which
/// only the LSM/fentry/kprobe hooks see.
fn open_io_uring(path: &Path) -> Result<(), nix::errno::Errno> {
    use io_uring::{IoUring, opcode, types};
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| nix::errno::Errno::EINVAL)?;
    let mut ring = IoUring::new(4).map_err(|e| errno_of(&e))?;
    let entry = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), c_path.as_ptr())
        .flags(libc::O_RDONLY | libc::O_CLOEXEC)
        .build()
        .user_data(1);
    // SAFETY: the path outlives the submission; we wait for its completion below.
    unsafe { ring.submission().push(&entry) }.map_err(|_| nix::errno::Errno::EBUSY)?;
    ring.submit_and_wait(1).map_err(|e| errno_of(&e))?;
    let result = ring.completion().next().map_or(-libc::EIO, |cqe| cqe.result());
    if result < 0 {
        return Err(nix::errno::Errno::from_raw(-result));
    }
    // SAFETY: the fd io_uring opened for us.
    drop(unsafe { OwnedFd::from_raw_fd(result) });
    Ok(())
}

/// Connects an `AF_INET6` socket to `::ffff:a.b.c.d`, as dual-stack clients do.
fn connect_mapped(addr: SocketAddr) -> Result<(), nix::errno::Errno> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn6, connect, socket};
    let SocketAddr::V4(v4) = addr else { return Err(nix::errno::Errno::EINVAL) };
    let mapped = std::net::SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0);
    let fd = socket(AddressFamily::Inet6, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    connect(fd.as_raw_fd(), &SockaddrIn6::from(mapped))
}
