//! `verify`: after automount was turned off, which containers still reach for the token.
//!
//! A pod created without the token that tries to open the default token paths
//! (`missingTokenOpens`, counted by agents running with `--detect-missing-token`) or connects to
//! the API server anyway is a regression; its rollback restores the token on the pod template.

use serde::Serialize;

use super::{Change, Inputs, WorkloadRef, model::Model, placement::workload_target};

/// A container that reached for a token it no longer has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub pod: String,
    pub container: String,
    pub missing_token_opens: u64,
    pub api_connects: u64,
}

/// A workload that broke, with the patch that undoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Regression {
    pub workload: WorkloadRef,
    pub attempts: Vec<Attempt>,
    pub rollback: Change,
}

/// The regressions.
#[must_use]
pub fn verify(inputs: &Inputs) -> Vec<Regression> {
    let model = Model::build(inputs);
    let mut out = Vec::new();
    for v in model.workloads.values() {
        if model.effective(v) {
            continue;
        }
        let attempts: Vec<Attempt> = v
            .pods
            .iter()
            .filter(|p| !p.has_automount_volume)
            .flat_map(|p| p.entries.iter().map(move |e| (p, e)))
            .filter(|(_, e)| e.missing_token_opens > 0 || e.api_connects > 0)
            .map(|(p, e)| Attempt {
                pod: p.name.clone(),
                container: e.container.clone().unwrap_or_else(|| "?".into()),
                missing_token_opens: e.missing_token_opens,
                api_connects: e.api_connects,
            })
            .collect();
        if attempts.is_empty() {
            continue;
        }
        let patchable = v.workload.patchable();
        out.push(Regression {
            workload: v.workload.clone(),
            rollback: Change {
                target: workload_target(&v.workload),
                automount: true,
                pin: true,
                patchable,
                reason: format!(
                    "restores the token: {} container(s) reached for it after it was turned off",
                    attempts.len()
                ),
                evidence: attempts
                    .iter()
                    .map(|a| {
                        format!(
                            "{}/{}: {} failed token opens, {} API connects",
                            a.pod, a.container, a.missing_token_opens, a.api_connects
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                restart: Vec::new(),
                unit: out.len() + 1,
            },
            attempts,
        });
    }
    out
}
