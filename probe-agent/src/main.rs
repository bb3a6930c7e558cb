//! `probe-agent`: the node agent (`watch`, `run`) and the planner (`plan`, `audit`, `verify`).

fn main() -> std::process::ExitCode {
    probe_agent::commands::main()
}
