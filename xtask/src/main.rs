//! `cargo xtask …`: the project's tasks. See `cargo xtask --help`.

mod apiserver;
mod apt;
mod cmd;
mod cpio;
mod image;
mod krew;
mod manifests;
mod node;
mod oci;
mod setup;
mod test;
mod vm;

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
        /// The whole chain on a real node instead (started and stopped around it): the agent
        /// from deploy/, evidence, plan, the change, verify.
        #[arg(long)]
        real_node: bool,
    },
    /// Set up, then run every test: unit tests, the privileged tests on this kernel and in VMs
    /// on stock Debian kernels (root).
    Test(test::TestArgs),
    /// The privileged tests inside qemu on stock Debian kernels, with and without the BPF LSM.
    VmTest(vm::VmArgs),
    /// Benchmarks: the agent's pure work and the planner (criterion), then what the attached
    /// programs cost every open and connect on the node, side by side with them detached, the
    /// lsm and fentry modes inside qemu, and the planner at 1,000 and 5,000 nodes (root).
    Bench(test::BenchArgs),
    /// The agent's OCI image archive (a static musl binary on an empty base), in the cache.
    Image,
    /// A real kube-apiserver (Debian's 1.20 source, built once) on 127.0.0.1 for the tests.
    #[command(subcommand)]
    Apiserver(apiserver::ApiServerCommand),
    /// A real Kubernetes node on this machine (kubelet, containerd, runc, CNI, kube-proxy, a
    /// control plane of its own), every address in a network namespace of its own (root).
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Render deploy/agent.yaml from the kustomize base (deploy/kustomize/base) and check that
    /// every overlay renders (`kubectl kustomize`).
    Manifests {
        /// Fail instead of writing when deploy/agent.yaml is not what the base renders.
        #[arg(long)]
        check: bool,
    },
    /// The agent under sustained load on a fake node — token and other opens, connects,
    /// containers coming and going, agent restarts — with exact counts at the end and its
    /// memory and CPU over time (root).
    Soak(test::SoakArgs),
    /// Print the krew plugin manifest of a release (deploy/krew/tokenprobe.yaml filled in and
    /// checked).
    Krew {
        /// The release's version, without `v` (e.g. 0.1.0).
        #[arg(long)]
        version: String,
        /// The https URL of the linux/amd64 archive holding `kubectl-tokenprobe`.
        #[arg(long)]
        uri: String,
        /// That archive's SHA-256, hex.
        #[arg(long)]
        sha256: String,
    },
    /// rustfmt check and clippy (pedantic, warnings are errors) on the host crates and on the
    /// kernel programs for the BPF target.
    Lint,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Demo { seconds, real_node } => {
            setup::run()?;
            if real_node { test::real_node_demo() } else { test::demo(seconds) }
        }
        Task::Test(args) => {
            setup::run()?;
            test::run_all(&args)
        }
        Task::VmTest(args) => {
            setup::run()?;
            test::vm(&args)
        }
        Task::Bench(args) => {
            setup::run()?;
            test::bench(&args)
        }
        Task::Image => {
            setup::run()?;
            let image = image::agent(&setup::cache_dir())?;
            image::check_with_skopeo(&image)?;
            println!("{} {}", image.reference, image.archive.display());
            Ok(())
        }
        Task::Apiserver(command) => apiserver::command(&setup::cache_dir(), &command),
        Task::Node(command) => {
            setup::run()?;
            node::command(&setup::cache_dir(), &command)
        }
        Task::Manifests { check } => manifests::run(check),
        Task::Soak(args) => {
            setup::run()?;
            test::soak(&args.duration, args.json.as_deref())
        }
        Task::Krew { version, uri, sha256 } => krew::run(&version, &uri, &sha256),
        Task::Lint => {
            setup::run()?;
            test::lint()
        }
    }
}
