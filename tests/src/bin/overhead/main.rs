//! `cargo xtask bench`: what tokenprobe costs a node, measured side by side in one run (root).
//!
//! Alternating rounds over every configuration this kernel allows — nothing attached;
//! tokenprobe in each file-open mode; an empty program on the same hooks (the mode's floor: what
//! merely having a program there costs); and the design path-based detectors use, every open's
//! path streamed to user space — of the operations every process on a node pays for. This VM
//! drifts between a fast and a slow mode for seconds at a time, so every configuration runs once
//! per round, in an order that rotates, and figures are medians with min/max over rounds; a
//! difference between two configurations is taken within each round, then summarised.
//!
//! Then, with `bpf_stats` on: each program's own run time per operation. Then: 100k token
//! opens a second from several processes, counted exactly; the agent's start-up, memory and
//! idle CPU at 110 and 1,000 containers. A table on stdout, the same as JSON with `--json`.

mod arms;
mod footprint;
mod ops;
mod report;

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use arms::{Arm, Ctx, Live};
use clap::Parser;
use ops::{Op, Worker};
use probe_tests::fake_node::{Driver, FakeNode, Qos};

#[derive(Debug, Parser)]
#[command(about = "tokenprobe's overhead, side by side")]
struct Args {
    /// Rounds over all configurations.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Operations per timed batch.
    #[arg(long, default_value_t = 20_000)]
    ops: u32,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A short run that checks the benchmark works (CI): few rounds, small batches, 110
    /// containers only, a short throughput window.
    #[arg(long)]
    smoke: bool,
    /// The configurations of the VM matrix (`lsm`, `fentry` and their floors) instead of this
    /// kernel's.
    #[arg(long)]
    vm: bool,
    /// Skip the agent's memory and CPU at 110 and 1,000 containers.
    #[arg(long)]
    no_footprint: bool,
}

fn main() -> ExitCode {
    if let Some(code) = probe_tests::actor::run_if_actor() {
        return code;
    }
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some(ops::WORKER_ARG) {
        ops::worker_main(&raw[2..]);
        return ExitCode::SUCCESS;
    }
    let mut args = Args::parse();
    if args.smoke {
        args.rounds = args.rounds.min(2);
        args.ops = args.ops.min(2_000);
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("error: the overhead benchmark attaches programs: run it as root");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    // The workers first, while this process holds only a few descriptors: a child inherits the
    // size of its parent's descriptor table, and the lean one must start with the kernel's
    // embedded 64, as a workload's processes usually do.
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let volume = node.volume(&pod, "kube-api-access-b3nch", true);
    let ordinary = std::path::Path::new("/etc/hostname");
    let token = volume.dir.join("token");
    let mut workers =
        Workers { lean: Worker::spawn(ordinary, &token, 0), busy: Worker::spawn(ordinary, &token, Op::BUSY_FDS) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut config = node.watch_config();
    config.api_endpoints = vec!["127.0.0.1:6443".parse().map_err(|_| "address")?];
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"))?;
    let ctx = Ctx { rt, btf, cgroup_root: probe_tests::fake_node::cgroup2_root(), config };

    let mut out = report::Report::new(args.rounds, args.ops);

    // Which configurations this kernel allows; the first tokenprobe start parses the kernel's
    // BTF (cold), later ones reuse it.
    let wanted: &[Arm] = if args.vm { &Arm::VM } else { &Arm::HOST };
    let mut arms = Vec::new();
    for &arm in wanted {
        let start = Instant::now();
        match ctx.attach(arm) {
            Ok(live) => {
                if arm.floor().is_some() && out.cold_start.is_none() {
                    out.cold_start = Some(start.elapsed());
                }
                live.stop(&ctx);
                arms.push(arm);
            }
            Err(reason) => {
                eprintln!("# {}: not available here: {reason}", arm.name());
                out.unavailable.push((arm, reason));
            }
        }
    }

    for round in 0..args.rounds {
        for i in 0..arms.len() {
            let arm = arms[(i + round) % arms.len()];
            let start = Instant::now();
            let live = ctx.attach(arm)?;
            if arm.floor().is_some() {
                out.warm_starts.push(start.elapsed());
            }
            for op in Op::ALL {
                out.record(round, arm, op, workers.time(op, args.ops));
            }
            live.stop(&ctx);
        }
        eprintln!("# round {}/{} done", round + 1, args.rounds);
    }

    program_times(&ctx, &arms, &mut workers, args, &mut out)?;
    throughput(&ctx, &mut node, &arms, args, &mut out)?;
    if !args.no_footprint && !args.vm {
        out.footprint = footprint::measure(&mut node, if args.smoke { &[110] } else { &[110, 1000] })?;
    }
    out.print(&arms);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&out.json(&arms)).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("# JSON written to {}", path.display());
    }
    drop(node);
    Ok(())
}

/// Each configuration's programs' own run time per operation (`bpf_stats`), alternating.
/// The lean worker (a workload's few descriptors) and the busy one (200 held).
struct Workers {
    lean: Worker,
    busy: Worker,
}

impl Workers {
    fn time(&mut self, op: Op, n: u32) -> f64 {
        if op == Op::OpenOrdinaryBusy { self.busy.time(op, n) } else { self.lean.time(op, n) }
    }
}

fn program_times(
    ctx: &Ctx,
    arms: &[Arm],
    workers: &mut Workers,
    args: &Args,
    out: &mut report::Report,
) -> Result<(), String> {
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| format!("bpf_stats: {e}"))?;
    let n = args.ops * 5;
    let rounds = if args.smoke { 1 } else { 3 };
    for _ in 0..rounds {
        for &arm in arms {
            let (file, connect) = arm.programs();
            if file.is_empty() && connect.is_empty() {
                continue;
            }
            let live: Live = ctx.attach(arm)?;
            for (op, names) in
                [(Op::OpenOrdinary, file), (Op::OpenOrdinaryBusy, file), (Op::Getppid, file), (Op::UdpConnect, connect)]
            {
                if names.is_empty() {
                    continue;
                }
                let (t0, c0) = arms::program_stats(names);
                workers.time(op, n);
                let (t1, c1) = arms::program_stats(names);
                #[expect(clippy::cast_precision_loss, reason = "nanosecond totals far below 2^52")]
                out.program_time(arm, op, (t1 - t0) as f64 / f64::from(n), (c1 - c0) as f64 / f64::from(n));
            }
            live.stop(ctx);
        }
    }
    Ok(())
}

/// 100k token opens a second from four processes in two containers, counted by tokenprobe (each
/// one, exactly) and streamed by the path-streaming design (what reaches user space).
fn throughput(
    ctx: &Ctx,
    node: &mut FakeNode,
    arms: &[Arm],
    args: &Args,
    out: &mut report::Report,
) -> Result<(), String> {
    use probe_tests::actor::Action;
    const RATE: u32 = 100_000;
    const PROCESSES: u32 = 4;
    let seconds: u32 = if args.smoke { 1 } else { 3 };
    let per_process = RATE / PROCESSES * seconds;
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-thr0u", true);
    let containers = [node.container(&pod, false), node.container(&pod, false)];
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    for &arm in arms.iter().filter(|a| a.floor().is_some() || **a == Arm::Stream) {
        let live = ctx.attach(arm)?;
        let mut actors: Vec<_> =
            (0..PROCESSES).map(|i| node.spawn(&containers[(i % 2) as usize], &[(&vol, sa)])).collect();
        let start = Instant::now();
        std::thread::scope(|s| {
            for a in &mut actors {
                s.spawn(move || {
                    a.ok(&Action::OpenPaced {
                        path: PathBuf::from(sa).join("token"),
                        count: per_process,
                        per_second: RATE / PROCESSES,
                    });
                });
            }
        });
        let elapsed = start.elapsed();
        let made = u64::from(per_process * PROCESSES);
        let seen = if let Some(agent) = live.agent() {
            let ev = ctx.rt.block_on(agent.snapshot()).map_err(|e| e.to_string())?;
            // The second process to join a container counts as an exec session: both count.
            let counted: u64 = containers
                .iter()
                .map(|c| {
                    let e = probe_tests::agent::entry(&ev, c);
                    e.reads.token + e.exec_reads.token
                })
                .sum();
            let l = &ev.agent.losses;
            let lost = l.counter_map_full.count + l.read_errors.count;
            report::Seen { counted, lost, streamed: None }
        } else if let Some(stream) = &live.stream {
            // Give the consumer time to drain what is already in the ring.
            std::thread::sleep(Duration::from_millis(300));
            let matched = stream.matched.load(std::sync::atomic::Ordering::Relaxed);
            let streamed = stream.events.load(std::sync::atomic::Ordering::Relaxed);
            report::Seen { counted: matched, lost: made.saturating_sub(matched), streamed: Some(streamed) }
        } else {
            continue;
        };
        drop(actors);
        live.stop(ctx);
        out.throughput.push(report::Throughput { arm, made, elapsed, seen });
    }
    Ok(())
}
