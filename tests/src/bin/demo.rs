//! `cargo xtask demo`: `probe-agent watch` on a fake node with two pods — one whose container
//! reads its token and calls a stand-in API server, one that never does — then the evidence.
//!
//! Needs root (tmpfs mounts, cgroups, mount namespaces, BPF).

use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    thread::JoinHandle,
    time::Duration,
};

use probe_agent::evidence::Evidence;
use probe_tests::{
    actor::{Action, run_if_actor},
    fake_node::{Driver, FakeNode, Qos, SA_DIR},
};

fn main() -> ExitCode {
    if let Some(code) = run_if_actor() {
        return code;
    }
    let args: Vec<String> = std::env::args().collect();
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("error: the demo needs root (tmpfs mounts, cgroups, BPF)");
        return ExitCode::FAILURE;
    }
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(8);
    let agent_bin = std::env::var_os("TOKENPROBE_AGENT_BIN")
        .map_or_else(|| std::env::current_exe().expect("current_exe").with_file_name("probe-agent"), PathBuf::from);

    let api = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in API server");
    let api_addr = api.local_addr().expect("local addr");
    let mut node = FakeNode::new(Driver::Systemd);
    let reader_pod = node.pod(Qos::Burstable);
    let reader_vol = node.volume(&reader_pod, "kube-api-access-r3adr", true);
    let reader = node.container(&reader_pod, false);
    let idle_pod = node.pod(Qos::BestEffort);
    let idle_vol = node.volume(&idle_pod, "kube-api-access-1dl3x", true);
    let idle = node.container(&idle_pod, false);
    let output = node.root.join("evidence.json");

    println!("fake node: kubelet dir {}, cgroups under {}", node.kubelet_dir.display(), node.cgroup_root.display());
    println!("  pod {} (reader): container {}", reader_pod.uid, &reader.id[..12]);
    println!("  pod {} (idle):   container {}", idle_pod.uid, &idle.id[..12]);
    println!("  stand-in API server on {api_addr}\n");

    let Some((mut agent, echo)) = start_agent(&agent_bin, &node, api_addr, seconds, &output) else {
        return ExitCode::FAILURE;
    };
    std::thread::sleep(Duration::from_millis(100));
    let mut r = node.spawn(&reader, &[(&reader_vol, SA_DIR)]);
    let _i = node.spawn(&idle, &[(&idle_vol, SA_DIR)]);
    for _ in 0..seconds.saturating_sub(2).max(1) {
        r.ok(&Action::Open(PathBuf::from(SA_DIR).join("token")));
        r.ok(&Action::Connect(api_addr));
        std::thread::sleep(Duration::from_secs(1));
    }
    let status = agent.wait().expect("wait for probe-agent");
    drop(echo.join());
    if !status.success() {
        eprintln!("probe-agent failed: {status}");
        return ExitCode::FAILURE;
    }
    let text = std::fs::read_to_string(&output).expect("evidence file");
    println!("{text}");
    let ev: Evidence = serde_json::from_str(&text).expect("evidence JSON");
    print_table(&ev, &reader_pod.uid);
    let used = |uid: &str| {
        ev.containers.iter().any(|c| c.pod_uid.as_deref() == Some(uid) && c.reads.token + c.api_connects > 0)
    };
    if used(&reader_pod.uid) && !used(&idle_pod.uid) {
        println!("\nthe reader pod used its token; the idle pod never did: automount could be turned off for it");
        ExitCode::SUCCESS
    } else {
        println!("\nunexpected: the evidence does not tell the reader from the idle pod");
        ExitCode::FAILURE
    }
}

/// Starts `probe-agent watch` and waits until it is watching; its log is echoed with a prefix.
fn start_agent(
    bin: &Path,
    node: &FakeNode,
    api: SocketAddr,
    seconds: u64,
    output: &Path,
) -> Option<(Child, JoinHandle<()>)> {
    let mut agent = Command::new(bin)
        .args(["watch", "--node-name", "demo-node", "--mountinfo", "/proc/self/mountinfo"])
        .arg("--kubelet-dir")
        .arg(&node.kubelet_dir)
        .arg("--api-endpoint")
        .arg(api.to_string())
        .arg("--duration")
        .arg(seconds.to_string())
        .arg("--output")
        .arg(output)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let mut log = BufReader::new(agent.stderr.take().expect("agent stderr"));
    loop {
        let mut line = String::new();
        if log.read_line(&mut line).expect("agent log") == 0 {
            eprintln!("probe-agent exited before it was ready: {:?}", agent.wait());
            return None;
        }
        eprint!("agent: {line}");
        if line.contains("watching;") {
            break;
        }
    }
    let echo = std::thread::spawn(move || {
        for line in log.lines().map_while(Result::ok) {
            eprintln!("agent: {line}");
        }
    });
    Some((agent, echo))
}

fn print_table(ev: &Evidence, reader_uid: &str) {
    println!(
        "hooks: file-open={} connect={}\n",
        ev.agent.hooks.file_open.as_deref().unwrap_or("-"),
        ev.agent.hooks.connect.as_deref().unwrap_or("-")
    );
    println!(
        "{:<8} {:<14} {:>6} {:>7} {:>10} {:>13} {:>11}",
        "POD", "CONTAINER", "TOKEN", "CA.CRT", "NAMESPACE", "API-CONNECTS", "FROM-START"
    );
    for c in &ev.containers {
        let pod = if c.pod_uid.as_deref() == Some(reader_uid) { "reader" } else { "idle" };
        let id = c.container_id.as_deref().unwrap_or("-");
        println!(
            "{pod:<8} {:<14} {:>6} {:>7} {:>10} {:>13} {:>11}",
            &id[..id.len().min(12)],
            c.reads.token,
            c.reads.ca_crt,
            c.reads.namespace,
            c.api_connects,
            c.observed_from_start.map_or("unknown".to_owned(), |b| b.to_string())
        );
    }
}
