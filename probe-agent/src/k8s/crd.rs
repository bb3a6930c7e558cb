//! `NodeTokenEvidence`: one cluster-scoped object per node, named after it, with the evidence in
//! `status`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::evidence::Evidence;

/// The spec only names the node; everything measured is status.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tokenprobe.dev",
    version = "v1alpha1",
    kind = "NodeTokenEvidence",
    plural = "nodetokenevidences",
    singular = "nodetokenevidence",
    shortname = "nte",
    status = "Evidence",
    printcolumn = r#"{"name":"File hook","type":"string","jsonPath":".status.agent.hooks.fileOpen"}"#,
    printcolumn = r#"{"name":"Connect hook","type":"string","jsonPath":".status.agent.hooks.connect"}"#,
    printcolumn = r#"{"name":"Drops","type":"integer","jsonPath":".status.agent.drops"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeTokenEvidenceSpec {
    pub node_name: String,
}

/// `TokenAuditEvidence`: what `probe-agent audit-sink` collected from the API server's audit
/// webhook — per-pod and per-ServiceAccount request totals — in `status`. Cluster-scoped, one
/// per sink (named by `--name`); the planner reads every one.
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tokenprobe.dev",
    version = "v1alpha1",
    kind = "TokenAuditEvidence",
    plural = "tokenauditevidences",
    singular = "tokenauditevidence",
    shortname = "tae",
    status = "AuditTotals",
    printcolumn = r#"{"name":"Pods","type":"integer","jsonPath":".status.podCount"}"#,
    printcolumn = r#"{"name":"Last","type":"date","jsonPath":".status.last"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TokenAuditEvidenceSpec {
    /// What feeds it (`audit-sink` for the webhook receiver).
    pub source: String,
}

/// Request totals from the audit log, as stored (lists, for the API server's schema).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditTotals {
    pub pods: Vec<crate::auditlog::PodRequests>,
    pub service_accounts: Vec<crate::auditlog::ServiceAccountRequests>,
    pub pod_count: u64,
    /// Completed requests received (every user), since the object was made.
    pub requests: u64,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<String>")]
    pub first: Option<time::OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<String>")]
    pub last: Option<time::OffsetDateTime>,
    /// Totals dropped: last seen before the retention window, or the oldest beyond the cap.
    pub pruned: u64,
    /// How long totals are kept after their last request, in seconds.
    pub retention_seconds: u64,
}

impl AuditTotals {
    /// The totals of `evidence`.
    #[must_use]
    pub fn of(evidence: &crate::auditlog::AuditEvidence, pruned: u64, retention_seconds: u64) -> Self {
        Self {
            pods: evidence.pods.values().cloned().collect(),
            service_accounts: evidence.service_accounts.values().cloned().collect(),
            pod_count: evidence.pods.len() as u64,
            requests: evidence.requests_read,
            first: evidence.first,
            last: evidence.last,
            pruned,
            retention_seconds,
        }
    }

    /// As audit evidence read from `source` (for the planner and for merging).
    #[must_use]
    pub fn evidence(&self, source: &str) -> crate::auditlog::AuditEvidence {
        let mut e = crate::auditlog::AuditEvidence::default();
        e.pods = self.pods.iter().map(|p| (p.pod_uid.clone(), p.clone())).collect();
        e.service_accounts = self
            .service_accounts
            .iter()
            .map(|s| (format!("{}/{}", s.namespace, s.service_account), s.clone()))
            .collect();
        e.requests_read = self.requests;
        e.first = self.first;
        e.last = self.last;
        e.files = vec![source.to_owned()];
        e
    }
}

/// The CRDs as YAML (`probe-agent crds`).
///
/// # Errors
/// Serialization failure (not expected).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt as _;
    Ok(format!(
        "{}---\n{}",
        serde_yaml::to_string(&NodeTokenEvidence::crd())?,
        serde_yaml::to_string(&TokenAuditEvidence::crd())?
    ))
}

#[cfg(test)]
mod tests {
    use kube::{CustomResourceExt as _, Resource as _};

    use super::*;

    #[test]
    fn crd_is_cluster_scoped_with_a_status_subresource() {
        let crd = NodeTokenEvidence::crd();
        assert_eq!(crd.spec.group, "tokenprobe.dev");
        assert_eq!(crd.spec.scope, "Cluster");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let yaml = crd_yaml().unwrap();
        assert!(yaml.contains("observedFromStart"), "the evidence schema is in the CRD");
        assert_eq!(NodeTokenEvidence::api_version(&()), "tokenprobe.dev/v1alpha1");
    }

    #[test]
    fn deploy_crds_yaml_is_the_generated_one() {
        let committed = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds.yaml"));
        assert!(
            committed == crd_yaml().unwrap(),
            "deploy/crds.yaml is stale: run `cargo run -p probe-agent -- crds > deploy/crds.yaml`"
        );
    }
}
