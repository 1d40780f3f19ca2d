//! The HTTP endpoints (outputs.md, "HTTP"): `/metrics`, `/healthz`, `/readyz` and
//! `/api/v1/indicators`, served by axum on the tokio runtime.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use paceline_dataflow::RunnerStats;
use paceline_model::point::Point;
use paceline_model::SeriesKey;
use paceline_sink::batcher::SinkHealth;
use prometheus::{Encoder, Registry, TextEncoder};

/// What the endpoints read.
pub struct HttpState {
    /// Every metric.
    pub registry: Registry,
    /// The sink's health.
    pub sink: Arc<SinkHealth>,
    /// Sources are assigned their partitions.
    pub sources_assigned: AtomicBool,
    /// The dataflow's counters (its heartbeat).
    pub dataflow: Mutex<Option<Arc<RunnerStats>>>,
    /// Points pending in the sink (a blocked dataflow is not wedged while the sink holds
    /// points).
    pub sink_pending: prometheus::IntGauge,
    /// The newest point written of every series.
    pub latest: Mutex<BTreeMap<SeriesKey, Point>>,
}

/// A dataflow that has not stepped for this long, with nothing pending in the sink, is
/// wedged.
const WEDGED_AFTER_MS: u64 = 60_000;

/// The router.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/indicators", get(indicators))
        .with_state(state)
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    match encoder.encode(&s.registry.gather(), &mut buf) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_string())],
            buf,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn healthz(State(s): State<Arc<HttpState>>) -> Response {
    let last = s
        .dataflow
        .lock()
        .ok()
        .and_then(|d| d.as_ref().map(|d| d.last_step_ms.load(Ordering::Relaxed)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    match last {
        Some(t) if now.saturating_sub(t) > WEDGED_AFTER_MS && s.sink_pending.get() == 0 => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("dataflow wedged: no step for {} s\n", (now - t) / 1000),
        )
            .into_response(),
        _ => (StatusCode::OK, "ok\n").into_response(),
    }
}

async fn readyz(State(s): State<Arc<HttpState>>) -> Response {
    if !s.sources_assigned.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "sources not assigned yet\n",
        )
            .into_response();
    }
    if !s.sink.accepting.load(Ordering::Relaxed) {
        let why = s
            .sink
            .last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| "not reached yet".into());
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("sink not accepting writes: {why}\n"),
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

/// One series' newest point as JSON.
pub fn point_json(p: &Point) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    o.insert("indicator".into(), p.series.indicator.name().into());
    let mut tags = serde_json::Map::new();
    if let Some((k, v)) = p.series.tag_pair() {
        tags.insert(k.into(), v.into());
    }
    o.insert("tags".into(), tags.into());
    o.insert(
        "tick".into(),
        paceline_model::time::format_plan_time(p.tick).into(),
    );
    o.insert("tick_ns".into(), p.tick.into());
    let f = &p.fields;
    o.insert("value".into(), f.value.into());
    for (k, v) in [
        ("target", f.target),
        ("expected", f.expected),
        ("pace_ratio", f.pace_ratio),
        ("projected", f.projected),
    ] {
        if let Some(v) = v {
            o.insert(k.into(), v.into());
        }
    }
    if let Some(st) = f.status {
        o.insert("status".into(), st.as_str().into());
    }
    o.into()
}

async fn indicators(State(s): State<Arc<HttpState>>) -> Response {
    let series: Vec<serde_json::Value> = s
        .latest
        .lock()
        .map(|l| l.values().map(point_json).collect())
        .unwrap_or_default();
    axum::Json(serde_json::json!({ "series": series })).into_response()
}
