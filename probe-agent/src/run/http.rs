//! HTTP: `/metrics` (Prometheus text format), `/healthz`, `/readyz`, `/v1/evidence`.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::ConstCounter, counter::Counter, family::Family, gauge::ConstGauge, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::watch;

use super::publish::PublishStats;
use crate::watch::{AgentHandle, Metrics};

/// What the handlers need.
#[derive(Clone)]
pub struct HttpState {
    pub handle: AgentHandle,
    /// Publication counters (`run` mode only).
    pub publish: Option<Arc<PublishStats>>,
    /// True once the pods of the node have been listed (always true standalone).
    pub ready: watch::Receiver<bool>,
}

/// Serves until the task is aborted.
pub async fn serve(addr: SocketAddr, state: HttpState) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/evidence", get(evidence))
        .with_state(state);
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::info!(%addr, "serving /metrics, /healthz, /readyz, /v1/evidence");
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }
        Err(e) => tracing::error!(%addr, error = %e, "cannot listen for HTTP"),
    }
}

async fn healthz(State(state): State<HttpState>) -> Response {
    match state.handle.metrics().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if !*state.ready.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "pods of this node not listed yet\n").into_response();
    }
    healthz(State(state)).await
}

async fn evidence(State(state): State<HttpState>) -> Response {
    match state.handle.snapshot().await {
        Ok(ev) => Json(ev).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let m = match state.handle.metrics().await {
        Ok(m) => m,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    match render(&m, state.publish.as_deref()) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn stat(m: &Metrics, index: u32) -> u64 {
    m.stats.get(index as usize).copied().unwrap_or(0)
}

fn gauge(v: usize) -> ConstGauge {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The metrics in the `OpenMetrics` text format.
///
/// # Errors
/// A formatting error (not expected).
pub fn render(m: &Metrics, publish: Option<&PublishStats>) -> Result<String, std::fmt::Error> {
    use probe_common::stats;
    let mut registry = Registry::with_prefix("tokenprobe");
    let modes = Family::<Vec<(String, String)>, Gauge>::default();
    for (detector, mode) in [("file_open", &m.file_mode), ("connect", &m.connect_mode)] {
        if let Some(mode) = mode {
            modes.get_or_create(&vec![("detector".into(), detector.into()), ("mode".into(), mode.clone())]).set(1);
        }
    }
    registry.register("hook_mode", "Hook mode in use per detector (1)", modes);
    registry.register(
        "exec_tracking",
        "Whether exec sessions are told apart (1) or not (0)",
        gauge(usize::from(m.exec_tracking)),
    );
    registry.register(
        "events",
        "File opens and connects counted in the kernel",
        ConstCounter::new(stat(m, stats::EVENTS)),
    );
    registry.register(
        "notice_drops",
        "First-seen notices lost to a full ring buffer (counts unaffected)",
        ConstCounter::new(stat(m, stats::NOTICE_DROPS)),
    );
    registry.register(
        "counter_map_full",
        "Events lost because the in-kernel counter map was full",
        ConstCounter::new(stat(m, stats::COUNTER_MAP_FULL)),
    );
    registry.register(
        "kernel_read_errors",
        "Failed kernel memory reads in the programs",
        ConstCounter::new(stat(m, stats::READ_ERRORS)),
    );
    registry.register(
        "exec_marked",
        "Processes marked as exec sessions",
        ConstCounter::new(stat(m, stats::EXEC_MARKED)),
    );
    registry.register("counter_map_entries", "Entries in the in-kernel counter map", gauge(m.counters_used));
    registry.register(
        "counter_map_capacity",
        "Capacity of the in-kernel counter map",
        gauge(m.counters_capacity as usize),
    );
    registry.register("containers_watched", "Running containers of pods with a watched volume", gauge(m.containers));
    registry.register("volumes_watched", "Mounted projected token volumes watched", gauge(m.volumes));
    registry.register("api_targets", "API server addresses whose connects are counted", gauge(m.targets));
    registry.register(
        "api_targets_not_watched",
        "API server addresses that did not fit the target map",
        gauge(m.targets_not_watched),
    );
    registry.register(
        "state_save_errors",
        "Failed saves of the node-local state",
        ConstCounter::new(m.state_save_errors),
    );
    registry.register(
        "full_rescans",
        "Rescans of the whole node (mount table and cgroup tree); changes are otherwise followed by events",
        ConstCounter::new(m.full_rescans),
    );
    if let Some(p) = publish {
        register_publish(&mut registry, p);
    }
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}

/// The `run` mode's metrics: publications, the Lease, the API server's error answers.
fn register_publish(registry: &mut Registry, p: &PublishStats) {
    registry.register(
        "publications",
        "Successful publications of the evidence",
        ConstCounter::new(p.published.load(Ordering::Relaxed)),
    );
    registry.register(
        "publish_errors",
        "Failed publications of the evidence",
        ConstCounter::new(p.errors.load(Ordering::Relaxed)),
    );
    registry.register(
        "last_publication_timestamp_seconds",
        "Unix time of the last successful publication",
        gauge(usize::try_from(p.last_success.load(Ordering::Relaxed)).unwrap_or(0)),
    );
    registry.register(
        "lease_renewals",
        "Renewals of the node's liveness Lease",
        ConstCounter::new(p.lease_renewals.load(Ordering::Relaxed)),
    );
    registry.register(
        "lease_errors",
        "Failed renewals of the node's liveness Lease (the planner then judges the node stale)",
        ConstCounter::new(p.lease_errors.load(Ordering::Relaxed)),
    );
    let api = &p.api;
    let answers = Family::<Vec<(String, String)>, Counter>::default();
    for (kind, n) in [
        ("throttled", &api.throttled),
        ("server_error", &api.server_errors),
        ("client_error", &api.client_errors),
        ("no_answer", &api.transport_errors),
    ] {
        answers.get_or_create(&vec![("kind".into(), kind.into())]).inc_by(n.load(Ordering::Relaxed));
    }
    registry.register(
        "api_errors",
        "Error answers of the API server to the agent, and requests it did not answer; every attempt counted (the client itself retries 429, 503 and 504)",
        answers,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_modes_and_counters() {
        let m = Metrics {
            file_mode: Some("tracepoint".into()),
            connect_mode: Some("cgroup".into()),
            exec_tracking: true,
            stats: vec![1, 2, 3, 42, 5, 0],
            counters_used: 7,
            counters_capacity: 32768,
            containers: 3,
            volumes: 2,
            targets: 4,
            targets_not_watched: 1,
            state_save_errors: 0,
            full_rescans: 5,
        };
        let p = PublishStats::default();
        p.errors.store(2, Ordering::Relaxed);
        p.lease_errors.store(3, Ordering::Relaxed);
        p.api.throttled.store(4, Ordering::Relaxed);
        let text = render(&m, Some(&p)).unwrap();
        for needle in [
            r#"tokenprobe_hook_mode{detector="file_open",mode="tracepoint"} 1"#,
            r#"tokenprobe_hook_mode{detector="connect",mode="cgroup"} 1"#,
            "tokenprobe_events_total 42",
            "tokenprobe_notice_drops_total 1",
            "tokenprobe_counter_map_full_total 2",
            "tokenprobe_counter_map_entries 7",
            "tokenprobe_api_targets_not_watched 1",
            "tokenprobe_publish_errors_total 2",
            "tokenprobe_lease_errors_total 3",
            r#"tokenprobe_api_errors_total{kind="throttled"} 4"#,
            r#"tokenprobe_api_errors_total{kind="no_answer"} 0"#,
            "tokenprobe_full_rescans_total 5",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
