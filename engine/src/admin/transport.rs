//! How the admin listener speaks: HTTPS with the certificate and key of `admin.tls`, loaded
//! as the ingress loads its own; otherwise plain HTTP, which the config allows only on
//! loopback or by explicit choice (`admin.insecure_http`).

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_rustls::TlsAcceptor;

use crate::config::AdminSettings;
use crate::tls::{TlsError, acceptor_from_files};

/// The TLS acceptor of the admin listener, or None when it speaks plain HTTP.
pub fn acceptor(admin: &AdminSettings) -> Result<Option<TlsAcceptor>, TlsError> {
    admin
        .tls
        .as_ref()
        .map(|files| acceptor_from_files(&files.cert, &files.key))
        .transpose()
}

/// `app`, answering plain HTTP that reaches an HTTPS admin listener with a refusal that says
/// why, never with the route it asked for.
pub fn https_only(app: Router) -> Router {
    app.layer(axum::middleware::from_fn(refuse_plain_on_tls))
}

async fn refuse_plain_on_tls(request: Request, next: Next) -> Response {
    if request
        .extensions()
        .get::<crate::tls::PlainOnTls>()
        .is_some()
    {
        return super::ApiError::new(
            StatusCode::BAD_REQUEST,
            "https_required",
            "this admin listener speaks HTTPS only; send the request with https://",
        )
        .into_response();
    }
    next.run(request).await
}
