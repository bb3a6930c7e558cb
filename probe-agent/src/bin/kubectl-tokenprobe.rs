//! `kubectl-tokenprobe`: the planner alone, run by kubectl as `kubectl tokenprobe plan|audit|verify`.
//! Builds with stable Rust and no eBPF toolchain (`--no-default-features`).

fn main() -> std::process::ExitCode {
    probe_agent::commands::plugin_main()
}
