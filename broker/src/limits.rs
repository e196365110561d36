//! Abuse limits (docs/security.md#abuse-limits): new connections per IP per second, PUBLISH packets
//! per client per second, HTTP requests (REST, SSE and WebSocket opens) per bearer token or IP per
//! second, and a back-off for IPs that keep failing to log in.
//!
//! Everything here is synchronous and takes the current [`Instant`], so the policies are tested
//! without clocks. The per-IP maps sit behind a std `Mutex` that is held only for a map lookup,
//! never across an `.await`, and each map is bounded ([`MAX_TRACKED_IPS`]): when it is full,
//! entries that no longer restrict anything are dropped first, and if every entry still matters
//! (a flood from more addresses than the bound) the map is cleared — the limits then fail open
//! for a moment rather than grow without bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most IP addresses each per-IP map remembers.
pub const MAX_TRACKED_IPS: usize = 65_536;

/// Failed logins from one IP within [`FAILURE_WINDOW`] that are tolerated before back-off.
pub const FREE_FAILURES: u32 = 10;

/// A failure is forgotten this long after the IP's last failure.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The first back-off; each further failure doubles it up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest an IP is refused after failed logins.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A token bucket: `rate` tokens a second, holding at most one second's worth (at least one).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: f64,
    /// Capacity: the burst allowed after a quiet spell.
    burst: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `per_second`.
    pub fn new(per_second: u32, now: Instant) -> TokenBucket {
        let rate = f64::from(per_second.max(1));
        TokenBucket {
            rate,
            burst: rate,
            tokens: rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes one token; `false` (nothing taken) when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next token, after a `take` that failed.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }

    /// Full again: remembering this bucket no longer restricts anyone.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

/// One IP's recent failed logins.
#[derive(Debug, Clone)]
struct Failures {
    count: u32,
    last: Instant,
    /// Refused until then.
    blocked_until: Option<Instant>,
}

impl Failures {
    /// Nothing to remember any more: not blocked, and the last failure is outside the window.
    fn is_stale(&self, now: Instant) -> bool {
        let blocked = self.blocked_until.is_some_and(|t| t > now);
        !blocked && now.saturating_duration_since(self.last) >= FAILURE_WINDOW
    }
}

/// Keeps `map` under [`MAX_TRACKED_IPS`] before an insert (module doc: eviction). Also used for
/// the per-vehicle rate of HTTP ingest, whose keys are vehicle ids.
pub fn make_room<K: Hash + Eq, V>(map: &mut HashMap<K, V>, stale: impl Fn(&V) -> bool) {
    if map.len() < MAX_TRACKED_IPS {
        return;
    }
    map.retain(|_, v| !stale(v));
    if map.len() >= MAX_TRACKED_IPS {
        tracing::warn!(
            tracked = map.len(),
            "limit table full; forgetting every entry"
        );
        map.clear();
    }
}

/// The broker-wide limits shared by every listener and connection.
#[derive(Debug)]
pub struct Guard {
    /// `--max-connect-rate`: new connections per IP per second; 0 = unlimited.
    connect_rate: u32,
    /// `--max-publish-rate`: PUBLISH packets per client per second; 0 = unlimited.
    publish_rate: u32,
    /// `--max-request-rate`: HTTP requests per client per second; 0 = unlimited.
    request_rate: u32,
    connects: Mutex<HashMap<IpAddr, TokenBucket>>,
    /// Keyed by the bridge's hash of the client's token or IP.
    requests: Mutex<HashMap<u64, TokenBucket>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

/// Takes one token of `key`'s bucket in `table` (made full, at `rate`, on first use); the wait
/// for the next token when there is none.
fn take<K: Hash + Eq>(
    table: &Mutex<HashMap<K, TokenBucket>>,
    key: K,
    rate: u32,
    now: Instant,
) -> Result<(), Duration> {
    let mut map = table.lock().unwrap_or_else(PoisonError::into_inner);
    if !map.contains_key(&key) {
        make_room(&mut map, |b: &TokenBucket| b.is_full(now));
    }
    let bucket = map
        .entry(key)
        .or_insert_with(|| TokenBucket::new(rate, now));
    if bucket.take(now) {
        Ok(())
    } else {
        Err(bucket.retry_after())
    }
}

impl Guard {
    /// Limits with the given rates (0 = unlimited); the login back-off is always on.
    pub fn new(connect_rate: u32, publish_rate: u32) -> Guard {
        Guard {
            connect_rate,
            publish_rate,
            request_rate: 0,
            connects: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Limits HTTP requests to `rate` per client per second (0 = unlimited).
    pub fn with_request_rate(mut self, rate: u32) -> Guard {
        self.request_rate = rate;
        self
    }

    /// Takes one HTTP request of `client` (the bridge's hash of its token or IP): the wait
    /// for its next request when it is over `--max-request-rate`.
    ///
    /// # Errors
    /// Over the rate: how long until the next request is taken.
    pub fn admit_request(&self, client: u64, now: Instant) -> Result<(), Duration> {
        if self.request_rate == 0 {
            return Ok(());
        }
        take(&self.requests, client, self.request_rate, now)
    }

    /// Whether `ip` may open another connection now (takes one of its tokens).
    pub fn allow_connect(&self, ip: IpAddr, now: Instant) -> bool {
        if self.connect_rate == 0 {
            return true;
        }
        take(&self.connects, ip, self.connect_rate, now).is_ok()
    }

    /// `--max-publish-rate`; 0 = unlimited.
    pub fn publish_rate(&self) -> u32 {
        self.publish_rate
    }

    /// A fresh per-connection publish budget, or `None` when publishing is unlimited.
    pub fn publish_bucket(&self, now: Instant) -> Option<TokenBucket> {
        (self.publish_rate > 0).then(|| TokenBucket::new(self.publish_rate, now))
    }

    /// How much longer `ip` is refused for failed logins, if it is.
    pub fn login_blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let until = map.get(&ip)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Records a failed login from `ip`: past [`FREE_FAILURES`] the IP is refused for a
    /// back-off that doubles with each further failure.
    pub fn login_failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(&ip) {
            make_room(&mut map, |f: &Failures| f.is_stale(now));
        }
        let entry = map.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if entry.is_stale(now) {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        if let Some(extra) = entry.count.checked_sub(FREE_FAILURES + 1) {
            let backoff = FIRST_BACKOFF
                .checked_mul(1u32 << extra.min(16))
                .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF));
            entry.blocked_until = Some(now + backoff);
            tracing::info!(%ip, failures = entry.count, ?backoff, "failed logins; backing off");
        }
    }

    /// A successful login from `ip` forgets its failures.
    pub fn login_succeeded(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(n))
    }

    #[test]
    fn requests_limited_per_client() {
        let t0 = Instant::now();
        let g = Guard::new(0, 0).with_request_rate(2);
        assert!(g.admit_request(1, t0).is_ok() && g.admit_request(1, t0).is_ok());
        let wait = g.admit_request(1, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500));
        assert!(
            g.admit_request(2, t0).is_ok(),
            "another client has its own bucket"
        );
        assert!(g.admit_request(1, t0 + wait).is_ok());
        assert!(
            Guard::new(0, 0).admit_request(1, t0).is_ok(),
            "0 = unlimited"
        );
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, t0);
        assert_eq!((0..10).filter(|_| b.take(t0)).count(), 5);
        assert!(!b.take(t0 + Duration::from_millis(100)));
        assert!(
            b.take(t0 + Duration::from_millis(200)),
            "one token after 1/5 s"
        );
        assert_eq!(
            (0..10)
                .filter(|_| b.take(t0 + Duration::from_secs(60)))
                .count(),
            5,
            "burst is capped"
        );
    }

    #[test]
    fn connect_rate_is_per_ip_and_zero_is_unlimited() {
        let t0 = Instant::now();
        let guard = Guard::new(3, 0);
        assert_eq!((0..10).filter(|_| guard.allow_connect(IP, t0)).count(), 3);
        assert!(
            guard.allow_connect(ip(7), t0),
            "another IP has its own bucket"
        );
        assert!(guard.allow_connect(IP, t0 + Duration::from_secs(1)));
        let open = Guard::new(0, 0);
        assert!((0..10_000).all(|_| open.allow_connect(IP, t0)));
        assert!(open.publish_bucket(t0).is_none());
    }

    #[test]
    fn connect_table_stays_bounded() {
        let t0 = Instant::now();
        let guard = Guard::new(1, 0);
        let tracked = |g: &Guard| g.connects.lock().map(|m| m.len()).unwrap_or(usize::MAX);
        // A flood from more addresses than the bound: every one still restricts, so the table is
        // cleared rather than grown, and every address is served.
        for n in 0..(MAX_TRACKED_IPS as u32 + 10) {
            assert!(guard.allow_connect(ip(n), t0));
        }
        assert!(tracked(&guard) <= MAX_TRACKED_IPS, "{}", tracked(&guard));
        // Fill it to the bound; two seconds later every bucket is full again, so one new
        // address evicts them all instead of clearing restricting entries.
        let mut n = 1_000_000;
        while tracked(&guard) < MAX_TRACKED_IPS {
            guard.allow_connect(ip(n), t0);
            n += 1;
        }
        let recent = ip(n);
        let t1 = t0 + Duration::from_secs(2);
        assert!(guard.allow_connect(recent, t1));
        assert_eq!(tracked(&guard), 1);
        assert!(
            !guard.allow_connect(recent, t1),
            "the new entry still restricts"
        );
    }

    #[test]
    fn failed_logins_back_off_exponentially_and_success_forgets() {
        let t0 = Instant::now();
        let guard = Guard::new(0, 0);
        for _ in 0..FREE_FAILURES {
            guard.login_failed(IP, t0);
        }
        assert_eq!(
            guard.login_blocked(IP, t0),
            None,
            "the free failures do not block"
        );
        guard.login_failed(IP, t0);
        assert_eq!(guard.login_blocked(IP, t0), Some(FIRST_BACKOFF));
        assert_eq!(guard.login_blocked(ip(9), t0), None, "only that IP");
        guard.login_failed(IP, t0);
        assert_eq!(guard.login_blocked(IP, t0), Some(2 * FIRST_BACKOFF));
        for _ in 0..40 {
            guard.login_failed(IP, t0);
        }
        assert_eq!(guard.login_blocked(IP, t0), Some(MAX_BACKOFF), "capped");
        assert_eq!(guard.login_blocked(IP, t0 + MAX_BACKOFF), None, "expires");
        guard.login_succeeded(IP);
        guard.login_failed(IP, t0);
        assert_eq!(guard.login_blocked(IP, t0), None);
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let t0 = Instant::now();
        let guard = Guard::new(0, 0);
        for _ in 0..FREE_FAILURES {
            guard.login_failed(IP, t0);
        }
        let later = t0 + FAILURE_WINDOW;
        guard.login_failed(IP, later);
        assert_eq!(guard.login_blocked(IP, later), None, "count restarted");
    }
}
