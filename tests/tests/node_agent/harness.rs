//! The run-mode harness: the agent in this process, pods in the API server matching fake
//! containers, a TCP proxy to take the API server away, a network namespace.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet},
        core::v1::{Namespace, Pod},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResourceExt as _, ResourceExt as _,
    api::{Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use probe_agent::{
    evidence::{ContainerEvidence, Evidence},
    k8s::{automount, crd::NodeTokenEvidence, liveness},
    run::{RunConfig, run},
};
use probe_tests::{
    cluster::{TestNamespace, eventually, pod},
    fake_node::{Container, FakeNode, Qos, Volume},
    kube::KUBECONFIG_ENV,
};
use serde_json::json;
use tokio::{runtime::Runtime, sync::oneshot, task::JoinHandle};

/// `probe-agent run` running in this process.
pub struct RunningAgent {
    task: JoinHandle<Result<(), probe_agent::watch::WatchError>>,
    stop: oneshot::Sender<()>,
    pub http: SocketAddr,
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

impl RunningAgent {
    pub fn start(
        rt: &Runtime,
        node: &FakeNode,
        node_name: &str,
        api: kube::Config,
        tweak: impl FnOnce(&mut RunConfig),
    ) -> Self {
        let client = rt.block_on(async { Client::try_from(api.clone()) }).expect("client");
        ensure_crd(rt, &client);
        Self::start_as_is(rt, node, node_name, api, tweak)
    }

    /// [`RunningAgent::start`] without installing the CRD and namespace first (they are there):
    /// for a start while the API server is away.
    pub fn start_as_is(
        rt: &Runtime,
        node: &FakeNode,
        node_name: &str,
        api: kube::Config,
        tweak: impl FnOnce(&mut RunConfig),
    ) -> Self {
        let mut watch = node.watch_config();
        node_name.clone_into(&mut watch.node_name);
        let http = free_port();
        let mut config = RunConfig {
            watch,
            publish_interval: Duration::from_millis(300),
            lease_namespace: liveness::DEFAULT_NAMESPACE.into(),
            targets_refresh: Duration::from_secs(1),
            http_addr: Some(http),
        };
        tweak(&mut config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = rt.spawn(run(config, api, async move {
            drop(stopped.await);
        }));
        // Ready once it serves HTTP.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(http).is_err() {
            assert!(!task.is_finished(), "the agent ended at start-up");
            assert!(Instant::now() < deadline, "the agent did not start serving HTTP");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { task, stop, http }
    }

    /// Stops it (publishing once more and saving its state).
    pub fn stop(self, rt: &Runtime) {
        self.stop.send(()).ok();
        rt.block_on(self.task).expect("agent task").expect("agent result");
    }
}

/// The connection to the test API server.
pub fn server(rt: &Runtime) -> kube::Config {
    rt.block_on(probe_tests::kube::config()).expect("the test API server's kubeconfig")
}

/// Installs the CRD (server-side apply; idempotent) and the agent's namespace, where its
/// liveness Leases live.
pub fn ensure_crd(rt: &Runtime, client: &Client) {
    rt.block_on(async {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": liveness::DEFAULT_NAMESPACE}});
        namespaces
            .patch(liveness::DEFAULT_NAMESPACE, &PatchParams::apply("tokenprobe-test"), &Patch::Apply(&ns))
            .await
            .expect("apply the agent's namespace");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd = NodeTokenEvidence::crd();
        crds.patch(&crd.name_any(), &PatchParams::apply("tokenprobe-test").force(), &Patch::Apply(&crd))
            .await
            .expect("apply the CRD");
        let api: Api<NodeTokenEvidence> = Api::all(client.clone());
        eventually("the CRD to be served", Duration::from_secs(30), || async {
            api.list(&kube::api::ListParams::default()).await.ok().map(drop)
        })
        .await;
    });
}

/// The `pod-template-hash` of the harness's `ReplicaSet`s (no deployment controller runs here:
/// the test makes what it would).
pub const TEMPLATE_HASH: &str = "5d9c7b8f4";

/// A Deployment's current `ReplicaSet`, as the deployment controller makes it: revision 1,
/// labelled with the template hash.
fn replica_set(
    name: &str,
    deployment: &str,
    d: &Deployment,
    labels: &serde_json::Value,
    template: &serde_json::Value,
) -> serde_json::Value {
    let mut labels = labels.clone();
    labels["pod-template-hash"] = json!(TEMPLATE_HASH);
    let mut template = template.clone();
    template["metadata"]["labels"] = labels.clone();
    json!({
        "metadata": {"name": name, "labels": labels,
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "uid": d.uid().expect("uid"), "controller": true}]},
        "spec": {"selector": {"matchLabels": labels}, "template": template}
    })
}

/// A pod created in the API server for the fake node.
pub struct ApiPod {
    pub name: String,
    pub uid: String,
    /// The `kube-api-access-*` volume admission gave it.
    pub automount_volume: String,
}

/// Creates a pod on `node` with the given containers; `owner` = (deployment, replicaset)
/// creates both and chains them.
pub async fn api_pod(
    ns: &TestNamespace,
    node: &str,
    name: &str,
    service_account: &str,
    containers: &[&str],
    owner: Option<(&str, &str)>,
) -> ApiPod {
    let mut object = pod(name, node, service_account, None);
    object["spec"]["containers"] =
        json!(containers.iter().map(|c| json!({"name": c, "image": "registry.invalid/x:1"})).collect::<Vec<_>>());
    if let Some((deployment, replicaset)) = owner {
        let labels = json!({"app": deployment});
        let template = json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "registry.invalid/x:1"}]}});
        let d: Deployment = ns
            .create(json!({"metadata": {"name": deployment}, "spec": {"selector": {"matchLabels": labels}, "template": template}}))
            .await;
        let rs: ReplicaSet = ns.create(replica_set(replicaset, deployment, &d, &labels, &template)).await;
        object["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replicaset, "uid": rs.uid().expect("uid"), "controller": true}]);
        object["metadata"]["labels"] = json!({"pod-template-hash": TEMPLATE_HASH});
    }
    let created: Pod = ns.create(object).await;
    let automount_volume =
        automount::automount_volume(&created).map(|v| v.name.clone()).expect("admission injects the automount volume");
    ApiPod { name: name.to_owned(), uid: created.uid().expect("uid"), automount_volume }
}

impl ApiPod {
    /// Puts the pod on the fake node: its token volume (when admission gave it one) and one
    /// running container named `app`, recorded in the pod's status.
    pub async fn place(&self, ns: &TestNamespace, node: &mut FakeNode) -> (Option<Volume>, Container) {
        let pod = node.pod_with_uid(&self.uid, Qos::Burstable);
        let volume = if self.automount_volume.is_empty() {
            node.pod_dir(&pod);
            None
        } else {
            Some(node.volume(&pod, &self.automount_volume, true))
        };
        let container = node.container(&pod, false);
        self.set_running(ns, &[("app", &container)]).await;
        (volume, container)
    }

    /// Patches the pod's status as a kubelet would once its containers run.
    pub async fn set_running(&self, ns: &TestNamespace, containers: &[(&str, &Container)]) {
        let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("time");
        let statuses: Vec<serde_json::Value> = containers
            .iter()
            .map(|(name, c)| {
                json!({"name": name, "image": "registry.invalid/x:1", "imageID": "", "ready": true, "restartCount": 0,
                       "containerID": format!("containerd://{}", c.id), "state": {"running": {"startedAt": now}}})
            })
            .collect();
        let patch = json!({"status": {"phase": "Running", "containerStatuses": statuses}});
        ns.api::<Pod>()
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch status");
    }
}

/// Polls the published `NodeTokenEvidence` until `ready` holds.
pub fn published(
    rt: &Runtime,
    client: &Client,
    node: &str,
    timeout: Duration,
    ready: impl Fn(&Evidence) -> bool,
) -> Evidence {
    let api: Api<NodeTokenEvidence> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Ok(Some(object)) = rt.block_on(api.get_opt(node))
            && let Some(status) = object.status
        {
            if ready(&status) {
                return status;
            }
            last = Some(status);
        }
        assert!(Instant::now() < deadline, "not published in time; last: {last:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls the agent's own `/v1/evidence` until `ready` holds.
pub fn wait_local(
    _rt: &Runtime,
    agent: &RunningAgent,
    timeout: Duration,
    ready: impl Fn(&Evidence) -> bool,
) -> Evidence {
    let deadline = Instant::now() + timeout;
    loop {
        let response = http_get(agent.http, "/v1/evidence");
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if let Ok(ev) = serde_json::from_str::<Evidence>(body)
            && ready(&ev)
        {
            return ev;
        }
        assert!(Instant::now() < deadline, "agent evidence not ready in time: {response}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the agent watches the volumes of these pods, then two clock ticks: a container
/// started after this is observed from its start (as behind a real kubelet, which mounts
/// volumes well before it starts containers).
pub fn wait_watched(rt: &Runtime, agent: &RunningAgent, pod_uids: &[&str]) {
    wait_local(rt, agent, Duration::from_secs(20), |ev| {
        pod_uids.iter().all(|uid| ev.volumes.iter().any(|v| v.pod_uid == *uid && v.mounted))
    });
    std::thread::sleep(Duration::from_millis(25));
}

/// The entry of a container by pod and container name.
pub fn entry_named<'e>(ev: &'e Evidence, pod: &str, container: &str) -> Option<&'e ContainerEvidence> {
    ev.containers.iter().find(|c| c.pod.as_deref() == Some(pod) && c.container.as_deref() == Some(container))
}

/// The entry of a fake container.
pub fn container_of<'e>(ev: &'e Evidence, c: &Container) -> Option<&'e ContainerEvidence> {
    ev.containers.iter().find(|e| e.container_id.as_deref() == Some(c.id.as_str()))
}

/// A plain HTTP/1.1 GET; returns the whole response.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the agent");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// A network namespace of this test with extra addresses on its loopback interface.
pub struct NetNs {
    name: String,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl NetNs {
    pub fn new(addresses: &[&str]) -> Self {
        let name = format!("tp-test-{}", std::process::id());
        ip(&["netns", "add", &name]);
        // Made before any check can fail, so Drop removes it.
        let netns = Self { name };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        for a in addresses {
            ip(&["-n", &netns.name, "addr", "add", &format!("{a}/32"), "dev", "lo"]);
        }
        netns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let out = std::process::Command::new("ip").args(["netns", "del", &self.name]).output();
        if !out.is_ok_and(|o| o.status.success()) {
            eprintln!("warning: cannot delete network namespace {}", self.name);
        }
    }
}

/// A TCP proxy on 127.0.0.1 in front of the test API server, to take it away and bring it
/// back without touching the server.
pub struct ApiProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

fn kubeconfig_path() -> PathBuf {
    PathBuf::from(std::env::var_os(KUBECONFIG_ENV).expect("the test API server's kubeconfig"))
}

fn upstream(kubeconfig: &Kubeconfig) -> SocketAddr {
    let server = kubeconfig.clusters[0].cluster.as_ref().and_then(|c| c.server.clone()).expect("server");
    server.trim_start_matches("https://").parse().expect("server address")
}

impl ApiProxy {
    pub async fn start() -> Self {
        let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig");
        let upstream = upstream(&kubeconfig);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let up = Arc::clone(&up);
            let connections = Arc::clone(&connections);
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the "API server" is down
                    }
                    let conn = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                            drop(tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await);
                        }
                    });
                    connections.lock().expect("lock").push(conn);
                }
            }
        });
        Self { addr, up, connections, accept }
    }

    /// The connection to the API server through this proxy.
    pub async fn config(&self) -> kube::Config {
        let mut kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig");
        if let Some(cluster) = kubeconfig.clusters[0].cluster.as_mut() {
            cluster.server = Some(format!("https://{}", self.addr));
        }
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config")
    }

    /// Refuses new connections and cuts the open ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.connections.lock().expect("lock").drain(..) {
            c.abort();
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.down();
        self.accept.abort();
    }
}

/// A Deployment (created once, with its ReplicaSet) and one more of its pods.
pub async fn deployment_pod(ns: &TestNamespace, node: &str, deployment: &str, sa: &str, pod_name: &str) -> ApiPod {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let rs_name = format!("{deployment}-rs");
    let existing = ns.api::<ReplicaSet>().get_opt(&rs_name).await.expect("get rs");
    let rs = if let Some(rs) = existing {
        rs
    } else {
        let labels = json!({"app": deployment});
        let template = json!({"metadata": {"labels": labels}, "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "registry.invalid/x:1"}]}});
        let d: Deployment = ns
            .create(json!({"metadata": {"name": deployment}, "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template}}))
            .await;
        ns.create(replica_set(&rs_name, deployment, &d, &labels, &template)).await
    };
    let mut object = pod(pod_name, node, sa, None);
    object["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name, "uid": rs.uid().expect("uid"), "controller": true}]);
    object["metadata"]["labels"] = json!({"pod-template-hash": TEMPLATE_HASH});
    let created: Pod = ns.create(object).await;
    ApiPod {
        name: pod_name.to_owned(),
        uid: created.uid().expect("uid"),
        automount_volume: automount::automount_volume(&created).map(|v| v.name.clone()).unwrap_or_default(),
    }
}

/// Applies a planner change as `kubectl patch --type strategic` would.
pub async fn apply_patch(client: &Client, change: &probe_agent::plan::Change) {
    let gvk = kube::api::GroupVersionKind::try_from(&kube::api::TypeMeta {
        api_version: change.target.api_version.clone(),
        kind: change.target.kind.clone(),
    })
    .expect("gvk");
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await.expect("discover");
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), &change.target.namespace, &resource);
    let body = probe_agent::plan::output::patch_body(change);
    api.patch(&change.target.name, &PatchParams::default(), &Patch::Strategic(&body))
        .await
        .unwrap_or_else(|e| panic!("patch {} {}: {e}", change.target.kind, change.target.name));
}

/// How the [`FaultProxy`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Forwards every request to the API server.
    None = 0,
    /// `429 Too Many Requests` with `Retry-After: 1` (API priority and fairness throttling).
    TooManyRequests = 1,
    /// `500 Internal Server Error`.
    ServerError = 2,
    /// Forwards, but answers each request 2 s late.
    Slow = 3,
}

/// An HTTP front for the test API server that can answer 429, 500 or slowly: the agent's
/// client talks plain HTTP to it on 127.0.0.1; it forwards with the test's own client.
pub struct FaultProxy {
    addr: SocketAddr,
    fault: Arc<std::sync::atomic::AtomicU8>,
    server: JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: Client) -> Self {
        use axum::{body::Body as AxumBody, extract::State, response::IntoResponse as _};
        type Shared = (Client, Arc<std::sync::atomic::AtomicU8>);
        async fn handle(
            State((client, fault)): State<Shared>,
            request: axum::extract::Request,
        ) -> axum::response::Response {
            let status = |code: u16, reason: &str| {
                let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason});
                let mut response = (
                    axum::http::StatusCode::from_u16(code).expect("status"),
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response();
                if code == 429 {
                    response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
                }
                response
            };
            match fault.load(Ordering::SeqCst) {
                1 => return status(429, "TooManyRequests"),
                2 => return status(500, "InternalError"),
                3 => tokio::time::sleep(Duration::from_secs(2)).await,
                _ => {}
            }
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else { return status(400, "BadRequest") };
            let mut forward = axum::http::Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
            for (name, value) in &parts.headers {
                if matches!(name.as_str(), "content-type" | "accept") {
                    forward = forward.header(name, value);
                }
            }
            let Ok(forward) = forward.body(kube::client::Body::from(bytes.to_vec())) else {
                return status(400, "BadRequest");
            };
            match client.send(forward).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let mut out = axum::response::Response::new(AxumBody::new(body));
                    *out.status_mut() = parts.status;
                    if let Some(ct) = parts.headers.get(axum::http::header::CONTENT_TYPE) {
                        out.headers_mut().insert(axum::http::header::CONTENT_TYPE, ct.clone());
                    }
                    out
                }
                Err(_) => status(502, "BadGateway"),
            }
        }
        let fault = Arc::new(std::sync::atomic::AtomicU8::new(Fault::None as u8));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fault proxy");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(handle).with_state((upstream, Arc::clone(&fault)));
        let server = tokio::spawn(async move {
            drop(axum::serve(listener, app).await);
        });
        Self { addr, fault, server }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// The connection to the API server through this proxy (plain HTTP on loopback, no
    /// credentials: the proxy adds the test's).
    pub fn config(&self) -> kube::Config {
        kube::Config::new(format!("http://{}", self.addr).parse().expect("url"))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `probe-agent audit-sink` (the binary) where the test API server's audit webhook posts
/// (`TOKENPROBE_AUDIT_WEBHOOK_ADDR`), writing every second.
pub struct AuditSink {
    child: std::process::Child,
    addr: SocketAddr,
    pub name: String,
}

impl AuditSink {
    pub fn start(rt: &Runtime, client: &Client, name: &str) -> Self {
        rt.block_on(async {
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            let crd = probe_agent::k8s::crd::TokenAuditEvidence::crd();
            crds.patch(&crd.name_any(), &PatchParams::apply("tokenprobe-test").force(), &Patch::Apply(&crd))
                .await
                .expect("apply the audit CRD");
            let api: Api<probe_agent::k8s::crd::TokenAuditEvidence> = Api::all(client.clone());
            eventually("the audit CRD to be served", Duration::from_secs(30), || async {
                api.list(&kube::api::ListParams::default()).await.ok().map(drop)
            })
            .await;
        });
        let addr: SocketAddr = std::env::var("TOKENPROBE_AUDIT_WEBHOOK_ADDR")
            .expect("TOKENPROBE_AUDIT_WEBHOOK_ADDR")
            .parse()
            .expect("the audit webhook's address");
        let bin = std::env::var("TOKENPROBE_AGENT_BIN").expect("TOKENPROBE_AGENT_BIN");
        let child = std::process::Command::new(bin)
            .args(["audit-sink", "--flush-interval", "1s", "--name", name])
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .spawn()
            .expect("run probe-agent audit-sink");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the sink does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, addr, name: name.to_owned() }
    }

    /// POSTs `body` as the audit webhook does; the whole response.
    pub fn post(&self, body: &str) -> String {
        let mut stream = TcpStream::connect(self.addr).expect("connect to the sink");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: sink\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
    }

    /// Polls its object until `ready` holds for the totals.
    pub fn wait_for(
        &self,
        rt: &Runtime,
        client: &Client,
        ready: impl Fn(&probe_agent::k8s::crd::AuditTotals) -> bool,
    ) -> probe_agent::k8s::crd::AuditTotals {
        let api: Api<probe_agent::k8s::crd::TokenAuditEvidence> = Api::all(client.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = rt.block_on(api.get_opt(&self.name)).ok().flatten().and_then(|o| o.status);
            if let Some(s) = status.filter(|s| ready(s)) {
                return s;
            }
            assert!(Instant::now() < deadline, "the sink's object is not as expected");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM (it writes once more and exits 0), then deletes its object.
    pub fn stop(mut self, rt: &Runtime, client: &Client) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM our own child");
        let status = self.child.wait().expect("wait for the sink");
        assert!(status.success(), "the sink exited with {status}");
        let api: Api<probe_agent::k8s::crd::TokenAuditEvidence> = Api::all(client.clone());
        drop(rt.block_on(api.delete(&self.name, &kube::api::DeleteParams::default())));
    }
}
