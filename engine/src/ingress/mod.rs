//! The ingress listener: the routes providers and load balancers call.

pub mod clients;
pub mod hooks;
pub mod rejections;
mod state;

pub use state::{IngressSetupError, IngressState, SourceRuntime};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::health::{healthz, readyz};

use crate::tls::PlainOnTls;

/// The ingress routes.
pub fn app(state: IngressState) -> Router {
    // `/hooks/` answers plain HTTP itself, so the hot path skips this middleware.
    let others = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // Its own fallback, so that unknown paths pass through the middleware too.
        .fallback(not_found)
        .layer(axum::middleware::from_fn(refuse_plain_on_tls));
    Router::new()
        // Each source has its own body cap, applied while reading (hooks::receive). The
        // listener takes most requests here straight to hooks::receive (server::serve).
        .route(
            "/hooks/{source}",
            post(hooks::routed).layer(DefaultBodyLimit::disable()),
        )
        .merge(others)
        .with_state(state)
}

/// Plain HTTP on the HTTPS listener: `/hooks/` answers it itself (and records the attempt);
/// every other route answers here that HTTPS is required.
async fn refuse_plain_on_tls(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if request.extensions().get::<PlainOnTls>().is_some()
        && !request.uri().path().starts_with("/hooks/")
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "code": "https_required",
                "detail": "this listener speaks HTTPS only; send the request with https://",
            })),
        )
            .into_response();
    }
    next.run(request).await
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}
