//! `cargo xtask bench`: what the agent costs the node, measured side by side in one run.
//!
//! Alternating rounds — programs detached, then attached — of the operations every process on
//! a node pays for: `open()+close()` of an ordinary file (the in-kernel fast path: one map
//! lookup that misses), of the token on a watched volume (the counted path), and a UDP
//! `connect()` (the connect hook). Per operation: min and median over rounds, and the ratio
//! attached/detached of the medians. Alternating matters: this VM drifts between a fast and a
//! slow mode for seconds at a time. Also the kernel memory of the agent's maps. Root.

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use probe_agent::watch::Agent;
use probe_tests::fake_node::{Driver, FakeNode, Qos};

const ROUNDS: usize = 12;
const OPS: u32 = 20_000;

fn open_close(path: &Path, n: u32) -> f64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: a valid C string; the fd is closed right away.
        unsafe {
            let fd = libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::close(fd);
            }
        }
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
}

fn udp_connect(n: u32) -> f64 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let start = Instant::now();
    for _ in 0..n {
        socket.connect(target).expect("connect");
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Kernel memory charged for this process's BPF maps (`memlock` in each map fd's fdinfo).
fn map_memory() -> u64 {
    let Ok(fds) = std::fs::read_dir("/proc/self/fdinfo") else { return 0 };
    fds.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|info| info.contains("map_type:"))
        .filter_map(|info| {
            info.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

struct Series {
    name: &'static str,
    detached: Vec<f64>,
    attached: Vec<f64>,
}

fn main() -> ExitCode {
    if let Some(code) = probe_tests::actor::run_if_actor() {
        return code;
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("error: the overhead benchmark needs root");
        return ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let volume = node.volume(&pod, "kube-api-access-b3nch", true);
    let token: PathBuf = volume.dir.join("token");
    let ordinary = PathBuf::from("/etc/hostname");
    let mut config = node.watch_config();
    config.api_endpoints = vec!["127.0.0.1:6443".parse().expect("addr")];
    let mut series = [
        Series { name: "open+close, ordinary file", detached: Vec::new(), attached: Vec::new() },
        Series { name: "open+close, watched token", detached: Vec::new(), attached: Vec::new() },
        Series { name: "UDP connect, not a target", detached: Vec::new(), attached: Vec::new() },
    ];
    let measure = |series: &mut [Series; 3], attached: bool| {
        let runs = [open_close(&ordinary, OPS), open_close(&token, OPS), udp_connect(OPS)];
        for (s, ns) in series.iter_mut().zip(runs) {
            if attached { s.attached.push(ns) } else { s.detached.push(ns) }
        }
    };
    let mut modes = String::new();
    let mut memory = 0;
    let before = map_memory();
    for round in 0..ROUNDS {
        measure(&mut series, false);
        let agent = rt.block_on(Agent::start(config.clone())).expect("agent start");
        if round == 0 {
            let ev = rt.block_on(agent.snapshot()).expect("snapshot");
            modes = format!(
                "file-open {}, connect {}",
                ev.agent.hooks.file_open.unwrap_or_default(),
                ev.agent.hooks.connect.unwrap_or_default()
            );
            memory = map_memory().saturating_sub(before);
        }
        measure(&mut series, true);
        rt.block_on(agent.stop()).expect("agent stop");
    }
    println!("tokenprobe overhead, {ROUNDS} alternating rounds of {OPS} operations ({modes}):\n");
    println!(
        "{:<28} {:>14} {:>14} {:>14} {:>14} {:>8}",
        "operation", "detached min", "detached med", "attached min", "attached med", "ratio"
    );
    for s in &mut series {
        let dmin = s.detached.iter().copied().fold(f64::MAX, f64::min);
        let amin = s.attached.iter().copied().fold(f64::MAX, f64::min);
        let dmed = median(&mut s.detached);
        let amed = median(&mut s.attached);
        println!(
            "{:<28} {:>11.0} ns {:>11.0} ns {:>11.0} ns {:>11.0} ns {:>7.2}x",
            s.name,
            dmin,
            dmed,
            amin,
            amed,
            amed / dmed
        );
    }
    #[expect(clippy::cast_precision_loss, reason = "a few MiB")]
    let mib = memory as f64 / 1_048_576.0;
    println!("\nkernel memory of the agent's BPF maps: {mib:.1} MiB");
    drop(node);
    ExitCode::SUCCESS
}
