//! Who may use the dashboard: the sign-in form (the admin token, rate limited per client),
//! the session cookie, the CSRF check of every form post, and sign-out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::session::{SESSION_LIFETIME, Session};
use super::{Dashboard, DashboardError};

/// Longest form body taken (a token and a CSRF field fit many times over).
const MAX_FORM_BYTES: usize = 8 * 1024;
/// Longest form body of the rule backtest, whose rule text may take up to
/// [`MAX_RULES_TEXT`](crate::dispatch::backtest::MAX_RULES_TEXT) (URL-encoding triples a byte
/// at most); the text's own limit is checked once it is decoded.
pub(super) const MAX_BACKTEST_FORM_BYTES: usize =
    3 * crate::dispatch::backtest::MAX_RULES_TEXT + MAX_FORM_BYTES;
/// The form that may be larger than [`MAX_FORM_BYTES`].
const BACKTEST_PATH: &str = "/rules/backtest";

impl Dashboard {
    /// The cookie's name: with TLS the `__Host-` prefix, which browsers accept only on
    /// `Secure`, host-only, `Path=/` cookies.
    fn cookie_name(&self) -> &'static str {
        if self.tls {
            "__Host-hookwise_session"
        } else {
            "hookwise_session"
        }
    }

    fn set_cookie(&self, value: &str, max_age: u64) -> Option<HeaderValue> {
        HeaderValue::from_str(&cookie_text(self.cookie_name(), self.tls, value, max_age)).ok()
    }

    /// The live session named by the request's cookie.
    fn session_of(&self, headers: &HeaderMap) -> Option<Session> {
        let name = self.cookie_name();
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())?;
        self.sessions.get(&id, Instant::now())
    }

    /// Whether a state-changing request comes from a page of this listener: browsers send
    /// `Origin` and `Sec-Fetch-Site` on every form post, and a cross-site one names another
    /// origin. Clients that send neither are not browsers and need the CSRF token anyway.
    fn same_origin(&self, headers: &HeaderMap, authority: Option<&str>) -> bool {
        if let Some(site) = headers.get("sec-fetch-site")
            && site.as_bytes() != b"same-origin"
        {
            return false;
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(authority);
        let scheme = if self.tls { "https" } else { "http" };
        match host {
            Some(host) => origin.as_bytes() == format!("{scheme}://{host}").as_bytes(),
            None => false,
        }
    }
}

/// Where the signed in land: the overview.
const HOME: &str = "/overview";

/// `/`: the overview for the signed in, the sign-in page for everyone else.
pub(super) async fn home(State(d): State<Dashboard>, headers: HeaderMap) -> Redirect {
    match d.session_of(&headers) {
        Some(_) => Redirect::to(HOME),
        None => Redirect::to("/sign-in"),
    }
}

pub(super) async fn sign_in_page(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
    if d.session_of(&headers).is_some() {
        return Redirect::to(HOME).into_response();
    }
    let result = d.page("sign_in.html", minijinja::context! {});
    d.answer(result)
}

/// Checks the token of the sign-in form; on success a new session and its cookie.
pub(super) async fn sign_in(State(d): State<Dashboard>, request: Request) -> Response {
    let client = client_ip(&request);
    let now = Instant::now();
    if !d.same_origin(
        request.headers(),
        request.uri().authority().map(|a| a.as_str()),
    ) {
        return d.error_page(
            StatusCode::FORBIDDEN,
            "sign-in refused: the form was not sent from this dashboard",
        );
    }
    if let Err(wait) = d.sign_ins.check(client, now) {
        let mut page = sign_in_problem(
            &d,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins from your address; wait a minute and try again.",
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            page.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return page;
    }
    let form = match read_form(request).await {
        Ok(form) => form,
        Err(page) => return d.answer(Err(page)),
    };
    let token = field(&form, "token").unwrap_or_default();
    if !d.admin.token.matches(token.trim()) {
        d.sign_ins.failed(client, now);
        return sign_in_problem(&d, StatusCode::UNAUTHORIZED, "Wrong admin token.");
    }
    let session = match d.sessions.create(now) {
        Ok(session) => session,
        Err(e) => return d.answer(Err(e.into())),
    };
    let mut response = Redirect::to(HOME).into_response();
    if let Some(cookie) = d.set_cookie(&session.id, SESSION_LIFETIME.as_secs()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Ends the session (its form carries the CSRF token, checked by [`require_session`]).
pub(super) async fn sign_out(State(d): State<Dashboard>, request: Request) -> Response {
    if let Some(session) = request.extensions().get::<Session>() {
        d.sessions.remove(&session.id);
    }
    let mut response = Redirect::to("/sign-in").into_response();
    if let Some(cookie) = d.set_cookie("", 0) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Lets a request through only with a live session; posts also need the session's CSRF
/// token in the form and a same-origin request. The session goes into the extensions.
pub(super) async fn require_session(
    State(d): State<Dashboard>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(session) = d.session_of(request.headers()) else {
        if request.method() == axum::http::Method::GET {
            return Redirect::to("/sign-in").into_response();
        }
        return d.error_page(StatusCode::UNAUTHORIZED, "sign in first");
    };
    if request.method() != axum::http::Method::GET && request.method() != axum::http::Method::HEAD {
        let authority = request.uri().authority().map(|a| a.to_string());
        if !d.same_origin(request.headers(), authority.as_deref()) {
            return d.error_page(
                StatusCode::FORBIDDEN,
                "refused: the request did not come from this dashboard",
            );
        }
        let (parts, body) = request.into_parts();
        let limit = if parts.uri.path() == BACKTEST_PATH {
            MAX_BACKTEST_FORM_BYTES
        } else {
            MAX_FORM_BYTES
        };
        let bytes = match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => bytes,
            Err(_) => return d.error_page(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"),
        };
        let form = parse_form(&bytes);
        let presented = field(&form, "csrf").unwrap_or_default();
        if !session.csrf_matches(presented) {
            return d.error_page(
                StatusCode::FORBIDDEN,
                "refused: the form's CSRF token is missing or stale; reload the page",
            );
        }
        request = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// A `Set-Cookie` value for the session cookie: never readable by scripts, never sent by
/// another site's requests, and over TLS never sent in the clear.
fn cookie_text(name: &str, tls: bool, value: &str, max_age: u64) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

fn sign_in_problem(d: &Dashboard, status: StatusCode, problem: &str) -> Response {
    let result = d.page("sign_in.html", minijinja::context! { problem => problem });
    let mut response = d.answer(result);
    *response.status_mut() = status;
    response
}

/// The client's address as the listener saw it (no proxy headers: they are the client's word).
fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

async fn read_form(request: Request) -> Result<Vec<(String, String)>, DashboardError> {
    let bytes: Bytes = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
        .await
        .map_err(|_| DashboardError::BadRequest("the form is too large".into()))?;
    Ok(parse_form(&bytes))
}

fn parse_form(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_secure_over_tls() {
        let plain = cookie_text("hookwise_session", false, "abc", 60);
        assert_eq!(
            plain,
            "hookwise_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        let tls = cookie_text("__Host-hookwise_session", true, "abc", 60);
        assert!(tls.ends_with("; Secure"), "{tls}");
        assert!(tls.starts_with("__Host-hookwise_session=abc; Path=/; HttpOnly"));
    }
}
