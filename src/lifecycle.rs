//! Lifecycle events: what happened to a key, who did it, sent through one
//! [`LifecycleSink`] the host picks (by default [`TracingSink`], structured
//! `tracing` events at target `keyward::audit`).
//!
//! The [`Keyring`](crate::Keyring) sends [`EventKind::Issued`],
//! [`Revoked`](EventKind::Revoked), [`Rotated`](EventKind::Rotated) and
//! [`ReuseDetected`](EventKind::ReuseDetected),
//! [`ControlsChanged`](EventKind::ControlsChanged) and
//! [`Leaked`](EventKind::Leaked) (a leak report revoked the key:
//! [`Keyring::report_leak`](crate::Keyring::report_leak), GitHub's
//! secret-scanning alerts in `keyward::leaks`); the
//! [`Sweeper`](crate::Sweeper) sends [`ExpiringSoon`](EventKind::ExpiringSoon),
//! [`Expired`](EventKind::Expired), [`Stale`](EventKind::Stale) and
//! [`AutoRevoked`](EventKind::AutoRevoked). Every event names the key id,
//! tenant, kind, owner and actor; never the token or its hash.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::key::{KeyId, KeyRecord, OwnerId, TenantId};
use crate::usage::{ControlsUpdate, IpAllowlist};

/// Who acted: the caller of a management call, or keyward itself.
///
/// ```
/// use keyward::{Actor, KeyId};
///
/// assert_eq!(Actor::Subject("user_7".into()).to_string(), "subject:user_7");
/// assert_eq!(Actor::Key(KeyId::parse("key_1").unwrap()).to_string(), "key:key_1");
/// assert_eq!(Actor::System("sweeper").to_string(), "system:sweeper");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Actor {
    /// A caller authenticated by one of its keys.
    Key(KeyId),
    /// A caller authenticated otherwise (a dashboard session, a JWT
    /// subject): the host's id for it.
    Subject(String),
    /// keyward itself (`"sweeper"`, `"verify"`).
    System(&'static str),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Key(id) => write!(f, "key:{id}"),
            Actor::Subject(subject) => write!(f, "subject:{subject}"),
            Actor::System(name) => write!(f, "system:{name}"),
        }
    }
}

/// What happened to a key (see [`LifecycleEvent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// The key was issued (also a rotation's successor).
    Issued,
    /// The key was revoked by a management call, for `reason` when the
    /// caller gave one.
    Revoked {
        /// Why, as the caller said (`"offboarding"`, `"leaked"`).
        reason: Option<Cow<'static, str>>,
    },
    /// The key was rotated: `successor` replaces it, and it stops working
    /// after `grace`.
    Rotated {
        /// The new key.
        successor: KeyId,
        /// How long the old key keeps working.
        grace: Duration,
    },
    /// The key expires within `threshold` (at `expires_at`); sent once per
    /// key and threshold.
    ExpiringSoon {
        /// When it expires.
        expires_at: OffsetDateTime,
        /// The configured threshold it crossed.
        threshold: Duration,
    },
    /// The key has expired; sent once per key.
    Expired {
        /// When it expired.
        expires_at: OffsetDateTime,
    },
    /// The key has not been used since `unused_since` (its last use, or
    /// its creation if never used); sent once per unused spell.
    Stale {
        /// Its last use, or its creation.
        unused_since: OffsetDateTime,
    },
    /// The sweeper revoked the key for being unused since `unused_since`
    /// (sent just before the revocation is written).
    AutoRevoked {
        /// Its last use, or its creation.
        unused_since: OffsetDateTime,
    },
    /// The key's token was presented after its rotation's grace ended (it
    /// was refused): someone still holds an old secret, which may have
    /// leaked. `successors` directly replaced it (their own successors, if
    /// any, descend from them); `family_revoked` says whether the
    /// kind's [`ReusePolicy`](crate::ReusePolicy) revoked them too.
    ReuseDetected {
        /// The keys that replaced it.
        successors: Vec<KeyId>,
        /// Whether they were revoked.
        family_revoked: bool,
    },
    /// The key's usage controls (allowlist, credits, shared budget, rate
    /// limit) were changed by a management call.
    ControlsChanged {
        /// What was asked for (fields left `None` were kept).
        update: ControlsUpdate,
    },
    /// The key's token was reported leaked (found in public by a secret
    /// scanner) while the key was live, and the key was revoked at once
    /// ([`Keyring::report_leak`](crate::Keyring::report_leak)). Sent once
    /// per revocation: a report about a key already revoked or expired
    /// sends nothing.
    Leaked {
        /// Who reported it (`"github"` for GitHub's secret-scanning
        /// alerts).
        reporter: Cow<'static, str>,
        /// Where it was found, when the reporter said (a commit's file,
        /// an issue comment).
        url: Option<String>,
    },
}

impl EventKind {
    /// A stable name: `issued`, `revoked`, `rotated`, `expiring_soon`,
    /// `expired`, `stale`, `auto_revoked`, `reuse_detected`,
    /// `controls_changed`, `leaked`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Issued => "issued",
            EventKind::Revoked { .. } => "revoked",
            EventKind::Rotated { .. } => "rotated",
            EventKind::ExpiringSoon { .. } => "expiring_soon",
            EventKind::Expired { .. } => "expired",
            EventKind::Stale { .. } => "stale",
            EventKind::AutoRevoked { .. } => "auto_revoked",
            EventKind::ReuseDetected { .. } => "reuse_detected",
            EventKind::ControlsChanged { .. } => "controls_changed",
            EventKind::Leaked { .. } => "leaked",
        }
    }
}

/// One thing that happened to one key: which, whose, who did it, when.
/// Never holds the token or its hash.
///
/// ```
/// use keyward::{Actor, EventKind, KeyId, LifecycleEvent, TenantId};
///
/// let event = LifecycleEvent::new(
///     EventKind::Revoked { reason: Some("offboarding".into()) },
///     KeyId::parse("key_1").unwrap(),
///     TenantId::parse("org_1").unwrap(),
///     "pl",
///     time::OffsetDateTime::UNIX_EPOCH,
/// )
/// .actor(Actor::Subject("admin_3".into()));
/// assert_eq!(event.kind.name(), "revoked");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LifecycleEvent {
    /// What happened.
    pub kind: EventKind,
    /// The key's id.
    pub key_id: KeyId,
    /// The key's tenant.
    pub tenant: TenantId,
    /// The key's kind (its prefix).
    pub key_kind: String,
    /// The key's owner inside the tenant, if it is personal.
    pub owner: Option<OwnerId>,
    /// Who did it; `None` when a caller did not say (the plain
    /// [`Keyring`](crate::Keyring) methods).
    pub actor: Option<Actor>,
    /// When (the keyring's clock).
    pub at: OffsetDateTime,
}

impl LifecycleEvent {
    /// An event without owner or actor.
    #[must_use]
    pub fn new(
        kind: EventKind,
        key_id: KeyId,
        tenant: TenantId,
        key_kind: &str,
        at: OffsetDateTime,
    ) -> Self {
        LifecycleEvent {
            kind,
            key_id,
            tenant,
            key_kind: key_kind.to_owned(),
            owner: None,
            actor: None,
            at,
        }
    }

    /// The event about a stored key.
    pub(crate) fn about(
        record: &KeyRecord,
        kind: EventKind,
        actor: Option<&Actor>,
        at: OffsetDateTime,
    ) -> Self {
        LifecycleEvent {
            kind,
            key_id: record.id.clone(),
            tenant: record.tenant.clone(),
            key_kind: record.kind.clone(),
            owner: record.owner.clone(),
            actor: actor.cloned(),
            at,
        }
    }

    /// Names who did it.
    #[must_use]
    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = Some(actor);
        self
    }

    /// Names the key's owner.
    #[must_use]
    pub fn owner(mut self, owner: OwnerId) -> Self {
        self.owner = Some(owner);
        self
    }
}

/// Why a [`LifecycleSink`] could not take an event.
///
/// ```
/// use keyward::SinkError;
///
/// let err = SinkError::new("queue full");
/// assert_eq!(err.to_string(), "lifecycle sink failed");
/// ```
#[derive(Debug, Clone)]
pub struct SinkError(Arc<dyn std::error::Error + Send + Sync>);

impl SinkError {
    /// A sink error from any error or message.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        SinkError(Arc::from(err.into()))
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("lifecycle sink failed")
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Where lifecycle events go: one sink per keyring, set with
/// [`KeyringBuilder::events`](crate::KeyringBuilder::events).
///
/// An error from [`deliver`](Self::deliver) makes the sweeper keep the
/// notice's claim until its lease lapses and send it again then (at least
/// once), going on with other keys meanwhile; for the
/// keyring's own events (the key was already issued, revoked or rotated) it
/// is logged at target `keyward::audit` with the event, so nothing is lost
/// from the logs.
///
/// ```
/// use std::sync::Mutex;
/// use keyward::{LifecycleEvent, LifecycleSink, SinkError};
///
/// #[derive(Default)]
/// struct Collect(Mutex<Vec<String>>);
///
/// #[keyward::async_trait]
/// impl LifecycleSink for Collect {
///     async fn deliver(&self, event: &LifecycleEvent) -> Result<(), SinkError> {
///         self.0.lock().unwrap().push(format!("{} {}", event.kind.name(), event.key_id));
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait LifecycleSink: Send + Sync + 'static {
    /// Takes one event.
    async fn deliver(&self, event: &LifecycleEvent) -> Result<(), SinkError>;
}

/// The default sink: one `tracing` event per lifecycle event at target
/// `keyward::audit`, level INFO (WARN for reuse and leaks), with fields
/// `event`, `key_id`, `tenant`, `kind`, `owner`, `actor` and the kind's
/// details (for a leak: `reporter` and `url`).
///
/// ```
/// let keyring = keyward::Keyring::builder()
///     .store(keyward::MemoryStore::new())
///     .kind(keyward::KeyKind::new("pk", keyward::ScopeCatalog::builder().build()?)?)
///     .events(keyward::TracingSink::new())
///     .build()?;
/// # let _ = keyring;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct TracingSink;

impl TracingSink {
    /// The sink.
    #[must_use]
    pub const fn new() -> Self {
        TracingSink
    }
}

#[async_trait]
impl LifecycleSink for TracingSink {
    async fn deliver(&self, event: &LifecycleEvent) -> Result<(), SinkError> {
        log_event(event);
        Ok(())
    }
}

/// Logs an event at target `keyward::audit`.
pub(crate) fn log_event(e: &LifecycleEvent) {
    let name = e.kind.name();
    let owner = e.owner.as_ref().map(OwnerId::as_str);
    // Debug: an external subject is the host's text, quoted and escaped.
    let actor = e
        .actor
        .as_ref()
        .map(|a| tracing::field::debug(a.to_string()));
    match &e.kind {
        EventKind::Issued => {
            tracing::info!(target: "keyward::audit", event = name, key_id = %e.key_id, tenant = %e.tenant, kind = %e.key_kind, owner, actor, "key issued");
        }
        EventKind::Revoked { reason } => {
            let reason = reason.as_deref().map(tracing::field::debug);
            tracing::info!(target: "keyward::audit", event = name, key_id = %e.key_id, tenant = %e.tenant, kind = %e.key_kind, owner, actor, reason, "key revoked");
        }
        EventKind::Rotated { successor, grace } => {
            tracing::info!(target: "keyward::audit", event = name, key_id = %e.key_id, tenant = %e.tenant, kind = %e.key_kind, owner, actor, successor = %successor, grace_seconds = grace.as_secs(), "key rotated");
        }
        EventKind::ExpiringSoon {
            expires_at,
            threshold,
        } => {
            tracing::info!(target: "keyward::audit", event = name, key_id = %e.key_id, tenant = %e.tenant, kind = %e.key_kind, owner, actor, expires_at = %rfc3339(*expires_at), threshold_seconds = threshold.as_secs(), "key expiring soon");
        }
        EventKind::Expired { expires_at } => {
            tracing::info!(target: "keyward::audit", event = name, key_id = %e.key_id, tenant = %e.tenant, kind = %e.key_kind, owner, actor, expires_at = %rfc3339(*expires_at), "key expired");
        }
        EventKind::Stale { unused_since } => {
            tracing::info!(target: "keyward::audit", event = name, key_id = %e.key_id, tenant = %e.tenant, kind = %e.key_kind, owner, actor, unused_since = %rfc3339(*unused_since), "key stale");
        }
        EventKind::AutoRevoked { unused_since } => {
            tracing::info!(target: "keyward::audit", event = name, key_id = %e.key_id, tenant = %e.tenant, kind = %e.key_kind, owner, actor, unused_since = %rfc3339(*unused_since), "stale key revoked");
        }
        EventKind::ReuseDetected {
            successors,
            family_revoked,
        } => {
            let successors = tracing::field::debug(successors);
            tracing::warn!(target: "keyward::audit", event = name, key_id = %e.key_id, tenant = %e.tenant, kind = %e.key_kind, owner, actor, successors, family_revoked, "rotated key reused");
        }
        EventKind::ControlsChanged { update } => {
            let allowed_ips = update
                .allowed_ips
                .as_ref()
                .map(|list| tracing::field::debug(list.as_ref().map(IpAllowlist::to_strings)));
            let credits = update.credits.as_ref().map(tracing::field::debug);
            let budget = update.budget.as_ref().map(tracing::field::debug);
            let rate_limit = update.rate_limit.as_ref().map(tracing::field::debug);
            tracing::info!(target: "keyward::audit", event = name, key_id = %e.key_id, tenant = %e.tenant, kind = %e.key_kind, owner, actor, allowed_ips, credits, budget, rate_limit, "key usage controls changed");
        }
        EventKind::Leaked { reporter, url } => {
            // Debug: both come from the reporter, quoted and escaped.
            let reporter = tracing::field::debug(reporter);
            let url = url.as_deref().map(tracing::field::debug);
            tracing::warn!(target: "keyward::audit", event = name, key_id = %e.key_id, tenant = %e.tenant, kind = %e.key_kind, owner, actor, reporter, url, "leaked key revoked");
        }
    }
}

/// An instant as RFC 3339 (`2027-01-15T08:00:00Z`).
fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// Delivers an event the keyring already acted on: a sink failure is logged
/// with the event, never returned.
pub(crate) async fn announce(sink: &dyn LifecycleSink, event: &LifecycleEvent) {
    if let Err(err) = sink.deliver(event).await {
        tracing::error!(target: "keyward::audit", error = &err as &dyn std::error::Error, event = event.kind.name(), "lifecycle sink failed; the event follows");
        log_event(event);
    }
}
