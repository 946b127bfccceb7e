//! Dashboard sessions and sign-in limits: random session ids kept in memory with an expiry,
//! each with its CSRF token, and a per-client cap on failed sign-ins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// How long a session lasts after sign-in (a working day; sign in again afterwards).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Most sessions kept at once; past it the oldest is dropped (its holder signs in again).
const MAX_SESSIONS: usize = 1_000;
/// Random bytes in a session id and in a CSRF token (256 bits).
const RANDOM_BYTES: usize = 32;
/// Failed sign-ins one client may make per window before it is refused until the window ends.
pub const MAX_FAILED_SIGN_INS: u32 = 10;
/// The window of [`MAX_FAILED_SIGN_INS`].
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);
/// Most clients whose failures are counted at once; past it, unknown clients are refused until
/// windows end (an attacker with many addresses must not grow the map without bound).
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Why a session could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no random numbers from the operating system")]
    Random,
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The id in the cookie.
    pub id: String,
    /// The token every form of this session carries.
    pub csrf: String,
    pub expires: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        self.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// The sessions of one admin listener.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session, valid for [`SESSION_LIFETIME`] from `now`.
    pub fn create(&self, now: Instant) -> Result<Session, SessionError> {
        let session = Session {
            id: random_hex()?,
            csrf: random_hex()?,
            expires: now + SESSION_LIFETIME,
        };
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            let oldest = map.values().min_by_key(|s| s.expires).map(|s| s.id.clone());
            if let Some(id) = oldest {
                map.remove(&id);
            }
        }
        map.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.lock();
        match map.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave the map half-changed (every change is
        // one call), so a poisoned lock is still usable.
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Failed sign-ins per client address.
#[derive(Debug, Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SignInLimiter {
    /// Whether `client` may try to sign in now; when not, how long until it may.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut map = self.lock();
        map.retain(|_, (start, _)| now.duration_since(*start) < SIGN_IN_WINDOW);
        match map.get(&client) {
            Some((start, n)) if *n >= MAX_FAILED_SIGN_INS => {
                Err(SIGN_IN_WINDOW.saturating_sub(now.duration_since(*start)))
            }
            None if map.len() >= MAX_TRACKED_CLIENTS => Err(SIGN_IN_WINDOW),
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in of `client`.
    pub fn failed(&self, client: IpAddr, now: Instant) {
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED_CLIENTS && !map.contains_key(&client) {
            return;
        }
        let entry = map.entry(client).or_insert((now, 0));
        entry.1 = entry.1.saturating_add(1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn random_hex() -> Result<String, SessionError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| SessionError::Random)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_are_removed() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let s = sessions.create(now).unwrap();
        assert_eq!(s.id.len(), 2 * RANDOM_BYTES);
        assert_ne!(s.id, s.csrf);
        assert!(sessions.get(&s.id, now).is_some());
        assert!(sessions.get("nope", now).is_none());
        assert!(sessions.get(&s.id, now + SESSION_LIFETIME).is_none());
        let t = sessions.create(now).unwrap();
        sessions.remove(&t.id);
        assert!(sessions.get(&t.id, now).is_none());
        assert!(t.csrf_matches(&t.csrf));
        assert!(!t.csrf_matches(&t.csrf[1..]));
        assert!(!t.csrf_matches(""));
    }

    #[test]
    fn the_session_count_is_bounded() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let first = sessions.create(now).unwrap();
        for i in 0..MAX_SESSIONS {
            sessions
                .create(now + Duration::from_millis(i as u64 + 1))
                .unwrap();
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        assert!(sessions.get(&first.id, now).is_none(), "the oldest goes");
    }

    #[test]
    fn failed_sign_ins_are_capped_per_client_and_window() {
        let limiter = SignInLimiter::default();
        let now = Instant::now();
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        for _ in 0..MAX_FAILED_SIGN_INS {
            assert!(limiter.check(a, now).is_ok());
            limiter.failed(a, now);
        }
        assert!(limiter.check(a, now).is_err());
        assert!(
            limiter.check(b, now).is_ok(),
            "other clients are not held back"
        );
        assert!(limiter.check(a, now + SIGN_IN_WINDOW).is_ok());
    }
}
