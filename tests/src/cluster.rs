//! Helpers for tests against the test API server: a namespace per case, pods built from JSON,
//! waiting.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::{Value, json};

/// A namespace made for one case (with its `default` `ServiceAccount`, which admission needs).
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

fn suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{:x}{:x}", std::process::id(), nanos)
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout`.
///
/// # Panics
/// After `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl TestNamespace {
    /// Creates the namespace and waits for its `default` `ServiceAccount`.
    ///
    /// # Panics
    /// When the API server refuses or the controller does not create the `ServiceAccount`.
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let name = format!("tp-{prefix}-{}", suffix());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create namespace");
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        eventually("the default ServiceAccount (serviceaccount controller)", Duration::from_secs(30), || async {
            sas.get_opt("default").await.ok().flatten()
        })
        .await;
        Self { client: client.clone(), name }
    }

    #[must_use]
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates an object in the namespace.
    ///
    /// # Panics
    /// When the API server refuses it.
    pub async fn create<K>(&self, object: Value) -> K
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let object: K = serde_json::from_value(object).expect("object JSON");
        self.api::<K>()
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("create {object:?}: {e}"))
    }

    /// Pods bound to a node never finish deleting without a kubelet: delete them at once, then
    /// the namespace.
    pub async fn cleanup(self) {
        let pods: Api<Pod> = self.api();
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list.items {
                if let Some(name) = p.metadata.name
                    && let Err(e) = pods
                        .delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() })
                        .await
                {
                    eprintln!("warning: cannot delete pod {name}: {e}");
                }
            }
        }
        if let Err(e) = Api::<Namespace>::all(self.client.clone()).delete(&self.name, &DeleteParams::default()).await {
            eprintln!("warning: cannot delete namespace {}: {e}", self.name);
        }
    }
}

/// A pod on `node` (never scheduled: there is no scheduler or kubelet).
#[must_use]
pub fn pod(name: &str, node: &str, service_account: &str, automount: Option<bool>) -> Value {
    let mut spec = json!({
        "nodeName": node,
        "serviceAccountName": service_account,
        "containers": [{"name": "app", "image": "registry.invalid/app:1"}]
    });
    if let Some(a) = automount {
        spec["automountServiceAccountToken"] = json!(a);
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

/// A PolicyReport CRD as small as the API server takes: the tests check what tokenprobe writes,
/// not Kyverno's schema (the report's fields have their own unit tests).
pub const POLICY_REPORT_CRD: &str = "
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: policyreports.wgpolicyk8s.io}
spec:
  group: wgpolicyk8s.io
  scope: Namespaced
  names: {plural: policyreports, singular: policyreport, kind: PolicyReport, listKind: PolicyReportList}
  versions:
    - name: v1alpha2
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

/// Makes sure namespace `name` exists and is not being deleted (an earlier case may have
/// deleted it; its objects go first, then it): waits for a deletion to finish, then creates it.
///
/// # Panics
/// When the namespace is still terminating after a minute, or cannot be created.
pub async fn ensure_namespace(client: &Client, name: &str) {
    let api = Api::<Namespace>::all(client.clone());
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    loop {
        match api.get_opt(name).await.expect("get namespace") {
            Some(ns) if ns.metadata.deletion_timestamp.is_none() => return,
            Some(_) => {
                assert!(std::time::Instant::now() < deadline, "namespace {name} is still terminating");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            None => {
                let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
                match api.create(&PostParams::default(), &ns).await {
                    Ok(_) => return,
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    Err(e) => panic!("create namespace {name}: {e}"),
                }
            }
        }
    }
}
