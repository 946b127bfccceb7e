//! The ingress listener: the routes providers and load balancers call.

pub mod hooks;
pub mod tls;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::server::AppState;

/// The ingress routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // Each source has its own body cap, applied while reading (hooks::receive).
        .route(
            "/hooks/{source}",
            post(hooks::receive).layer(DefaultBodyLimit::disable()),
        )
        .with_state(state)
}

/// Liveness: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers and the server is not shutting down.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}
