//! Key lifecycle events as signed webhooks: a [`LifecycleSink`] that queues
//! deliveries for a background worker.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Semaphore};

use super::deliverer::log_report;
use super::outgoing::rfc3339;
use super::{Deliverer, Endpoint, WebhookMessage};
use crate::error::ConfigError;
use crate::lifecycle::{EventKind, LifecycleEvent, LifecycleSink, SinkError};
use crate::webhooks::MessageId;

/// How many deliveries may wait for the worker, by default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// How many deliveries may be under way (attempting or waiting to retry)
/// at once, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// How many deliveries to one endpoint may be queued or under way at once,
/// by default.
pub const DEFAULT_MAX_PER_ENDPOINT: usize = 128;

/// Every event type the sink sends: `key.` and an [`EventKind::name`].
const EVENT_TYPES: [&str; 10] = [
    "key.issued",
    "key.revoked",
    "key.rotated",
    "key.expiring_soon",
    "key.expired",
    "key.stale",
    "key.auto_revoked",
    "key.reuse_detected",
    "key.controls_changed",
    "key.leaked",
];

/// The endpoints an event goes to: the host's routing (a multi-tenant host
/// returns the endpoints of `event.tenant`). A `Vec<Endpoint>` sends every
/// event to the same endpoints.
///
/// ```
/// use std::collections::HashMap;
/// use keyward::{LifecycleEvent, SinkError, TenantId};
/// use keyward::webhooks::{Endpoint, WebhookEndpoints};
///
/// /// Each tenant's own endpoints.
/// struct PerTenant(HashMap<TenantId, Vec<Endpoint>>);
///
/// #[keyward::async_trait]
/// impl WebhookEndpoints for PerTenant {
///     async fn endpoints(&self, event: &LifecycleEvent) -> Result<Vec<Endpoint>, SinkError> {
///         Ok(self.0.get(&event.tenant).cloned().unwrap_or_default())
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait WebhookEndpoints: Send + Sync + 'static {
    /// Where `event` goes (none: nowhere).
    ///
    /// # Errors
    ///
    /// The endpoints could not be found (a database down): the keyring
    /// logs the event, the sweeper sends it again later.
    async fn endpoints(&self, event: &LifecycleEvent) -> Result<Vec<Endpoint>, SinkError>;
}

#[async_trait::async_trait]
impl WebhookEndpoints for Vec<Endpoint> {
    async fn endpoints(&self, _event: &LifecycleEvent) -> Result<Vec<Endpoint>, SinkError> {
        Ok(self.clone())
    }
}

/// One delivery waiting for the worker.
struct Job {
    endpoint: Endpoint,
    message: WebhookMessage,
    /// Its place in its endpoint's backlog, given back when it ends.
    _backlog: BacklogSlot,
}

/// Deliveries queued or under way, per endpoint URL: a failing endpoint
/// (whose deliveries retry for days) holds at most its own bound of the
/// worker's in-flight slots, so other tenants' endpoints keep theirs.
#[derive(Default)]
struct Backlogs(std::sync::Mutex<std::collections::HashMap<String, usize>>);

impl Backlogs {
    /// Takes one slot for each endpoint, all or none.
    fn take(self: &Arc<Self>, endpoints: &[Endpoint], max: usize) -> Option<Vec<BacklogSlot>> {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut wanted: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for endpoint in endpoints {
            *wanted.entry(endpoint.uri().to_string()).or_default() += 1;
        }
        if wanted
            .iter()
            .any(|(url, n)| counts.get(url).copied().unwrap_or(0) + n > max)
        {
            return None;
        }
        Some(
            endpoints
                .iter()
                .map(|endpoint| {
                    let url = endpoint.uri().to_string();
                    *counts.entry(url.clone()).or_default() += 1;
                    BacklogSlot {
                        backlogs: Arc::clone(self),
                        url,
                    }
                })
                .collect(),
        )
    }
}

/// One delivery's place in its endpoint's backlog.
struct BacklogSlot {
    backlogs: Arc<Backlogs>,
    url: String,
}

impl Drop for BacklogSlot {
    fn drop(&mut self) {
        let mut counts = self
            .backlogs
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.url) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.url);
            }
        }
    }
}

/// A [`LifecycleSink`] that delivers key lifecycle events as signed
/// webhooks: event type `key.<name>` (`key.issued`, `key.revoked`,
/// `key.rotated`, … see [`EventKind::name`]), the specification's envelope
/// with `data` holding `key_id`, `tenant`, `kind`, `owner`, `actor` and the
/// event's details (`reason`; `successor` and `grace_seconds`;
/// `expires_at`; `threshold_seconds`; `unused_since`; `successors` and
/// `family_revoked`; `changed`, the names of the usage controls changed;
/// `reporter` and `url` of a leak).
/// Never a token or a hash.
///
/// [`deliver`](LifecycleSink::deliver) only finds the endpoints and queues
/// one delivery per endpoint (all or none); a worker task runs them, each
/// through the [`Deliverer`] (retries over days with the standard
/// schedule), and logs each final outcome at target `keyward::webhooks`.
/// When the queue is full it fails with [`SinkError`] (the keyring logs the
/// event instead; the sweeper sends it again later): nothing is dropped
/// unseen. Queued and retrying deliveries live in memory: they are lost
/// when the process stops.
///
/// ```
/// use keyward::webhooks::{Deliverer, Endpoint, Signer, WebhookSecret, WebhookSink};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let endpoint = Endpoint::new("https://hooks.example.com/keys", Signer::new(WebhookSecret::generate()))?;
/// let sink = WebhookSink::builder(Deliverer::http()?, vec![endpoint])
///     .only_events(["key.revoked", "key.rotated"])
///     .spawn()?;
/// let keyring = keyward::Keyring::builder()
///     .store(keyward::MemoryStore::new())
///     .kind(keyward::KeyKind::new("pk", keyward::ScopeCatalog::builder().build()?)?)
///     .events(sink)
///     .build()?;
/// # let _ = keyring;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct WebhookSink {
    queue: mpsc::Sender<Job>,
    endpoints: Arc<dyn WebhookEndpoints>,
    only: Option<Arc<HashSet<String>>>,
    backlogs: Arc<Backlogs>,
    max_per_endpoint: usize,
}

/// Builds a [`WebhookSink`] (see there).
#[must_use]
pub struct WebhookSinkBuilder {
    deliverer: Deliverer,
    endpoints: Arc<dyn WebhookEndpoints>,
    only: Option<HashSet<String>>,
    queue_capacity: usize,
    max_in_flight: usize,
    max_per_endpoint: usize,
}

impl WebhookSink {
    /// A builder: events go to `endpoints` through `deliverer`.
    pub fn builder(deliverer: Deliverer, endpoints: impl WebhookEndpoints) -> WebhookSinkBuilder {
        WebhookSinkBuilder {
            deliverer,
            endpoints: Arc::new(endpoints),
            only: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_per_endpoint: DEFAULT_MAX_PER_ENDPOINT,
        }
    }
}

impl WebhookSinkBuilder {
    /// Sends only these event types (`key.revoked`); others are skipped.
    /// By default every event is sent. Revocations come as `key.revoked`,
    /// `key.auto_revoked` and `key.leaked`: subscribe to all three to hear
    /// of every key that stopped working. An unknown type is refused by
    /// [`spawn`](Self::spawn).
    pub fn only_events<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.only = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// How many deliveries may wait for the worker (default 1024); past it
    /// [`deliver`](LifecycleSink::deliver) fails.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// How many deliveries may be under way at once (default 1024): each
    /// may wait days for its retries; past it new deliveries stay queued.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// How many deliveries to one endpoint may be queued or under way at
    /// once (default 128); past it [`deliver`](LifecycleSink::deliver)
    /// fails for events to that endpoint. An endpoint that fails holds
    /// each of its deliveries for days of retries: this bound keeps it from
    /// taking the in-flight slots of every other endpoint.
    pub fn max_per_endpoint(mut self, max: usize) -> Self {
        self.max_per_endpoint = max;
        self
    }

    /// Spawns the worker on the current tokio runtime and returns the
    /// sink. The worker ends once every clone of the sink is dropped and
    /// the queue is drained; deliveries under way go on to their outcome.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidWebhookConfig`] outside a tokio runtime, for
    /// an unknown event type in [`only_events`](Self::only_events), or for
    /// a zero queue capacity, in-flight or per-endpoint bound.
    pub fn spawn(self) -> Result<WebhookSink, ConfigError> {
        if let Some(only) = &self.only {
            if !only.iter().all(|t| EVENT_TYPES.contains(&t.as_str())) {
                return Err(ConfigError::InvalidWebhookConfig(
                    "only_events names an unknown event type (see WebhookSink's docs)",
                ));
            }
        }
        if self.queue_capacity == 0 || self.max_in_flight == 0 || self.max_per_endpoint == 0 {
            return Err(ConfigError::InvalidWebhookConfig(
                "a webhook sink's queue capacity and in-flight bound are at least 1",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::InvalidWebhookConfig("WebhookSink::spawn runs inside a tokio runtime")
        })?;
        let (queue, jobs) = mpsc::channel(self.queue_capacity);
        let permits = Arc::new(Semaphore::new(self.max_in_flight));
        runtime.spawn(work(jobs, self.deliverer, permits));
        Ok(WebhookSink {
            queue,
            endpoints: self.endpoints,
            only: self.only.map(Arc::new),
            backlogs: Arc::default(),
            max_per_endpoint: self.max_per_endpoint,
        })
    }
}

/// The worker: takes each queued delivery once a slot is free and runs it
/// in a task of its own.
async fn work(mut jobs: mpsc::Receiver<Job>, deliverer: Deliverer, permits: Arc<Semaphore>) {
    while let Some(job) = jobs.recv().await {
        // The semaphore is never closed.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let deliverer = deliverer.clone();
        tokio::spawn(async move {
            let report = deliverer.deliver(&job.endpoint, &job.message).await;
            log_report(&report, &job.endpoint, job.message.event_type());
            drop(permit);
        });
    }
}

#[async_trait::async_trait]
impl LifecycleSink for WebhookSink {
    async fn deliver(&self, event: &LifecycleEvent) -> Result<(), SinkError> {
        let event_type = format!("key.{}", event.kind.name());
        if self
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(&event_type))
        {
            return Ok(());
        }
        let endpoints = self.endpoints.endpoints(event).await?;
        if endpoints.is_empty() {
            return Ok(());
        }
        let data = event_data(event).map_err(SinkError::new)?;
        let message = WebhookMessage::envelope(MessageId::generate(), &event_type, event.at, &data)
            .map_err(SinkError::new)?;
        let backlog = self
            .backlogs
            .take(&endpoints, self.max_per_endpoint)
            .ok_or_else(|| SinkError::new("webhook endpoint backlog full"))?;
        // All endpoints or none, so a retried event is not sent twice to
        // the first ones.
        let slots = self
            .queue
            .try_reserve_many(endpoints.len())
            .map_err(|err| match err {
                TrySendError::Full(()) => SinkError::new("webhook queue full"),
                TrySendError::Closed(()) => SinkError::new("webhook worker stopped"),
            })?;
        for ((slot, endpoint), place) in slots.zip(endpoints).zip(backlog) {
            slot.send(Job {
                endpoint,
                message: message.clone(),
                _backlog: place,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("queue_capacity", &self.queue.max_capacity())
            .field("only", &self.only)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WebhookSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSinkBuilder")
            .field("deliverer", &self.deliverer)
            .field("only", &self.only)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_per_endpoint", &self.max_per_endpoint)
            .finish_non_exhaustive()
    }
}

/// The `data` of an event's webhook: who and what, never a secret.
fn event_data(event: &LifecycleEvent) -> Result<Value, super::MessageError> {
    let mut data = Map::new();
    data.insert("key_id".into(), json!(event.key_id.as_str()));
    data.insert("tenant".into(), json!(event.tenant.as_str()));
    data.insert("kind".into(), json!(event.key_kind));
    data.insert(
        "owner".into(),
        json!(event.owner.as_ref().map(|o| o.as_str())),
    );
    data.insert(
        "actor".into(),
        json!(event.actor.as_ref().map(ToString::to_string)),
    );
    match &event.kind {
        EventKind::Revoked { reason } => {
            data.insert("reason".into(), json!(reason.as_deref()));
        }
        EventKind::Rotated { successor, grace } => {
            data.insert("successor".into(), json!(successor.as_str()));
            data.insert("grace_seconds".into(), json!(grace.as_secs()));
        }
        EventKind::ExpiringSoon {
            expires_at,
            threshold,
        } => {
            data.insert("expires_at".into(), json!(rfc3339(*expires_at)?));
            data.insert("threshold_seconds".into(), json!(threshold.as_secs()));
        }
        EventKind::Expired { expires_at } => {
            data.insert("expires_at".into(), json!(rfc3339(*expires_at)?));
        }
        EventKind::Stale { unused_since } | EventKind::AutoRevoked { unused_since } => {
            data.insert("unused_since".into(), json!(rfc3339(*unused_since)?));
        }
        EventKind::ReuseDetected {
            successors,
            family_revoked,
        } => {
            let successors: Vec<&str> = successors.iter().map(|s| s.as_str()).collect();
            data.insert("successors".into(), json!(successors));
            data.insert("family_revoked".into(), json!(family_revoked));
        }
        EventKind::ControlsChanged { update } => {
            let changed: Vec<&str> = [
                ("allowed_ips", update.allowed_ips.is_some()),
                ("credits", update.credits.is_some()),
                ("budget", update.budget.is_some()),
                ("rate_limit", update.rate_limit.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
            data.insert("changed".into(), json!(changed));
        }
        EventKind::Leaked { reporter, url } => {
            data.insert("reporter".into(), json!(reporter));
            data.insert("url".into(), json!(url));
        }
        // `Issued`, and kinds added later: the common fields.
        _ => {}
    }
    Ok(Value::Object(data))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use super::*;
    use crate::key::{KeyId, OwnerId, TenantId};
    use crate::lifecycle::Actor;
    use crate::usage::ControlsUpdate;
    use time::macros::datetime;

    fn event(kind: EventKind) -> LifecycleEvent {
        LifecycleEvent::new(
            kind,
            KeyId::parse("key_1").unwrap(),
            TenantId::parse("org_1").unwrap(),
            "pk",
            datetime!(2027-01-15 08:00:00 UTC),
        )
    }

    #[test]
    fn data_names_the_key_and_the_details() {
        let e = event(EventKind::Revoked {
            reason: Some(Cow::Borrowed("leaked")),
        })
        .actor(Actor::Subject("admin_3".into()))
        .owner(OwnerId::parse("user_9").unwrap());
        assert_eq!(
            event_data(&e).unwrap(),
            json!({"key_id": "key_1", "tenant": "org_1", "kind": "pk", "owner": "user_9",
                   "actor": "subject:admin_3", "reason": "leaked"})
        );
        let base = json!({"key_id": "key_1", "tenant": "org_1", "kind": "pk", "owner": null, "actor": null});
        let with = |extra: Value| {
            let mut all = base.clone();
            all.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            all
        };
        let at = datetime!(2027-02-01 00:00:00 UTC);
        let cases = [
            (EventKind::Issued, json!({})),
            (EventKind::Revoked { reason: None }, json!({"reason": null})),
            (
                EventKind::Rotated {
                    successor: KeyId::parse("key_2").unwrap(),
                    grace: Duration::from_secs(3600),
                },
                json!({"successor": "key_2", "grace_seconds": 3600}),
            ),
            (
                EventKind::ExpiringSoon {
                    expires_at: at,
                    threshold: Duration::from_secs(86400),
                },
                json!({"expires_at": "2027-02-01T00:00:00Z", "threshold_seconds": 86400}),
            ),
            (
                EventKind::Expired { expires_at: at },
                json!({"expires_at": "2027-02-01T00:00:00Z"}),
            ),
            (
                EventKind::Stale { unused_since: at },
                json!({"unused_since": "2027-02-01T00:00:00Z"}),
            ),
            (
                EventKind::AutoRevoked { unused_since: at },
                json!({"unused_since": "2027-02-01T00:00:00Z"}),
            ),
            (
                EventKind::ReuseDetected {
                    successors: vec![KeyId::parse("key_2").unwrap()],
                    family_revoked: true,
                },
                json!({"successors": ["key_2"], "family_revoked": true}),
            ),
            (
                EventKind::ControlsChanged {
                    update: ControlsUpdate::new().budget(None),
                },
                json!({"changed": ["budget"]}),
            ),
            (
                EventKind::Leaked {
                    reporter: Cow::Borrowed("github"),
                    url: Some("https://github.com/o/r/blob/1/.env".into()),
                },
                json!({"reporter": "github", "url": "https://github.com/o/r/blob/1/.env"}),
            ),
        ];
        let mut names = Vec::new();
        for (kind, extra) in cases {
            names.push(format!("key.{}", kind.name()));
            assert_eq!(
                event_data(&event(kind.clone())).unwrap(),
                with(extra),
                "{kind:?}"
            );
        }
        // Every kind's type is one only_events accepts, and no other.
        names.sort();
        let mut known: Vec<String> = EVENT_TYPES.iter().map(|t| (*t).to_owned()).collect();
        known.sort();
        assert_eq!(names, known);
    }

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::new(
            url,
            crate::webhooks::Signer::new(crate::webhooks::WebhookSecret::generate()),
        )
        .unwrap()
    }

    #[test]
    fn backlogs_bound_each_endpoint_all_or_none_and_free_on_drop() {
        let backlogs = Arc::new(Backlogs::default());
        let (a, b) = (
            endpoint("https://a.example/h"),
            endpoint("https://b.example/h"),
        );
        let first = backlogs.take(std::slice::from_ref(&a), 2).unwrap();
        let second = backlogs.take(&[a.clone(), b.clone()], 2).unwrap();
        // `a` is full: an event for a and b takes neither.
        assert!(backlogs.take(&[a.clone(), b.clone()], 2).is_none());
        assert!(backlogs.take(std::slice::from_ref(&b), 2).is_some());
        drop(first);
        assert!(backlogs.take(std::slice::from_ref(&a), 2).is_some());
        drop(second);
        // The same endpoint twice in one event counts twice.
        assert!(backlogs.take(&[a.clone(), a.clone(), a], 2).is_none());
    }

    #[tokio::test]
    async fn unknown_event_types_are_refused() {
        let deliverer = Deliverer::http().unwrap();
        let err = WebhookSink::builder(deliverer.clone(), Vec::<Endpoint>::new())
            .only_events(["revoked"])
            .spawn()
            .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidWebhookConfig(_)));
        assert!(WebhookSink::builder(deliverer, Vec::<Endpoint>::new())
            .only_events(["key.revoked", "key.leaked", "key.auto_revoked"])
            .spawn()
            .is_ok());
    }
}
