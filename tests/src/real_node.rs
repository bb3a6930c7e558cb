//! The real node as the tests see it: a client of its API server, `deploy/` applied with the
//! locally built image, workloads from the workload image, the published evidence. Every
//! helper panics with what it saw when the node does not do what a case needs.
#![expect(clippy::missing_panics_doc, reason = "test helpers: each panics with context, by design")]

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::cluster::TestNamespace;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{Api, Client, api::ListParams};
use probe_agent::{evidence::Evidence, k8s::crd::NodeTokenEvidence};
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

    /// A `kubectl` command against the node's API server.
    #[must_use]
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(["--kubeconfig", &self.kubeconfig]);
        cmd
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) {
        self.apply_in(None, yaml);
    }

    /// `kubectl apply -f -` of `yaml` in namespace `ns`.
    pub fn apply_in(&self, ns: Option<&str>, yaml: &str) {
        let mut cmd = self.kubectl();
        if let Some(ns) = ns {
            cmd.args(["-n", ns]);
        }
        let mut child = cmd
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

    /// `kubectl exec` in a pod's first container; its output.
    ///
    /// # Panics
    /// When kubectl cannot run.
    #[must_use]
    pub fn exec(&self, ns: &str, pod: &str, args: &[&str]) -> std::process::Output {
        self.kubectl().args(["-n", ns, "exec", pod, "--"]).args(args).output().expect("kubectl exec")
    }

    /// `probe-agent <args>` against the node's API server (`TOKENPROBE_AGENT_BIN`).
    ///
    /// # Panics
    /// Without `TOKENPROBE_AGENT_BIN`.
    #[must_use]
    pub fn probe_agent(&self, args: &[&str]) -> std::process::Output {
        let bin = std::env::var("TOKENPROBE_AGENT_BIN").expect("TOKENPROBE_AGENT_BIN");
        Command::new(bin).args(args).args(["--kubeconfig", &self.kubeconfig]).output().expect("run probe-agent")
    }

    /// The pods of `ns` matching `selector` that are not being deleted.
    pub fn pods(&self, rt: &Runtime, ns: &str, selector: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        rt.block_on(api.list(&ListParams::default().labels(selector)))
            .expect("list pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// Waits until `count` pods of `ns` matching `selector` are Ready (and no other is);
    /// returns them.
    pub fn wait_ready(&self, rt: &Runtime, ns: &str, selector: &str, count: usize, timeout: Duration) -> Vec<Pod> {
        let deadline = Instant::now() + timeout;
        loop {
            let pods = self.pods(rt, ns, selector);
            let ready: Vec<Pod> = pods.iter().filter(|p| is_ready(p)).cloned().collect();
            if ready.len() >= count && pods.len() == ready.len() {
                return ready;
            }
            assert!(
                Instant::now() < deadline,
                "{selector} in {ns}: {} of {count} Ready: {:#?}",
                ready.len(),
                pods.iter().map(|p| (&p.metadata.name, &p.status)).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Adds arguments to the agent DaemonSet's container (a JSON patch, as the documented
    /// patches in `deploy/patches/` do) and waits for the new agent pod.
    pub fn patch_agent_args(&self, rt: &Runtime, args: &[&str]) -> String {
        let ops: Vec<serde_json::Value> = args
            .iter()
            .map(|a| json!({"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": a}))
            .collect();
        self.patch_agent(rt, &serde_json::to_string(&ops).expect("json"))
    }

    /// Applies a documented patch of `deploy/patches/` to the agent DaemonSet and waits for the
    /// new agent pod.
    pub fn patch_agent_with(&self, rt: &Runtime, file: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/patches").join(file);
        let ops = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.patch_agent(rt, &ops)
    }

    fn patch_agent(&self, rt: &Runtime, json_patch: &str) -> String {
        let out = self
            .kubectl()
            .args(["-n", "tokenprobe", "patch", "daemonset", "tokenprobe-agent", "--type", "json", "-p", json_patch])
            .output()
            .expect("kubectl patch");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let status = self
            .kubectl()
            .args(["-n", "tokenprobe", "rollout", "status", "daemonset/tokenprobe-agent", "--timeout=3m"])
            .output()
            .expect("kubectl rollout status");
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        self.wait_agent_ready(rt)
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
        self.wait_agent_ready(rt)
    }

    /// Waits until exactly one agent pod runs and it is Ready; returns its name.
    pub fn wait_agent_ready(&self, rt: &Runtime) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "tokenprobe");
        let deadline = Instant::now() + Duration::from_mins(2);
        loop {
            let list = rt
                .block_on(pods.list(&ListParams::default().labels("app.kubernetes.io/name=tokenprobe-agent")))
                .expect("list agent pods");
            let live: Vec<&Pod> = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
            let ready = live.iter().find(|p| is_ready(p));
            if let Some(pod) = ready.filter(|_| live.len() == 1) {
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

/// Whether a pod is Ready.
#[must_use]
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The agent's process on this host (the node's pods share the host's PIDs with it).
#[must_use]
pub fn agent_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        cmdline.starts_with(b"/probe-agent\0run\0").then_some(pid)
    })
}
