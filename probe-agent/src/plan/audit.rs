//! `audit`: the effective automount setting of every pod — its own field, else its
//! ServiceAccount's, else true — checked against the volumes it really has.
//!
//! (The common `jq 'select(.spec.automountServiceAccountToken != false)'` audit reads only the
//! pod's field and wrongly flags pods whose ServiceAccount says false.)

use std::collections::BTreeMap;

use serde::Serialize;

use super::Inputs;
use crate::k8s::automount::{self, Source};

/// One pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodAudit {
    pub namespace: String,
    pub pod: String,
    pub service_account: String,
    pub pod_field: Option<bool>,
    pub service_account_field: Option<bool>,
    pub effective: bool,
    pub source: Source,
    pub has_automount_volume: bool,
    /// `mounted`, `off`, `not-mounted` (says true, has no volume) or `inconsistent` (says false,
    /// has the volume: created before the change, or the volume was added by hand).
    pub status: &'static str,
    /// A pod-field-only audit would call it "automount on".
    pub naive_audit_says_on: bool,
    /// Requests its token made that the API server's audit log shows (`None`: no audit log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_requests: Option<u64>,
}

/// Every pod's effective automount setting, from typed pods and pod records alike (the
/// cluster and files are read as records).
#[must_use]
pub fn audit(inputs: &Inputs) -> Vec<PodAudit> {
    let sas: BTreeMap<(&str, &str), &k8s_openapi::api::core::v1::ServiceAccount> = inputs
        .service_accounts
        .iter()
        .map(|sa| {
            (
                (sa.metadata.namespace.as_deref().unwrap_or_default(), sa.metadata.name.as_deref().unwrap_or_default()),
                sa,
            )
        })
        .collect();
    let converted = inputs.as_records();
    let records = &converted.as_ref().unwrap_or(inputs).pod_records;
    let mut out: Vec<PodAudit> = records
        .iter()
        .map(|pod| {
            let service_account = pod.template.service_account.clone();
            let sa = sas.get(&(pod.namespace.as_str(), service_account.as_str())).copied();
            let pod_field = pod.template.automount;
            let (effective, source) = automount::effective_of(pod_field, sa);
            let has = pod.has_automount_volume;
            PodAudit {
                pod: pod.name.clone(),
                service_account,
                pod_field,
                service_account_field: sa.and_then(|s| s.automount_service_account_token),
                effective,
                source,
                has_automount_volume: has,
                status: match (effective, has) {
                    (true, true) => "mounted",
                    (false, false) => "off",
                    (true, false) => "not-mounted",
                    (false, true) => "inconsistent",
                },
                naive_audit_says_on: pod_field != Some(false),
                api_requests: inputs.audit.as_ref().map(|a| a.pods.get(&pod.uid).map_or(0, |p| p.tally.requests)),
                namespace: pod.namespace.clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    out
}
