//! The `call-api` plugin: one HTTP request built from the rendered input (method, URL,
//! query, headers, a JSON, form or raw body, bearer/basic/HMAC auth), checked against the
//! expected statuses. 408, 425, 429, 5xx and timeouts are retryable (with `Retry-After`),
//! any other unexpected status is fatal. The response (cut short) goes to the execution
//! log, and fields picked from a JSON response by JSON Pointer become the output.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookwise_first_party::{
    HmacAlgorithm, MAX_LOGGED_BODY, base64 as b64, body_excerpt, check_header_name,
    check_header_value, check_url, hex, is_retryable_status, transport_error, with_query,
};
use hookwise_plugin_sdk::serde_json::{self, Map, Value, json};
use hookwise_plugin_sdk::{Context, Event, Plugin, PluginError, export_plugin, http, log};
use serde::Deserialize;

/// Longest timeout a rule may ask for (the plugin's own time limit caps it anyway).
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Default `POST` when there is a body, else `GET`.
    #[serde(default)]
    method: Option<String>,
    url: String,
    /// Added to the URL's query string; a list value repeats the parameter.
    #[serde(default)]
    query: Map<String, Value>,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    body: Option<Value>,
    /// `json` (default), `form` (an object, URL-encoded) or `raw` (a string, sent as is).
    #[serde(default)]
    body_format: BodyFormat,
    #[serde(default)]
    auth: Option<Auth>,
    /// Statuses that count as success: numbers or classes like `"2xx"`. Default `["2xx"]`.
    #[serde(default)]
    expect: Option<Vec<Value>>,
    /// Time for the whole request: `"10s"`, `"500ms"`, `"1m"` or a number of seconds.
    #[serde(default)]
    timeout: Option<Value>,
    /// Output fields taken from the JSON response: name -> JSON Pointer (`/data/id`).
    #[serde(default)]
    select: BTreeMap<String, String>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum BodyFormat {
    #[default]
    Json,
    Form,
    Raw,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Auth {
    Bearer(String),
    Basic { username: String, password: String },
    Hmac(HmacScheme),
}

/// How the request is signed; the same fields as a source with `provider: hmac`, so a
/// hookwise on the other side verifies it with the same block.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HmacScheme {
    secret: String,
    header: String,
    #[serde(default)]
    algorithm: Algorithm,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    timestamp_header: Option<String>,
    /// Placeholders `{body}`, `{timestamp}`, `{method}`, `{url}`; `{{`/`}}` are braces.
    #[serde(default)]
    signed_content: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Algorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Hex,
    Base64,
}

struct CallApi;

impl Plugin for CallApi {
    type Input = Input;
    type Output = Value;

    fn handle(_ctx: &Context, _event: &Event, input: Input) -> Result<Value, PluginError> {
        let request =
            Request::build(input).map_err(|e| PluginError::fatal(format!("call-api: {e}")))?;
        request.run()
    }
}

export_plugin!(CallApi);

/// A checked request, ready to send.
struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    expect: Vec<Expect>,
    timeout: Option<Duration>,
    select: BTreeMap<String, String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Status(u16),
    /// `2xx`: the hundreds digit.
    Class(u16),
}

impl Expect {
    fn matches(&self, status: u16) -> bool {
        match self {
            Expect::Status(s) => *s == status,
            Expect::Class(c) => status / 100 == *c,
        }
    }
}

impl Request {
    fn build(input: Input) -> Result<Request, String> {
        check_url("url", &input.url)?;
        let method = match &input.method {
            Some(m) => {
                let m = m.trim().to_ascii_uppercase();
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(format!("`method` {m:?} is not an HTTP method"));
                }
                m
            }
            None if input.body.is_some() => "POST".to_string(),
            None => "GET".to_string(),
        };
        let mut query = Vec::new();
        for (name, value) in &input.query {
            match value {
                Value::Array(items) => {
                    for item in items {
                        query.push((name.clone(), scalar(&format!("query.{name}"), item)?));
                    }
                }
                other => query.push((name.clone(), scalar(&format!("query.{name}"), other)?)),
            }
        }
        let url = with_query(&input.url, &query);

        let mut headers = Vec::new();
        for (name, value) in &input.headers {
            check_header_name(name)?;
            let value = scalar(&format!("headers.{name}"), value)?;
            check_header_value(name, &value)?;
            let lower = name.to_ascii_lowercase();
            if lower == "host" || lower == "content-length" {
                return Err(format!("header {name} is set by hookwise"));
            }
            headers.push((name.clone(), value));
        }
        let has = |headers: &[(String, String)], name: &str| {
            headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
        };

        let body = match (&input.body, input.body_format) {
            (None, _) => None,
            (Some(body), BodyFormat::Json) => {
                if !has(&headers, "content-type") {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                Some(body.to_string().into_bytes())
            }
            (Some(Value::Object(fields)), BodyFormat::Form) => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (name, value) in fields {
                    match value {
                        Value::Array(items) => {
                            for item in items {
                                form.append_pair(name, &scalar(&format!("body.{name}"), item)?);
                            }
                        }
                        other => {
                            form.append_pair(name, &scalar(&format!("body.{name}"), other)?);
                        }
                    }
                }
                if !has(&headers, "content-type") {
                    headers.push((
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ));
                }
                Some(form.finish().into_bytes())
            }
            (Some(_), BodyFormat::Form) => {
                return Err("`body_format: form` needs `body` to be an object".into());
            }
            (Some(Value::String(text)), BodyFormat::Raw) => {
                if !has(&headers, "content-type") {
                    headers.push(("content-type".into(), "text/plain; charset=utf-8".into()));
                }
                Some(text.clone().into_bytes())
            }
            (Some(_), BodyFormat::Raw) => {
                return Err("`body_format: raw` needs `body` to be a string".into());
            }
        };
        if input.body.is_none() && input.body_format != BodyFormat::Json {
            return Err("`body_format` is set but there is no `body`".into());
        }

        match input.auth {
            None => {}
            Some(Auth::Bearer(token)) => {
                no_authorization(&headers)?;
                let token = token.trim();
                if token.is_empty() {
                    return Err("`auth.bearer` is empty".into());
                }
                check_header_value("authorization", token)?;
                headers.push(("authorization".into(), format!("Bearer {token}")));
            }
            Some(Auth::Basic { username, password }) => {
                no_authorization(&headers)?;
                if username.contains(':') {
                    return Err("`auth.basic.username` may not contain `:`".into());
                }
                let token = b64(format!("{username}:{password}").as_bytes());
                headers.push(("authorization".into(), format!("Basic {token}")));
            }
            Some(Auth::Hmac(scheme)) => {
                let empty = Vec::new();
                let content_body = body.as_ref().unwrap_or(&empty);
                for (name, value) in sign(&scheme, &method, &url, content_body)? {
                    if has(&headers, &name) {
                        return Err(format!("header {name} is set by `auth.hmac`"));
                    }
                    headers.push((name, value));
                }
            }
        }

        let expect = match input.expect {
            None => vec![Expect::Class(2)],
            Some(list) if list.is_empty() => return Err("`expect` is empty".into()),
            Some(list) => list.iter().map(parse_expect).collect::<Result<_, _>>()?,
        };
        let timeout = input.timeout.as_ref().map(parse_timeout).transpose()?;
        for (name, pointer) in &input.select {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(format!(
                    "`select.{name}`: {pointer:?} is not a JSON Pointer (use \"/field/0/sub\")"
                ));
            }
        }
        Ok(Request {
            method,
            url,
            headers,
            body,
            expect,
            timeout,
            select: input.select,
        })
    }

    fn run(self) -> Result<Value, PluginError> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let shown = redact(&self.url);
        let what = format!("{} {shown}", self.method);
        let response = http::request(
            &self.method,
            &self.url,
            &headers,
            self.body.as_deref(),
            self.timeout,
        )
        .map_err(|e| transport_error(&what, e))?;
        log::info(&format!(
            "{what} -> {} ({} bytes): {}",
            response.status,
            response.body.len(),
            body_excerpt(&response.body, MAX_LOGGED_BODY)
        ));
        let status = response.status;
        if !self.expect.iter().any(|e| e.matches(status)) {
            let message = format!(
                "{what} answered {status}: {}",
                body_excerpt(&response.body, MAX_LOGGED_BODY)
            );
            return Err(if is_retryable_status(status) {
                hookwise_first_party::retry_later(message, response.retry_after())
            } else {
                PluginError::fatal(message)
            });
        }
        let mut output = json!({ "status": status });
        if !self.select.is_empty() {
            let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
            let mut selected = Map::new();
            for (name, pointer) in &self.select {
                let value = parsed.as_ref().and_then(|v| v.pointer(pointer)).cloned();
                if value.is_none() {
                    log::warn(&format!(
                        "select.{name}: {pointer} is not in the response; recorded as null"
                    ));
                }
                selected.insert(name.clone(), value.unwrap_or(Value::Null));
            }
            output["selected"] = Value::Object(selected);
        }
        Ok(output)
    }
}

fn no_authorization(headers: &[(String, String)]) -> Result<(), String> {
    if headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        Err("give either `auth` or an Authorization header, not both".into())
    } else {
        Ok(())
    }
}

/// Strings, numbers and booleans as text; anything else is an input error.
fn scalar(field: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(format!("`{field}` must be a string, number or boolean")),
    }
}

fn parse_expect(value: &Value) -> Result<Expect, String> {
    let bad = || format!("`expect`: {value} is not a status (200) or a class (\"2xx\")");
    match value {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (100..=599).contains(n))
            .map(Expect::Status)
            .ok_or_else(bad),
        Value::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            if let Some(digit) = s.strip_suffix("xx")
                && let Ok(class) = digit.parse::<u16>()
                && (1..=5).contains(&class)
            {
                return Ok(Expect::Class(class));
            }
            s.parse::<u16>()
                .ok()
                .filter(|n| (100..=599).contains(n))
                .map(Expect::Status)
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

fn parse_timeout(value: &Value) -> Result<Duration, String> {
    let bad = || format!("`timeout`: {value} is not a duration like \"10s\" or \"500ms\"");
    let duration = match value {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(bad)?,
        Value::String(s) => {
            let s = s.trim();
            let (number, unit) = s
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .map(|i| s.split_at(i))
                .unwrap_or((s, "s"));
            let number: f64 = number.parse().map_err(|_| bad())?;
            let secs = match unit.trim() {
                "ms" => number / 1000.0,
                "s" => number,
                "m" => number * 60.0,
                _ => return Err(bad()),
            };
            if !(secs.is_finite() && secs > 0.0) {
                return Err(bad());
            }
            Duration::from_secs_f64(secs)
        }
        _ => return Err(bad()),
    };
    if duration > MAX_TIMEOUT {
        return Err(format!(
            "`timeout` may be at most {}s",
            MAX_TIMEOUT.as_secs()
        ));
    }
    Ok(duration)
}

/// The signature headers of `scheme` for this request.
fn sign(
    scheme: &HmacScheme,
    method: &str,
    url: &str,
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    if scheme.secret.is_empty() {
        return Err("`auth.hmac.secret` is empty".into());
    }
    check_header_name(&scheme.header)?;
    let template = scheme.signed_content.as_deref().unwrap_or("{body}");
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    let content = signed_content(template, body, &timestamp, method, url)?;
    if template.contains("{timestamp}") && scheme.timestamp_header.is_none() {
        return Err("`signed_content` uses {timestamp} but no `timestamp_header` is set".into());
    }
    let algorithm = match scheme.algorithm {
        Algorithm::Sha1 => HmacAlgorithm::Sha1,
        Algorithm::Sha256 => HmacAlgorithm::Sha256,
        Algorithm::Sha512 => HmacAlgorithm::Sha512,
    };
    let mac = hookwise_first_party::hmac(algorithm, scheme.secret.as_bytes(), &content);
    let encoded = match scheme.encoding {
        Encoding::Hex => hex(&mac),
        Encoding::Base64 => b64(&mac),
    };
    let prefix = scheme.prefix.as_deref().unwrap_or("");
    check_header_value(&scheme.header, prefix)?;
    let mut headers = vec![(scheme.header.clone(), format!("{prefix}{encoded}"))];
    if let Some(ts_header) = &scheme.timestamp_header {
        check_header_name(ts_header)?;
        headers.push((ts_header.clone(), timestamp));
    }
    Ok(headers)
}

/// Expands the signed-content template (the `hmac` provider's syntax).
fn signed_content(
    template: &str,
    body: &[u8],
    timestamp: &str,
    method: &str,
    url: &str,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push(b'{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push(b'}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                match name.as_str() {
                    "body" => out.extend_from_slice(body),
                    "timestamp" => out.extend_from_slice(timestamp.as_bytes()),
                    "method" => out.extend_from_slice(method.as_bytes()),
                    "url" => out.extend_from_slice(url.as_bytes()),
                    other => {
                        return Err(format!(
                            "unknown placeholder {{{other}}} in `signed_content`; use {{body}}, {{timestamp}}, {{method}} or {{url}}"
                        ));
                    }
                }
            }
            '}' => return Err("unmatched `}` in `signed_content` (write `}}`)".into()),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Ok(out)
}

/// The URL without its query string (which may hold credentials) for logs and errors.
fn redact(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        assert_eq!(parse_expect(&json!(201)), Ok(Expect::Status(201)));
        assert_eq!(parse_expect(&json!("2xx")), Ok(Expect::Class(2)));
        assert_eq!(parse_expect(&json!("404")), Ok(Expect::Status(404)));
        assert!(parse_expect(&json!("9xx")).is_err());
        assert!(parse_expect(&json!(700)).is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(
            parse_timeout(&json!("500ms")),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(parse_timeout(&json!("2s")), Ok(Duration::from_secs(2)));
        assert_eq!(parse_timeout(&json!(3)), Ok(Duration::from_secs(3)));
        assert!(parse_timeout(&json!("10h")).is_err());
        assert!(parse_timeout(&json!("0s")).is_err());
        assert!(parse_timeout(&json!("1000m")).is_err());
    }

    #[test]
    fn templates() {
        let c = signed_content("{timestamp}.{body}{{x}}", b"B", "7", "POST", "u");
        assert_eq!(c, Ok(b"7.B{x}".to_vec()));
        assert!(signed_content("{nope}", b"", "", "", "").is_err());
    }
}
