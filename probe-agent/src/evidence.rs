//! The evidence model: what `watch --output`, `/v1/evidence` and `NodeTokenEvidence` carry.
//!
//! Serialized Kubernetes style (camelCase); unknown values are `null`, never guessed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One node's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub node: String,
    pub agent: AgentInfo,
    pub containers: Vec<ContainerEvidence>,
    /// The watched volumes (debugging aid; the planner reads `containers`).
    #[serde(default)]
    pub volumes: Vec<VolumeEvidence>,
}

/// About the agent that produced the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub started_at: OffsetDateTime,
    /// When this evidence was assembled.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<String>")]
    pub generated_at: Option<OffsetDateTime>,
    pub hooks: Hooks,
    /// Modes tried and refused, best first, with the kernel's reason.
    #[serde(default)]
    pub rejected_hooks: Vec<RejectedHook>,
    /// First-seen notices lost to a full ring buffer (counts are unaffected).
    pub drops: u64,
    /// Events lost because the in-kernel counters map was full.
    pub map_full: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    pub file_open: Option<String>,
    pub connect: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectedHook {
    pub detector: String,
    pub mode: String,
    pub reason: String,
}

/// How the agent tells containers apart in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KeyKind {
    Cgroup,
    MountNs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct ContainerKey {
    pub kind: KeyKind,
    pub id: u64,
}

/// Opens of the files of a projected volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reads {
    #[serde(default)]
    pub token: u64,
    #[serde(rename = "ca.crt", default)]
    pub ca_crt: u64,
    #[serde(default)]
    pub namespace: u64,
    #[serde(default)]
    pub other: u64,
}

impl Reads {
    /// Adds `count` opens of a file of `kind` (`probe_common::counters::kind::READ_*`).
    pub fn add(&mut self, kind: u32, count: u64) {
        use probe_common::counters::kind as k;
        let slot = match kind {
            k::READ_TOKEN => &mut self.token,
            k::READ_CA_CRT => &mut self.ca_crt,
            k::READ_NAMESPACE => &mut self.namespace,
            _ => &mut self.other,
        };
        *slot = slot.saturating_add(count);
    }

    #[must_use]
    pub const fn total(&self) -> u64 {
        self.token.saturating_add(self.ca_crt).saturating_add(self.namespace).saturating_add(self.other)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub kind: String,
    pub name: String,
}

/// A projected volume other than the automount one that holds a token (custom audience, Vault,
/// Istio): automount does not control it, so it is reported apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtherVolume {
    pub name: String,
    pub reads: Reads,
    #[serde(default)]
    pub exec_reads: Reads,
}

/// One container (a container id: a restarted container is a new entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEvidence {
    pub key: ContainerKey,
    pub cgroup_path: Option<String>,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub service_account: Option<String>,
    pub workload: Option<Workload>,
    /// Opens of the automount volume's files by the container's own processes.
    pub reads: Reads,
    pub api_connects: u64,
    /// The same, by processes that entered the container from outside (exec sessions).
    pub exec_reads: Reads,
    pub exec_api_connects: u64,
    pub missing_token_opens: u64,
    pub other_volumes: Vec<OtherVolume>,
    /// Names (`comm`) of processes seen using the volume or the API server.
    pub processes: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub first_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub last_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub observed_since: Option<OffsetDateTime>,
    /// The agent was watching before the container's first process started.
    pub observed_from_start: Option<bool>,
}

/// A watched volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeEvidence {
    pub pod_uid: String,
    pub name: String,
    pub automount: bool,
    pub mount_point: String,
    /// Kernel `s_dev` of its tmpfs.
    pub device: u32,
    pub mounted: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub watched_since: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_serialize_with_the_file_names() {
        let mut r = Reads::default();
        r.add(probe_common::counters::kind::READ_CA_CRT, 2);
        r.add(probe_common::counters::kind::READ_TOKEN, 1);
        r.add(99, 1);
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json, serde_json::json!({"token": 1, "ca.crt": 2, "namespace": 0, "other": 1}));
        assert_eq!(r.total(), 4);
    }

    #[test]
    fn key_kind_is_camel_case() {
        let key = ContainerKey { kind: KeyKind::MountNs, id: 7 };
        assert_eq!(serde_json::to_string(&key).unwrap(), r#"{"kind":"mountNs","id":7}"#);
    }
}
