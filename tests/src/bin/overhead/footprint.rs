//! The agent binary's own cost on a node: memory and idle CPU with 110 and 1,000 watched
//! containers, and how long it takes from exec to watching.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use probe_tests::fake_node::{Driver, FakeNode, Qos};
use serde_json::{Value, json};

pub struct Row {
    pub containers: usize,
    /// Exec to "watching" (BTF parsed, programs loaded, attached and self-tested).
    pub start: Duration,
    pub rss_kib: u64,
    pub peak_kib: u64,
    /// Share of one core while idle.
    pub cpu_percent: f64,
    pub window: Duration,
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        })
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // state is field 3 overall, so utime (14) and stime (15) are at 11 and 12 here.
    let get = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Runs the agent binary (`TOKENPROBE_AGENT_BIN`: `cargo xtask bench` passes the shipped static
/// binary) on a fake node of each size in `sizes`.
pub fn measure(_node: &mut FakeNode, sizes: &[usize]) -> Result<Vec<Row>, String> {
    let Some(bin) = std::env::var_os("TOKENPROBE_AGENT_BIN") else {
        eprintln!("# agent footprint skipped: TOKENPROBE_AGENT_BIN is not set (cargo xtask bench sets it)");
        return Ok(Vec::new());
    };
    let window = Duration::from_secs(if sizes.len() == 1 { 6 } else { 20 });
    let mut rows = Vec::new();
    for &n in sizes {
        let mut node = FakeNode::new(Driver::Systemd);
        let mut pods = Vec::new();
        for i in 0..n {
            let pod = node.pod(Qos::Burstable);
            let vol = node.volume(&pod, &format!("kube-api-access-{i:05}"), true);
            let container = node.container(&pod, false);
            pods.push((pod, vol, container));
        }
        let mut child = Command::new(&bin)
            .arg("watch")
            .arg("--kubelet-dir")
            .arg(&node.kubelet_dir)
            .arg("--mountinfo")
            .arg(format!("/proc/{}/mountinfo", std::process::id()))
            .arg("--cgroup-root")
            .arg(&node.cgroup_root)
            .args(["--node-name", "bench-node", "--output", "-"])
            .env("TOKENPROBE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.to_string_lossy()))?;
        let start = Instant::now();
        let pid = child.id();
        let stderr = child.stderr.take().ok_or("agent stderr")?;
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let ready = loop {
            match rx.recv_timeout(Duration::from_mins(1)) {
                Ok(line) if line.contains("watching;") => break Some(start.elapsed()),
                Ok(_) => {}
                Err(_) => break None,
            }
        };
        let Some(started) = ready else {
            drop(child.kill());
            drop(child.wait());
            return Err(format!("the agent did not start watching {n} containers within 60 s"));
        };
        // Two default rescans: every volume and container found and followed.
        std::thread::sleep(Duration::from_secs(5));
        let before = cpu_ticks(pid);
        let t0 = Instant::now();
        std::thread::sleep(window);
        let ticks = cpu_ticks(pid) - before;
        let elapsed = t0.elapsed();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
        #[expect(clippy::cast_precision_loss, reason = "tick counts are small")]
        let cpu_percent = ticks as f64 / hz as f64 / elapsed.as_secs_f64() * 100.0;
        let row = Row {
            containers: n,
            start: started,
            rss_kib: status_kib(pid, "VmRSS:"),
            peak_kib: status_kib(pid, "VmHWM:"),
            cpu_percent,
            window: elapsed,
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).map_err(|e| e.to_string())?),
            nix::sys::signal::Signal::SIGTERM,
        )
        .map_err(|e| e.to_string())?;
        drop(child.wait());
        let log: Vec<String> = rx.try_iter().collect();
        drop(reader.join());
        if let Some(bad) = log.iter().find(|l| l.contains("ERROR")) {
            return Err(format!("the agent logged an error at {n} containers: {bad}"));
        }
        eprintln!("# footprint at {n} containers: {} KiB, {:.2} % CPU", row.rss_kib, row.cpu_percent);
        rows.push(row);
        drop(pods);
    }
    Ok(rows)
}

pub fn print(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    println!("\nthe agent binary on a fake node (exec to watching; memory; CPU while idle):");
    for r in rows {
        #[expect(clippy::cast_precision_loss, reason = "KiB counts are small")]
        let (rss, peak) = (r.rss_kib as f64 / 1024.0, r.peak_kib as f64 / 1024.0);
        println!(
            "  {:>5} containers: start {:.0} ms, RSS {rss:.1} MiB (peak {peak:.1} MiB), CPU {:.2} % of a core over {:.0} s",
            r.containers,
            r.start.as_secs_f64() * 1e3,
            r.cpu_percent,
            r.window.as_secs_f64()
        );
    }
}

pub fn json(rows: &[Row]) -> Value {
    rows.iter()
        .map(|r| {
            json!({
                "containers": r.containers,
                "start_ms": (r.start.as_secs_f64() * 1e3).round(),
                "rss_kib": r.rss_kib,
                "peak_rss_kib": r.peak_kib,
                "cpu_percent": (r.cpu_percent * 100.0).round() / 100.0,
                "window_seconds": r.window.as_secs_f64().round(),
            })
        })
        .collect()
}
