//! Reading the planner's inputs from the cluster, with progress on stderr.

use k8s_openapi::api::{
    apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet},
    batch::v1::Job,
    coordination::v1::Lease,
    core::v1::{Pod, ServiceAccount},
};
use kube::{Api, Client, api::ListParams};

use super::{
    Inputs,
    records::{DeploymentRecord, PodRecord, ReplicaSetRecord},
};
use crate::k8s::{
    crd::{NodeTokenEvidence, TokenAuditEvidence},
    liveness,
    workloads::list_cronjobs,
};

async fn list<K>(client: &Client, namespace: Option<&str>) -> Result<Vec<K>, kube::Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    list_map(client, namespace, Some).await
}

/// Lists a kind page by page, keeping `keep` of each object (a compact record: a page of full
/// objects is all that is ever held).
async fn list_map<K, T>(
    client: &Client,
    namespace: Option<&str>,
    keep: impl Fn(K) -> Option<T>,
) -> Result<Vec<T>, kube::Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Pages of 500 keep memory and API server load flat on big clusters.
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items.into_iter().filter_map(&keep));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

const STEPS: usize = 11;

fn progress(step: usize, what: &str, count: usize) {
    eprintln!("tokenprobe: [{step}/{STEPS}] {count} {what}");
}

/// The agents' liveness Leases in `namespace`. Without them (no agent Lease yet, or no right to
/// read them) each node is judged by its evidence's `generatedAt`, and the verdicts say so.
async fn leases(client: &Client, namespace: &str) -> Vec<Lease> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{}={}", liveness::LEASE_LABEL, liveness::LEASE_LABEL_VALUE);
    match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(e) => {
            eprintln!(
                "tokenprobe: cannot read the agents' liveness Leases in namespace {namespace} ({e}); judging nodes by their evidence's generatedAt"
            );
            Vec::new()
        }
    }
}

/// Why the cluster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "the API server does not serve NodeTokenEvidence (tokenprobe.dev/v1alpha1): install the CRD \
         (`kubectl apply -f deploy/crds.yaml`, or `probe-agent crds | kubectl apply -f -`) and the agents first"
    )]
    NoCrd,
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// The request totals `probe-agent audit-sink` keeps (`None`: none, or the CRD is not
/// installed — the audit witness is optional).
async fn audit_totals(client: &Client) -> Result<Option<crate::auditlog::AuditEvidence>, LoadError> {
    let api: Api<TokenAuditEvidence> = Api::all(client.clone());
    let objects = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) if crate::k8s::is_not_served(&e) => return Ok(None),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            eprintln!(
                "tokenprobe: warning: cannot list tokenauditevidences (forbidden): the audit sink's request totals are left out — grant get/list on them (tokenprobe.dev)"
            );
            return Ok(None);
        }
        Err(e) => return Err(LoadError::Api(e)),
    };
    let mut merged: Option<crate::auditlog::AuditEvidence> = None;
    for o in objects {
        let name = format!("tokenauditevidence/{}", o.metadata.name.unwrap_or_default());
        if let Some(status) = o.status {
            let e = status.evidence(&name);
            match &mut merged {
                Some(m) => m.absorb(e),
                None => merged = Some(e),
            }
        }
    }
    if let Some(m) = &merged {
        eprintln!("tokenprobe: audit totals of {} pod(s) from {}", m.pods.len(), m.files.join(", "));
    }
    Ok(merged)
}

/// Reads evidence and objects (all namespaces, or one), and the agents' Leases from
/// `agent_namespace`.
///
/// # Errors
/// API errors; [`LoadError::NoCrd`] when the evidence's CRD is not installed.
pub async fn load(client: &Client, namespace: Option<&str>, agent_namespace: &str) -> Result<Inputs, LoadError> {
    let mut inputs = Inputs::default();
    let evidence: Api<NodeTokenEvidence> = Api::all(client.clone());
    let objects = evidence
        .list(&ListParams::default())
        .await
        .map_err(|e| if crate::k8s::is_not_served(&e) { LoadError::NoCrd } else { LoadError::Api(e) })?;
    let published = objects.items.into_iter().filter_map(|o| {
        let name = o.metadata.name.unwrap_or_default();
        o.status.map(|status| super::inputs::published_by(&name, status))
    });
    inputs.evidence = super::inputs::merge_evidence(published.collect());
    progress(1, "nodes with evidence", inputs.evidence.len());
    inputs.pod_records = list_map(client, namespace, |p: Pod| PodRecord::of(&p)).await?;
    progress(2, "pods", inputs.pod_records.len());
    inputs.service_accounts = list::<ServiceAccount>(client, namespace).await?;
    progress(3, "service accounts", inputs.service_accounts.len());
    inputs.replica_set_records = list_map(client, namespace, |r: ReplicaSet| ReplicaSetRecord::of(&r)).await?;
    progress(4, "replica sets", inputs.replica_set_records.len());
    inputs.jobs = list::<Job>(client, namespace).await?;
    progress(5, "jobs", inputs.jobs.len());
    inputs.deployment_records = list_map(client, namespace, |d: Deployment| Some(DeploymentRecord::of(&d))).await?;
    progress(6, "deployments", inputs.deployment_records.len());
    inputs.stateful_sets = list::<StatefulSet>(client, namespace).await?;
    progress(7, "stateful sets", inputs.stateful_sets.len());
    inputs.daemon_sets = list::<DaemonSet>(client, namespace).await?;
    progress(8, "daemon sets", inputs.daemon_sets.len());
    inputs.cron_jobs = list_cronjobs(client, namespace).await?.0;
    progress(9, "cron jobs", inputs.cron_jobs.len());
    inputs.controller_revisions = list::<ControllerRevision>(client, namespace).await?;
    progress(10, "controller revisions", inputs.controller_revisions.len());
    inputs.leases = leases(client, agent_namespace).await;
    inputs.integrity = crate::k8s::integrity::check(client).await;
    progress(11, "agent leases", inputs.leases.len());
    inputs.audit = audit_totals(client).await?;
    Ok(inputs)
}
