//! The agent's proof of life: one `coordination.k8s.io/v1` Lease per node, named after the
//! node, in the agent's namespace, renewed every publish interval once the evidence published
//! is current. A node's `NodeTokenEvidence` is only rewritten when the evidence changes, so its
//! age says nothing; the Lease's `renewTime` does. The planner treats a node whose Lease is
//! older than its `leaseDurationSeconds` as unobserved from then on.

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// Label on the agent's Leases (the planner lists them by it, so Leases of other components
/// named after nodes — `kube-node-lease` — are never mistaken for the agent's).
pub const LEASE_LABEL: &str = "app.kubernetes.io/name";
pub const LEASE_LABEL_VALUE: &str = "tokenprobe-agent";
/// The namespace the agent runs in by default (`deploy/agent.yaml`).
pub const DEFAULT_NAMESPACE: &str = "tokenprobe";
/// A node is stale after this many publish intervals without a renewal.
pub const STALE_AFTER_INTERVALS: u64 = 3;

/// The Lease a node's agent applies (server-side) at each renewal.
#[must_use]
pub fn lease_object(node: &str, namespace: &str, interval_seconds: u64, now: OffsetDateTime) -> Value {
    let duration = i32::try_from(interval_seconds.max(1).saturating_mul(STALE_AFTER_INTERVALS)).unwrap_or(i32::MAX);
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": namespace, "labels": {LEASE_LABEL: LEASE_LABEL_VALUE}},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": duration, "renewTime": micro_time(now)}
    })
}

/// `MicroTime` as the API server writes it (RFC 3339 with microseconds).
fn micro_time(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(t.microsecond() * 1000).unwrap_or(t);
    crate::plan::output::rfc3339(t)
}

/// What a Lease says: the node, its last renewal and how long that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    pub node: String,
    pub renewed: OffsetDateTime,
    pub valid_seconds: u64,
}

/// Reads an agent Lease; `None` for Leases that are not the agent's or say nothing usable.
#[must_use]
pub fn read(lease: &Lease) -> Option<Liveness> {
    let labels = lease.metadata.labels.as_ref()?;
    if labels.get(LEASE_LABEL).map(String::as_str) != Some(LEASE_LABEL_VALUE) {
        return None;
    }
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref()?.0;
    Some(Liveness {
        node: spec.holder_identity.clone().or_else(|| lease.metadata.name.clone())?,
        renewed: OffsetDateTime::from_unix_timestamp_nanos(renewed.as_nanosecond()).ok()?,
        valid_seconds: u64::try_from(spec.lease_duration_seconds?).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_reads_back_and_foreign_leases_are_ignored() {
        let now = OffsetDateTime::from_unix_timestamp_nanos(1_795_000_000_123_456_789).unwrap();
        let object = lease_object("node-a", "tokenprobe", 60, now);
        let lease: Lease = serde_json::from_value(object.clone()).unwrap();
        let live = read(&lease).unwrap();
        assert_eq!(live.node, "node-a");
        assert_eq!(live.valid_seconds, 180);
        assert_eq!(live.renewed.unix_timestamp_nanos(), 1_795_000_000_123_456_000, "microseconds kept");
        // kube-node-lease has Leases named after nodes too: without the label they are not ours.
        let mut foreign = object;
        foreign["metadata"]["labels"] = json!({});
        assert_eq!(read(&serde_json::from_value(foreign).unwrap()), None);
    }
}
