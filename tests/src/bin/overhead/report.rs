//! The benchmark's figures: kept per round, summarised as median with min/max, printed as
//! tables and as JSON.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};

use crate::{arms::Arm, footprint, ops::Op};

/// What one configuration saw of the throughput load.
pub struct Seen {
    /// Token opens counted (tokenprobe) or matched in user space (streaming).
    pub counted: u64,
    pub lost: u64,
    /// Events that reached user space (streaming: every open on the machine, matched or not).
    pub streamed: Option<u64>,
}

pub struct Throughput {
    pub arm: Arm,
    pub made: u64,
    pub elapsed: Duration,
    pub seen: Seen,
}

#[derive(Default)]
pub struct Report {
    rounds: usize,
    ops: u32,
    /// (arm, op) → nanoseconds per operation, one per round.
    samples: BTreeMap<(usize, usize), Vec<f64>>,
    /// (arm, op) → (program ns per operation, program runs per operation), one per stats round.
    programs: BTreeMap<(usize, usize), Vec<(f64, f64)>>,
    pub cold_start: Option<Duration>,
    pub warm_starts: Vec<Duration>,
    pub unavailable: Vec<(Arm, String)>,
    pub throughput: Vec<Throughput>,
    pub footprint: Vec<footprint::Row>,
}

/// Median, min and max.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len().is_multiple_of(2) { f64::midpoint(v[mid - 1], v[mid]) } else { v[mid] };
        Some(Self { median, min: v[0], max: v[v.len() - 1] })
    }

    fn json(self) -> Value {
        json!({ "median": round1(self.median), "min": round1(self.min), "max": round1(self.max) })
    }

    fn text(self) -> String {
        format!("{:.0} ({:.0}–{:.0})", self.median, self.min, self.max)
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn arm_index(arm: Arm) -> usize {
    Arm::HOST.iter().chain(Arm::VM.iter()).position(|a| *a == arm).unwrap_or(usize::MAX)
}

fn op_index(op: Op) -> usize {
    Op::ALL.iter().position(|o| *o == op).unwrap_or(usize::MAX)
}

impl Report {
    pub fn new(rounds: usize, ops: u32) -> Self {
        Self { rounds, ops, ..Self::default() }
    }

    pub fn record(&mut self, round: usize, arm: Arm, op: Op, ns: f64) {
        let v = self.samples.entry((arm_index(arm), op_index(op))).or_default();
        if v.len() <= round {
            v.resize(round + 1, f64::NAN);
        }
        v[round] = ns;
    }

    pub fn program_time(&mut self, arm: Arm, op: Op, ns: f64, runs: f64) {
        self.programs.entry((arm_index(arm), op_index(op))).or_default().push((ns, runs));
    }

    fn values(&self, arm: Arm, op: Op) -> Vec<f64> {
        self.samples
            .get(&(arm_index(arm), op_index(op)))
            .map(|v| v.iter().copied().filter(|x| x.is_finite()).collect())
            .unwrap_or_default()
    }

    fn summary(&self, arm: Arm, op: Op) -> Option<Summary> {
        Summary::of(&self.values(arm, op))
    }

    /// `a − b` within each round, summarised.
    fn paired(&self, a: Arm, b: Arm, op: Op) -> Option<Summary> {
        let first = self.samples.get(&(arm_index(a), op_index(op)))?;
        let second = self.samples.get(&(arm_index(b), op_index(op)))?;
        let diffs: Vec<f64> =
            first.iter().zip(second).map(|(one, other)| one - other).filter(|d| d.is_finite()).collect();
        Summary::of(&diffs)
    }

    /// Median program ns and runs per operation.
    fn program(&self, arm: Arm, op: Op) -> Option<(Summary, f64)> {
        let v = self.programs.get(&(arm_index(arm), op_index(op)))?;
        let ns = Summary::of(&v.iter().map(|p| p.0).collect::<Vec<_>>())?;
        let runs = Summary::of(&v.iter().map(|p| p.1).collect::<Vec<_>>())?.median;
        Some((ns, runs))
    }

    fn ratio(&self, a: Arm, b: Arm, op: Op) -> Option<f64> {
        Some(self.summary(a, op)?.median / self.summary(b, op)?.median)
    }

    #[expect(clippy::too_many_lines, reason = "one table after another, in the order a reader reads them")]
    pub fn print(&self, arms: &[Arm]) {
        println!(
            "tokenprobe overhead: {} alternating rounds of {} operations per batch; nanoseconds per operation, median (min–max over rounds)\n",
            self.rounds, self.ops
        );
        for (arm, reason) in &self.unavailable {
            println!("not available on this kernel: {} ({reason})", arm.name());
        }
        print!("{:<32}", "operation");
        for arm in arms {
            print!(" | {:>26}", arm.name());
        }
        println!();
        for op in Op::ALL {
            print!("{:<32}", op.name());
            for &arm in arms {
                let cell = self.summary(arm, op).map_or_else(
                    || "-".to_owned(),
                    |s| {
                        let ratio = self.ratio(arm, Arm::Detached, op).filter(|_| arm != Arm::Detached);
                        ratio.map_or_else(|| s.text(), |r| format!("{} {r:.2}×", s.text()))
                    },
                );
                print!(" | {cell:>26}");
            }
            println!();
        }

        println!(
            "\nover the floor (each mode minus an empty program on the same hooks, paired within each round; ns, median (min–max)):"
        );
        for &arm in arms {
            let Some(floor) = arm.floor().filter(|f| arms.contains(f)) else { continue };
            for op in Op::ALL {
                if let Some(d) = self.paired(arm, floor, op) {
                    let floor_cost = self
                        .paired(floor, Arm::Detached, op)
                        .map_or_else(String::new, |f| format!("; floor over detached {}", f.text()));
                    // Under emulation (the VM matrix) only this ratio means anything.
                    let ratio =
                        self.ratio(arm, floor, op).map_or_else(String::new, |r| format!(" = {r:.3}× the floor"));
                    println!(
                        "  {:<36} {:<32} {:>+8.0} ({:+.0} to {:+.0}){ratio}{floor_cost}",
                        arm.name(),
                        op.name(),
                        d.median,
                        d.min,
                        d.max
                    );
                }
            }
        }
        if arms.contains(&Arm::Stream) {
            for op in [Op::OpenOrdinary, Op::OpenToken] {
                if let Some(d) = self.paired(Arm::Stream, Arm::Detached, op) {
                    println!(
                        "  {:<36} {:<32} {:>+8.0} ({:+.0} to {:+.0}) over detached",
                        Arm::Stream.name(),
                        op.name(),
                        d.median,
                        d.min,
                        d.max
                    );
                }
            }
        }

        println!(
            "\nprogram run time (bpf_stats), ns per operation (and program runs per operation), median over stats rounds:"
        );
        for &arm in arms {
            for op in [Op::OpenOrdinary, Op::OpenOrdinaryBusy, Op::Getppid, Op::UdpConnect] {
                let Some((ns, runs)) = self.program(arm, op) else { continue };
                let net = arm
                    .floor()
                    .and_then(|f| self.program(f, op))
                    .map_or_else(String::new, |(f, _)| format!("; minus its floor {:+.1}", ns.median - f.median));
                println!("  {:<36} {:<32} {:>7.1} ns ({runs:.2} runs){net}", arm.name(), op.name(), ns.median);
            }
        }

        if let Some(cold) = self.cold_start {
            let warm = Summary::of(&self.warm_starts.iter().map(Duration::as_secs_f64).collect::<Vec<_>>());
            println!(
                "\nagent start to programs attached and self-tested (in process): first {:.0} ms (parses the kernel's BTF), then {}",
                cold.as_secs_f64() * 1e3,
                warm.map_or_else(
                    || "-".to_owned(),
                    |w| format!("{:.0} ms median ({:.0}–{:.0})", w.median * 1e3, w.min * 1e3, w.max * 1e3)
                )
            );
        }

        if !self.throughput.is_empty() {
            println!("\ntoken opens from 4 processes in 2 containers, paced to 100k/s:");
            for t in &self.throughput {
                #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
                let rate = t.made as f64 / t.elapsed.as_secs_f64();
                let streamed = t.seen.streamed.map_or_else(String::new, |n| format!(" ({n} events through the ring)"));
                println!(
                    "  {:<36} {} opens at {:.0}/s: {} seen, {} lost{streamed}",
                    t.arm.name(),
                    t.made,
                    rate,
                    t.seen.counted,
                    t.seen.lost
                );
            }
        }
        footprint::print(&self.footprint);
    }

    pub fn json(&self, arms: &[Arm]) -> Value {
        let mut configurations = serde_json::Map::new();
        for &arm in arms {
            let mut ops = serde_json::Map::new();
            for op in Op::ALL {
                let Some(s) = self.summary(arm, op) else { continue };
                let mut o = json!({ "ns": s.json(), "rounds": self.values(arm, op).iter().map(|x| round1(*x)).collect::<Vec<_>>() });
                if arm != Arm::Detached {
                    o["ratio_to_detached"] =
                        json!(self.ratio(arm, Arm::Detached, op).map(|r| (r * 1000.0).round() / 1000.0));
                }
                if let Some(floor) = arm.floor().filter(|f| arms.contains(f)) {
                    o["over_floor_ns"] = json!(self.paired(arm, floor, op).map(Summary::json));
                }
                if let Some((ns, runs)) = self.program(arm, op) {
                    o["program_ns"] = ns.json();
                    o["program_runs"] = json!(round1(runs));
                }
                ops.insert(op.key().to_owned(), o);
            }
            configurations.insert(arm.key().to_owned(), json!({ "name": arm.name(), "operations": ops }));
        }
        json!({
            "rounds": self.rounds,
            "ops_per_batch": self.ops,
            "machine": machine(),
            "configurations": configurations,
            "unavailable": self.unavailable.iter().map(|(a, r)| json!({ "configuration": a.key(), "reason": r })).collect::<Vec<_>>(),
            "agent_start_ms": {
                "first": self.cold_start.map(|d| round1(d.as_secs_f64() * 1e3)),
                "then": Summary::of(&self.warm_starts.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>()).map(Summary::json),
            },
            "throughput": self.throughput.iter().map(|t| json!({
                "configuration": t.arm.key(),
                "opens": t.made,
                "seconds": round1(t.elapsed.as_secs_f64()),
                "seen": t.seen.counted,
                "lost": t.seen.lost,
                "streamed_events": t.seen.streamed,
            })).collect::<Vec<_>>(),
            "footprint": footprint::json(&self.footprint),
        })
    }
}

/// The kernel, CPU count and model this ran on.
pub fn machine() -> Value {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_default();
    json!({ "kernel": release, "cpus": std::thread::available_parallelism().map_or(0, usize::from), "cpu": model })
}
