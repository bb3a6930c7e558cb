//! `cargo xtask soak`: `probe-agent watch` (the real binary, with a state directory) on a fake
//! node under sustained load for a given time — token opens from every container, opens of
//! other files by a host process, API connects, containers and pods coming and going, and agent
//! restarts — then every container's counts checked exactly, and the agent's memory and CPU
//! over time reported.
//!
//! Exactness by design: the load runs in phases; between phases the load stops, and that is
//! when containers are replaced and the agent restarted (SIGTERM: it saves, the next one loads).
//! So the expected counts are exactly the opens and connects made, and none falls in a gap —
//! the load during a deliberate gap is zero, not estimated. (A SIGKILL loses what was counted
//! since the last save; `cli/kill_9_during_saves_keeps_every_saved_count` covers that.)
//!
//! Needs root (tmpfs mounts, cgroups, mount namespaces, BPF).

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use probe_agent::evidence::Evidence;
use probe_tests::{
    actor::{Action, Actor, run_if_actor},
    fake_node::{Container, Driver, FakeNode, Qos, SA_DIR, Volume},
};

#[derive(Debug, Parser)]
#[command(name = "tokenprobe-soak")]
struct Args {
    /// How long the load runs (`30m`, `90s`).
    #[arg(long, value_parser = probe_agent::cli::parse_duration, default_value = "60s")]
    duration: Duration,
    /// Token opens per second, across the containers (paced; the default aims 10 % above
    /// 10,000 so that phase changes do not pull the mean below it).
    #[arg(long, default_value_t = 11_000)]
    token_rate: u32,
    /// Opens per second of other files by host threads (not counted by the agent).
    #[arg(long, default_value_t = 110_000)]
    other_rate: u32,
    /// Containers running at a time (one pod each).
    #[arg(long, default_value_t = 8)]
    containers: usize,
    /// Length of a load phase; between phases containers are replaced and the agent restarted.
    #[arg(long, value_parser = probe_agent::cli::parse_duration, default_value = "5s")]
    phase: Duration,
    /// Replace one container (and its pod) every this many phases.
    #[arg(long, default_value_t = 1)]
    churn_every: u32,
    /// Restart the agent every this many phases.
    #[arg(long, default_value_t = 4)]
    restart_every: u32,
    /// Also write the report (samples and totals) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A running container of the soak (one per pod): its volume, cgroup and process.
struct Live {
    volume: Volume,
    container: Container,
    actor: Actor,
}

#[derive(Debug, Default, Clone, Copy)]
struct Expected {
    token: u64,
    connects: u64,
}

/// The agent process and its log.
struct Agent {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Agent {
    fn start(bin: &Path, node: &FakeNode, api: SocketAddr, http: SocketAddr, state: &Path, output: &Path) -> Self {
        let mut child = Command::new(bin)
            .args(["watch", "--node-name", "soak-node", "--mountinfo", "/proc/self/mountinfo"])
            .arg("--kubelet-dir")
            .arg(&node.kubelet_dir)
            .arg("--cgroup-root")
            .arg(&node.cgroup_root)
            .arg("--api-endpoint")
            .arg(api.to_string())
            .arg("--state-dir")
            .arg(state)
            .args(["--save-interval", "5s", "--log-format", "json"])
            .arg("--http-addr")
            .arg(http.to_string())
            .arg("--output")
            .arg(output)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut log = sink.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let agent = Self { child, log };
        let deadline = Instant::now() + Duration::from_mins(2);
        while !agent.log().contains("watching;") {
            assert!(Instant::now() < deadline, "the agent did not start:\n{}", agent.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM; waits for it to save and exit.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM our own child");
        let status = self.child.wait().expect("wait for the agent");
        assert!(status.success(), "the agent exited with {status}:\n{}", self.log());
    }
}

/// `GET path` from the agent's HTTP server.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

fn evidence(http: SocketAddr) -> Option<Evidence> {
    serde_json::from_str(&http_get(http, "/v1/evidence")?).ok()
}

/// Waits until the agent has an entry for each of `containers` (it watches their volumes).
fn wait_known(http: SocketAddr, containers: &[&Container], agent: &Agent) {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        if let Some(ev) = evidence(http) {
            let known = |c: &&Container| {
                ev.containers.iter().any(|e| e.container_id.as_deref() == Some(c.id.as_str()) && e.gone_since.is_none())
            };
            if containers.iter().all(known) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the agent does not know every container:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn new_live(node: &mut FakeNode, n: usize) -> Live {
    let pod = node.pod(Qos::Burstable);
    let volume = node.volume(&pod, &format!("kube-api-access-s{n:04}"), true);
    let container = node.container(&pod, false);
    let actor = node.spawn(&container, &[(&volume, SA_DIR)]);
    Live { volume, container, actor }
}

/// The agent's resident memory (KiB) and CPU time (clock ticks).
fn usage(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    seconds: f64,
    rss_mib: f64,
    cpu_percent: f64,
}

fn main() -> ExitCode {
    if let Some(code) = run_if_actor() {
        return code;
    }
    let args = Args::parse();
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("error: the soak needs root (tmpfs mounts, cgroups, BPF)");
        return ExitCode::FAILURE;
    }
    match soak(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn soak(args: &Args) -> Result<(), String> {
    let bin = std::env::var_os("TOKENPROBE_AGENT_BIN")
        .map_or_else(|| std::env::current_exe().expect("current_exe").with_file_name("probe-agent"), PathBuf::from);
    let api = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let api_addr = api.local_addr().map_err(|e| e.to_string())?;
    // The stand-in API server accepts and closes.
    std::thread::spawn(move || {
        for conn in api.incoming() {
            drop(conn);
        }
    });
    let http = {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?
    };
    let mut node = FakeNode::new(Driver::Systemd);
    let state = node.root.join("state");
    let output = node.root.join("evidence.json");
    let other = node.root.join("other-file");
    std::fs::write(&other, b"not a token").map_err(|e| e.to_string())?;

    let mut next = 0;
    let mut live: Vec<Live> = (0..args.containers)
        .map(|_| {
            next += 1;
            new_live(&mut node, next)
        })
        .collect();
    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    let mut gone = 0_u64;

    let mut agent = Agent::start(&bin, &node, api_addr, http, &state, &output);
    wait_known(http, &live.iter().map(|l| &l.container).collect::<Vec<_>>(), &agent);
    let agent_pid = Arc::new(AtomicU64::new(u64::from(agent.pid())));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampling = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let sampler_thread = {
        let (pid, samples, sampling) = (Arc::clone(&agent_pid), Arc::clone(&samples), Arc::clone(&sampling));
        std::thread::spawn(move || {
            let tick = 100.0; // USER_HZ
            let mut last: Option<(u32, u64, Instant)> = None;
            while sampling.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                let p = u32::try_from(pid.load(Ordering::SeqCst)).unwrap_or(0);
                let Some((rss, ticks)) = usage(p) else { continue };
                let now = Instant::now();
                if let Some((lp, lt, at)) = last
                    && lp == p
                {
                    #[expect(clippy::cast_precision_loss, reason = "a report")]
                    let cpu = (ticks.saturating_sub(lt)) as f64 / tick / now.duration_since(at).as_secs_f64() * 100.0;
                    #[expect(clippy::cast_precision_loss, reason = "a report")]
                    samples.lock().expect("samples").push(Sample {
                        seconds: started.elapsed().as_secs_f64(),
                        rss_mib: rss as f64 / 1024.0,
                        cpu_percent: cpu,
                    });
                }
                last = Some((p, ticks, now));
            }
        })
    };

    let mut phases = 0_u32;
    let mut restarts = 0_u32;
    let mut load_time = Duration::ZERO;
    let (mut token_total, mut other_total) = (0_u64, 0_u64);
    let phase_secs = args.phase.as_secs_f64();
    while started.elapsed() < args.duration {
        phases += 1;
        // Between phases: containers come and go, the agent restarts.
        if phases > 1 && phases.is_multiple_of(args.churn_every.max(1)) {
            let old = live.remove(0);
            let Live { volume, container, actor } = old;
            drop(actor);
            node.remove_container(&container);
            node.remove_volume(&volume);
            gone += 1;
            next += 1;
            live.push(new_live(&mut node, next));
        }
        if phases > 1 && phases.is_multiple_of(args.restart_every.max(1)) {
            agent.stop();
            agent = Agent::start(&bin, &node, api_addr, http, &state, &output);
            agent_pid.store(u64::from(agent.pid()), Ordering::SeqCst);
            restarts += 1;
        }
        wait_known(http, &live.iter().map(|l| &l.container).collect::<Vec<_>>(), &agent);

        // The load: every container opens its token at its share of the rate and connects once;
        // a host process opens another file meanwhile.
        let n = u32::try_from(live.len()).unwrap_or(1).max(1);
        let per_container = args.token_rate / n;
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "rates and a phase of seconds")]
        let count = (f64::from(per_container) * phase_secs) as u32;
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "rates and a phase of seconds")]
        let other_count = (f64::from(args.other_rate) * phase_secs) as u64;
        let load_started = Instant::now();
        std::thread::scope(|s| {
            for l in &mut live {
                let token = PathBuf::from(SA_DIR).join("token");
                s.spawn(move || {
                    l.actor.ok(&Action::OpenPaced { path: token, count, per_second: per_container });
                    l.actor.ok(&Action::Connect(api_addr));
                });
            }
            // Two host threads, each at half the rate.
            for _ in 0..2 {
                let other = &other;
                let rate = f64::from(args.other_rate) / 2.0;
                s.spawn(move || {
                    let start = Instant::now();
                    for i in 0..other_count / 2 {
                        drop(std::fs::File::open(other).expect("open the other file"));
                        // Paced like the containers: never ahead of the rate.
                        #[expect(clippy::cast_precision_loss, reason = "pacing")]
                        let due = Duration::from_secs_f64(i as f64 / rate);
                        if let Some(wait) = due.checked_sub(start.elapsed())
                            && wait > Duration::from_millis(1)
                        {
                            std::thread::sleep(wait);
                        }
                    }
                });
            }
        });
        load_time += load_started.elapsed();
        for l in &live {
            let e = expected.entry(l.container.id.clone()).or_default();
            e.token += u64::from(count);
            e.connects += 1;
        }
        token_total += u64::from(count) * u64::from(n);
        other_total += other_count / 2 * 2;
    }
    agent.stop();
    sampling.store(false, Ordering::SeqCst);
    drop(sampler_thread.join());

    // Every container, running or gone: exactly what it did.
    let text = std::fs::read_to_string(&output).map_err(|e| format!("the evidence: {e}"))?;
    let ev: Evidence = serde_json::from_str(&text).map_err(|e| format!("the evidence: {e}"))?;
    let mut wrong = Vec::new();
    for (id, want) in &expected {
        let got = ev.containers.iter().filter(|e| e.container_id.as_deref() == Some(id.as_str()));
        let (token, connects) = got.fold((0, 0), |(t, c), e| (t + e.reads.token, c + e.api_connects));
        if token != want.token || connects != want.connects {
            wrong.push(format!(
                "container {}: {token} token opens, {connects} connects; made {} and {}",
                &id[..12],
                want.token,
                want.connects
            ));
        }
    }
    let lost = ev.agent.losses.counter_map_full.count + ev.agent.losses.read_errors.count;
    let samples = samples.lock().expect("samples").clone();
    let max_rss = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let last_rss = samples.last().map_or(0.0, |s| s.rss_mib);
    #[expect(clippy::cast_precision_loss, reason = "a report")]
    let mean_cpu = samples.iter().map(|s| s.cpu_percent).sum::<f64>() / samples.len().max(1) as f64;
    #[expect(clippy::cast_precision_loss, reason = "a report")]
    let (token_rate, other_rate) =
        (token_total as f64 / load_time.as_secs_f64(), other_total as f64 / load_time.as_secs_f64());
    println!(
        "soak: {:.0} s, {phases} phases, {restarts} agent restarts, {} containers replaced ({} in all), modes file-open={} connect={}",
        started.elapsed().as_secs_f64(),
        gone,
        expected.len(),
        ev.agent.hooks.file_open.as_deref().unwrap_or("-"),
        ev.agent.hooks.connect.as_deref().unwrap_or("-"),
    );
    println!(
        "load held: {token_rate:.0} token opens/s, {other_rate:.0} other opens/s, {} connects, while loading ({:.0} s of load)",
        expected.values().map(|e| e.connects).sum::<u64>(),
        load_time.as_secs_f64()
    );
    println!("agent: RSS max {max_rss:.1} MiB, at the end {last_rss:.1} MiB; CPU mean {mean_cpu:.1} % of a core");
    // One gap per restart; the evidence keeps the latest MAX_GAPS.
    let gaps_expected = (restarts as usize).min(probe_agent::watch::MAX_GAPS);
    println!(
        "gaps recorded: {} (one per restart, the latest {} kept: {gaps_expected} expected)",
        ev.agent.gaps.len(),
        probe_agent::watch::MAX_GAPS
    );
    println!("{:>8} {:>9} {:>7}", "SECONDS", "RSS MiB", "CPU %");
    let step = (samples.len() / 20).max(1);
    for s in samples.iter().step_by(step) {
        println!("{:>8.0} {:>9.1} {:>7.1}", s.seconds, s.rss_mib, s.cpu_percent);
    }
    if let Some(path) = &args.json {
        let report = serde_json::json!({
            "seconds": started.elapsed().as_secs_f64(), "phases": phases, "restarts": restarts,
            "containers": expected.len(), "replaced": gone, "tokenOpensPerSecond": token_rate,
            "otherOpensPerSecond": other_rate, "lost": lost, "wrong": wrong, "samples": samples,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if ev.agent.gaps.len() != gaps_expected {
        wrong.push(format!("{} gaps recorded for {restarts} restarts ({gaps_expected} expected)", ev.agent.gaps.len()));
    }
    // The gaps kept are the latest, in order, and none overlaps the next.
    if ev.agent.gaps.windows(2).any(|w| w[0].to > w[1].from) {
        wrong.push(format!("gaps out of order: {:?}", ev.agent.gaps));
    }
    if lost > 0 {
        wrong.push(format!("the agent lost {lost} events"));
    }
    if wrong.is_empty() {
        println!("every count exact: {} containers, nothing lost or misattributed", expected.len());
        Ok(())
    } else {
        Err(format!("counts differ:\n  {}", wrong.join("\n  ")))
    }
}
