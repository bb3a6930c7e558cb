//! The kustomize sources in deploy/kustomize: every overlay renders (`kubectl kustomize`), every
//! built-in object matches its Kubernetes schema field for field, the API server accepts the
//! objects (server-side dry run), and the example overlay's values land where they should.

use std::{path::Path, process::Command};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    batch::v1::CronJob,
    core::v1::{ConfigMap, Namespace, Service, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    scheduling::v1::PriorityClass,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DynamicObject, Patch, PatchParams},
};
use serde::Deserialize as _;
use serde_json::Value;
use tokio::runtime::Runtime;

const OVERLAYS: &[&str] = &["base", "overlays/monitoring", "overlays/planner-cronjob", "overlays/example"];

fn render(dir: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kustomize").join(dir);
    let out = Command::new("kubectl").arg("kustomize").arg(&path).output().expect("kubectl kustomize");
    assert!(out.status.success(), "{dir}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).expect("YAML")).expect("JSON"))
        .collect()
}

/// The object read as its Kubernetes type and written back is the same object: no misspelt or
/// misplaced field (which the API server would drop without a word).
fn same_through<K: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) {
    let typed: K = serde_json::from_value(object.clone()).unwrap_or_else(|e| panic!("{}: {e}", name(object)));
    let back = serde_json::to_value(&typed).expect("serialize");
    assert_eq!(&back, object, "{} does not match its schema", name(object));
}

fn name(object: &Value) -> String {
    format!("{} {}", object["kind"].as_str().unwrap_or("?"), object["metadata"]["name"].as_str().unwrap_or("?"))
}

fn schema_check(object: &Value) {
    match (object["apiVersion"].as_str().unwrap_or_default(), object["kind"].as_str().unwrap_or_default()) {
        ("v1", "Namespace") => same_through::<Namespace>(object),
        ("v1", "ServiceAccount") => same_through::<ServiceAccount>(object),
        ("v1", "Service") => same_through::<Service>(object),
        ("v1", "ConfigMap") => same_through::<ConfigMap>(object),
        ("scheduling.k8s.io/v1", "PriorityClass") => same_through::<PriorityClass>(object),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => same_through::<ClusterRole>(object),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => same_through::<ClusterRoleBinding>(object),
        ("rbac.authorization.k8s.io/v1", "Role") => same_through::<Role>(object),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => same_through::<RoleBinding>(object),
        ("apps/v1", "DaemonSet") => same_through::<DaemonSet>(object),
        ("apps/v1", "Deployment") => same_through::<k8s_openapi::api::apps::v1::Deployment>(object),
        ("batch/v1", "CronJob") => same_through::<CronJob>(object),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {}
        other => panic!("no schema check for {other:?}: add one"),
    }
}

/// A `ServiceMonitor` finds its `Service`: the selector matches the Service's labels, the port
/// name is one of its ports, the namespace is selected.
fn service_monitor_matches(objects: &[Value]) {
    let Some(monitor) = objects.iter().find(|o| o["kind"] == "ServiceMonitor") else { return };
    let selector = monitor["spec"]["selector"]["matchLabels"].as_object().expect("matchLabels");
    let service = objects
        .iter()
        .find(|o| o["kind"] == "Service" && selector.iter().all(|(k, v)| &o["metadata"]["labels"][k] == v))
        .expect("a Service the ServiceMonitor's selector matches");
    let ports: Vec<&Value> = service["spec"]["ports"].as_array().expect("ports").iter().map(|p| &p["name"]).collect();
    for endpoint in monitor["spec"]["endpoints"].as_array().expect("endpoints") {
        assert!(ports.contains(&&endpoint["port"]), "port {} is not a Service port", endpoint["port"]);
    }
    let namespaces = &monitor["spec"]["namespaceSelector"]["matchNames"];
    assert!(namespaces.as_array().expect("matchNames").contains(&service["metadata"]["namespace"]));
    // The Service selects the agent's pods.
    let daemonset = objects.iter().find(|o| o["kind"] == "DaemonSet").expect("DaemonSet");
    let pod_labels = &daemonset["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().expect("Service selector") {
        assert_eq!(&pod_labels[k], v, "the Service does not select the agent's pods");
    }
}

async fn dry_run(client: &Client, object: &Value) {
    let mut object = object.clone();
    // The 1.20 test server serves CronJobs as batch/v1beta1 only; their schema was checked above.
    if object["kind"] == "CronJob" {
        object["apiVersion"] = "batch/v1beta1".into();
    }
    let dynamic: DynamicObject = serde_json::from_value(object.clone()).expect("object");
    let types = dynamic.types.clone().expect("apiVersion and kind");
    let gvk = kube::api::GroupVersionKind::try_from(&types).expect("gvk");
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("{gvk:?}: {e}"));
    let api: Api<DynamicObject> = match &dynamic.metadata.namespace {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        _ => Api::all_with(client.clone(), &resource),
    };
    let params = PatchParams { dry_run: true, ..PatchParams::apply("tokenprobe-test").force() };
    api.patch(&dynamic.name_any(), &params, &Patch::Apply(&dynamic))
        .await
        .unwrap_or_else(|e| panic!("{} refused: {e}", name(&object)));
}

pub fn kustomize_overlays(rt: &Runtime, client: &Client) {
    rt.block_on(async {
        // The namespace for real: namespaced dry runs need it to exist.
        probe_tests::cluster::ensure_namespace(client, "tokenprobe").await;
        for dir in OVERLAYS {
            let objects = render(dir);
            assert!(objects.iter().any(|o| o["kind"] == "DaemonSet"), "{dir} has no agent");
            for object in &objects {
                schema_check(object);
                if object["kind"] != "ServiceMonitor" {
                    dry_run(client, object).await;
                }
            }
            service_monitor_matches(&objects);
            if *dir == "overlays/example" {
                example_values(&objects);
            }
        }
    });
    // deploy/agent.yaml is the base's rendering (the CI's lint step checks the same).
    let agent = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.yaml"))
        .expect("agent.yaml");
    let rendered: Vec<Value> = serde_yaml::Deserializer::from_str(&agent)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).expect("YAML")).expect("JSON"))
        .collect();
    assert_eq!(rendered, render("base"), "deploy/agent.yaml is stale: cargo xtask manifests");
}

/// Each value the example overlay sets is where the agent's pod gets it.
fn example_values(objects: &[Value]) {
    // The audit sink: the same image, non-root without capabilities, behind its Service.
    let sink = objects.iter().find(|o| o["kind"] == "Deployment").expect("the audit sink");
    let container = &sink["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/mirror/probe-agent:0.1.0");
    assert_eq!(container["args"][0], "audit-sink");
    assert_eq!(container["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["capabilities"]["drop"][0], "ALL");
    let service = objects.iter().find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "tokenprobe-audit-sink");
    let selector = service.expect("the sink's Service")["spec"]["selector"].as_object().expect("selector");
    for (k, v) in selector {
        assert_eq!(&sink["spec"]["template"]["metadata"]["labels"][k], v, "the Service selects the sink");
    }
    let ds = objects.iter().find(|o| o["kind"] == "DaemonSet").expect("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let agent = &pod["containers"][0];
    assert_eq!(agent["image"], "registry.example.com/mirror/probe-agent:0.1.0");
    let env = |name: &str| {
        agent["env"].as_array().expect("env").iter().find(|e| e["name"] == name).map(|e| e["value"].clone())
    };
    assert_eq!(env("TOKENPROBE_PUBLISH_INTERVAL"), Some("30s".into()));
    assert!(env("NODE_NAME").is_some(), "the downward-API variables stay");
    let args: Vec<&str> = agent["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    assert_eq!(args.first(), Some(&"run"));
    assert!(args.contains(&"--targets-refresh=10m"), "{args:?}");
    let caps: Vec<&str> = agent["securityContext"]["capabilities"]["add"]
        .as_array()
        .expect("caps")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(caps, ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE", "SYS_ADMIN"]);
    assert_eq!(agent["securityContext"]["privileged"], false);
    assert_eq!(agent["resources"]["requests"]["memory"], "96Mi");
    assert_eq!(agent["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(pod["priorityClassName"], "platform-node-agents");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert!(pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].is_object());
    let tolerations = pod["tolerations"].as_array().expect("tolerations");
    assert_eq!(tolerations.len(), 2, "the example replaces the tolerate-everything default");
    let volumes = pod["volumes"].as_array().expect("volumes");
    let state = volumes.iter().find(|v| v["name"] == "state").expect("state volume");
    assert_eq!(state["hostPath"]["path"], "/opt/tokenprobe/state");
    assert_eq!(volumes.len(), 5, "the other host paths stay");
    let dashboard = objects.iter().find(|o| o["kind"] == "ConfigMap").expect("dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(dashboard["data"]["tokenprobe.json"].as_str().expect("dashboard"))
        .expect("dashboard JSON");
    assert!(!json["panels"].as_array().expect("panels").is_empty());
}
