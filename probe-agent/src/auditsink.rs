//! `probe-agent audit-sink`: receives the API server's audit webhook (`EventList` batches
//! posted as they are written) and keeps per-pod and per-ServiceAccount request totals in a
//! `TokenAuditEvidence` object, where the planner reads them.
//!
//! Batches are counted in memory and written every `--flush-interval` (merged with what the
//! object holds, totals last seen before the retention window dropped); a write that fails is
//! retried at the next interval with nothing lost. A batch the webhook sends again (after a
//! timeout) is counted again: the totals are at least the requests made — audit evidence only
//! ever proves use, so an over-count cannot make anything look safe.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::{
    auditlog::AuditEvidence,
    k8s::crd::{AuditTotals, TokenAuditEvidence},
};

/// The field manager of the sink's writes.
pub const FIELD_MANAGER: &str = "tokenprobe-audit-sink";
/// The largest webhook batch accepted (the API server's batches are far smaller).
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// What the sink needs.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub listen: SocketAddr,
    /// The `TokenAuditEvidence` object it keeps.
    pub name: String,
    pub flush_interval: Duration,
    /// Totals are dropped this long after their last request.
    pub retention: Duration,
    /// At most this many pods are kept (the least recently seen go first).
    pub max_pods: usize,
}

#[derive(Clone, Default)]
struct Pending(Arc<Mutex<AuditEvidence>>);

impl Pending {
    fn take(&self) -> AuditEvidence {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn put_back(&self, unsent: &AuditEvidence) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).merge_totals(unsent);
    }
}

async fn receive(State(pending): State<Pending>, body: Bytes) -> (StatusCode, String) {
    let mut batch = AuditEvidence::default();
    match batch.read_bytes("webhook batch", &body) {
        Ok(()) => {
            pending.put_back(&batch);
            (StatusCode::OK, String::new())
        }
        Err(e) => {
            tracing::warn!(error = %e, "refused a webhook batch");
            (StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

/// Merges `new` into the stored object and writes it back (creating it when missing).
async fn flush(api: &Api<TokenAuditEvidence>, config: &SinkConfig, new: &AuditEvidence) -> Result<(), kube::Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let object = json!({
        "apiVersion": "tokenprobe.dev/v1alpha1", "kind": "TokenAuditEvidence",
        "metadata": {"name": config.name}, "spec": {"source": "audit-sink"}
    });
    let stored = api.patch(&config.name, &params, &Patch::Apply(&object)).await?;
    let mut totals = stored.status.as_ref().map(|s| s.evidence(&config.name)).unwrap_or_default();
    let previously_pruned = stored.status.as_ref().map_or(0, |s| s.pruned);
    totals.merge_totals(new);
    let cutoff = time::OffsetDateTime::now_utc() - config.retention;
    let pruned = totals.prune(cutoff, config.max_pods);
    let status = json!({
        "apiVersion": "tokenprobe.dev/v1alpha1", "kind": "TokenAuditEvidence",
        "status": AuditTotals::of(&totals, previously_pruned + pruned, config.retention.as_secs())
    });
    api.patch_status(&config.name, &params, &Patch::Apply(&status)).await.map(drop)
}

/// Serves until `shutdown` resolves, then writes what it holds once more.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(
    config: SinkConfig,
    client: Client,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let pending = Pending::default();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/", post(receive))
        .route("/{*path}", post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(pending.clone());
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, object = %config.name, "receiving audit webhook batches");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let api: Api<TokenAuditEvidence> = Api::all(client);
    let mut ticker = tokio::time::interval(config.flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let last = tokio::select! {
            _ = ticker.tick() => false,
            () = &mut shutdown => true,
        };
        let batch = pending.take();
        if batch.requests_read > 0 {
            match flush(&api, &config, &batch).await {
                Ok(()) => tracing::debug!(requests = batch.requests_read, pods = batch.pods.len(), "written"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the audit totals; they are kept and retried");
                    pending.put_back(&batch);
                }
            }
        }
        if last {
            break;
        }
    }
    server.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_totals_add_up_and_old_ones_are_pruned() {
        let event = |id: &str, uid: &str, at: &str| {
            format!(
                r#"{{"kind":"Event","auditID":"{id}","stage":"ResponseComplete","verb":"get","user":{{"username":"system:serviceaccount:a:s","extra":{{"authentication.kubernetes.io/pod-name":["p-{uid}"],"authentication.kubernetes.io/pod-uid":["{uid}"]}}}},"objectRef":{{"resource":"secrets"}},"responseStatus":{{"code":200}},"stageTimestamp":"{at}"}}"#
            )
        };
        let mut a = AuditEvidence::default();
        a.read_bytes("one", event("1", "u1", "2026-12-01T00:00:00Z").as_bytes()).expect("read");
        let mut b = AuditEvidence::default();
        let two = [event("2", "u1", "2026-12-02T00:00:00Z"), event("3", "u2", "2026-10-01T00:00:00Z")].join("\n");
        b.read_bytes("two", two.as_bytes()).expect("read");
        a.merge_totals(&b);
        assert_eq!(a.pods["u1"].tally.requests, 2);
        assert_eq!(a.pods["u1"].tally.last.map(time::OffsetDateTime::day), Some(2));
        assert_eq!(a.requests_read, 3);
        let cutoff =
            time::OffsetDateTime::parse("2026-11-01T00:00:00Z", &time::format_description::well_known::Rfc3339)
                .expect("time");
        assert_eq!(a.prune(cutoff, 10), 1, "u2 was last seen before the window");
        assert!(!a.pods.contains_key("u2"));
        let totals = AuditTotals::of(&a, 1, 3600);
        let back = totals.evidence("tae/x");
        assert_eq!(back.pods["u1"].tally.requests, 2);
        assert_eq!(back.files, ["tae/x"]);
        // Beyond the cap, the least recently seen go.
        a.read_bytes("three", event("4", "u3", "2026-12-03T00:00:00Z").as_bytes()).expect("read");
        assert_eq!(a.prune(cutoff, 1), 1);
        assert!(a.pods.contains_key("u3"));
    }
}
