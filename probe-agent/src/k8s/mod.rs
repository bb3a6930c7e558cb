//! The cluster side: the `NodeTokenEvidence` CRD, API server addresses, owner chains, automount
//! settings. Pure logic is separate from the calls, so it is tested without a cluster; the calls
//! are tested against a real kube-apiserver (tests/tests/apiserver).

pub mod automount;
pub mod crd;
pub mod endpoints;
pub mod integrity;
pub mod liveness;
pub mod owners;
pub mod podinfo;
pub mod revision;
pub mod workloads;

/// Whether a kube error is the API server saying it does not serve that resource (an older
/// Kubernetes without the API version asked for).
#[must_use]
pub fn is_not_served(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
