//! `cargo xtask node start|stop`: a real Kubernetes 1.20 node on this machine — kubelet,
//! containerd, runc and CNI from Debian's packages, kube-proxy and the scheduler, and a control
//! plane of its own with the controllers workloads need — for the tests that run the DaemonSet
//! in `deploy/` and real workloads.
//!
//! Every address of the node lives in a network namespace this tool creates, with no route out:
//! the node's address, the pod bridge, the Service IPs (kube-proxy's rules), the API server as
//! pods see it. Everything of the node runs in it; the host reaches the API server through one
//! forwarder on 127.0.0.1. `stop` ends exactly the processes `start` started (containerd's
//! shims and the containers too), unmounts, removes cgroups, the namespace and the state
//! directories, and restores every sysctl that changed.

mod clean;
mod config;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    apiserver::{self, Instance, Paths},
    apt,
    cmd::{self, output},
    image,
};

/// The node's name, network namespace and addresses.
pub const NODE_NAME: &str = "tokenprobe-node";
pub const NETNS: &str = "tokenprobe-node";
pub const NODE_IP: &str = "10.99.0.2";
pub const POD_CIDR: &str = "10.88.0.0/16";
/// The Service range of the test API servers (`--service-cluster-ip-range`).
const SERVICE_CIDR: &str = "10.0.0.0/24";

/// Directories the node owns and removes at `stop`.
pub const STATE: &str = "/var/lib/tokenprobe-node";
pub const CONTAINERD_ROOT: &str = "/var/lib/tokenprobe-node/containerd";
pub const CONTAINERD_SOCKET: &str = "/run/tokenprobe-node/containerd.sock";
const RUN: &str = "/run/tokenprobe-node";
const KUBELET_DIR: &str = "/var/lib/kubelet";
/// The agent's state hostPath in `deploy/agent.yaml`.
const AGENT_STATE: &str = "/var/lib/tokenprobe";
/// Where the kubelet and containerd keep pod logs.
const POD_LOGS: [&str; 2] = ["/var/log/pods", "/var/log/containers"];
pub const OWNED_DIRS: [&str; 4] = [STATE, RUN, KUBELET_DIR, AGENT_STATE];
/// Marks a directory as this tool's (a real kubelet's is never touched).
const MARKER: &str = ".tokenprobe-node";

#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Start the node (builds and caches what it needs; idempotent).
    Start,
    /// Stop it and undo everything it did (idempotent).
    Stop,
}

/// Where the node's own files live: pid files, logs, the sysctl snapshot.
pub struct NodePaths {
    pub cache: PathBuf,
    pub run: PathBuf,
}

impl NodePaths {
    pub fn new(cache: &Path) -> Self {
        Self { cache: cache.to_path_buf(), run: cache.join("node/run") }
    }

    fn api(&self) -> Paths {
        let mut paths = Paths::of(&self.cache, Instance::Node);
        paths.netns = Some(NETNS.into());
        paths
    }

    /// The admin kubeconfig of the node's API server (reached through the forwarder).
    pub fn kubeconfig(&self) -> PathBuf {
        self.api().kubeconfig()
    }

    fn log(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.log"))
    }

    fn sysctl_snapshot(&self) -> PathBuf {
        self.cache.join("node/sysctls-before.json")
    }
}

pub fn command(cache: &Path, command: &NodeCommand) -> anyhow::Result<()> {
    let paths = NodePaths::new(cache);
    match command {
        NodeCommand::Start => {
            let started = start(&paths)?;
            println!("node {NODE_NAME} ready: export KUBECONFIG={}", started.kubeconfig.display());
            Ok(())
        }
        NodeCommand::Stop => {
            let left = stop(&paths)?;
            if !left.is_empty() {
                bail!("left behind:\n  {}", left.join("\n  "));
            }
            Ok(())
        }
    }
}

/// A step of `start`: its name says where it failed, its log what happened.
fn step<T>(name: &str, log: Option<&Path>, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    eprintln!("xtask: node: {name}");
    f().with_context(|| match log {
        Some(log) => format!("node start failed at step \"{name}\" (log: {})", log.display()),
        None => format!("node start failed at step \"{name}\""),
    })
}

/// What `start` gives the tests.
pub struct Started {
    pub kubeconfig: PathBuf,
    /// The agent image's reference (imported into the node's containerd).
    pub agent_image: String,
    /// The API server's audit log and the policy it writes it with.
    pub audit_log: PathBuf,
    pub audit_policy: PathBuf,
}

fn is_ours(dir: &str) -> bool {
    Path::new(dir).join(MARKER).exists()
}

fn pid_file(paths: &NodePaths, name: &str) -> PathBuf {
    paths.run.join(format!("{name}.pid"))
}

fn read_pid(paths: &NodePaths, name: &str) -> Option<u32> {
    std::fs::read_to_string(pid_file(paths, name)).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Starts a daemon in the node's network namespace (or on the host), in its own process group,
/// output to its log, pid to its pid file.
fn spawn(paths: &NodePaths, name: &str, in_netns: bool, program: &str, args: &[String]) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt as _;
    let log = std::fs::File::create(paths.log(name))?;
    let mut cmd = if in_netns {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{NETNS}")).arg("--").arg(program);
        c
    } else {
        Command::new(program)
    };
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    std::fs::write(pid_file(paths, name), child.id().to_string())?;
    Ok(child.id())
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("{what} not ready after {}s", timeout.as_secs())
}

/// `ip -n <netns> …`
fn ip(args: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["-n", NETNS]).args(args.split(' '));
    cmd::run(&mut cmd)
}

fn kubectl(paths: &NodePaths) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(paths.kubeconfig());
    cmd
}

/// Refuses to touch a machine that runs a kubelet of its own.
fn preflight() -> anyhow::Result<()> {
    for dir in [KUBELET_DIR, AGENT_STATE] {
        if Path::new(dir).exists() && !is_ours(dir) {
            bail!("{dir} exists and is not this tool's: refusing to run a test node on a machine that has one");
        }
    }
    let kubelets = Command::new("pgrep").args(["-x", "kubelet"]).output().map(|o| o.stdout).unwrap_or_default();
    // A kubelet this process started and stopped earlier stays a zombie until it exits: not one
    // that runs.
    let running = String::from_utf8_lossy(&kubelets)
        .split_whitespace()
        .filter(|pid| !zombie(pid))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    if !running.is_empty() && std::fs::read_dir("/proc").is_ok() {
        bail!("a kubelet already runs here (pid {}): refusing to start another", running.join(", "));
    }
    Ok(())
}

/// Whether `/proc/<pid>/stat` says the process has exited and awaits its parent (state `Z`).
fn zombie(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn packages() -> anyhow::Result<()> {
    apt::ensure_tools(&[
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("/usr/lib/cni/bridge", "containernetworking-plugins"),
        ("iptables", "iptables"),
        ("conntrack", "conntrack"),
        ("socat", "socat"),
        ("ip", "iproute2"),
        ("curl", "curl"),
    ])
}

fn network() -> anyhow::Result<()> {
    if !clean::netns_exists() {
        cmd::run(Command::new("ip").args(["netns", "add", NETNS]))?;
    }
    ip("link set lo up")?;
    if Command::new("ip").args(["-n", NETNS, "link", "show", "node0"]).output().is_ok_and(|o| !o.status.success()) {
        // The node's interface: one end of a veth pair whose other end stays in the namespace
        // too (kernels without the dummy device have veth; CNI needs it anyway).
        ip("link add node0 type veth peer name node0-peer")?;
        ip(&format!("addr add {NODE_IP}/24 dev node0"))?;
        ip("link set node0-peer up")?;
        ip("link set node0 up")?;
        // Service IPs are only ever rewritten by kube-proxy: an on-link route so the node's own
        // processes may connect to them; nothing answers there otherwise. No route out.
        ip(&format!("route add {SERVICE_CIDR} dev node0"))?;
    }
    Ok(())
}

/// The host's way in: 127.0.0.1:<port> on the host → the API server inside the namespace.
fn forwarder(paths: &NodePaths) -> anyhow::Result<()> {
    let port = Instance::Node.port();
    spawn(
        paths,
        "forwarder",
        false,
        "socat",
        &[
            format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"),
            format!("EXEC:nsenter --net=/run/netns/{NETNS} socat STDIO TCP\\:127.0.0.1\\:{port}"),
        ],
    )?;
    Ok(())
}

fn write(path: &str, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {path}"))
}

fn containerd(paths: &NodePaths) -> anyhow::Result<()> {
    write(&format!("{STATE}/containerd.toml"), &config::containerd())?;
    write(&format!("{STATE}/cni/net.d/10-tokenprobe.conflist"), &config::cni())?;
    spawn(paths, "containerd", true, "containerd", &["--config".into(), format!("{STATE}/containerd.toml")])?;
    wait_for("containerd", Duration::from_secs(30), || {
        Command::new("ctr").args(["--address", CONTAINERD_SOCKET, "version"]).output().is_ok_and(|o| o.status.success())
    })
}

fn import(images: &[image::Image]) -> anyhow::Result<()> {
    for i in images {
        cmd::run(
            Command::new("ctr")
                .args(["--address", CONTAINERD_SOCKET, "-n", "k8s.io", "images", "import"])
                .arg(&i.archive),
        )
        .with_context(|| format!("cannot import {}", i.reference))?;
    }
    Ok(())
}

fn kubelet(paths: &NodePaths, bin: &Path) -> anyhow::Result<()> {
    write(&format!("{STATE}/kubelet.yaml"), &config::kubelet())?;
    let kubeconfig = paths.kubeconfig().display().to_string();
    spawn(
        paths,
        "kubelet",
        true,
        &bin.join("kubelet").display().to_string(),
        &[
            format!("--config={STATE}/kubelet.yaml"),
            format!("--kubeconfig={kubeconfig}"),
            "--container-runtime=remote".into(),
            format!("--container-runtime-endpoint=unix://{CONTAINERD_SOCKET}"),
            format!("--node-ip={NODE_IP}"),
            format!("--hostname-override={NODE_NAME}"),
            format!("--root-dir={KUBELET_DIR}"),
            format!("--pod-infra-container-image={}", image::PAUSE),
            "--v=1".into(),
        ],
    )?;
    Ok(())
}

fn kube_proxy(paths: &NodePaths, bin: &Path) -> anyhow::Result<()> {
    let kubeconfig = paths.kubeconfig().display().to_string();
    write(&format!("{STATE}/kube-proxy.yaml"), &config::kube_proxy(&kubeconfig))?;
    spawn(
        paths,
        "kube-proxy",
        true,
        &bin.join("kube-proxy").display().to_string(),
        &[format!("--config={STATE}/kube-proxy.yaml")],
    )?;
    Ok(())
}

fn scheduler(paths: &NodePaths, bin: &Path) -> anyhow::Result<()> {
    let kubeconfig = paths.kubeconfig().display().to_string();
    spawn(
        paths,
        "kube-scheduler",
        true,
        &bin.join("kube-scheduler").display().to_string(),
        &[
            format!("--kubeconfig={kubeconfig}"),
            "--leader-elect=false".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
        ],
    )?;
    Ok(())
}

fn node_ready(paths: &NodePaths) -> bool {
    output(kubectl(paths).args([
        "get",
        "node",
        NODE_NAME,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}|{.spec.taints}"#,
    ]))
    .is_ok_and(|s| s.starts_with("True|") && !s.contains("not-ready"))
}

/// Starts the node; returns at once if it runs already.
///
/// # Errors
/// The step that failed, with its log.
pub fn start(paths: &NodePaths) -> anyhow::Result<Started> {
    let api = paths.api();
    let agent_image = step("the agent image", None, || image::agent(&paths.cache))?;
    step("the agent image, read by skopeo", None, || image::check_with_skopeo(&agent_image))?;
    let started = Started {
        kubeconfig: api.kubeconfig(),
        agent_image: agent_image.reference.clone(),
        audit_log: api.audit_log(),
        audit_policy: api.audit_policy(),
    };
    if read_pid(paths, "kubelet").is_some_and(alive) && node_ready(paths) {
        step("import the agent image", None, || import(std::slice::from_ref(&agent_image)))?;
        return Ok(started);
    }
    step("preflight", None, preflight)?;
    step("packages (containerd, runc, CNI plugins, iptables, conntrack, socat)", None, packages)?;
    step("Kubernetes binaries", None, || apiserver::build(&api))?;
    let images = step("node images", None, || image::node_images(&paths.cache))?;
    std::fs::create_dir_all(&paths.run)?;
    if !paths.sysctl_snapshot().exists() {
        step("sysctl snapshot", None, || {
            std::fs::write(paths.sysctl_snapshot(), serde_json::to_vec(&clean::sysctls())?).map_err(Into::into)
        })?;
    }
    if !paths.run.join("netns-before").exists() {
        std::fs::write(paths.run.join("netns-before"), clean::named_netns().join("\n"))?;
    }
    if !paths.run.join("pod-logs-before").exists() {
        let existing: Vec<&str> = POD_LOGS.into_iter().filter(|d| Path::new(d).exists()).collect();
        std::fs::write(paths.run.join("pod-logs-before"), existing.join("\n"))?;
    }
    for dir in OWNED_DIRS {
        std::fs::create_dir_all(dir)?;
        std::fs::write(Path::new(dir).join(MARKER), "made by cargo xtask node start\n")?;
    }
    step("network namespace", None, network)?;
    step("forwarder", Some(&paths.log("forwarder")), || forwarder(paths))?;
    step("control plane", Some(&api.run), || apiserver::start(&api).map(drop))?;
    step("containerd", Some(&paths.log("containerd")), || containerd(paths))?;
    let mut all = images;
    all.push(agent_image);
    step("image import", None, || import(&all))?;
    step("kubelet", Some(&paths.log("kubelet")), || kubelet(paths, &api.bin))?;
    step("kube-proxy", Some(&paths.log("kube-proxy")), || kube_proxy(paths, &api.bin))?;
    step("kube-scheduler", Some(&paths.log("kube-scheduler")), || scheduler(paths, &api.bin))?;
    step("node Ready", Some(&paths.log("kubelet")), || {
        wait_for("the node", Duration::from_mins(2), || node_ready(paths))
    })?;
    Ok(started)
}

/// Stops the node and undoes what it did; returns what is left (nothing, when all went well).
///
/// # Errors
/// When the sysctl snapshot cannot be read.
pub fn stop(paths: &NodePaths) -> anyhow::Result<Vec<String>> {
    use nix::sys::signal::Signal;
    // Containers first (their shims end with them), then the node's daemons.
    if Path::new(CONTAINERD_SOCKET).exists() {
        let tasks =
            output(Command::new("ctr").args(["--address", CONTAINERD_SOCKET, "-n", "k8s.io", "tasks", "ls", "-q"]))
                .unwrap_or_default();
        for task in tasks.lines().filter(|t| !t.trim().is_empty()) {
            let ctr = |args: &[&str]| {
                drop(
                    Command::new("ctr")
                        .args(["--address", CONTAINERD_SOCKET, "-n", "k8s.io", "tasks"])
                        .args(args)
                        .output(),
                );
            };
            ctr(&["kill", "-s", "SIGKILL", task.trim()]);
            ctr(&["delete", "-f", task.trim()]);
        }
    }
    let daemons = ["kubelet", "kube-proxy", "kube-scheduler", "containerd", "forwarder"];
    let recorded: Vec<u32> = daemons.iter().filter_map(|d| read_pid(paths, d)).filter(|p| alive(*p)).collect();
    clean::signal(&recorded, Signal::SIGTERM);
    if !clean::wait_gone(&recorded, Duration::from_secs(15)) {
        clean::signal(&recorded, Signal::SIGKILL);
        clean::wait_gone(&recorded, Duration::from_secs(5));
    }
    // The forwarder's per-connection children, containerd's shims, the containers' processes.
    for _ in 0..3 {
        let rest: Vec<u32> = clean::descendants().into_iter().map(|(p, _)| p).collect();
        if rest.is_empty() {
            break;
        }
        clean::signal(&rest, Signal::SIGKILL);
        clean::wait_gone(&rest, Duration::from_secs(5));
    }
    for d in daemons {
        drop(std::fs::remove_file(pid_file(paths, d)));
    }
    apiserver::stop(&paths.api())?;
    let mut left = Vec::new();
    left.extend(clean::unmount_all().into_iter().map(|m| format!("mount {m}")));
    if clean::netns_exists() {
        drop(Command::new("ip").args(["netns", "del", NETNS]).status());
    }
    // The pod sandboxes' namespaces containerd made (it removes them only through CRI).
    for name in new_pod_netns(paths) {
        if let Err(e) = clean::remove_netns(&name) {
            left.push(format!("network namespace {e}"));
        }
    }
    for tree in clean::kubepods_cgroups() {
        if let Err(e) = clean::remove_cgroup_tree(&tree) {
            left.push(format!("cgroup {}: {e}", tree.display()));
        }
    }
    for dir in OWNED_DIRS {
        if Path::new(dir).exists()
            && (is_ours(dir) || dir == STATE || dir == RUN)
            && let Err(e) = std::fs::remove_dir_all(dir)
        {
            left.push(format!("directory {dir}: {e}"));
        }
    }
    remove_pod_logs(paths);
    left.extend(leftovers(paths));
    if let Ok(bytes) = std::fs::read(paths.sysctl_snapshot()) {
        let before: BTreeMap<String, String> = serde_json::from_slice(&bytes).context("the sysctl snapshot")?;
        let (restored, failed) = clean::restore_sysctls(&before);
        for r in &restored {
            eprintln!("xtask: node: restored sysctl {r}");
        }
        left.extend(failed.into_iter().map(|f| format!("sysctl {f}")));
        left.extend(clean::changed_sysctls(&before).into_iter().map(|s| format!("sysctl {s}")));
        std::fs::remove_file(paths.sysctl_snapshot())?;
    }
    for f in ["pod-logs-before", "netns-before"] {
        drop(std::fs::remove_file(paths.run.join(f)));
    }
    Ok(left)
}

/// Pod sandbox namespaces (`cni-…`) that did not exist before `start`.
fn new_pod_netns(paths: &NodePaths) -> Vec<String> {
    let before: Vec<String> = std::fs::read_to_string(paths.run.join("netns-before"))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    clean::named_netns().into_iter().filter(|n| n.starts_with("cni-") && !before.contains(n)).collect()
}

/// Pod log directories the node made (the snapshot of which existed before is in the run dir).
fn remove_pod_logs(paths: &NodePaths) {
    let before: Vec<String> = std::fs::read_to_string(paths.run.join("pod-logs-before"))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    for dir in POD_LOGS {
        if !before.iter().any(|b| b == dir) {
            drop(std::fs::remove_dir_all(dir));
        }
    }
}

/// What the node left on this machine: processes, mounts, cgroups, the namespace, bridges,
/// iptables chains in the host's namespace, state directories (changed sysctls are checked by
/// `stop`, against the snapshot `start` took). Empty when nothing is left.
#[must_use]
pub fn leftovers(paths: &NodePaths) -> Vec<String> {
    let mut left = Vec::new();
    for d in ["kubelet", "kube-proxy", "kube-scheduler", "containerd", "forwarder"] {
        if let Some(pid) = read_pid(paths, d).filter(|p| alive(*p)) {
            left.push(format!("process {d} ({pid})"));
        }
    }
    left.extend(clean::descendants().into_iter().map(|(p, c)| format!("process {p}: {c}")));
    left.extend(clean::mounts().into_iter().map(|m| format!("mount {m}")));
    left.extend(clean::kubepods_cgroups().into_iter().map(|c| format!("cgroup {}", c.display())));
    if clean::netns_exists() {
        left.push(format!("network namespace {NETNS}"));
    }
    left.extend(new_pod_netns(paths).into_iter().map(|n| format!("network namespace {n}")));
    left.extend(clean::host_bridges().into_iter().map(|b| format!("bridge {b}")));
    left.extend(clean::host_chains().into_iter().map(|c| format!("iptables chain {c}")));
    for dir in OWNED_DIRS {
        if Path::new(dir).exists() {
            left.push(format!("directory {dir}"));
        }
    }
    left
}
