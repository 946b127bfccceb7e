//! What the ingress handlers share beyond [`AppState`]: per-source keys, verify options and
//! rate limiters, built once at start-up, and the bound on how refused requests are recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::FromRef;

use super::clients::{BodyBytes, Clients, InFlight};
use super::rejections::Rejections;
use crate::config::Source;
use crate::state::AppState;
use crate::verify::{Keys, VerifyOptions};

/// The ingress listener's state. Cheap to clone: one reference count per request.
#[derive(Clone)]
pub struct IngressState(Arc<IngressParts>);

/// The parts of [`IngressState`].
pub struct IngressParts {
    /// What both listeners share.
    pub app: AppState,
    /// Per-source keys and rate limiters, compiled at start-up.
    pub sources: HashMap<String, SourceRuntime>,
    /// Which refused requests are recorded one by one.
    pub rejections: Rejections,
    /// Each client's budget of refused requests.
    pub clients: Clients,
    /// Each client's requests in progress.
    pub in_flight: InFlight,
    /// The bytes of bodies held by all requests at once.
    pub body_bytes: BodyBytes,
}

impl std::ops::Deref for IngressState {
    type Target = IngressParts;
    fn deref(&self) -> &IngressParts {
        &self.0
    }
}

impl FromRef<IngressState> for AppState {
    fn from_ref(state: &IngressState) -> AppState {
        state.app.clone()
    }
}

impl IngressState {
    /// The ingress state of a server sharing `app`.
    pub fn new(app: AppState) -> Result<IngressState, IngressSetupError> {
        let sources = prepare(&app.config.sources)?;
        let rejections = Rejections::new(app.config.retention.rejected_per_second);
        let clients = Clients::new(app.config.listener.refusals_per_client);
        let in_flight = InFlight::new(app.config.listener.max_in_flight_per_client);
        let body_bytes = BodyBytes::new(app.config.listener.max_body_bytes_in_flight);
        Ok(IngressState(Arc::new(IngressParts {
            app,
            sources,
            rejections,
            clients,
            in_flight,
            body_bytes,
        })))
    }
}

/// Per-source runtime pieces built once at start-up: keys, verify options, rate limiter. (The
/// payload schemas were compiled with the config: `Source::schema`.)
pub struct SourceRuntime {
    pub(super) keys: Keys,
    pub(super) opts: VerifyOptions,
    pub(super) limiter: Option<Mutex<TokenBucket>>,
}

/// Errors that keep the ingress from starting. None today: everything a source needs is checked
/// and compiled when the config loads.
#[derive(Debug, thiserror::Error)]
pub enum IngressSetupError {}

/// Builds what each configured source needs at request time.
fn prepare(sources: &[Source]) -> Result<HashMap<String, SourceRuntime>, IngressSetupError> {
    let mut out = HashMap::new();
    for s in sources {
        let limiter = s.rate_limit.as_ref().map(|r| {
            Mutex::new(TokenBucket::new(
                f64::from(r.per_second),
                f64::from(r.burst.unwrap_or(r.per_second)),
            ))
        });
        let keys = Keys {
            secrets: s.secrets.clone(),
            public_keys: s.public_keys.clone(),
        };
        let opts = VerifyOptions {
            tolerance: s.tolerance,
            hmac: s.hmac.clone(),
        };
        out.insert(
            s.id.clone(),
            SourceRuntime {
                keys,
                opts,
                limiter,
            },
        );
    }
    Ok(out)
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
pub(super) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64) -> TokenBucket {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how many whole seconds until one is there.
    pub(super) fn take(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}
