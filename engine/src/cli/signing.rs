//! `hookwise verify` and `hookwise sign`: the listener's signature code, from the command line.

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use crate::verify::{self, HmacScheme, Keys, Provider, VerifyOptions};

/// Exit status for usage errors, as clap uses.
const USAGE: u8 = 2;
/// Largest body read from standard input (the listener's caps are per source; this is a tool).
const MAX_STDIN_BODY: u64 = 64 << 20;

/// Options shared by `verify` and `sign`.
#[derive(Debug, Args)]
pub struct SchemeArgs {
    /// Provider id (github, stripe, standard-webhooks, ..., hmac, none).
    #[arg(long)]
    pub provider: String,
    /// The generic `hmac` provider's scheme, as YAML or JSON, e.g.
    /// `{header: X-Signature, algorithm: sha256, encoding: hex, prefix: "sha256="}`.
    #[arg(long, value_name = "YAML")]
    pub hmac_scheme: Option<String>,
    /// The request URL as the provider sees it (Twilio, Square, HubSpot sign it).
    #[arg(long)]
    pub url: Option<String>,
    /// HTTP method.
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// The clock, in Unix seconds. Default: now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub now: Option<u64>,
}

/// `hookwise verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub scheme: SchemeArgs,
    /// A signing secret, in the form the provider's dashboard shows it. Repeatable (rotation).
    #[arg(long)]
    pub secret: Vec<String>,
    /// A public key (Discord hex, SendGrid base64 DER, Standard Webhooks `whpk_`). Repeatable.
    #[arg(long)]
    pub public_key: Vec<String>,
    /// A request header, `Name: value`. Repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Timestamp tolerance in seconds; 0 turns the age check off. Default: the provider's.
    #[arg(long, value_name = "SECONDS")]
    pub tolerance: Option<u64>,
}

/// `hookwise sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    #[command(flatten)]
    pub scheme: SchemeArgs,
    /// The secret (or, for Discord, SendGrid and Standard Webhooks v1a, the private key).
    #[arg(long)]
    pub secret: String,
    /// The event type, for providers that send it in a header (GitHub `X-GitHub-Event`, ...).
    #[arg(long)]
    pub event_type: Option<String>,
    /// Print {"url", "headers", "body"} as JSON instead of headers and a curl line.
    #[arg(long)]
    pub json: bool,
}

struct Prepared {
    provider: Provider,
    opts: VerifyOptions,
    url: String,
    now: SystemTime,
    body: Vec<u8>,
}

/// Prints a usage error; the exit status is 2, as clap's.
pub(super) fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(USAGE)
}

fn prepare(args: &SchemeArgs, tolerance: Option<u64>) -> Result<Prepared, ExitCode> {
    let provider: Provider = args
        .provider
        .parse()
        .map_err(|e| usage(format_args!("{e}")))?;
    let hmac = match &args.hmac_scheme {
        None if provider == Provider::Hmac => {
            return Err(usage("provider hmac needs --hmac-scheme"));
        }
        None => None,
        Some(text) => {
            let scheme: HmacScheme = serde_yaml::from_str(text)
                .map_err(|e| usage(format_args!("--hmac-scheme: {e}")))?;
            scheme
                .validate()
                .map_err(|e| usage(format_args!("--hmac-scheme: {e}")))?;
            Some(scheme)
        }
    };
    let now = match args.now {
        Some(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        None => SystemTime::now(),
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_STDIN_BODY).read_to_end(&mut body) {
        return Err(usage(format_args!(
            "cannot read the body from standard input: {e}"
        )));
    }
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("https://127.0.0.1:8443/hooks/{}", provider.id()));
    Ok(Prepared {
        provider,
        opts: VerifyOptions {
            tolerance: tolerance.map(Duration::from_secs),
            hmac,
        },
        url,
        now,
        body,
    })
}

/// Checks a request's signature; prints `valid` or `invalid: <reason>`.
pub fn verify_command(args: VerifyArgs) -> ExitCode {
    let p = match prepare(&args.scheme, args.tolerance) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if args.secret.is_empty() && args.public_key.is_empty() && p.provider != Provider::None {
        return usage("give --secret (or --public-key for public-key providers)");
    }
    let mut headers = http::HeaderMap::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            return usage(format_args!("--header `{h}` is not `Name: value`"));
        };
        match (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_str(value.trim()),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => return usage(format_args!("--header `{h}` is not a valid header")),
        }
    }
    let keys = Keys {
        secrets: args.secret.into_iter().map(verify::Secret::new).collect(),
        public_keys: args.public_key,
    };
    let request = verify::Request {
        method: &args.scheme.method,
        url: &p.url,
        headers: &headers,
        body: &p.body,
    };
    match verify::verify(p.provider, &keys, &p.opts, &request, p.now) {
        Ok(v) => {
            println!("valid");
            if keys.secrets.len() + keys.public_keys.len() > 1 {
                eprintln!("matched key #{}", v.matched_key_index() + 1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("invalid: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the headers a provider would send with the body on standard input, and a curl line.
pub fn sign_command(args: SignArgs) -> ExitCode {
    let p = match prepare(&args.scheme, None) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let signed = match verify::sign_event(
        p.provider,
        &args.secret,
        &p.opts,
        &args.scheme.method,
        &p.url,
        &p.body,
        p.now,
        args.event_type.as_deref(),
    ) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let body = String::from_utf8_lossy(&signed.body);
    if args.json {
        let headers: serde_json::Map<String, serde_json::Value> = signed
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        println!(
            "{}",
            serde_json::json!({"url": signed.url, "headers": headers, "body": body})
        );
        return ExitCode::SUCCESS;
    }
    for (name, value) in &signed.headers {
        println!("{name}: {value}");
    }
    println!();
    let mut curl = format!(
        "curl -k -X {} {}",
        args.scheme.method,
        shell_quote(&signed.url)
    );
    for (name, value) in &signed.headers {
        curl.push_str(&format!(" -H {}", shell_quote(&format!("{name}: {value}"))));
    }
    let has_type = signed
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !has_type {
        let content_type = if serde_json::from_slice::<serde_json::Value>(&signed.body).is_ok() {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        curl.push_str(&format!(
            " -H {}",
            shell_quote(&format!("Content-Type: {content_type}"))
        ));
    }
    curl.push_str(&format!(" --data-binary {}", shell_quote(&body)));
    println!("{curl}");
    ExitCode::SUCCESS
}

/// Quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
