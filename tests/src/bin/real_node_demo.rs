//! `cargo xtask demo --real-node`: the whole chain on a real node, for a person to watch — the
//! agent from `deploy/`, two workloads (one calls the API server with its token, one never
//! does), the evidence, `probe-agent plan`, its script applied, `probe-agent verify`.
//!
//! `cargo xtask` starts the node before and stops it after; this needs the environment it sets
//! (`TOKENPROBE_NODE_KUBECONFIG`, `TOKENPROBE_NODE_NAME`, `TOKENPROBE_AGENT_IMAGE`,
//! `TOKENPROBE_WORKLOAD_IMAGE`, `TOKENPROBE_AGENT_BIN`).

use std::{process::ExitCode, time::Duration};

use probe_tests::{cluster::TestNamespace, real_node::Node};
use serde_json::json;

const CLIENT: &str = r#"while :; do wget -q -O /dev/null --header "Authorization: Bearer $(cat /var/run/secrets/kubernetes.io/serviceaccount/token)" "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api"; sleep 3; done"#;

fn show(title: &str, out: &std::process::Output) {
    println!("\n$ {title}");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        print!("{}", String::from_utf8_lossy(&out.stderr));
        println!("(exit code {:?})", out.status.code());
    }
}

fn main() -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let node = match rt.block_on(Node::from_env()) {
        Ok(node) => node,
        Err(reason) => {
            eprintln!("error: {reason}");
            return ExitCode::FAILURE;
        }
    };
    println!("node {} is Ready; deploying the agent from deploy/ (only the image changed)", node.name);
    node.deploy_agent(&rt);
    node.patch_agent_args(&rt, &["--publish-interval", "5s"]);
    node.patch_agent_with(&rt, "detect-missing-token.json");
    let ns = rt.block_on(TestNamespace::new(&node.client, "demo"));
    for (name, sa, script) in [("api-client", "client", CLIENT), ("worker", "worker", "exec sleep 100000")] {
        node.apply_in(
            Some(&ns.name),
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}).to_string(),
        );
        let labels = json!({"app": name});
        node.apply_in(Some(&ns.name), &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                "spec": {"serviceAccountName": sa, "terminationGracePeriodSeconds": 1, "containers": [{"name": "main",
                    "image": node.workload_image, "imagePullPolicy": "Never", "command": ["/bin/sh", "-c", script]}]}}}})
        .to_string());
        node.wait_ready(&rt, &ns.name, &format!("app={name}"), 1, Duration::from_mins(2));
    }
    println!(
        "workloads in namespace {}: api-client (reads its token, calls the API server), worker (never does)",
        ns.name
    );
    println!("watching for 30 s…");
    std::thread::sleep(Duration::from_secs(30));
    let ev = node.evidence_where(&rt, Duration::from_mins(1), |ev| {
        ev.containers.iter().any(|c| c.namespace.as_deref() == Some(ns.name.as_str()) && c.api_connects > 0)
    });
    println!("\nevidence (NodeTokenEvidence {}, hooks {:?}):", ev.node, ev.agent.hooks);
    println!("{:<12} {:<10} {:>6} {:>13} {:>10}", "WORKLOAD", "CONTAINER", "TOKEN", "API-CONNECTS", "FROM-START");
    for c in ev.containers.iter().filter(|c| c.namespace.as_deref() == Some(ns.name.as_str())) {
        println!(
            "{:<12} {:<10} {:>6} {:>13} {:>10}",
            c.workload.as_ref().map_or("?", |w| w.name.as_str()),
            c.container.as_deref().unwrap_or("?"),
            c.reads.token,
            c.api_connects,
            c.observed_from_start.map_or("?".into(), |b| b.to_string())
        );
    }
    let plan = ["plan", "-n", &ns.name, "--min-observation", "20s", "--accept-tracepoint-mode"];
    show("probe-agent plan", &node.probe_agent(&plan));
    let script = node.probe_agent(&[&plan[..], &["-o", "script"]].concat());
    show("probe-agent plan -o script", &script);
    let run = std::process::Command::new("bash")
        .arg("-c")
        .arg(String::from_utf8_lossy(&script.stdout).as_ref())
        .env("KUBECONFIG", &node.kubeconfig)
        .output()
        .expect("bash");
    show("bash (the script above)", &run);
    node.wait_ready(&rt, &ns.name, "app=worker", 1, Duration::from_mins(2));
    std::thread::sleep(Duration::from_secs(15));
    show("probe-agent verify", &node.probe_agent(&["verify", "-n", &ns.name]));
    println!("\nthe worker runs without a token now, and nothing reached for it; the api-client kept its.");
    ExitCode::SUCCESS
}
