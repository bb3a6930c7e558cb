//! `cargo xtask test` and `cargo xtask demo`.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::{
    cmd::{self, is_root, output, workspace_root},
    setup::cache_dir,
    vm::VmArgs,
};

#[derive(Debug, clap::Args)]
#[expect(clippy::struct_excessive_bools, reason = "one switch per tier, as on the command line")]
pub struct TestArgs {
    /// Only cases whose name contains this (privileged suite).
    filter: Option<String>,
    /// Skip the unit tests.
    #[arg(long)]
    no_unit: bool,
    /// Skip the kernel matrix in VMs.
    #[arg(long)]
    no_vm: bool,
    /// Skip the tests against a real API server.
    #[arg(long)]
    no_apiserver: bool,
    /// Skip the real-node tier (a kubelet + containerd node on this machine).
    #[arg(long)]
    no_node: bool,
    /// Skip the short soak (a minute of sustained load with restarts, exact counts).
    #[arg(long)]
    no_soak: bool,
}

/// `cargo xtask soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long the load runs (`30m`, `90s`).
    #[arg(long, default_value = "30m")]
    pub duration: String,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs the soak binary (root) for `duration` with the agent from this workspace.
pub fn soak(duration: &str, json: Option<&std::path::Path>) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the soak attaches programs and makes a fake node: run it as root");
    }
    let agent = build_agent()?;
    let soak = binary_path(
        cargo().args([
            "build",
            "--package",
            "probe-tests",
            "--bin",
            "tokenprobe-soak",
            "--message-format=json-render-diagnostics",
        ]),
        "tokenprobe-soak",
    )?;
    let mut cmd = Command::new(soak);
    cmd.env("TOKENPROBE_AGENT_BIN", agent).args(["--duration", duration]);
    if let Some(path) = json {
        cmd.arg("--json").arg(path);
    }
    cmd::run(&mut cmd).context("the soak failed")
}

fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root());
    cmd
}

/// Builds the agent binary and returns its path.
fn build_agent() -> anyhow::Result<PathBuf> {
    binary_path(
        cargo().args([
            "build",
            "--package",
            "probe-agent",
            "--bin",
            "probe-agent",
            "--message-format=json-render-diagnostics",
        ]),
        "probe-agent",
    )
}

/// Builds the planner alone (`kubectl-tokenprobe`) as a laptop would: stable Rust, no `agent`
/// feature — and checks first that nothing of the eBPF build is in its dependency graph.
pub fn build_planner() -> anyhow::Result<PathBuf> {
    let tree = output(cargo().args([
        "tree",
        "--package",
        "probe-agent",
        "--no-default-features",
        "--edges",
        "normal,build",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ]))?;
    let ebpf: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("aya") || l.starts_with("probe-ebpf ") || l.starts_with("bpf-"))
        .collect();
    if !ebpf.is_empty() {
        bail!("the planner alone depends on the eBPF build: {}", ebpf.join(", "));
    }
    binary_path(
        cargo().env("RUSTUP_TOOLCHAIN", "stable").args([
            "build",
            "--package",
            "probe-agent",
            "--no-default-features",
            "--bin",
            "kubectl-tokenprobe",
            "--message-format=json-render-diagnostics",
        ]),
        "kubectl-tokenprobe",
    )
}

/// Runs a cargo build with JSON messages and returns the executable of `target`.
fn binary_path(cmd: &mut Command, target: &str) -> anyhow::Result<PathBuf> {
    let out = output(cmd)?;
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == target)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo built no executable named {target}"))
}

pub fn run_all(args: &TestArgs) -> anyhow::Result<()> {
    if !args.no_unit {
        cmd::run(cargo().args(["test", "--workspace", "--exclude", "probe-tests", "--exclude", "probe-ebpf"]))?;
    }
    if !is_root() {
        bail!("the privileged tests need root: run `cargo xtask test` as root");
    }
    let agent = build_agent()?;
    let suite = build_suite()?;
    let mut cmd = Command::new(&suite);
    cmd.env("TOKENPROBE_AGENT_BIN", &agent);
    if let Some(f) = &args.filter {
        cmd.arg(f);
    }
    cmd::run(&mut cmd).context("privileged tests failed")?;
    if !args.no_soak && args.filter.is_none() {
        soak("60s", None)?;
    }
    if !args.no_apiserver {
        apiserver_tests(args.filter.as_deref())?;
    }
    if !args.no_node {
        real_node_tests(args.filter.as_deref())?;
    }
    if !args.no_vm {
        crate::vm::run(&cache_dir(), &suite, &agent, &VmArgs { filter: args.filter.clone(), kernel: None })?;
    }
    Ok(())
}

/// Starts the real node, runs `program` against it (with the environment it needs), stops the
/// node and checks that nothing is left. A node that cannot start is reported (a suite then
/// skips its cases, and fails them in CI).
fn on_real_node(program: PathBuf, args: &[&str]) -> anyhow::Result<()> {
    let paths = crate::node::NodePaths::new(&cache_dir());
    let started = crate::node::start(&paths);
    let mut cmd = Command::new(program);
    cmd.env("TOKENPROBE_AGENT_BIN", build_agent()?).args(args);
    match &started {
        Ok(node) => {
            cmd.env("TOKENPROBE_NODE_KUBECONFIG", &node.kubeconfig)
                .env("TOKENPROBE_NODE_NAME", crate::node::NODE_NAME)
                .env("TOKENPROBE_AGENT_IMAGE", &node.agent_image)
                .env("TOKENPROBE_WORKLOAD_IMAGE", crate::image::WORKLOAD)
                .env("TOKENPROBE_NODE_AUDIT_LOG", &node.audit_log)
                .env("TOKENPROBE_NODE_AUDIT_POLICY", &node.audit_policy);
        }
        Err(e) => eprintln!("xtask: the real node did not start: {e:#}"),
    }
    let result = cmd::run(&mut cmd);
    let left = crate::node::stop(&paths)?;
    if !left.is_empty() {
        bail!("the real node left things behind:\n  {}", left.join("\n  "));
    }
    eprintln!("xtask: node stopped; nothing left behind");
    result
}

fn real_node_tests(filter: Option<&str>) -> anyhow::Result<()> {
    let suite = binary_path(
        cargo().args([
            "test",
            "--package",
            "probe-tests",
            "--test",
            "real_node",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ]),
        "real_node",
    )?;
    on_real_node(suite, filter.as_slice()).context("real-node tests failed")
}

/// `cargo xtask demo --real-node`.
pub fn real_node_demo() -> anyhow::Result<()> {
    if !is_root() {
        bail!("the real-node demo needs root (a kubelet, containerd, network namespaces)");
    }
    let demo = binary_path(
        cargo().args([
            "build",
            "--package",
            "probe-tests",
            "--bin",
            "tokenprobe-real-node-demo",
            "--message-format=json-render-diagnostics",
        ]),
        "tokenprobe-real-node-demo",
    )?;
    on_real_node(demo, &[])
}

/// Starts the test API server (unless it runs already), runs the suite against it, and stops
/// it again if this call started it.
fn apiserver_tests(filter: Option<&str>) -> anyhow::Result<()> {
    let paths = crate::apiserver::Paths::new(&cache_dir());
    let (kubeconfig, started) = crate::apiserver::start(&paths)?;
    // A second instance without bound service-account tokens, for the legacy token Secrets.
    let legacy_paths = crate::apiserver::Paths::of(&cache_dir(), crate::apiserver::Instance::Legacy);
    let legacy = crate::apiserver::start(&legacy_paths);
    // The kube paths, then the run-mode agent end to end (root, the fake node, this server).
    let result = ["apiserver", "node_agent"].into_iter().try_for_each(|name| {
        let suite = binary_path(
            cargo().args([
                "test",
                "--package",
                "probe-tests",
                "--test",
                name,
                "--no-run",
                "--message-format=json-render-diagnostics",
            ]),
            name,
        )?;
        let mut cmd = Command::new(suite);
        cmd.env("TOKENPROBE_KUBECONFIG", &kubeconfig)
            .env("TOKENPROBE_AUDIT_LOG", paths.audit_log())
            .env("TOKENPROBE_AUDIT_POLICY", paths.audit_policy())
            .env(
                "TOKENPROBE_AUDIT_WEBHOOK_ADDR",
                format!("127.0.0.1:{}", paths.instance.audit_webhook_port().unwrap_or_default()),
            )
            .env("TOKENPROBE_AGENT_BIN", build_agent()?)
            .env("TOKENPROBE_PLUGIN_BIN", build_planner()?);
        match &legacy {
            Ok((legacy_kubeconfig, _)) => {
                cmd.env("TOKENPROBE_LEGACY_KUBECONFIG", legacy_kubeconfig);
            }
            Err(e) => eprintln!("xtask: the legacy API server did not start ({e:#}); its cases report why"),
        }
        if let Some(f) = filter {
            cmd.arg(f);
        }
        cmd::run(&mut cmd).with_context(|| format!("{name} tests failed"))
    });
    if started {
        crate::apiserver::stop(&paths)?;
    }
    if let Ok((_, true)) = legacy {
        crate::apiserver::stop(&legacy_paths)?;
    }
    result
}

/// Builds the privileged test binary and returns its path.
fn build_suite() -> anyhow::Result<PathBuf> {
    binary_path(
        cargo().args([
            "test",
            "--package",
            "probe-tests",
            "--test",
            "privileged",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ]),
        "privileged",
    )
}

pub fn vm(args: &VmArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the VM matrix needs root (apt for qemu and kernels)");
    }
    let agent = build_agent()?;
    let suite = build_suite()?;
    crate::vm::run(&cache_dir(), &suite, &agent, args)
}

pub fn lint() -> anyhow::Result<()> {
    cmd::run(cargo().args(["fmt", "--all", "--check"]))?;
    crate::manifests::run(true)?;
    cmd::run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The planner alone (the kubectl plugin), without the agent feature.
    cmd::run(cargo().args([
        "clippy",
        "--package",
        "probe-agent",
        "--no-default-features",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    cmd::run(cargo().args([
        "+nightly",
        "clippy",
        "--package",
        "probe-ebpf",
        "--bins",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Only the lsm and fentry arms inside qemu.
    #[arg(long)]
    pub vm_only: bool,
    /// Skip the lsm and fentry arms inside qemu (a few minutes of emulation per kernel).
    #[arg(long, conflicts_with = "vm_only")]
    pub no_vm: bool,
    /// Rounds and operations per batch inside qemu.
    #[arg(long, default_value_t = 4)]
    pub vm_rounds: u32,
    #[arg(long, default_value_t = 4000)]
    pub vm_ops: u32,
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the overhead benchmark attaches programs: run it as root");
    }
    let overhead = binary_path(
        cargo().args([
            "build",
            "--release",
            "--package",
            "probe-tests",
            "--bin",
            "tokenprobe-overhead",
            "--message-format=json-render-diagnostics",
        ]),
        "tokenprobe-overhead",
    )?;
    if args.vm_only {
        crate::vm::bench(&cache_dir(), &overhead, args.vm_rounds, args.vm_ops)?;
        return Ok(());
    }
    cmd::run(cargo().args(["bench", "--package", "probe-agent", "--bench", "agent"]))?;
    // The binary users run: the static release build the image ships.
    let agent = crate::image::static_agent()?;
    cmd::run(Command::new(&overhead).env("TOKENPROBE_AGENT_BIN", &agent))?;
    if !args.no_vm {
        crate::vm::bench(&cache_dir(), &overhead, args.vm_rounds, args.vm_ops)?;
    }
    let scale = binary_path(
        cargo().args([
            "build",
            "--release",
            "--package",
            "probe-tests",
            "--bin",
            "tokenprobe-plan-scale",
            "--message-format=json-render-diagnostics",
        ]),
        "tokenprobe-plan-scale",
    )?;
    // The synthetic clusters take gigabytes: kept in the cache, written once.
    cmd::run(Command::new(scale).arg("--agent").arg(&agent).arg("--dir").arg(cache_dir().join("plan-scale")))
}

pub fn demo(seconds: u64) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo needs root (tmpfs mounts, cgroups, BPF)");
    }
    let agent = build_agent()?;
    let demo = binary_path(
        cargo().args([
            "build",
            "--package",
            "probe-tests",
            "--bin",
            "tokenprobe-demo",
            "--message-format=json-render-diagnostics",
        ]),
        "tokenprobe-demo",
    )?;
    cmd::run(Command::new(demo).arg(seconds.to_string()).env("TOKENPROBE_AGENT_BIN", agent))
}
