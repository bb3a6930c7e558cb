//! The operations every process on a node pays for, timed in batches — in a worker process of
//! their own, so they run with a workload's small descriptor table, not the benchmark's (which
//! holds the agent's maps and programs).

use std::{
    ffi::CString,
    io::{BufRead as _, BufReader, Write as _},
    net::UdpSocket,
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Instant,
};

/// The argument that makes the benchmark binary a worker.
pub const WORKER_ARG: &str = "--overhead-worker";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `open()+close()` of a file on no watched volume: the path every other open takes.
    OpenOrdinary,
    /// The same, from a process holding 200 descriptors (its table outgrew the embedded 64).
    OpenOrdinaryBusy,
    /// `open()+close()` of the token on a watched volume: the counted path.
    OpenToken,
    /// A syscall no program targets: what every syscall pays for the mode.
    Getppid,
    /// A UDP `connect()` to an address that is not an API server.
    UdpConnect,
}

impl Op {
    pub const ALL: [Self; 5] =
        [Self::OpenOrdinary, Self::OpenOrdinaryBusy, Self::OpenToken, Self::Getppid, Self::UdpConnect];
    /// Descriptors the busy worker holds.
    pub const BUSY_FDS: u32 = 200;

    pub const fn name(self) -> &'static str {
        match self {
            Self::OpenOrdinary => "open+close, ordinary file",
            Self::OpenOrdinaryBusy => "  same, 200 fds held",
            Self::OpenToken => "open+close, watched token",
            Self::Getppid => "getppid (untargeted syscall)",
            Self::UdpConnect => "UDP connect, not an API server",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.key() == key)
    }

    pub const fn key(self) -> &'static str {
        match self {
            Self::OpenOrdinary => "open_ordinary",
            Self::OpenOrdinaryBusy => "open_ordinary_200_fds",
            Self::OpenToken => "open_token",
            Self::Getppid => "getppid",
            Self::UdpConnect => "udp_connect",
        }
    }
}

/// Paths and sockets the operations use, made once.
pub struct Targets {
    ordinary: CString,
    token: CString,
    socket: UdpSocket,
    peer: std::net::SocketAddr,
}

impl Targets {
    pub fn new(ordinary: &Path, token: &Path) -> Self {
        let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).expect("path without NUL");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on loopback");
        Self { ordinary: c(ordinary), token: c(token), socket, peer: "127.0.0.1:9".parse().expect("addr") }
    }

    /// `n` operations; nanoseconds per operation.
    pub fn time(&self, op: Op, n: u32) -> f64 {
        let start = Instant::now();
        match op {
            Op::OpenOrdinary | Op::OpenOrdinaryBusy => open_close(&self.ordinary, n),
            Op::OpenToken => open_close(&self.token, n),
            Op::Getppid => {
                for _ in 0..n {
                    // SAFETY: a syscall without arguments.
                    std::hint::black_box(unsafe { libc::syscall(libc::SYS_getppid) });
                }
            }
            Op::UdpConnect => {
                for _ in 0..n {
                    self.socket.connect(self.peer).expect("UDP connect on loopback");
                }
            }
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
    }
}

/// A worker process timing operations on request.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    /// Starts a worker; `extra_fds` descriptors held open make its descriptor table grow past
    /// the kernel's embedded 64 (as in servers with many connections).
    pub fn spawn(ordinary: &Path, token: &Path, extra_fds: u32) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .arg(WORKER_ARG)
            .arg(ordinary)
            .arg(token)
            .arg(extra_fds.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the benchmark worker");
        let stdin = child.stdin.take().expect("worker stdin");
        let stdout = BufReader::new(child.stdout.take().expect("worker stdout"));
        Self { child, stdin: Some(stdin), stdout }
    }

    /// `n` operations in the worker; nanoseconds per operation.
    pub fn time(&mut self, op: Op, n: u32) -> f64 {
        let stdin = self.stdin.as_mut().expect("worker running");
        writeln!(stdin, "{} {n}", op.key()).expect("write to worker");
        stdin.flush().expect("flush to worker");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from worker");
        line.trim().parse().unwrap_or_else(|_| panic!("worker answered {line:?}"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing its stdin ends the worker (and its forked half, which reads the same pipe).
        drop(self.stdin.take());
        drop(self.child.wait());
    }
}

/// The worker's main loop: `<op> <n>` in, nanoseconds per operation out.
pub fn worker_main(args: &[String]) {
    let [ordinary, token, extra] = args else {
        eprintln!("usage: {WORKER_ARG} <ordinary file> <token> <extra fds>");
        std::process::exit(2);
    };
    let extra: u32 = extra.parse().unwrap_or(0);
    // A descriptor table of our own, sized to what is open: a process inherits its parent's
    // table size (and descriptors leaked to it by whoever started the benchmark), while a fork
    // copies only up to the highest open descriptor. So: close all but stdio, fork, and work in
    // the child, whose table is the kernel's embedded 64, as a small workload process's is.
    // SAFETY: closes only descriptors this fresh process does not use (all but stdio), then a
    // fork of a single-threaded process.
    unsafe {
        libc::close_range(3, u32::MAX, 0);
        match nix::unistd::fork() {
            Ok(nix::unistd::ForkResult::Child) => {}
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                let code = match nix::sys::wait::waitpid(child, None) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
                    _ => 1,
                };
                std::process::exit(code);
            }
            Err(e) => {
                eprintln!("worker: fork: {e}");
                std::process::exit(1);
            }
        }
    }
    let held: Vec<std::fs::File> =
        (0..extra).map(|_| std::fs::File::open("/dev/null").expect("open /dev/null")).collect();
    let fd_size = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("FDSize:").map(|v| v.trim().to_owned())))
        .unwrap_or_default();
    eprintln!("# worker with {extra} extra descriptors: descriptor table of {fd_size}");
    let targets = Targets::new(Path::new(ordinary), Path::new(token));
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let mut parts = line.split_whitespace();
        let (Some(op), Some(n)) = (parts.next().and_then(Op::from_key), parts.next().and_then(|n| n.parse().ok()))
        else {
            eprintln!("worker: bad request {line:?}");
            std::process::exit(2);
        };
        writeln!(out, "{}", targets.time(op, n)).expect("stdout");
        out.flush().expect("stdout");
    }
    drop(held);
}

fn open_close(path: &CString, n: u32) {
    for _ in 0..n {
        // SAFETY: a valid C string; the descriptor is closed at once.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            assert!(fd >= 0, "open {path:?}: {}", std::io::Error::last_os_error());
            libc::close(fd);
        }
    }
}
