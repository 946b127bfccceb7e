//! What one client address may take of the ingress, checked before its body is read:
//!
//! - the budget of refused requests (`listener.refusals_per_client`): a token bucket per
//!   client address that only refusals draw from, so a client flooding bad requests is
//!   answered `429` before its body is read, while accepted deliveries never cost anything;
//! - its requests in progress (`listener.max_in_flight_per_client`), so that one client
//!   holding requests open (bodies sent a byte at a time) cannot take every slot of
//!   `listener.max_in_flight` from the providers.
//!
//! The buckets live in a bounded map. A client with a full bucket is the same as one without
//! a bucket, so losing a bucket only ever forgives: the map keeps two generations and drops
//! the older one, holding those untouched the longest, when the newer one fills up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::StatusCode;

use crate::config::RefusalLimit;

/// The code and detail of the answer (`429`) to a client whose budget is spent.
pub const REFUSED_TOO_OFTEN: (&str, &str) = (
    "refused_too_often",
    "too many refused requests from this address; retry later",
);

/// The code and detail of the answer (`429`) to a client with too many requests in progress.
pub const TOO_MANY_IN_PROGRESS: (&str, &str) = (
    "too_many_in_progress",
    "too many requests from this address are in progress; retry when one has finished",
);

/// Most client addresses with a bucket at once (both generations together): about 3 MiB.
pub const MAX_CLIENTS: usize = 65_536;

/// A client as the budget sees it: an IPv4 address, or the /64 of an IPv6 address (one host
/// commonly holds a whole /64, so counting addresses inside it would count nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Refusals one client may still get: `tokens`, as of `last`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The budgets of every client seen refused lately.
pub struct Clients {
    limit: Option<RefusalLimit>,
    generations: Mutex<Generations>,
}

/// The buckets touched lately (`current`) and before that (`previous`).
#[derive(Default)]
struct Generations {
    current: HashMap<ClientKey, Bucket>,
    previous: HashMap<ClientKey, Bucket>,
}

impl Generations {
    /// The client's bucket, moved into the current generation; None when it has none.
    fn take(&mut self, key: ClientKey) -> Option<Bucket> {
        self.current
            .remove(&key)
            .or_else(|| self.previous.remove(&key))
    }

    /// Puts a bucket into the current generation, retiring the generations when it is full.
    fn put(&mut self, key: ClientKey, bucket: Bucket) {
        if self.current.len() >= MAX_CLIENTS / 2 {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, bucket);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

impl Clients {
    /// Budgets of `limit`; None counts nothing and refuses no one.
    pub fn new(limit: Option<RefusalLimit>) -> Clients {
        Clients {
            limit,
            generations: Mutex::default(),
        }
    }

    /// Whether `ip` may be heard: Err with the whole seconds until it may, when its budget of
    /// refusals is spent.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.check_at(ip, Instant::now())
    }

    /// Counts a request of `ip` refused with `status`, when the refusal is the client's doing
    /// (4xx) and not a rate limit's (429: the limits' own refusals spending the budget would
    /// keep a retrying client out for good).
    pub fn refused(&self, ip: IpAddr, status: StatusCode) {
        if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
            self.refused_at(ip, Instant::now());
        }
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let key = ClientKey::from(ip);
        let mut generations = self.lock();
        let Some(bucket) = generations.take(key) else {
            return Ok(());
        };
        let bucket = refill(bucket, limit, now);
        generations.put(key, bucket);
        if bucket.tokens >= 1.0 {
            Ok(())
        } else {
            let rate = f64::from(limit.per_second);
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    fn refused_at(&self, ip: IpAddr, now: Instant) {
        let Some(limit) = self.limit else {
            return;
        };
        let key = ClientKey::from(ip);
        let mut generations = self.lock();
        let full = Bucket {
            tokens: f64::from(limit.burst),
            last: now,
        };
        let mut bucket = refill(generations.take(key).unwrap_or(full), limit, now);
        // Refusals that passed the check together may overdraw; a debt would only lengthen
        // the wait, so the budget stops at empty.
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        generations.put(key, bucket);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The requests of each client in progress. Only clients with a request in progress have an
/// entry, so the map is bounded by the listener's `max_in_flight`.
pub struct InFlight {
    max: u32,
    counts: Mutex<HashMap<ClientKey, u32>>,
}

/// One request of a client in progress; dropping it ends it.
#[must_use]
pub struct Entered<'a> {
    in_flight: &'a InFlight,
    key: ClientKey,
}

impl InFlight {
    /// At most `max` requests in progress per client.
    pub fn new(max: u32) -> InFlight {
        InFlight {
            max,
            counts: Mutex::default(),
        }
    }

    /// Starts a request of `ip`; None when the client already has `max` in progress.
    pub fn enter(&self, ip: IpAddr) -> Option<Entered<'_>> {
        let key = ClientKey::from(ip);
        let mut counts = self.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Entered {
            in_flight: self,
            key,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, u32>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut counts = self.in_flight.lock();
        if let std::collections::hash_map::Entry::Occupied(mut entry) = counts.entry(self.key) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

/// Bytes of request bodies held at once by the whole listener
/// (`listener.max_body_bytes_in_flight`).
pub struct BodyBytes {
    max: u64,
    held: std::sync::atomic::AtomicU64,
}

/// Bytes one request holds; dropping it gives them back.
#[must_use]
pub struct HeldBytes<'a> {
    budget: &'a BodyBytes,
    bytes: u64,
}

impl BodyBytes {
    pub fn new(max: u64) -> BodyBytes {
        BodyBytes {
            max,
            held: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A request that holds nothing yet.
    pub fn hold_nothing(&self) -> HeldBytes<'_> {
        HeldBytes {
            budget: self,
            bytes: 0,
        }
    }
}

impl HeldBytes<'_> {
    /// Takes `n` more bytes; false (taking nothing) when the listener would hold more than its
    /// budget.
    pub fn take(&mut self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        let n = n as u64;
        let taken = self
            .budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n)
                    .filter(|total| *total <= self.budget.max)
            })
            .is_ok();
        if taken {
            self.bytes += n;
        }
        taken
    }
}

impl Drop for HeldBytes<'_> {
    fn drop(&mut self) {
        self.budget
            .held
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The bucket as of `now`: refilled at the limit's rate, up to its burst.
fn refill(bucket: Bucket, limit: RefusalLimit, now: Instant) -> Bucket {
    let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
    Bucket {
        tokens: (bucket.tokens + elapsed * f64::from(limit.per_second)).min(f64::from(limit.burst)),
        last: now,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use super::*;

    fn clients(per_second: u32, burst: u32) -> Clients {
        Clients::new(Some(RefusalLimit { per_second, burst }))
    }

    #[test]
    fn refusals_spend_the_budget_and_time_refills_it() {
        let c = clients(2, 2);
        let ip = IpAddr::from([198, 51, 100, 7]);
        let t0 = Instant::now();
        assert_eq!(c.check_at(ip, t0), Ok(()));
        c.refused_at(ip, t0);
        assert_eq!(c.check_at(ip, t0), Ok(()));
        c.refused_at(ip, t0);
        assert_eq!(c.check_at(ip, t0), Err(1));
        // Checks do not spend: refused clients' retries do not keep the bucket empty.
        assert_eq!(c.check_at(ip, t0), Err(1));
        assert_eq!(c.check_at(ip, t0 + Duration::from_millis(500)), Ok(()));
        // Another client is not touched.
        assert_eq!(c.check_at(IpAddr::from([198, 51, 100, 8]), t0), Ok(()));
    }

    #[test]
    fn only_the_clients_own_mistakes_spend_the_budget() {
        let c = clients(1, 1);
        let ip = IpAddr::from([198, 51, 100, 7]);
        for status in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::ACCEPTED,
        ] {
            c.refused(ip, status);
        }
        assert_eq!(c.check(ip), Ok(()));
        c.refused(ip, StatusCode::UNAUTHORIZED);
        assert!(c.check(ip).is_err());
    }

    #[test]
    fn a_disabled_limit_refuses_no_one() {
        let c = Clients::new(None);
        let ip = IpAddr::from([198, 51, 100, 7]);
        let t0 = Instant::now();
        for _ in 0..1000 {
            c.refused_at(ip, t0);
        }
        assert_eq!(c.check_at(ip, t0), Ok(()));
        assert_eq!(c.lock().len(), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let c = clients(1, 1);
        let t0 = Instant::now();
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        c.refused_at(IpAddr::V6(a), t0);
        assert_eq!(c.check_at(IpAddr::V6(same_64), t0), Err(1));
        assert_eq!(c.check_at(IpAddr::V6(other_64), t0), Ok(()));
        // An IPv4-mapped address is its IPv4 client.
        let v4 = Ipv4Addr::new(192, 0, 2, 1);
        c.refused_at(IpAddr::V4(v4), t0);
        assert_eq!(c.check_at(IpAddr::V6(v4.to_ipv6_mapped()), t0), Err(1));
    }

    #[test]
    fn requests_in_progress_are_capped_per_client_and_forgotten_when_done() {
        let in_flight = InFlight::new(2);
        let ip = IpAddr::from([198, 51, 100, 7]);
        let first = in_flight.enter(ip).expect("first");
        let second = in_flight.enter(ip).expect("second");
        assert!(in_flight.enter(ip).is_none(), "a third is refused");
        // The same /64, and the IPv4-mapped form, are the same client.
        assert!(
            in_flight
                .enter(IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped()))
                .is_none()
        );
        // Another client is not touched.
        let other = in_flight
            .enter(IpAddr::from([198, 51, 100, 8]))
            .expect("other");
        drop(first);
        let third = in_flight.enter(ip).expect("a slot came back");
        drop((second, third, other));
        assert!(
            in_flight.lock().is_empty(),
            "clients with nothing in progress are forgotten"
        );
    }

    #[test]
    fn body_bytes_are_held_within_the_budget_and_given_back() {
        let budget = BodyBytes::new(100);
        let mut a = budget.hold_nothing();
        let mut b = budget.hold_nothing();
        assert!(a.take(60));
        assert!(!b.take(41), "beyond the budget");
        assert!(b.take(40));
        assert!(!a.take(1));
        drop(a);
        assert!(b.take(60), "a's bytes came back");
        drop(b);
        assert_eq!(budget.held.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn the_map_stays_bounded_and_forgets_the_stalest_first() {
        let c = clients(1, 1);
        let t0 = Instant::now();
        let first = IpAddr::from([10, 0, 0, 1]);
        let kept = IpAddr::from([10, 0, 0, 2]);
        c.refused_at(first, t0);
        c.refused_at(kept, t0);
        for n in 0..(MAX_CLIENTS as u32 * 2) {
            c.refused_at(IpAddr::from((11u32 << 24 | n).to_be_bytes()), t0);
            if n % 1000 == 0 {
                // Touched now and then: never the stalest.
                assert_eq!(c.check_at(kept, t0), Err(1));
            }
            assert!(c.lock().len() <= MAX_CLIENTS);
        }
        assert_eq!(
            c.check_at(kept, t0),
            Err(1),
            "a client touched lately is kept"
        );
        assert_eq!(c.check_at(first, t0), Ok(()), "the stalest was forgotten");
    }
}
