//! `plan --apply-reports`: the verdicts written to the cluster as one report per namespace
//! (server-side apply), and reports of earlier runs whose namespace has nothing left to report
//! removed.

use std::collections::BTreeSet;

use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams},
    core::GroupVersionKind,
};

use super::{
    Plan,
    output::{MANAGED_BY, REPORT_NAME, ReportKind, report_objects},
};

/// The field manager of the reports' server-side apply.
pub const FIELD_MANAGER: &str = "tokenprobe-planner";

/// Why the reports could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "the API server does not serve {kind} ({group}/{version}): install its CRD first (Kyverno and \
         Policy Reporter ship it), or write the reports to a file with -o {format}"
    )]
    NotServed { kind: &'static str, group: &'static str, version: &'static str, format: &'static str },
    #[error("cannot encode a {kind}: {source}")]
    Encode { kind: &'static str, source: serde_json::Error },
    #[error("cannot write the {kind} of namespace {namespace}: {source}")]
    Write { kind: &'static str, namespace: String, source: kube::Error },
    #[error("cannot list or remove earlier {kind}s: {source}")]
    Prune { kind: &'static str, source: kube::Error },
}

/// What was written and removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Namespaces whose report was written.
    pub written: Vec<String>,
    /// Namespaces whose earlier report was removed (no workloads left to report there).
    pub removed: Vec<String>,
}

/// Writes one report per namespace of `plan`. With `prune`, also removes tokenprobe's reports
/// in namespaces that are in scope (`namespace`, else every namespace) but no longer in the
/// plan — only right when the plan was made from the whole scope (read live).
///
/// # Errors
/// [`ApplyError`]: the CRD is not installed, a write or the clean-up failed.
pub async fn apply_reports(
    client: &Client,
    plan: &Plan,
    kind: ReportKind,
    namespace: Option<&str>,
    prune: bool,
) -> Result<Applied, ApplyError> {
    let (group, version, kind_name, plural) = kind.resource();
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind_name), plural);
    let not_served = || ApplyError::NotServed {
        kind: kind_name,
        group,
        version,
        format: match kind {
            ReportKind::Policyreport => "policyreport",
            ReportKind::Openreport => "openreport",
        },
    };
    let mut applied = Applied::default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for report in report_objects(plan, kind) {
        let object: DynamicObject =
            serde_json::from_value(report).map_err(|source| ApplyError::Encode { kind: kind_name, source })?;
        let ns = object.metadata.namespace.clone().unwrap_or_default();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
        match api.patch(REPORT_NAME, &params, &Patch::Apply(&object)).await {
            Ok(_) => applied.written.push(ns),
            Err(e) if crate::k8s::is_not_served(&e) && applied.written.is_empty() => return Err(not_served()),
            Err(source) => return Err(ApplyError::Write { kind: kind_name, namespace: ns, source }),
        }
    }
    if !prune {
        return Ok(applied);
    }
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let earlier = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(e) if crate::k8s::is_not_served(&e) => return Err(not_served()),
        Err(source) => return Err(ApplyError::Prune { kind: kind_name, source }),
    };
    let written: BTreeSet<&str> = applied.written.iter().map(String::as_str).collect();
    let mut removed = Vec::new();
    for old in earlier {
        let Some(ns) = old.metadata.namespace.clone() else { continue };
        if old.metadata.name.as_deref() != Some(REPORT_NAME) || written.contains(ns.as_str()) {
            continue;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
        match api.delete(REPORT_NAME, &DeleteParams::default()).await {
            Ok(_) => removed.push(ns),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => return Err(ApplyError::Prune { kind: kind_name, source }),
        }
    }
    applied.removed = removed;
    Ok(applied)
}
