//! `warble-collect serve`: the fleet over HTTP, read from the collector's store at each
//! request — `GET /metrics` in the Prometheus (OpenMetrics) text format (see
//! [`crate::metrics`]). It only reads: `warble-collect run` writes the store, in its own
//! process, so a scrape never holds up a station's detections.

use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::store::Store;

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
        .route("/metrics", get(metrics))
        .with_state(Arc::new(Mutex::new(store)));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `GET /metrics`; a store that cannot be read answers 503 with the reason (and says it
/// in the log), so the scrape shows as failed rather than as a fleet of zeros.
async fn metrics(State(store): State<Arc<Mutex<Store>>>) -> Response {
    // The store's clients are synchronous.
    let rendered = tokio::task::spawn_blocking(move || {
        let mut store = store
            .lock()
            .map_err(|_| "the store is unusable after a failed request".to_owned())?;
        crate::metrics::render(&mut store, chrono::Utc::now()).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match rendered {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::warn!("/metrics: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, e).into_response()
        }
    }
}
