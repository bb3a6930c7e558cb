//! `cargo xtask bench` (planner scale): a synthetic cluster shaped like real `kubectl get -o
//! json` output, and `probe-agent plan` on it next to a same-run baseline.
//!
//! The cluster: `--nodes` nodes with `--pods-per-node` pods each, in Deployments of ten
//! replicas (each with its ReplicaSet), twenty Deployments per namespace, five
//! ServiceAccounts per namespace; every pod with a `kube-api-access-*` volume, a container with
//! probes, env, ports, resources and mounts, tolerations, and a status as the kubelet writes it,
//! printed with four-space indents as kubectl prints. Every node has a NodeTokenEvidence with an entry per
//! container; one Deployment in five reads its token.
//!
//! Measured in child processes, side by side in one run: wall time and peak RSS (`wait4`) of
//! - the baseline: reading the same files and parsing them into plain JSON values;
//! - `probe-agent plan` on them.

use std::{
    fmt::Write as _,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use clap::Parser;
use probe_agent::evidence::{AgentInfo, ContainerEvidence, ContainerKey, Evidence, Hooks, KeyKind, Reads, Workload};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "The planner on a synthetic cluster, next to reading + plain JSON parsing of the same files")]
struct Args {
    /// Nodes in the cluster (repeatable: one run per size).
    #[arg(long = "nodes", default_values_t = [1_000u32, 5_000])]
    nodes: Vec<u32>,
    #[arg(long, default_value_t = 110)]
    pods_per_node: u32,
    /// Where the cluster's files are written (kept between runs).
    #[arg(long, default_value = "/tmp/tokenprobe-plan-scale")]
    dir: PathBuf,
    /// `probe-agent` (default: `TOKENPROBE_AGENT_BIN`).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Results as JSON lines on stdout.
    #[arg(long)]
    json: bool,
    /// Only write the files.
    #[arg(long)]
    generate_only: bool,
}

const BASELINE_ARG: &str = "--baseline-child";
const FLOOR_ARG: &str = "--floor-child";
const REPLICAS: u32 = 10;
const DEPLOYMENTS_PER_NAMESPACE: u32 = 20;
const ACCOUNTS_PER_NAMESPACE: u32 = 5;
const T0: &str = "2026-11-01T08:00:00Z";
const NOW: &str = "2026-12-01T12:00:00Z";

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some(BASELINE_ARG) {
        return baseline(&raw[2..]);
    }
    if raw.get(1).map(String::as_str) == Some(FLOOR_ARG) && raw.len() > 2 {
        return floor(&raw[2], &raw[3..]);
    }
    let args = Args::parse();
    let Some(agent) = args.agent.clone().or_else(|| std::env::var_os("TOKENPROBE_AGENT_BIN").map(PathBuf::from)) else {
        eprintln!("plan-scale: pass --agent or set TOKENPROBE_AGENT_BIN to probe-agent");
        return ExitCode::from(2);
    };
    for &nodes in &args.nodes {
        let dir = args.dir.join(format!("{nodes}x{}", args.pods_per_node));
        let files = match Cluster::new(nodes, args.pods_per_node).write(&dir) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("plan-scale: cannot write the cluster to {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        };
        if args.generate_only {
            continue;
        }
        let me = std::env::current_exe().expect("own path");
        let mut baseline = Command::new(me);
        baseline.arg(BASELINE_ARG).args(files.all());
        let mut plan = Command::new(&agent);
        plan.args(["plan", "-o", "json", "--now", NOW, "--min-observation", "24h", "--accept-tracepoint-mode"]);
        for f in &files.evidence {
            plan.arg("--evidence").arg(f);
        }
        for f in &files.objects {
            plan.arg("--objects").arg(f);
        }
        let floor_of = |what: &str| {
            let mut c = Command::new(std::env::current_exe().expect("own path"));
            c.arg(FLOOR_ARG).arg(what).args(files.all());
            c
        };
        let base = measure(&mut baseline);
        let scan = measure(&mut floor_of("scan"));
        let skip = measure(&mut floor_of("skip"));
        let planned = measure(&mut plan);
        report(&args, nodes, &files, &base, &[&scan, &skip], &planned);
        if !(base.ok && scan.ok && skip.ok && planned.ok) {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

struct Files {
    evidence: Vec<PathBuf>,
    objects: Vec<PathBuf>,
    pods: u64,
    pod_bytes: u64,
}

impl Files {
    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        self.evidence.iter().chain(&self.objects)
    }

    fn bytes(&self) -> u64 {
        self.all().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
    }
}

struct Measured {
    ok: bool,
    wall: Duration,
    max_rss_kib: i64,
    cpu: Duration,
}

/// Runs `cmd` with stdout discarded; wall time, CPU time and peak RSS from `wait4`.
fn measure(cmd: &mut Command) -> Measured {
    cmd.stdout(std::process::Stdio::null());
    let start = Instant::now();
    // Reaped below with wait4, which also gives its resource usage.
    #[expect(clippy::zombie_processes, reason = "reaped by wait4")]
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child; both out-pointers are valid.
    let waited = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let wall = start.elapsed();
    let ok = waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        eprintln!("plan-scale: {cmd:?} failed (status {status:#x})");
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Measured { ok, wall, max_rss_kib: usage.ru_maxrss, cpu: tv(usage.ru_utime) + tv(usage.ru_stime) }
}

#[expect(clippy::cast_precision_loss, reason = "sizes for display")]
fn report(args: &Args, nodes: u32, files: &Files, base: &Measured, floors: &[&Measured; 2], plan: &Measured) {
    let mib = |kib: i64| kib as f64 / 1024.0;
    let bytes = files.bytes();
    let per_pod = files.pod_bytes / files.pods.max(1);
    if args.json {
        println!(
            "{}",
            json!({"bench": "plan-scale", "nodes": nodes, "pods": files.pods, "bytes": bytes, "podBytesMean": per_pod,
                "baseline": {"seconds": base.wall.as_secs_f64(), "cpuSeconds": base.cpu.as_secs_f64(), "maxRssMiB": mib(base.max_rss_kib)},
                "floorScan": {"seconds": floors[0].wall.as_secs_f64(), "cpuSeconds": floors[0].cpu.as_secs_f64(), "maxRssMiB": mib(floors[0].max_rss_kib)},
                "floorSkip": {"seconds": floors[1].wall.as_secs_f64(), "cpuSeconds": floors[1].cpu.as_secs_f64(), "maxRssMiB": mib(floors[1].max_rss_kib)},
                "plan": {"seconds": plan.wall.as_secs_f64(), "cpuSeconds": plan.cpu.as_secs_f64(), "maxRssMiB": mib(plan.max_rss_kib)}})
        );
        return;
    }
    println!(
        "plan-scale: {nodes} nodes × {} pods = {} pods, {:.0} MB of files (mean {per_pod} bytes per pod object)",
        args.pods_per_node,
        files.pods,
        bytes as f64 / 1e6
    );
    for (what, m) in [
        ("baseline: read + parse to JSON values", base),
        ("floor: read + find the objects", floors[0]),
        ("floor: + skip-parse each (serde_json)", floors[1]),
        ("probe-agent plan", plan),
    ] {
        println!(
            "  {what:<40} {:>7.2} s wall {:>7.2} s CPU {:>8.0} MiB peak RSS",
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            mib(m.max_rss_kib)
        );
    }
    println!(
        "  plan / baseline: {:.2}× time, {:.2}× peak RSS",
        plan.wall.as_secs_f64() / base.wall.as_secs_f64(),
        mib(plan.max_rss_kib) / mib(base.max_rss_kib)
    );
}

/// The baseline child: reads each file whole and parses it as plain JSON — every item of the
/// List into a `serde_json::Value`, one at a time (a whole 5,000-node List as one value would
/// not fit in memory) — as any tool that loads `kubectl get -o json` output must at least do.
fn baseline(files: &[String]) -> ExitCode {
    let mut items = 0usize;
    for f in files {
        let parsed = std::fs::read(f).map_err(|e| e.to_string()).and_then(|text| {
            let mut de = serde_json::Deserializer::from_slice(&text);
            serde::Deserializer::deserialize_map(&mut de, ListItems(&mut items)).map_err(|e| e.to_string())
        });
        if let Err(e) = parsed {
            eprintln!("baseline: {f}: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("{items}");
    ExitCode::SUCCESS
}

/// What any reader of these files pays before it keeps anything, on every core as the planner
/// reads: `scan`, finding each object of the files (the planner's own scanner); `skip`, that and
/// a JSON parser's pass over each object that keeps nothing (`serde::de::IgnoredAny`).
fn floor(what: &str, files: &[String]) -> ExitCode {
    let skip = what == "skip";
    let mut objects = 0usize;
    for f in files {
        let read = std::fs::File::open(f).map_err(|e| e.to_string()).and_then(|file| {
            probe_agent::plan::stream::par_map_objects(
                file,
                |o| {
                    if skip {
                        serde_json::from_slice::<serde::de::IgnoredAny>(o.bytes).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                },
                |()| {
                    objects += 1;
                    Ok(())
                },
            )
            .map_err(|e| e.to_string())
        });
        if let Err(e) = read {
            eprintln!("floor: {f}: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("{objects}");
    ExitCode::SUCCESS
}

/// A List whose items are parsed to values one by one and dropped.
struct ListItems<'a>(&'a mut usize);

impl<'de> serde::de::Visitor<'de> for ListItems<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a List")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                map.next_value_seed(Items(&mut *self.0))?;
            } else {
                map.next_value::<Value>()?;
            }
        }
        Ok(())
    }
}

struct Items<'a>(&'a mut usize);

impl<'de> serde::de::DeserializeSeed<'de> for Items<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Items<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("items")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<Value>()? {
            std::hint::black_box(&item);
            *self.0 += 1;
        }
        Ok(())
    }
}

struct Cluster {
    nodes: u32,
    pods_per_node: u32,
}

impl Cluster {
    const fn new(nodes: u32, pods_per_node: u32) -> Self {
        Self { nodes, pods_per_node }
    }

    const fn deployments(&self) -> u32 {
        self.nodes * self.pods_per_node / REPLICAS
    }

    /// Writes the files unless a complete set is there already.
    fn write(&self, dir: &Path) -> std::io::Result<Files> {
        let evidence = vec![dir.join("evidence.json")];
        let objects = vec![dir.join("workloads.json"), dir.join("pods.json")];
        let done = dir.join("complete");
        let pods = u64::from(self.deployments() * REPLICAS);
        if !done.exists() {
            std::fs::create_dir_all(dir)?;
            eprintln!("plan-scale: writing a cluster of {} nodes to {}", self.nodes, dir.display());
            write_list(&objects[0], |w| self.workloads(w))?;
            write_list(&objects[1], |w| self.pods(w))?;
            write_list(&evidence[0], |w| self.evidence(w))?;
            let pod_bytes = std::fs::metadata(&objects[1])?.len();
            std::fs::write(&done, pod_bytes.to_string())?;
        }
        let pod_bytes = std::fs::read_to_string(&done)?.trim().parse().unwrap_or(0);
        Ok(Files { evidence, objects, pods, pod_bytes })
    }

    fn namespace(d: u32) -> String {
        format!("team-{:04}", d / DEPLOYMENTS_PER_NAMESPACE)
    }

    fn account(d: u32) -> String {
        format!("svc-{}", d % ACCOUNTS_PER_NAMESPACE)
    }

    fn workloads(&self, put: &mut dyn FnMut(&Value) -> std::io::Result<()>) -> std::io::Result<()> {
        for ns in 0..self.deployments().div_ceil(DEPLOYMENTS_PER_NAMESPACE) {
            for a in 0..=ACCOUNTS_PER_NAMESPACE {
                let name = if a == ACCOUNTS_PER_NAMESPACE { "default".to_owned() } else { format!("svc-{a}") };
                put(&json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                    "creationTimestamp": T0, "name": name, "namespace": format!("team-{ns:04}"),
                    "resourceVersion": "4242", "uid": uid(0x5a, ns * 10 + a)}}))?;
            }
        }
        for d in 0..self.deployments() {
            let (ns, name) = (Self::namespace(d), format!("app-{d}"));
            let template = template(d);
            put(&json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
                    "annotations": {"deployment.kubernetes.io/revision": "3"},
                    "creationTimestamp": T0, "generation": 3, "labels": {"app": name},
                    "name": name, "namespace": ns, "resourceVersion": "918273", "uid": uid(0xd, d)},
                "spec": {"progressDeadlineSeconds": 600, "replicas": REPLICAS, "revisionHistoryLimit": 10,
                    "selector": {"matchLabels": {"app": name}},
                    "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
                    "template": template},
                "status": {"availableReplicas": REPLICAS, "conditions": [
                        {"lastTransitionTime": T0, "lastUpdateTime": T0, "message": "Deployment has minimum availability.", "reason": "MinimumReplicasAvailable", "status": "True", "type": "Available"},
                        {"lastTransitionTime": T0, "lastUpdateTime": T0, "message": format!("ReplicaSet \"{name}-7d9f8c6b5\" has successfully progressed."), "reason": "NewReplicaSetAvailable", "status": "True", "type": "Progressing"}],
                    "observedGeneration": 3, "readyReplicas": REPLICAS, "replicas": REPLICAS, "updatedReplicas": REPLICAS}}))?;
            let mut rs_template = template;
            rs_template["metadata"]["labels"]["pod-template-hash"] = json!("7d9f8c6b5");
            put(&json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
                    "annotations": {"deployment.kubernetes.io/desired-replicas": "10", "deployment.kubernetes.io/max-replicas": "13", "deployment.kubernetes.io/revision": "3"},
                    "creationTimestamp": T0, "generation": 1, "labels": {"app": name, "pod-template-hash": "7d9f8c6b5"},
                    "name": format!("{name}-7d9f8c6b5"), "namespace": ns,
                    "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true, "controller": true, "kind": "Deployment", "name": name, "uid": uid(0xd, d)}],
                    "resourceVersion": "918270", "uid": uid(0x25, d)},
                "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": name, "pod-template-hash": "7d9f8c6b5"}}, "template": rs_template},
                "status": {"availableReplicas": REPLICAS, "fullyLabeledReplicas": REPLICAS, "observedGeneration": 1, "readyReplicas": REPLICAS, "replicas": REPLICAS}}))?;
        }
        Ok(())
    }

    /// Pod `r` of Deployment `d` and its node.
    fn node_of(&self, d: u32, r: u32) -> u32 {
        (d * REPLICAS + r) % self.nodes
    }

    fn pods(&self, put: &mut dyn FnMut(&Value) -> std::io::Result<()>) -> std::io::Result<()> {
        for d in 0..self.deployments() {
            for r in 0..REPLICAS {
                put(&self.pod(d, r))?;
            }
        }
        Ok(())
    }

    fn pod(&self, d: u32, r: u32) -> Value {
        let (ns, app) = (Self::namespace(d), format!("app-{d}"));
        let name = pod_name(d, r);
        let i = d * REPLICAS + r;
        let mut spec = template(d)["spec"].clone();
        spec["nodeName"] = json!(format!("node-{:05}", self.node_of(d, r)));
        spec["serviceAccount"] = json!(Self::account(d));
        spec["tolerations"] = json!([
            {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
            {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}]);
        spec["volumes"].as_array_mut().expect("volumes").push(json!({"name": format!("kube-api-access-{}", suffix(i)), "projected": {
            "defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}]}}));
        for c in spec["containers"].as_array_mut().expect("containers") {
            c["volumeMounts"].as_array_mut().expect("mounts").push(json!({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": format!("kube-api-access-{}", suffix(i)), "readOnly": true}));
        }
        let ip = format!("10.{}.{}.{}", 64 + (i >> 16) % 64, (i >> 8) & 255, i & 255);
        let statuses: Vec<Value> = ["app"].iter().map(|c| json!({
            "containerID": format!("containerd://{}", container_id(i, c)), "image": "registry.example.com/team/app:1.42.0",
            "imageID": "registry.example.com/team/app@sha256:8f4c2b3e9a7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c",
            "lastState": {}, "name": c, "ready": true, "restartCount": 0, "started": true, "state": {"running": {"startedAt": T0}}})).collect();
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "annotations": {"kubectl.kubernetes.io/restartedAt": T0, "prometheus.io/port": "9090", "prometheus.io/scrape": "true"},
                "creationTimestamp": T0, "generateName": format!("{app}-7d9f8c6b5-"),
                "labels": {"app": app, "pod-template-hash": "7d9f8c6b5"}, "name": name, "namespace": ns,
                "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true, "controller": true, "kind": "ReplicaSet", "name": format!("{app}-7d9f8c6b5"), "uid": uid(0x25, d)}],
                "resourceVersion": "1029384", "uid": uid(0x90d, i)},
            "spec": spec,
            "status": {"conditions": [
                    {"lastProbeTime": null, "lastTransitionTime": T0, "status": "True", "type": "Initialized"},
                    {"lastProbeTime": null, "lastTransitionTime": T0, "status": "True", "type": "Ready"},
                    {"lastProbeTime": null, "lastTransitionTime": T0, "status": "True", "type": "ContainersReady"},
                    {"lastProbeTime": null, "lastTransitionTime": T0, "status": "True", "type": "PodScheduled"}],
                "containerStatuses": statuses, "hostIP": format!("192.168.{}.{}", self.node_of(d, r) >> 8, self.node_of(d, r) & 255),
                "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "qosClass": "Burstable", "startTime": T0}})
    }

    fn evidence(&self, put: &mut dyn FnMut(&Value) -> std::io::Result<()>) -> std::io::Result<()> {
        let t0 = time::OffsetDateTime::parse(T0, &time::format_description::well_known::Rfc3339).expect("T0");
        let now = time::OffsetDateTime::parse(NOW, &time::format_description::well_known::Rfc3339).expect("NOW");
        let mut by_node: Vec<Vec<(u32, u32)>> = vec![Vec::new(); self.nodes as usize];
        for d in 0..self.deployments() {
            for r in 0..REPLICAS {
                by_node[self.node_of(d, r) as usize].push((d, r));
            }
        }
        for (n, pods) in by_node.into_iter().enumerate() {
            let node = format!("node-{n:05}");
            let mut agent = AgentInfo::new("0.1.0", t0);
            agent.generated_at = Some(now);
            agent.hooks = Hooks { file_open: Some("tracepoint".into()), connect: Some("cgroup".into()) };
            agent.exec_tracking = true;
            agent.container_creation = true;
            agent.container_removal = true;
            agent.targets = vec!["10.96.0.1:443".into(), "192.168.0.10:6443".into()];
            let mut ev = Evidence {
                node: node.clone(),
                agent,
                containers: Vec::new(),
                retired: Vec::new(),
                volumes: Vec::new(),
            };
            for (d, r) in pods {
                let i = d * REPLICAS + r;
                let c = "app";
                {
                    let uses = d % 5 == 0;
                    ev.containers.push(ContainerEvidence {
                        key: ContainerKey { kind: KeyKind::Cgroup, id: u64::from(i) },
                        cgroup_path: None,
                        pod_uid: Some(uid(0x90d, i)),
                        container_id: Some(container_id(i, c)),
                        namespace: Some(Self::namespace(d)),
                        pod: Some(pod_name(d, r)),
                        container: Some(c.into()),
                        service_account: Some(Self::account(d)),
                        workload: Some(Workload { kind: "Deployment".into(), name: format!("app-{d}") }),
                        revision: Some("7d9f8c6b5".into()),
                        pod_phase: Some("Running".into()),
                        reads: Reads { token: if uses { 120 } else { 0 }, ..Reads::default() },
                        api_connects: if uses { 118 } else { 0 },
                        exec_reads: Reads::default(),
                        exec_api_connects: 0,
                        missing_token_opens: 0,
                        other_volumes: Vec::new(),
                        processes: if uses { vec!["app".into()] } else { Vec::new() },
                        exec_processes: Vec::new(),
                        first_seen: uses.then_some(t0),
                        last_seen: uses.then_some(now),
                        observed_since: Some(t0),
                        observed_from_start: Some(true),
                        unobserved_seconds: 0,
                        gone_since: None,
                        uncovered: Vec::new(),
                        previous_container_id: None,
                    });
                }
            }
            put(&json!({"apiVersion": "tokenprobe.dev/v1alpha1", "kind": "NodeTokenEvidence",
                "metadata": {"creationTimestamp": T0, "generation": 1, "name": node, "resourceVersion": "77", "uid": uid(0xe, u32::try_from(n).unwrap_or(0))},
                "status": serde_json::to_value(&ev).map_err(std::io::Error::other)?}))?;
        }
        Ok(())
    }
}

fn write_list(
    path: &Path,
    items: impl FnOnce(&mut dyn FnMut(&Value) -> std::io::Result<()>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    out.write_all(b"{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n")?;
    let mut first = true;
    let mut put = |item: &Value| -> std::io::Result<()> {
        if !first {
            out.write_all(b",\n")?;
        }
        first = false;
        let mut ser =
            serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"    "));
        serde::Serialize::serialize(item, &mut ser).map_err(std::io::Error::other)
    };
    items(&mut put)?;
    out.write_all(
        b"\n    ],\n    \"kind\": \"List\",\n    \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n",
    )?;
    out.flush()
}

/// Deployment `d`'s pod template, without the automount volume the admission plugin adds.
fn template(d: u32) -> Value {
    let app = format!("app-{d}");
    let env: Vec<Value> = ["LOG_LEVEL", "HTTP_PORT", "METRICS_PORT", "REGION", "FEATURE_FLAGS"]
        .iter()
        .map(|k| json!({"name": k, "value": "a-typical-value"}))
        .collect();
    json!({"metadata": {"creationTimestamp": null, "labels": {"app": app}},
        "spec": {"containers": [
            {"args": ["--config=/etc/app/config.yaml", "--listen=:8080"], "env": env,
             "image": "registry.example.com/team/app:1.42.0", "imagePullPolicy": "IfNotPresent",
             "livenessProbe": {"failureThreshold": 3, "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1},
             "name": "app", "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}, {"containerPort": 9090, "name": "metrics", "protocol": "TCP"}],
             "readinessProbe": {"failureThreshold": 3, "httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5, "successThreshold": 1, "timeoutSeconds": 1},
             "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
             "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true},
             "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
             "volumeMounts": [{"mountPath": "/etc/app", "name": "config"}]}],
            "dnsPolicy": "ClusterFirst", "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
            "restartPolicy": "Always", "schedulerName": "default-scheduler", "securityContext": {"runAsNonRoot": true},
            "serviceAccountName": Cluster::account(d), "terminationGracePeriodSeconds": 30,
            "volumes": [{"configMap": {"defaultMode": 420, "name": format!("{app}-config")}, "name": "config"}]}})
}

fn pod_name(d: u32, r: u32) -> String {
    format!("app-{d}-7d9f8c6b5-{}", suffix(d * REPLICAS + r))
}

/// Five characters as the API server's name generator makes them.
fn suffix(i: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = i.wrapping_mul(2_654_435_761);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % 27) as usize];
            x /= 27;
            char::from(c)
        })
        .collect()
}

fn uid(kind: u32, i: u32) -> String {
    format!("{kind:08x}-{:04x}-4{:03x}-8{:03x}-{i:012x}", i >> 16, i & 0xfff, (i >> 4) & 0xfff)
}

fn container_id(i: u32, c: &str) -> String {
    let salt: u32 = if c == "app" { 2_246_822_519 } else { 3_266_489_917 };
    let mut s = String::with_capacity(64);
    for part in 0..8u32 {
        // Writing to a String cannot fail.
        write!(s, "{:08x}", (i ^ (part << 24)).wrapping_mul(salt)).ok();
    }
    s
}
