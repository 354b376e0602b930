//! The failed-authentication throttle of [`AuthLayer`]: a GCRA budget of
//! failures per client network, checked before a credential costs anything.
//!
//! A request with a credential first asks [`Failures::over_budget`] whether
//! its client has a failure left (a look, which takes nothing); only a
//! verification that fails spends one ([`Failures::record`]). A success
//! spends nothing, and a client that never failed is not even tracked.
//!
//! Requests sent together all pass the look before any of them fails, so a
//! failure is charged even past the budget: each pushes the client's
//! theoretical arrival time one interval further (up to [`MAX_LOCKOUT`]).
//! A burst of N failures thus buys a wait of about N intervals, and over
//! time a client makes no more lookups than its budget's rate, however many
//! requests it sends at once (a single burst is bounded by its connections).
//!
//! [`AuthLayer`]: crate::http::AuthLayer

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::clock::Clock;
use crate::http::rejection::Rejection;
use crate::http::throttle::ClientNet;
use crate::ratelimit::{unix_nanos, MemoryRateLimiterBuilder, Quota, RateDecision, TatTable};

/// The most client networks tracked at once. An entry is a [`ClientNet`]
/// and a TAT (24 bytes and a control byte, no heap), so a full table takes
/// a few MB; a client back to a full budget is not kept.
const MAX_CLIENTS: usize = 100_000;

/// The longest a client is locked out by its own burst of failures.
pub(crate) const MAX_LOCKOUT: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// The failure counts of a layer and its clones.
pub(crate) struct Failures {
    table: TatTable<ClientNet>,
    clock: Arc<dyn Clock>,
    /// Whether the "peer unknown" warning was logged.
    warned_unknown_peer: AtomicBool,
}

impl Failures {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Failures {
            table: TatTable::new(MAX_CLIENTS, MemoryRateLimiterBuilder::DEFAULT_SHARDS),
            clock,
            warned_unknown_peer: AtomicBool::new(false),
        }
    }

    fn now(&self) -> i64 {
        unix_nanos(self.clock.now())
    }

    /// The denial for `client` when it has no failure left under `budget`.
    /// Takes nothing; reads the clock only for a client with failures on
    /// record.
    pub(crate) fn over_budget(&self, client: ClientNet, budget: Quota) -> Option<RateDecision> {
        self.table
            .peek(&client, budget, || self.now())
            .filter(|decision| !decision.allowed)
    }

    /// Spends one of `client`'s failures, also past the budget (requests
    /// that passed [`over_budget`](Self::over_budget) together each cost
    /// one), so a burst of failures locks the client out for as long.
    pub(crate) fn record(&self, client: ClientNet, budget: Quota) {
        let cap = i64::try_from(MAX_LOCKOUT.as_nanos()).unwrap_or(i64::MAX);
        self.table.charge(&client, |c| *c, budget, self.now(), cap);
    }

    /// Logs, once per layer, that a request's client is unknown, so its
    /// failures go uncounted.
    pub(crate) fn warn_unknown_peer(&self) {
        if !self.warned_unknown_peer.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "keyward::http",
                "AuthLayer cannot see the client address of a request, so its failed \
                 authentications are not throttled (logged once); serve with connect info \
                 and set AuthLayer::peer_ip, or turn the throttle off with \
                 AuthLayer::without_failure_throttle"
            );
        }
    }

    /// How many client networks have failures on record.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.table.len()
    }
}

impl fmt::Debug for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failures")
            .field("max_clients", &self.table.max_keys())
            .finish_non_exhaustive()
    }
}

/// Whether a verification outcome spends a failure: a credential that did
/// not authenticate the caller for this request. Store and authenticator
/// outages (503) do not: clients are not punished for ours.
pub(crate) fn counts_as_failure(rejection: &Rejection) -> bool {
    matches!(
        rejection,
        Rejection::InvalidToken
            | Rejection::TokenExpired
            | Rejection::TokenRevoked
            | Rejection::TenantMismatch
            | Rejection::IpNotAllowed
    )
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::http::AuthLayer;

    fn failures() -> (Failures, ManualClock) {
        let clock =
            ManualClock::new(time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000));
        (Failures::new(Arc::new(clock.clone())), clock)
    }

    fn client(ip: &str) -> ClientNet {
        ClientNet::of(ip.parse().unwrap())
    }

    #[test]
    fn a_look_takes_nothing_and_only_failures_are_tracked() {
        let (failures, clock) = failures();
        let budget = Quota::per_minute(2).unwrap();
        let ada = client("203.0.113.7");
        for _ in 0..10 {
            assert_eq!(failures.over_budget(ada, budget), None);
        }
        assert_eq!(failures.tracked(), 0);
        failures.record(ada, budget);
        assert_eq!(failures.over_budget(ada, budget), None);
        failures.record(ada, budget);
        let denied = failures.over_budget(ada, budget).unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(failures.tracked(), 1);
        // A failure over budget (concurrent requests) is charged too: one
        // more interval to wait.
        failures.record(ada, budget);
        clock.advance(std::time::Duration::from_secs(30));
        assert!(failures.over_budget(ada, budget).is_some());
        clock.advance(std::time::Duration::from_secs(30));
        assert_eq!(failures.over_budget(ada, budget), None);
        assert_eq!(failures.over_budget(client("203.0.113.8"), budget), None);
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_networks() {
        let (failures, _) = failures();
        let budget = AuthLayer::DEFAULT_FAILURE_BUDGET;
        for i in 0..(MAX_CLIENTS as u32 + 20_000) {
            failures.record(ClientNet::of(IpAddr::V4(Ipv4Addr::from(i))), budget);
        }
        assert!(failures.tracked() <= MAX_CLIENTS, "{}", failures.tracked());
    }

    #[test]
    fn only_credentials_that_fail_count() {
        for counted in [
            Rejection::InvalidToken,
            Rejection::TokenExpired,
            Rejection::TokenRevoked,
            Rejection::TenantMismatch,
        ] {
            assert!(counts_as_failure(&counted), "{counted:?}");
        }
        for not in [
            Rejection::InvalidRequest("x"),
            Rejection::missing_credentials(),
            Rejection::TenantRequired,
            Rejection::AuthUnavailable,
            Rejection::InsufficientScope {
                scope: "read".into(),
            },
        ] {
            assert!(!counts_as_failure(&not), "{not:?}");
        }
    }
}
