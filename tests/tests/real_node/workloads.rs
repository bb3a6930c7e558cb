//! The workloads of the real-node suite, from the workload image (busybox): each does one
//! thing with its token, so every count in the evidence is known.

use serde_json::{Value, json};

/// The automount volume's token, as the kubelet mounts it.
pub const TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// An in-cluster client: reads its token and calls the API server through the `kubernetes`
/// Service every 3 s (busybox wget speaks TLS; it does not check the certificate).
pub const API_CLIENT: &str = r#"while :; do wget -q -O /dev/null --header "Authorization: Bearer $(cat /var/run/secrets/kubernetes.io/serviceaccount/token)" "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api"; sleep 3; done"#;
/// Never touches its token.
pub const IDLE: &str = "exec sleep 100000";
/// A sidecar that reads the token, `ca.crt` and `namespace` every 5 s.
pub const SIDECAR: &str = "while :; do cat /var/run/secrets/kubernetes.io/serviceaccount/token /var/run/secrets/kubernetes.io/serviceaccount/ca.crt /var/run/secrets/kubernetes.io/serviceaccount/namespace >/dev/null; sleep 5; done";
/// Reads its token once each time `/tmp/go` appears (a `kubectl exec … touch /tmp/go` asks):
/// its count is exactly the number of asks.
pub const ON_DEMAND: &str = "while :; do if [ -f /tmp/go ]; then cat /var/run/secrets/kubernetes.io/serviceaccount/token >/dev/null; rm /tmp/go; fi; sleep 0.2; done";

fn container(name: &str, image: &str, script: &str) -> Value {
    json!({"name": name, "image": image, "imagePullPolicy": "Never", "command": ["/bin/sh", "-c", script]})
}

fn template(name: &str, sa: &str, containers: &[Value]) -> Value {
    json!({
        "metadata": {"labels": {"app": name}},
        "spec": {"serviceAccountName": sa, "terminationGracePeriodSeconds": 1, "containers": containers}
    })
}

/// A Deployment.
pub fn deployment(name: &str, sa: &str, replicas: i32, containers: &[Value]) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template(name, sa, containers)}
    })
}

/// Every workload of the suite: (kind, name, object).
pub fn all(image: &str) -> Vec<(&'static str, &'static str, Value)> {
    let c = |name: &str, script: &str| container(name, image, script);
    let mut boot = deployment("boot", "boot", 1, &[c("main", IDLE)]);
    boot["spec"]["template"]["spec"]["initContainers"] = json!([c("reader", &format!("cat {TOKEN} >/dev/null"))]);
    let mut probed = deployment("probed", "probed", 1, &[c("main", IDLE)]);
    probed["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] =
        json!({"exec": {"command": ["cat", TOKEN]}, "periodSeconds": 3});
    let db = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": template("db", "quiet", &[c("main", IDLE)])}
    });
    let nightly = json!({
        "apiVersion": "batch/v1beta1", "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "* * * * *", "successfulJobsHistoryLimit": 3, "jobTemplate": {"spec": {"template": {
            "spec": {"serviceAccountName": "batch", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [c("job", "sleep 2")]}}}}}
    });
    vec![
        ("Deployment", "api-client", deployment("api-client", "reader", 1, &[c("main", API_CLIENT)])),
        ("Deployment", "idle", deployment("idle", "quiet", 2, &[c("main", IDLE)])),
        ("StatefulSet", "db", db),
        ("Deployment", "mesh", deployment("mesh", "mesh", 1, &[c("app", IDLE), c("sidecar", SIDECAR)])),
        ("Deployment", "boot", boot),
        ("CronJob", "nightly", nightly),
        ("Deployment", "probed", probed),
        ("Deployment", "toolbox", deployment("toolbox", "toolbox", 1, &[c("main", IDLE)])),
        ("Deployment", "on-demand", deployment("on-demand", "trigger", 1, &[c("main", ON_DEMAND)])),
    ]
}

/// The ServiceAccounts they run under (`default` is made by the controller).
pub const SERVICE_ACCOUNTS: [&str; 8] = ["reader", "quiet", "mesh", "boot", "batch", "probed", "toolbox", "trigger"];

/// Whether a pod has the automount volume (the service-account path mounted from a
/// `kube-api-access-*` volume).
pub fn has_token_volume(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.volumes.iter().flatten().any(|v| v.name.starts_with("kube-api-access-"))
            && s.containers.iter().any(|c| c.volume_mounts.iter().flatten().any(|m| m.mount_path == SA_DIR))
    })
}
