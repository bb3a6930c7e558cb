//! `cargo xtask …`: the project's tasks. See `cargo xtask --help`.

mod cmd;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "tokenprobe project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent; cached outside the clone).
    Setup,
    /// Set up, then run `probe-agent watch` on a fake node with a token-reading pod and an idle
    /// one, and print the evidence (root).
    Demo {
        /// How long the agent watches, in seconds.
        #[arg(long, default_value_t = 8)]
        seconds: u64,
    },
    /// Set up, then run every test: unit tests and the privileged tests on this kernel (root).
    Test(test::TestArgs),
    /// rustfmt check and clippy (pedantic, warnings are errors) on the host crates and on the
    /// kernel programs for the BPF target.
    Lint,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Demo { seconds } => {
            setup::run()?;
            test::demo(seconds)
        }
        Task::Test(args) => {
            setup::run()?;
            test::run_all(&args)
        }
        Task::Lint => {
            setup::run()?;
            test::lint()
        }
    }
}
