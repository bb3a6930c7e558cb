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
}

#[must_use]
pub fn audit(inputs: &Inputs) -> Vec<PodAudit> {
    let sas: BTreeMap<(String, String), &k8s_openapi::api::core::v1::ServiceAccount> = inputs
        .service_accounts
        .iter()
        .map(|sa| {
            ((sa.metadata.namespace.clone().unwrap_or_default(), sa.metadata.name.clone().unwrap_or_default()), sa)
        })
        .collect();
    let mut out: Vec<PodAudit> = inputs
        .pods
        .iter()
        .map(|pod| {
            let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let service_account = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into());
            let sa = sas.get(&(namespace.clone(), service_account.clone())).copied();
            let (effective, source) = automount::effective(pod, sa);
            let has = automount::automount_volume(pod).is_some();
            let pod_field = pod.spec.as_ref().and_then(|s| s.automount_service_account_token);
            PodAudit {
                pod: pod.metadata.name.clone().unwrap_or_default(),
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
                namespace,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    out
}
