//! Privileged integration tests: the real programs on the real kernel against a fake node.
//!
//! Each file-open case runs once per file-open mode (lsm, fentry, kprobe, tracepoint) and each
//! connect case once per connect mode (cgroup, lsm, fentry). A mode the kernel refuses is
//! reported as skipped with the probe's reason — never as passed.
//!
//! Needs root. `cargo xtask test` runs it; alone: `sudo -E cargo test -p probe-tests --test privileged`.
//! A free argument filters cases by name.

mod cli;
mod connect;
mod coverage;
mod faults;
mod files;

use std::process::ExitCode;

use probe_agent::{
    probe::{ConnectHook, ConnectMode, FileHook, FileMode, ProbeError},
    watch::WatchError,
};
use probe_tests::{
    actor::run_if_actor,
    agent::TestAgent,
    fake_node::{Driver, FakeNode},
    runner::{Suite, without_root},
};
use tokio::runtime::Runtime;

/// The case that runs only on a locked-down kernel (the VM matrix boots one).
const LOCKDOWN: &str = "lockdown/the_agent_counts_or_says_lockdown_refused_it";

/// A case: gets the runtime and the hooks to force.
type Case = fn(&Runtime, FileHook, ConnectHook);

fn main() -> ExitCode {
    if let Some(code) = run_if_actor().or_else(|| without_root("privileged")) {
        return code;
    }
    if std::env::var_os("TOKENPROBE_TEST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter("info").with_writer(std::io::stderr).init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut suite = Suite::from_args();

    for mode in FileMode::CHAIN {
        let hook = file_hook(mode);
        let available = probe_file_mode(&rt, hook);
        match &available {
            Ok(()) => println!("# file-open mode {mode}: available, running its cases"),
            Err(reason) => println!("# file-open mode {mode}: unavailable on this kernel: {reason}"),
        }
        for (name, case) in files::CASES {
            let full = format!("file/{mode}/{name}");
            match &available {
                Ok(()) => suite.run(&full, || case(&rt, hook, ConnectHook::Auto)),
                Err(reason) => suite.skip(&full, reason),
            }
        }
    }
    for mode in ConnectMode::CHAIN {
        let hook = connect_hook(mode);
        let available = probe_connect_mode(&rt, hook);
        match &available {
            Ok(()) => println!("# connect mode {mode}: available, running its cases"),
            Err(reason) => println!("# connect mode {mode}: unavailable on this kernel: {reason}"),
        }
        for (name, case) in connect::CASES {
            let full = format!("connect/{mode}/{name}");
            match &available {
                Ok(()) => suite.run(&full, || case(&rt, FileHook::Auto, hook)),
                Err(reason) => suite.skip(&full, reason),
            }
        }
    }
    // What the agent could and could not see: once, in the best modes this kernel allows.
    for (name, case) in coverage::CASES {
        suite.run(&format!("coverage/{name}"), || case(&rt, FileHook::Auto, ConnectHook::Auto));
    }
    for (name, case) in faults::CASES {
        suite.run(&format!("faults/{name}"), || case(&rt, FileHook::Auto, ConnectHook::Auto));
    }
    for (name, case) in cli::CASES {
        suite.run(&format!("cli/{name}"), || case(&rt, FileHook::Auto, ConnectHook::Auto));
    }
    match probe_agent::probe::lockdown_level() {
        Some(level) if level != "none" => suite.run(LOCKDOWN, || cli::under_kernel_lockdown(&level)),
        level => suite.skip(
            LOCKDOWN,
            &format!(
                "the kernel is not locked down (lockdown {}); the VM matrix boots with lockdown=",
                level.as_deref().unwrap_or("LSM absent or securityfs not mounted")
            ),
        ),
    }
    suite.finish()
}

const fn file_hook(mode: FileMode) -> FileHook {
    match mode {
        FileMode::Lsm => FileHook::Lsm,
        FileMode::Fentry => FileHook::Fentry,
        FileMode::Kprobe => FileHook::Kprobe,
        FileMode::Tracepoint => FileHook::Tracepoint,
    }
}

const fn connect_hook(mode: ConnectMode) -> ConnectHook {
    match mode {
        ConnectMode::Cgroup => ConnectHook::Cgroup,
        ConnectMode::Lsm => ConnectHook::Lsm,
        ConnectMode::Fentry => ConnectHook::Fentry,
    }
}

/// Whether the kernel lets a mode attach: the probe's own answer, by loading and attaching it.
fn probe_mode(rt: &Runtime, file: FileHook, connect: ConnectHook, detector: &str) -> Result<(), String> {
    let node = FakeNode::new(Driver::Systemd);
    let mut config = node.watch_config();
    config.file_hook = file;
    config.connect_hook = connect;
    match TestAgent::start(rt, config) {
        Ok(agent) => {
            drop(agent.stop());
            Ok(())
        }
        Err(WatchError::Probe(ProbeError::NoMode { detector: d, rejections })) if d == detector => {
            Err(rejections.iter().map(|r| r.reason.clone()).collect::<Vec<_>>().join("; "))
        }
        // The other detector has no mode at all here (a locked-down kernel): this one cannot be
        // tried either.
        Err(WatchError::Probe(ProbeError::NoMode { detector: d, rejections })) => Err(format!(
            "cannot be tried: the {d} detector has no mode on this kernel ({})",
            rejections.iter().map(|r| r.reason.clone()).collect::<Vec<_>>().join("; ")
        )),
        Err(e) => panic!("the agent failed to start for another reason than the mode: {e:#?}"),
    }
}

fn probe_file_mode(rt: &Runtime, hook: FileHook) -> Result<(), String> {
    probe_mode(rt, hook, ConnectHook::Auto, "file-open")
}

fn probe_connect_mode(rt: &Runtime, hook: ConnectHook) -> Result<(), String> {
    probe_mode(rt, FileHook::Auto, hook, "connect")
}
