//! The HTTP endpoints (docs/outputs.md, "HTTP endpoints"): the status page `/`, `/metrics`,
//! `/healthz`, `/readyz` and `/api/v1/indicators`, served by axum on the tokio runtime, in
//! `serve` and in `demo`, served by the loop of [`super::http_server`] within its limits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use paceline_dataflow::cluster::Placement;
use paceline_dataflow::{writer_of, RunnerStats};
use paceline_model::catalogue::SeriesKey;
use paceline_model::point::Point;
use paceline_model::Indicator;
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
    /// Kafka as the watch last saw it.
    pub kafka: Arc<super::trouble::Trouble>,
    /// The database while the service starts (a running sink reports in `sink`).
    pub influx: Arc<super::trouble::Trouble>,
    /// The dataflow's counters (its heartbeat).
    pub dataflow: Mutex<Option<Arc<RunnerStats>>>,
    /// What the page and the JSON API show.
    pub board: Arc<crate::board::Board>,
    /// `serve` or `demo`, named on the page.
    pub mode: &'static str,
    /// This process's place in a cluster of several (None: alone).
    pub cluster: Option<ClusterView>,
    /// The status page's language when the address names none (`None`: the browser's).
    pub language: Option<paceline_model::names::Lang>,
    /// `paceline_ready`, set at each scrape.
    pub ready: prometheus::IntGauge,
    /// The bearer token every endpoint but the probes asks for (`None`: open).
    pub token: Option<paceline_model::secret::Secret>,
}

/// A cluster as the endpoints show it: each process holds the series it writes, and its
/// page and API fetch the others' share from their HTTP addresses ([`super::peers`]).
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// The layout.
    pub placement: Placement,
    /// Every process's HTTP address, by index.
    pub http: Vec<String>,
    /// The client that asks them.
    pub client: reqwest::Client,
    /// The cluster's HTTP bearer token, presented to the others (they ask for the same).
    pub token: Option<paceline_model::secret::Secret>,
}

impl ClusterView {
    /// The view of `placement` with the processes' HTTP addresses.
    pub fn new(
        placement: Placement,
        http: Vec<String>,
        token: Option<paceline_model::secret::Secret>,
    ) -> ClusterView {
        ClusterView {
            placement,
            http,
            token,
            // The deadline is the gather's; connecting is bounded by it too. No connection
            // is kept between pages: one whose answer came after its deadline must not
            // carry that late answer to the next page's question.
            client: reqwest::Client::builder()
                .connect_timeout(super::peers::PEER_DEADLINE)
                .pool_max_idle_per_host(0)
                .build()
                .unwrap_or_default(),
        }
    }

    /// The process that writes `series`, when it is another one.
    pub fn elsewhere(&self, series: SeriesKey) -> Option<usize> {
        let p = &self.placement;
        let process = p.process_of(writer_of(series, p.total()));
        (process != p.process).then_some(process)
    }

    /// Every series of the catalogue that one of `processes` writes, as JSON: what a page
    /// is missing while they do not answer.
    fn missing_json(&self, processes: &[usize]) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for ind in Indicator::ALL {
            for tag in ind.tag_kind().tags() {
                let key = SeriesKey::tagged(*ind, tag);
                let Some(process) = self.elsewhere(key).filter(|p| processes.contains(p)) else {
                    continue;
                };
                let mut tags = serde_json::Map::new();
                if let Some((k, v)) = key.tag_pair() {
                    tags.insert(k.into(), v.into());
                }
                out.push(serde_json::json!({
                    "indicator": ind.name(),
                    "tags": tags,
                    "process": process,
                }));
            }
        }
        out
    }
}

/// Seconds between refreshes of the status page.
const PAGE_REFRESH_S: u32 = 15;

/// A dataflow that has not stepped for this long, with nothing pending in the sink, is
/// wedged.
const WEDGED_AFTER_MS: u64 = 60_000;

/// The router.
pub fn router(state: Arc<HttpState>) -> Router {
    // The probes stay open: the kubelet and a container's health check carry no token,
    // and they show no data.
    let guarded = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/api/v1/indicators", get(indicators))
        .route("/api/v1/board", get(board_share))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .with_state(state)
}

/// Lets a request through when no token is configured or it carries
/// `Authorization: Bearer <token>`; 401 otherwise.
async fn require_token(
    State(s): State<Arc<HttpState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = &s.token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| same_secret(g.as_bytes(), token.expose().as_bytes())) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"paceline\"")],
        "a bearer token is required (Authorization: Bearer ...)\n",
    )
        .into_response()
}

/// Equal, compared in time independent of where they differ (the length aside).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    let ready = liveness(&s).and_then(|()| readiness(&s)).is_ok();
    s.ready.set(i64::from(ready));
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
        .and_then(|d| d.as_ref().and_then(|d| d.oldest_step_ms()));
    let now = (paceline_model::clock::now() / 1_000_000).max(0) as u64;
    match last {
        Some(t) if now.saturating_sub(t) > WEDGED_AFTER_MS && s.sink.pending() == 0 => Err(
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
    // Trouble first: while starting, it is what the start waits for.
    if let Some(why) = s.kafka.readiness().or_else(|| s.influx.readiness()) {
        return Err(why);
    }
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

/// The `lang` parameter of a query string (`?lang=zh`).
fn lang_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("lang="))
}

async fn page(
    State(s): State<Arc<HttpState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
) -> Response {
    let lang = crate::page::choose_language(
        lang_param(query.as_deref()),
        s.language,
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let gathered = match &s.cluster {
        Some(c) => Some(super::peers::gather(c, &s.board).await),
        None => None,
    };
    let snapshot = gathered
        .as_ref()
        .map_or_else(|| s.board.snapshot(), |g| g.board.snapshot());
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
        cluster: s.cluster.as_ref(),
        unanswered: gathered.as_ref().map_or(&[], |g| &g.unanswered),
        lang,
    });
    // The answer depends on the request's language: caches must keep them apart.
    ([(axum::http::header::VARY, "Accept-Language")], Html(html)).into_response()
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
    // The names people read, from the catalogue: the identifiers above stay the keys.
    use paceline_model::names::Lang;
    o.insert("title_en".into(), p.series.title(Lang::En).into());
    o.insert("title_zh".into(), p.series.title(Lang::Zh).into());
    o.insert("unit".into(), p.series.indicator.unit().code().into());
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

/// A planned series' verdict, into its JSON: `verdict`, `verdict_tick` (and `_ns`), and
/// `verdict_value` where the series had a value there.
pub fn add_verdict(o: &mut serde_json::Value, v: &Point) {
    let (Some(o), Some(f)) = (o.as_object_mut(), &v.verdict) else {
        return;
    };
    o.insert("verdict".into(), f.verdict.as_str().into());
    o.insert(
        "verdict_tick".into(),
        paceline_model::time::format_plan_time(v.tick).into(),
    );
    o.insert("verdict_tick_ns".into(), v.tick.into());
    if let Some(value) = f.value {
        o.insert("verdict_value".into(), value.into());
    }
}

/// Every series with its newest numbers: in a cluster, every process's, gathered.
async fn indicators(State(s): State<Arc<HttpState>>) -> Response {
    let gathered = match &s.cluster {
        Some(c) => Some(super::peers::gather(c, &s.board).await),
        None => None,
    };
    let board = gathered.as_ref().map_or(&*s.board, |g| &g.board);
    let verdicts = board.verdicts();
    let series: Vec<serde_json::Value> = board
        .latest()
        .iter()
        .map(|p| {
            let mut o = point_json(p);
            if let Some(v) = verdicts.iter().find(|v| v.series == p.series) {
                add_verdict(&mut o, v);
            }
            o
        })
        .collect();
    let (Some(c), Some(g)) = (&s.cluster, &gathered) else {
        return axum::Json(serde_json::json!({ "series": series })).into_response();
    };
    let silent: Vec<usize> = g.unanswered.iter().map(|u| u.process).collect();
    let unanswered: Vec<serde_json::Value> = g
        .unanswered
        .iter()
        .map(|u| {
            serde_json::json!({
                "process": u.process,
                "address": u.address,
                "reason": u.reason,
            })
        })
        .collect();
    axum::Json(serde_json::json!({
        "series": series,
        "cluster": {
            "process": c.placement.process,
            "processes": c.placement.processes,
            "http": c.http,
            "unanswered": unanswered,
            "missing": c.missing_json(&silent),
        },
    }))
    .into_response()
}

/// This process's own share of the board, as points (what the other processes of its
/// cluster gather for their pages); never fans out.
async fn board_share(State(s): State<Arc<HttpState>>) -> Response {
    match super::peers::encode_share(&s.board.points()) {
        Ok(bytes) => ([(header::CONTENT_TYPE, super::peers::SHARE_TYPE)], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
