//! The admin listener: a separate address for operators. It serves health checks today; the
//! authenticated API, metrics and dashboard build on this router.

use axum::Router;
use axum::routing::get;

use crate::ingress::{healthz, readyz};
use crate::server::AppState;

/// The admin routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}
