//! Listing `CronJobs`: batch/v1 on current Kubernetes, batch/v1beta1 on clusters that do not serve
//! v1 yet (< 1.21). Only the fields tokenprobe reads are kept, so both versions give one shape.

use k8s_openapi::{api::batch::v1::CronJob, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, ListParams},
};

use super::is_not_served;

/// Which API version served the `CronJobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronJobVersion {
    V1,
    V1beta1,
}

/// A `CronJob` as tokenprobe needs it: identity and what its pod template says.
#[derive(Debug, Clone, PartialEq)]
pub struct CronJobLite {
    pub metadata: ObjectMeta,
    pub service_account: Option<String>,
    pub automount: Option<bool>,
    /// Fingerprint of `jobTemplate.spec.template.spec`: the revision of the Jobs it makes now.
    pub template_fingerprint: Option<String>,
    /// The pod template declares exec probes or exec lifecycle hooks.
    pub exec_hooks: bool,
}

/// A CronJob from its metadata and `spec` JSON (either API version).
#[must_use]
pub fn cronjob_from_json(metadata: ObjectMeta, spec: &serde_json::Value) -> CronJobLite {
    let pod_spec = &spec["jobTemplate"]["spec"]["template"]["spec"];
    let typed: Option<k8s_openapi::api::core::v1::PodSpec> = serde_json::from_value(pod_spec.clone()).ok();
    CronJobLite {
        metadata,
        service_account: pod_spec["serviceAccountName"].as_str().map(str::to_owned),
        automount: pod_spec["automountServiceAccountToken"].as_bool(),
        template_fingerprint: typed.as_ref().map(super::revision::template_fingerprint),
        exec_hooks: typed.as_ref().is_some_and(super::revision::declares_exec_hooks),
    }
}

/// The API resource of batch/v1beta1 `CronJobs`.
#[must_use]
pub fn v1beta1_cronjob() -> ApiResource {
    ApiResource {
        group: "batch".into(),
        version: "v1beta1".into(),
        api_version: "batch/v1beta1".into(),
        kind: "CronJob".into(),
        plural: "cronjobs".into(),
    }
}

/// `CronJobs` in `namespace` (all namespaces when `None`).
///
/// # Errors
/// API errors other than "not served" for batch/v1 (which selects v1beta1).
pub async fn list_cronjobs(
    client: &Client,
    namespace: Option<&str>,
) -> Result<(Vec<CronJobLite>, CronJobVersion), kube::Error> {
    let v1: Api<CronJob> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match v1.list(&ListParams::default()).await {
        Ok(list) => Ok((
            list.items
                .into_iter()
                .map(|c| {
                    let spec = serde_json::to_value(&c.spec).unwrap_or_default();
                    cronjob_from_json(c.metadata, &spec)
                })
                .collect(),
            CronJobVersion::V1,
        )),
        Err(e) if is_not_served(&e) => {
            let resource = v1beta1_cronjob();
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            let list = api.list(&ListParams::default()).await?;
            Ok((
                list.items.into_iter().map(|d| cronjob_from_json(d.metadata, &d.data["spec"])).collect(),
                CronJobVersion::V1beta1,
            ))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_the_pod_template_fields() {
        let spec = json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "serviceAccountName": "backup", "automountServiceAccountToken": false, "containers": []}}}}});
        let c = cronjob_from_json(ObjectMeta { name: Some("b".into()), ..ObjectMeta::default() }, &spec);
        assert_eq!(c.service_account.as_deref(), Some("backup"));
        assert_eq!(c.automount, Some(false));
        assert!(c.template_fingerprint.as_deref().is_some_and(|f| f.starts_with("tpl-")));
        assert!(!c.exec_hooks);
        assert_eq!(cronjob_from_json(ObjectMeta::default(), &json!({})).automount, None);
    }
}
