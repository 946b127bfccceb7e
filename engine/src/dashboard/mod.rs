//! The web dashboard on the admin listener, at `/`: sign-in with the admin token (a session
//! cookie, CSRF tokens on every form), the overview (the signed-in home), the events list
//! with live updates, each event's story as a timeline, its replay (or one execution's) after
//! a dry-run preview, the dead letters with retry and purge, the rules in force (with their
//! reload and a backtest against stored events), the plugins and the sources. Pages are
//! rendered on the server; every asset is in the binary.

mod access;
mod dead_letters;
mod events;
mod overview;
mod plugins;
mod render;
mod replay;
mod rules;
pub mod session;
mod sources;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::admin::AdminState;
use crate::store::StoreError;
use session::{SessionError, Sessions, SignInLimiter};

/// The page policy: only our own files, no inline script or style, never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'; object-src 'none'";

/// Files served under `/assets/`, with their content types.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("assets/favicon.svg"),
    ),
    (
        "live.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/live.js"),
    ),
];

/// What the dashboard handlers share.
#[derive(Clone)]
pub struct Dashboard {
    admin: AdminState,
    sessions: Arc<Sessions>,
    sign_ins: Arc<SignInLimiter>,
    templates: Arc<minijinja::Environment<'static>>,
    /// Live-update streams open now, bounded by [`events::MAX_STREAMS`].
    streams: Arc<tokio::sync::Semaphore>,
    /// The admin listener speaks HTTPS: cookies are `Secure` and origins `https://`.
    tls: bool,
}

/// Why a dashboard request failed.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot render the page: {0}")]
    Render(#[from] minijinja::Error),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is understood but the event's state does not allow it.
    #[error("{0}")]
    Conflict(String),
}

/// The dashboard routes for the admin listener's state.
pub fn router(admin: AdminState) -> Router {
    let templates = match render::environment() {
        Ok(env) => env,
        // The templates are compiled into the binary and checked by a unit test: a failure
        // here is a bug in this build, answered by the error pages below.
        Err(e) => {
            tracing::error!(error = %e, "dashboard templates do not compile");
            minijinja::Environment::new()
        }
    };
    let tls = admin.app.config.admin.tls.is_some();
    let state = Dashboard {
        admin,
        sessions: Arc::new(Sessions::default()),
        sign_ins: Arc::new(SignInLimiter::default()),
        templates: Arc::new(templates),
        streams: Arc::new(tokio::sync::Semaphore::new(events::MAX_STREAMS)),
        tls,
    };
    let signed_in = Router::new()
        .route("/events", get(events::list))
        .route("/events/stream", get(events::stream))
        .route("/events/{id}", get(events::page))
        .route(
            "/events/{id}/replay/preview",
            axum::routing::post(replay::preview),
        )
        .route("/events/{id}/replay", axum::routing::post(replay::replay))
        .route("/overview", get(overview::page))
        .route("/dead-letters", get(dead_letters::list))
        .route(
            "/dead-letters/confirm",
            axum::routing::post(dead_letters::confirm),
        )
        .route("/dead-letters/act", axum::routing::post(dead_letters::act))
        .route(
            "/executions/{id}/replay/preview",
            axum::routing::post(replay::execution_preview),
        )
        .route(
            "/executions/{id}/replay",
            axum::routing::post(replay::execution_replay),
        )
        .route("/sign-out", axum::routing::post(access::sign_out))
        .route("/rules", get(rules::page))
        .route("/rules/reload", axum::routing::post(rules::reload))
        .route("/rules/backtest", axum::routing::post(rules::try_rules))
        .route("/plugins", get(plugins::page))
        .route("/sources", get(sources::page))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::require_session,
        ));
    Router::new()
        .route("/", get(access::home))
        .route("/sign-in", get(access::sign_in_page).post(access::sign_in))
        .route("/assets/{name}", get(asset))
        .merge(signed_in)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

impl Dashboard {
    /// `template` rendered with `context`, as a page.
    fn page(&self, template: &str, context: minijinja::Value) -> Result<Response, DashboardError> {
        let html = self.templates.get_template(template)?.render(context)?;
        Ok(Html(html).into_response())
    }

    /// An error page with `status`; internal details go to the log, never to the page.
    fn error_page(&self, status: StatusCode, message: &str) -> Response {
        let title = status.canonical_reason().unwrap_or("Error");
        let context = minijinja::context! { title => title, message => message };
        match self.page("error.html", context) {
            Ok(page) => (status, page).into_response(),
            Err(_) => (status, message.to_string()).into_response(),
        }
    }

    fn answer(&self, result: Result<Response, DashboardError>) -> Response {
        match result {
            Ok(response) => response,
            Err(DashboardError::BadRequest(why)) => self.error_page(StatusCode::BAD_REQUEST, &why),
            Err(DashboardError::NotFound(why)) => self.error_page(StatusCode::NOT_FOUND, &why),
            Err(DashboardError::Conflict(why)) => self.error_page(StatusCode::CONFLICT, &why),
            Err(e) => {
                tracing::error!(error = %e, "dashboard request failed");
                self.error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be made; see the server log",
                )
            }
        }
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // Assets change with the binary; revalidating is cheap on a local listener.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// Headers every dashboard answer carries; pages are never stored by browsers or proxies.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it browsers send `Origin: null` on form posts, and the
    // same-origin check needs the real origin.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
