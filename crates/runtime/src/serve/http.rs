//! The HTTP endpoints (docs/outputs.md, "HTTP endpoints"): the status page `/`, `/metrics`,
//! `/healthz`, `/readyz` and `/api/v1/indicators`, served by axum on the tokio runtime, in
//! `serve` and in `demo`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use paceline_dataflow::RunnerStats;
use paceline_model::point::Point;
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
    /// What the page and the JSON API show.
    pub board: Arc<crate::board::Board>,
    /// `serve` or `demo`, named on the page.
    pub mode: &'static str,
}

/// Seconds between refreshes of the status page.
const PAGE_REFRESH_S: u32 = 15;

/// A dataflow that has not stepped for this long, with nothing pending in the sink, is
/// wedged.
const WEDGED_AFTER_MS: u64 = 60_000;

/// The router.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/", get(page))
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

/// Alive, or why not: a dataflow that stopped stepping with nothing pending in the sink
/// is wedged.
fn liveness(s: &HttpState) -> Result<(), String> {
    let last = s
        .dataflow
        .lock()
        .ok()
        .and_then(|d| d.as_ref().map(|d| d.last_step_ms.load(Ordering::Relaxed)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    match last {
        Some(t) if now.saturating_sub(t) > WEDGED_AFTER_MS && s.sink_pending.get() == 0 => Err(
            format!("dataflow wedged: no step for {} s", (now - t) / 1000),
        ),
        _ => Ok(()),
    }
}

async fn healthz(State(s): State<Arc<HttpState>>) -> Response {
    paceline_model::failpoint::check("http");
    match liveness(&s) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

/// Ready, or why not: sources assigned and the sink accepting writes.
fn readiness(s: &HttpState) -> Result<(), String> {
    if !s.sources_assigned.load(Ordering::Relaxed) {
        return Err("sources not assigned yet".into());
    }
    if !s.sink.accepting.load(Ordering::Relaxed) {
        let why = s
            .sink
            .last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| "not reached yet".into());
        return Err(format!("sink not accepting writes: {why}"));
    }
    Ok(())
}

async fn readyz(State(s): State<Arc<HttpState>>) -> Response {
    match readiness(&s) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn page(State(s): State<Arc<HttpState>>) -> Response {
    let snapshot = s.board.snapshot();
    let health = match liveness(&s).and_then(|()| readiness(&s)) {
        Ok(()) => crate::page::Health {
            ready: true,
            detail: "sources assigned, database accepting writes".into(),
        },
        Err(why) => crate::page::Health {
            ready: false,
            detail: why,
        },
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let html = crate::page::render(&crate::page::PageInput {
        mode: s.mode,
        snapshot: &snapshot,
        health,
        now,
        refresh_s: PAGE_REFRESH_S,
    });
    Html(html).into_response()
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
    let series: Vec<serde_json::Value> = s.board.latest().iter().map(point_json).collect();
    axum::Json(serde_json::json!({ "series": series })).into_response()
}
