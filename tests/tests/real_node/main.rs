//! The real node: `deploy/` on a real kubelet + containerd node (`cargo xtask node start`), the
//! agent's image built by `cargo xtask image`.
//!
//! Needs root and the node: `TOKENPROBE_NODE_KUBECONFIG` (its API server), `TOKENPROBE_AGENT_IMAGE`
//! (the image reference imported there). `cargo xtask test` starts the node, runs this and stops
//! it; without the node the cases are reported skipped (and fail in CI).

mod cluster;

use std::{process::ExitCode, time::Duration};

use kube::Client;
use probe_tests::runner::{Suite, without_root};
use tokio::runtime::Runtime;

type Case = fn(&Runtime, &cluster::Node);

const CASES: &[(&str, Case)] = &[("deploy_runs_and_publishes", deploy_runs_and_publishes)];

fn main() -> ExitCode {
    if let Some(code) = without_root("real-node") {
        return code;
    }
    let in_ci = std::env::var_os("CI").is_some();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut suite = Suite::from_args();
    match rt.block_on(cluster::Node::from_env()) {
        Ok(node) => {
            for (name, case) in CASES {
                suite.run(&format!("real-node/{name}"), || case(&rt, &node));
            }
            suite.finish()
        }
        Err(reason) if !in_ci => {
            for (name, _) in CASES {
                suite.skip(&format!("real-node/{name}"), &reason);
            }
            suite.finish_allowing_skips()
        }
        Err(reason) => {
            eprintln!("error: the real-node tests need the node: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// `deploy/` applied with only the image changed: the agent pod becomes Ready with exactly the
/// manifest's capabilities and publishes a NodeTokenEvidence that lists a running pod under its
/// workload.
fn deploy_runs_and_publishes(rt: &Runtime, node: &cluster::Node) {
    let client: &Client = &node.client;
    let pod = node.deploy_agent(rt);
    let pid = cluster::agent_pid().expect("the agent's process on this host (hostPID)");
    let held = probe_tests::caps::effective(pid);
    let wanted = probe_tests::caps::daemonset_security().add;
    assert_eq!(held, wanted, "the agent pod {pod} runs with exactly the manifest's capabilities: {:?}", held.names());
    let ns = rt.block_on(probe_tests::cluster::TestNamespace::new(client, "smoke"));
    node.deployment(rt, &ns, "sleeper", 1, "sleep 3600");
    let ev = node.evidence_where(rt, Duration::from_mins(2), |ev| {
        ev.containers.iter().any(|c| {
            c.namespace.as_deref() == Some(ns.name.as_str())
                && c.workload.as_ref().is_some_and(|w| w.kind == "Deployment" && w.name == "sleeper")
                && c.gone_since.is_none()
        })
    });
    let e =
        ev.containers.iter().find(|c| c.namespace.as_deref() == Some(ns.name.as_str())).expect("the sleeper's entry");
    assert_eq!(e.container.as_deref(), Some("main"), "{e:#?}");
    assert_eq!(e.service_account.as_deref(), Some("default"));
    assert_eq!(e.reads.total() + e.api_connects, 0, "it only sleeps: {e:#?}");
    assert!(ev.agent.hooks.file_open.is_some() && ev.agent.hooks.connect.is_some(), "{:#?}", ev.agent);
    println!(
        "# the agent on {}: file-open={} connect={} key={:?}",
        ev.node,
        ev.agent.hooks.file_open.as_deref().unwrap_or("-"),
        ev.agent.hooks.connect.as_deref().unwrap_or("-"),
        ev.agent.container_key
    );
    rt.block_on(ns.cleanup());
}
