//! The `probe-agent watch` command line, end to end.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use probe_agent::{
    evidence::Evidence,
    probe::{ConnectHook, FileHook},
};
use probe_tests::{
    actor::Action,
    agent::{dump, entry},
    fake_node::{Driver, FakeNode, Qos, SA_DIR},
};
use tokio::runtime::Runtime;

pub const CASES: &[(&str, super::Case)] = &[
    ("watch_writes_evidence_on_sigterm", watch_writes_evidence_on_sigterm),
    ("watch_duration_to_stdout", watch_duration_to_stdout),
    ("watch_rejects_bad_arguments", watch_rejects_bad_arguments),
];

/// The probe-agent binary: `TOKENPROBE_AGENT_BIN`, or beside this test's deps directory.
fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TOKENPROBE_AGENT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let candidate = exe.parent().and_then(|deps| deps.parent()).map(|d| d.join("probe-agent"));
    match candidate {
        Some(p) if p.exists() => p,
        _ => {
            panic!("probe-agent binary not found: build it (`cargo build -p probe-agent`) or set TOKENPROBE_AGENT_BIN")
        }
    }
}

fn watch_command(node: &FakeNode) -> Command {
    let mut cmd = Command::new(agent_bin());
    cmd.arg("watch")
        .arg("--kubelet-dir")
        .arg(&node.kubelet_dir)
        .arg("--mountinfo")
        .arg("/proc/self/mountinfo")
        .arg("--cgroup-root")
        .arg(&node.cgroup_root)
        .arg("--rescan-interval")
        .arg("200ms")
        .arg("--node-name")
        .arg("cli-node");
    cmd
}

fn watch_writes_evidence_on_sigterm(_rt: &Runtime, _file: FileHook, _connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-s1gt3", true);
    let c = node.container(&pod, false);
    let out = node.root.join("evidence.json");
    let mut child =
        watch_command(&node).arg("--output").arg(&out).stderr(Stdio::piped()).spawn().expect("spawn probe-agent");
    // Ready once it logs that it is watching.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read agent log");
        log.push_str(&line);
        if line.contains("watching;") {
            break;
        }
        assert!(n > 0 && Instant::now() < deadline, "agent did not get ready:\n{log}");
    }
    // Keep draining its log so it never blocks on a full pipe.
    let drain = std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    a.ok(&Action::Open(PathBuf::from(SA_DIR).join("token")));
    a.ok(&Action::Open(PathBuf::from(SA_DIR).join("token")));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM our own child");
    let status = child.wait().expect("wait");
    drop(drain.join());
    assert!(status.success(), "probe-agent exited with {status}:\n{log}");
    let ev: Evidence = serde_json::from_slice(&std::fs::read(&out).expect("evidence file")).expect("evidence JSON");
    assert_eq!(ev.node, "cli-node");
    assert_eq!(entry(&ev, &c).reads.token, 2, "{}", dump(&ev));
}

fn watch_duration_to_stdout(_rt: &Runtime, _file: FileHook, _connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::BestEffort);
    let vol = node.volume(&pod, "kube-api-access-std0t", true);
    let c = node.container(&pod, false);
    let _idle = node.spawn(&c, &[(&vol, SA_DIR)]);
    let output = watch_command(&node)
        .args(["--duration", "1", "--output", "-", "--api-endpoint", "[::1]:6443"])
        .stderr(Stdio::null())
        .output()
        .expect("run probe-agent");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let ev: Evidence = serde_json::from_slice(&output.stdout).expect("evidence JSON on stdout");
    let e = entry(&ev, &c);
    assert_eq!(e.reads.total() + e.api_connects, 0, "idle container present with zeros: {}", dump(&ev));
    let raw: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let raw_entry = &raw["containers"][0];
    assert!(
        raw_entry["namespace"].is_null() && raw_entry["workload"].is_null(),
        "unknown values are null: {raw_entry}"
    );
    assert!(raw_entry["reads"]["ca.crt"].is_u64(), "{raw_entry}");
}

fn watch_rejects_bad_arguments(_rt: &Runtime, _file: FileHook, _connect: ConnectHook) {
    for (args, needle) in [
        (vec!["watch", "--duration", "10x"], "unknown unit"),
        (vec!["watch", "--api-endpoint", "::1:6443"], "expected ADDR:PORT"),
        (vec!["watch", "--file-hook", "magic"], "magic"),
    ] {
        let output = Command::new(agent_bin()).args(&args).output().expect("run probe-agent");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
