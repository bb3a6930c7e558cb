//! The real node as the tests see it: a client of its API server, `deploy/` applied with the
//! locally built image, workloads from the workload image, the published evidence.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{Api, Client, api::ListParams};
use probe_agent::{evidence::Evidence, k8s::crd::NodeTokenEvidence};
use probe_tests::cluster::TestNamespace;
use serde_json::json;
use tokio::runtime::Runtime;

/// The image `deploy/agent.yaml` names; the tests replace it, and only it.
const MANIFEST_IMAGE: &str = "image: ghcr.io/tokenprobe/probe-agent:0.1.0";

pub struct Node {
    pub client: Client,
    pub kubeconfig: String,
    pub name: String,
    pub agent_image: String,
    pub workload_image: String,
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("no real node ({name} is not set; `cargo xtask test` starts one)"))
}

impl Node {
    /// The node `cargo xtask node start` runs, from the environment `cargo xtask test` sets.
    ///
    /// # Errors
    /// Why there is none.
    pub async fn from_env() -> Result<Self, String> {
        let kubeconfig = env("TOKENPROBE_NODE_KUBECONFIG")?;
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).map_err(|e| format!("{kubeconfig}: {e}"))?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| format!("{kubeconfig}: {e}"))?;
        let client = Client::try_from(config).map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            kubeconfig,
            name: env("TOKENPROBE_NODE_NAME")?,
            agent_image: env("TOKENPROBE_AGENT_IMAGE")?,
            workload_image: env("TOKENPROBE_WORKLOAD_IMAGE")?,
        })
    }

    fn kubectl(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(["--kubeconfig", &self.kubeconfig]);
        cmd
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) {
        let mut child = self
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child.stdin.take().expect("stdin").write_all(yaml.as_bytes()).expect("write to kubectl");
        let out = child.wait_with_output().expect("kubectl");
        assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `deploy/crds.yaml` and `deploy/agent.yaml`, with only the agent's image changed to the
    /// locally built one; waits until the agent pod is Ready and returns its name.
    pub fn deploy_agent(&self, rt: &Runtime) -> String {
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let crds = std::fs::read_to_string(deploy.join("crds.yaml")).expect("deploy/crds.yaml");
        let agent = std::fs::read_to_string(deploy.join("agent.yaml")).expect("deploy/agent.yaml");
        assert_eq!(agent.matches(MANIFEST_IMAGE).count(), 1, "deploy/agent.yaml names its image once");
        let local = agent.replace(MANIFEST_IMAGE, &format!("image: {}", self.agent_image));
        let changed: Vec<(&str, &str)> = agent.lines().zip(local.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(changed.len(), 1, "only the image changes: {changed:?}");
        self.apply(&crds);
        self.apply(&local);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "tokenprobe");
        let deadline = Instant::now() + Duration::from_mins(2);
        loop {
            let list = rt
                .block_on(pods.list(&ListParams::default().labels("app.kubernetes.io/name=tokenprobe-agent")))
                .expect("list agent pods");
            let ready = list.items.iter().find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
            if let Some(pod) = ready {
                return pod.metadata.name.clone().unwrap_or_default();
            }
            assert!(
                Instant::now() < deadline,
                "the agent pod is not Ready: {:#?}",
                list.items.iter().map(|p| &p.status).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// A Deployment of the workload image running `sh -c <script>` in a container `main`.
    pub fn deployment(&self, rt: &Runtime, ns: &TestNamespace, name: &str, replicas: i32, script: &str) -> Deployment {
        let labels = json!({"app": name});
        rt.block_on(ns.create(json!({
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "main", "image": self.workload_image, "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", script]}]}}}
        })))
    }

    /// The node's published evidence once `ready` holds (panics after `timeout`).
    pub fn evidence_where(&self, rt: &Runtime, timeout: Duration, ready: impl Fn(&Evidence) -> bool) -> Evidence {
        let api: Api<NodeTokenEvidence> = Api::all(self.client.clone());
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Ok(Some(object)) = rt.block_on(api.get_opt(&self.name))
                && let Some(status) = object.status
            {
                if ready(&status) {
                    return status;
                }
                last = Some(status);
            }
            assert!(Instant::now() < deadline, "the evidence never showed it; last: {last:#?}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The agent's process on this host (the node's pods share the host's PIDs with it).
pub fn agent_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        cmdline.starts_with(b"/probe-agent\0run\0").then_some(pid)
    })
}
