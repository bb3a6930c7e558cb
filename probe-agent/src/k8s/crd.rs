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

/// The CRD as YAML (`probe-agent crds`).
///
/// # Errors
/// Serialization failure (not expected).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt as _;
    serde_yaml::to_string(&NodeTokenEvidence::crd())
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
