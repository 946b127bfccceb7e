//! The admin listener: a separate address for operators. `/healthz` and `/readyz` answer
//! anyone; everything else (the JSON API under `/api/v1`, `/metrics`) needs the bearer token.
//! The routes are listed in `schemas/admin.openapi.json` (a test keeps the two in step).

mod api;
pub mod token;
pub mod transport;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::{Value, json};

use crate::health::{healthz, readyz};
use crate::plugin_host::Registry;
use crate::rules::LiveRules;
use crate::state::AppState;
pub use token::{AdminToken, TokenError};

/// Most items one page of a list answers (`limit`).
pub(crate) use api::MAX_LIMIT as MAX_PAGE;

/// The OpenAPI document of the admin routes, as committed in `schemas/`.
pub const OPENAPI: &str = include_str!("../../../schemas/admin.openapi.json");

/// Query parameters that look like credentials: refused even when right, because URLs end up
/// in logs, shell histories and proxies.
const CREDENTIAL_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "auth",
    "authorization",
    "bearer",
];

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub app: AppState,
    pub rules: LiveRules,
    pub plugins: Registry,
    pub(crate) token: Arc<AdminToken>,
}

impl AdminState {
    /// The admin state of a server whose requests must carry `token`.
    pub fn new(
        app: AppState,
        rules: LiveRules,
        plugins: Registry,
        token: AdminToken,
    ) -> AdminState {
        AdminState {
            app,
            rules,
            plugins,
            token: Arc::new(token),
        }
    }
}

/// An error answer: `{code, detail}` and, for some, more fields. Internal details are logged,
/// never sent.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    extra: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            extra: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// A failure on our side: logged here (the one place), answered without details.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "admin request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request could not be completed; see the server log",
        )
    }

    fn with(mut self, extra: Value) -> ApiError {
        self.extra = Some(extra);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "detail": self.detail});
        if let (Some(Value::Object(extra)), Some(map)) = (self.extra, body.as_object_mut()) {
            map.extend(extra);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The routes that need the token, each with its method, as (method, path) pairs for the
/// OpenAPI check, and the router.
pub fn api_routes() -> (Router<AdminState>, Vec<(&'static str, &'static str)>) {
    let table: Vec<(&'static str, &'static str, MethodRouter<AdminState>)> = vec![
        ("get", "/metrics", get(api::metrics)),
        ("get", "/api/v1/openapi.json", get(api::openapi)),
        (
            "get",
            "/api/v1/delivery-attempts",
            get(api::delivery_attempts),
        ),
        ("get", "/api/v1/events", get(api::events)),
        ("get", "/api/v1/events/{id}", get(api::event)),
        (
            "post",
            "/api/v1/events/{id}/replay",
            post(api::replay_event),
        ),
        ("get", "/api/v1/executions", get(api::executions)),
        ("get", "/api/v1/executions/{id}", get(api::execution)),
        (
            "post",
            "/api/v1/executions/{id}/replay",
            post(api::replay_execution),
        ),
        ("get", "/api/v1/dead-letters", get(api::dead_letters)),
        (
            "post",
            "/api/v1/dead-letters/retry",
            post(api::retry_dead_letters),
        ),
        (
            "post",
            "/api/v1/dead-letters/purge",
            post(api::purge_dead_letters),
        ),
        ("get", "/api/v1/rules", get(api::rules)),
        ("post", "/api/v1/rules/reload", post(api::reload_rules)),
        ("get", "/api/v1/plugins", get(api::plugins)),
    ];
    let mut router = Router::new();
    let mut list = Vec::new();
    for (method, path, handler) in table {
        router = router.route(path, handler);
        list.push((method, path));
    }
    (router, list)
}

/// Routes anyone may call.
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[("get", "/healthz"), ("get", "/readyz")];

/// The admin routes: health, the JSON API and `/metrics` (the server adds the dashboard).
pub fn app(state: AdminState) -> Router {
    let (api, _) = api_routes();
    let api = api
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            scrub_answer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state.app)
        .merge(api)
}

/// Lets a request through only with `Authorization: Bearer <token>` and no credential in the
/// query string.
async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query() {
        let credential = form_urlencoded::parse(query.as_bytes())
            .any(|(k, _)| CREDENTIAL_PARAMS.contains(&k.to_ascii_lowercase().as_str()));
        if credential {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_in_query",
                "send the token in the Authorization header (Bearer), never in the URL",
            )
            .into_response();
        }
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs `Authorization: Bearer <admin token>`",
        )
        .into_response(),
        Some(t) if !state.token.matches(t) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong admin token",
        )
        .into_response(),
        Some(_) => next.run(request).await,
    }
}

/// Replaces every secret value in an answer. Records are scrubbed when they are written; this
/// also covers records written before that, event payloads as their senders sent them, and
/// answers built from the config.
async fn scrub_answer(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let scrubber = &state.app.scrubber;
    if scrubber.is_empty() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Our own handlers' answers, already whole in memory: no size limit needed to read them.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) if scrubber.finds(text) => text,
        _ => return Response::from_parts(parts, axum::body::Body::from(bytes)),
    };
    let clean = match serde_json::from_str::<Value>(text) {
        // Scrubbed as a tree, so that a replacement never cuts through JSON syntax.
        Ok(mut value) => {
            scrubber.scrub_value(&mut value);
            value.to_string()
        }
        Err(_) => scrubber.scrub(text).into_owned(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(clean))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every route the router serves is in the OpenAPI document, and nothing else is.
    #[test]
    fn openapi_document_lists_exactly_the_routes() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("admin.openapi.json is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    assert!(
                        op["responses"].is_object(),
                        "{method} {path} has no responses"
                    );
                    documented.insert((method.clone(), path.clone()));
                }
            }
        }
        let (_, api) = api_routes();
        let served: BTreeSet<(String, String)> = api
            .iter()
            .chain(PUBLIC_ROUTES)
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(
            served, documented,
            "schemas/admin.openapi.json and admin::api_routes differ"
        );
        // Public routes say so; every other operation inherits the bearer requirement.
        for (m, p) in PUBLIC_ROUTES {
            assert_eq!(doc["paths"][p][m]["security"], json!([]), "{m} {p}");
        }
        assert!(doc["security"][0]["bearer"].is_array());
        // Every $ref resolves.
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let pointer = r.strip_prefix('#').expect("local $ref");
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
        }
    }
}
