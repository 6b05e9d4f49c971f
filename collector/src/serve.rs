//! `warble-collect serve`: the fleet over HTTP, read from the collector's store at each
//! request — `GET /metrics` in the Prometheus (OpenMetrics) text format (see
//! [`crate::metrics`]), the fleet dashboard at `/` (one embedded page, no assets from
//! elsewhere) and the JSON documents it draws under `/api/` (see [`crate::dashboard`]).
//! It only reads: `warble-collect run` writes the store, in its own process, so a scrape
//! or a page never holds up a station's detections.

use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::dashboard;
use crate::store::{Bucket, Store};

/// The dashboard: one page, its script and style inline.
const PAGE: &str = include_str!("dashboard.html");

type Shared = Arc<Mutex<Store>>;

/// Serves `store` on `listener` until `shutdown` completes (requests in progress finish).
///
/// # Errors
/// The listener failed.
pub async fn serve(
    store: Store,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(page))
        .route("/station/{station}", get(page))
        .route("/metrics", get(metrics))
        .route("/api/fleet", get(fleet))
        .route("/api/timeline", get(timeline))
        .route("/api/species", get(species))
        .route("/api/stations/{station}", get(station))
        .with_state(Arc::new(Mutex::new(store)));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// Runs `read` on the store off the async workers (its clients are synchronous); a store
/// that cannot be read answers 503 with the reason (and says it in the log), so a
/// scrape or a page shows as failed rather than as a fleet of zeros.
async fn read<T: Send + 'static>(
    store: Shared,
    what: &'static str,
    read: impl FnOnce(&mut Store) -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    let answer = tokio::task::spawn_blocking(move || {
        let mut store = store
            .lock()
            .map_err(|_| "the store is unusable after a failed request".to_owned())?;
        read(&mut store)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    answer.map_err(|e| {
        tracing::warn!("{what}: {e}");
        (StatusCode::SERVICE_UNAVAILABLE, e).into_response()
    })
}

/// [`read`] answered as JSON.
async fn json<T: serde::Serialize + Send + 'static>(
    store: Shared,
    what: &'static str,
    query: impl FnOnce(&mut Store) -> Result<T, crate::store::CollectError> + Send + 'static,
) -> Response {
    match read(store, what, |s| query(s).map_err(|e| e.to_string())).await {
        Ok(doc) => axum::Json(doc).into_response(),
        Err(failed) => failed,
    }
}

/// `GET /metrics`.
async fn metrics(State(store): State<Shared>) -> Response {
    match read(store, "/metrics", |s| {
        crate::metrics::render(s, chrono::Utc::now()).map_err(|e| e.to_string())
    })
    .await
    {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(failed) => failed,
    }
}

async fn fleet(State(store): State<Shared>) -> Response {
    json(store, "/api/fleet", |s| {
        dashboard::fleet(s, chrono::Utc::now())
    })
    .await
}

#[derive(Deserialize)]
struct TimelineQuery {
    bucket: Option<Bucket>,
}

async fn timeline(State(store): State<Shared>, Query(q): Query<TimelineQuery>) -> Response {
    json(store, "/api/timeline", move |s| {
        dashboard::timeline(s, q.bucket)
    })
    .await
}

#[derive(Deserialize)]
struct SpeciesQuery {
    station: Option<String>,
    limit: Option<usize>,
}

async fn species(State(store): State<Shared>, Query(q): Query<SpeciesQuery>) -> Response {
    let limit = q.limit.unwrap_or(20).min(dashboard::MAX_SPECIES);
    json(store, "/api/species", move |s| {
        s.top_species(q.station.as_deref(), limit)
    })
    .await
}

async fn station(State(store): State<Shared>, Path(id): Path<String>) -> Response {
    let name = id.clone();
    match read(store, "/api/stations", move |s| {
        dashboard::station(s, &id, chrono::Utc::now()).map_err(|e| e.to_string())
    })
    .await
    {
        Ok(Some(page)) => axum::Json(page).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            format!("the store knows no station {name:?}"),
        )
            .into_response(),
        Err(failed) => failed,
    }
}
