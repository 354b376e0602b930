//! Webhook delivery through the public API: the retry schedule and its
//! jitter on tokio's paused clock, the status rules (2xx, 410, 3xx, the
//! rest), `Retry-After`, timeouts, re-signing per attempt; then real round
//! trips to an axum receiver on 127.0.0.1 behind `VerifyWebhookLayer`, and
//! from a `Keyring` through `WebhookSink`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Extension, Router};
use bytes::Bytes;
use keyward::webhooks::{
    AttemptError, Deliverer, DeliveryOutcome, DeliveryPolicy, Endpoint, MessageId, Signer,
    TransportError, VerifiedWebhook, Verifier, VerifyWebhookLayer, WebhookMessage, WebhookSecret,
    WebhookSink, WebhookTransport, STANDARD_SCHEDULE,
};
use keyward::{
    Clock, EventKind, KeyId, KeyKind, Keyring, LifecycleEvent, LifecycleSink, ManualClock,
    MemoryStore, NewKey, ScopeCatalog, TenantId,
};
use time::OffsetDateTime;
use tokio::time::Instant;

const START: OffsetDateTime = time::macros::datetime!(2026-11-27 12:00:00 UTC);

/// Wall time that follows tokio's (paused) clock from `START`.
#[derive(Debug, Clone)]
struct TokioClock(Instant);

impl TokioClock {
    fn new() -> Self {
        TokioClock(Instant::now())
    }
}

impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        START + (Instant::now() - self.0)
    }
}

/// What the fake receiver does with one request.
#[derive(Clone)]
enum Reply {
    Status(u16),
    StatusWith(u16, &'static str, String),
    Fail,
    Hang,
}

/// One request the fake transport saw.
#[derive(Clone)]
struct Seen {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
    uri: String,
    method: String,
}

/// A transport answering from a script (then 500), recording requests.
#[derive(Clone, Default)]
struct Fake {
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn new(script: impl IntoIterator<Item = Reply>) -> Self {
        Fake {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            seen: Arc::default(),
        }
    }

    fn push(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }

    /// The gaps between consecutive requests.
    fn gaps(&self) -> Vec<Duration> {
        let seen = self.seen.lock().unwrap();
        seen.windows(2).map(|w| w[1].at - w[0].at).collect()
    }

    /// The requests seen so far.
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[keyward::async_trait]
impl WebhookTransport for Fake {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<()>, TransportError> {
        self.seen.lock().unwrap().push(Seen {
            at: Instant::now(),
            headers: request.headers().clone(),
            body: request.body().clone(),
            uri: request.uri().to_string(),
            method: request.method().to_string(),
        });
        let reply = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Reply::Status(500));
        let (status, header) = match reply {
            Reply::Status(s) => (s, None),
            Reply::StatusWith(s, name, value) => (s, Some((name, value))),
            Reply::Fail => return Err(TransportError::new("connection reset")),
            Reply::Hang => std::future::pending().await,
        };
        let mut response = http::Response::builder().status(status);
        if let Some((name, value)) = header {
            response = response.header(name, value);
        }
        Ok(response.body(()).unwrap())
    }
}

fn secret() -> WebhookSecret {
    WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
}

fn endpoint(url: &str) -> Endpoint {
    Endpoint::new(url, Signer::new(secret())).unwrap()
}

fn message() -> WebhookMessage {
    WebhookMessage::envelope(
        MessageId::parse("msg_1").unwrap(),
        "key.revoked",
        START,
        &serde_json::json!({"key_id": "key_1"}),
    )
    .unwrap()
}

/// A policy without jitter over `delays`.
fn exact(delays: &[u64]) -> DeliveryPolicy {
    DeliveryPolicy::builder()
        .schedule(delays.iter().map(|s| Duration::from_secs(*s)))
        .jitter_percent(0)
        .build()
        .unwrap()
}

fn deliverer(fake: &Fake) -> Deliverer {
    Deliverer::new(fake.clone()).clock(TokioClock::new())
}

fn statuses(report: &keyward::webhooks::DeliveryReport) -> Vec<Option<u16>> {
    report
        .attempts()
        .iter()
        .map(|a| a.status().map(|s| s.as_u16()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_standard_schedule_with_bounded_jitter() {
    let fake = Fake::default();
    let start = Instant::now();
    let report = deliverer(&fake)
        .deliver(&endpoint("https://hooks.example.com/in"), &message())
        .await;
    assert_eq!(report.outcome(), DeliveryOutcome::GaveUp);
    assert!(!report.is_delivered());
    assert_eq!(report.attempts().len(), STANDARD_SCHEDULE.len());
    assert_eq!(
        fake.requests()[0].at,
        start,
        "the first attempt is immediate"
    );
    let gaps = fake.gaps();
    assert_eq!(gaps.len(), STANDARD_SCHEDULE.len() - 1);
    let mut jittered = 0;
    for (gap, planned) in gaps.iter().zip(&STANDARD_SCHEDULE[1..]) {
        assert!(
            *gap >= planned.mul_f64(0.9) && *gap <= planned.mul_f64(1.1),
            "{gap:?} vs {planned:?}"
        );
        jittered += usize::from(gap != planned);
    }
    assert!(jittered > 0, "some delay varies");
    // Each attempt's time is on the deliverer's clock.
    let seen = fake.requests();
    for (attempt, seen) in report.attempts().iter().zip(seen.iter()) {
        assert_eq!(attempt.at(), START + (seen.at - start));
        assert_eq!(
            attempt.status(),
            Some(http::StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert!(attempt.error().is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_schedule_is_followed_exactly_without_jitter() {
    let fake = Fake::default();
    let report = deliverer(&fake)
        .policy(exact(&[2, 1, 7]))
        .deliver(&endpoint("https://hooks.example.com/in"), &message())
        .await;
    assert_eq!(report.outcome(), DeliveryOutcome::GaveUp);
    assert_eq!(
        fake.gaps(),
        [Duration::from_secs(1), Duration::from_secs(7)]
    );
    assert_eq!(report.attempts()[0].at(), START + Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn success_stops_at_once() {
    for status in [200, 204, 299] {
        let fake = Fake::new([Reply::Status(500), Reply::Status(status)]);
        let report = deliverer(&fake)
            .deliver(&endpoint("https://hooks.example.com/in"), &message())
            .await;
        assert_eq!(report.outcome(), DeliveryOutcome::Delivered);
        assert!(report.is_delivered());
        assert_eq!(statuses(&report), [Some(500), Some(status)]);
        assert_eq!(report.message_id().as_str(), "msg_1");
    }
}

#[tokio::test(start_paused = true)]
async fn every_other_status_is_retried() {
    for status in [
        100, 300, 301, 302, 307, 308, 400, 401, 404, 409, 429, 500, 502, 503, 504,
    ] {
        let fake = Fake::new([Reply::Status(status), Reply::Status(200)]);
        let report = deliverer(&fake)
            .policy(exact(&[0, 5]))
            .deliver(&endpoint("https://hooks.example.com/in"), &message())
            .await;
        assert_eq!(statuses(&report), [Some(status), Some(200)], "{status}");
        assert_eq!(report.outcome(), DeliveryOutcome::Delivered);
    }
}

#[tokio::test(start_paused = true)]
async fn redirects_are_failures() {
    let fake = Fake::new([
        Reply::StatusWith(302, "location", "https://elsewhere.example.com/".into()),
        Reply::StatusWith(301, "location", "https://elsewhere.example.com/".into()),
    ]);
    let report = deliverer(&fake)
        .policy(exact(&[0, 5]))
        .deliver(&endpoint("https://hooks.example.com/in"), &message())
        .await;
    assert_eq!(report.outcome(), DeliveryOutcome::GaveUp);
    assert_eq!(statuses(&report), [Some(302), Some(301)]);
    let seen = fake.requests();
    assert!(seen.iter().all(|s| s.uri == "https://hooks.example.com/in"));
}

#[tokio::test(start_paused = true)]
async fn gone_disables_the_endpoint_and_stops() {
    let fake = Fake::new([Reply::Status(500), Reply::Status(410)]);
    let endpoint = endpoint("https://hooks.example.com/in");
    let clone = endpoint.clone();
    let report = deliverer(&fake).deliver(&endpoint, &message()).await;
    assert_eq!(report.outcome(), DeliveryOutcome::Gone);
    assert_eq!(statuses(&report), [Some(500), Some(410)]);
    assert!(!clone.is_enabled(), "clones share the state");

    // Later deliveries are refused at once.
    let report = deliverer(&fake).deliver(&clone, &message()).await;
    assert_eq!(report.outcome(), DeliveryOutcome::EndpointDisabled);
    assert!(report.attempts().is_empty());
    assert_eq!(fake.count(), 2);

    // The host re-enables it.
    endpoint.enable();
    fake.push(Reply::Status(200));
    let report = deliverer(&fake).deliver(&clone, &message()).await;
    assert_eq!(report.outcome(), DeliveryOutcome::Delivered);
    assert_eq!(fake.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn disabling_stops_a_delivery_waiting_to_retry() {
    let fake = Fake::default();
    let endpoint = endpoint("https://hooks.example.com/in");
    let delivery = tokio::spawn({
        let (deliverer, endpoint) = (deliverer(&fake), endpoint.clone());
        async move { deliverer.deliver(&endpoint, &message()).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.count(), 1);
    endpoint.disable();
    let report = delivery.await.unwrap();
    assert_eq!(report.outcome(), DeliveryOutcome::EndpointDisabled);
    assert_eq!(report.attempts().len(), 1);
    assert_eq!(fake.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_pushes_the_next_attempt() {
    let date = START + Duration::from_secs(120 + 300);
    let date = date
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap();
    let fake = Fake::new([
        Reply::StatusWith(503, "retry-after", "120".into()),
        Reply::StatusWith(429, "retry-after", date),
        // Shorter than the schedule: the schedule wins.
        Reply::StatusWith(500, "retry-after", "1".into()),
        // Not a valid value: ignored.
        Reply::StatusWith(500, "retry-after", "soon".into()),
        Reply::Status(200),
    ]);
    let report = deliverer(&fake)
        .policy(exact(&[0, 5, 5, 10, 10]))
        .deliver(&endpoint("https://hooks.example.com/in"), &message())
        .await;
    assert_eq!(report.outcome(), DeliveryOutcome::Delivered);
    assert_eq!(
        fake.gaps(),
        [120, 300, 10, 10].map(Duration::from_secs),
        "Retry-After in seconds, then as a date"
    );
    let asked: Vec<_> = report.attempts().iter().map(|a| a.retry_after()).collect();
    assert_eq!(
        asked,
        [Some(120), Some(300), Some(1), None, None].map(|s| s.map(Duration::from_secs))
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_bounded() {
    let fake = Fake::new([Reply::StatusWith(503, "retry-after", "999999999".into())]);
    let bounded = DeliveryPolicy::builder()
        .schedule([Duration::ZERO, Duration::from_secs(5)])
        .max_retry_after(Duration::from_secs(60))
        .build()
        .unwrap();
    let report = deliverer(&fake)
        .policy(bounded)
        .deliver(&endpoint("https://hooks.example.com/in"), &message())
        .await;
    assert_eq!(report.outcome(), DeliveryOutcome::GaveUp);
    assert_eq!(fake.gaps(), [Duration::from_secs(60)]);

    // The default bound is 24 hours.
    let fake = Fake::new([Reply::StatusWith(503, "retry-after", "999999999".into())]);
    let _ = deliverer(&fake)
        .policy(exact(&[0, 5]))
        .deliver(&endpoint("https://hooks.example.com/in"), &message())
        .await;
    assert_eq!(fake.gaps(), [Duration::from_secs(24 * 3600)]);
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_transport_errors_are_retried() {
    let fake = Fake::new([Reply::Hang, Reply::Fail, Reply::Status(200)]);
    let report = deliverer(&fake)
        .policy(exact(&[0, 5, 5]))
        .deliver(&endpoint("https://hooks.example.com/in"), &message())
        .await;
    assert_eq!(report.outcome(), DeliveryOutcome::Delivered);
    // 15 s of waiting for an answer, then the 5 s delay.
    assert_eq!(fake.gaps(), [20, 5].map(Duration::from_secs));
    let attempts = report.attempts();
    assert!(matches!(
        attempts[0].error(),
        Some(AttemptError::TimedOut(t)) if *t == Duration::from_secs(15)
    ));
    assert_eq!(attempts[0].status(), None);
    let Some(AttemptError::Transport(err)) = attempts[1].error() else {
        panic!("{:?}", attempts[1]);
    };
    assert!(err.to_string().contains("connection reset"));

    // A longer timeout, within the specification's 15 to 30 s.
    let fake = Fake::new([Reply::Hang, Reply::Status(200)]);
    let policy = DeliveryPolicy::builder()
        .schedule([Duration::ZERO, Duration::from_secs(5)])
        .jitter_percent(0)
        .attempt_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let report = deliverer(&fake)
        .policy(policy)
        .deliver(&endpoint("https://hooks.example.com/in"), &message())
        .await;
    assert!(report.is_delivered());
    assert_eq!(fake.gaps(), [Duration::from_secs(35)]);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_is_signed_again_with_the_same_id() {
    let fake = Fake::new([Reply::Status(500), Reply::Status(500), Reply::Status(200)]);
    let message = message();
    let report = deliverer(&fake)
        .deliver(&endpoint("https://hooks.example.com/in"), &message)
        .await;
    assert!(report.is_delivered());
    let seen = fake.requests();
    assert_eq!(seen.len(), 3);
    let clock = ManualClock::new(START);
    let verifier = Verifier::standard([secret()])
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut stamps = Vec::new();
    for (seen, attempt) in seen.iter().zip(report.attempts()) {
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.uri, "https://hooks.example.com/in");
        assert_eq!(seen.headers["content-type"], "application/json");
        assert_eq!(seen.headers["webhook-id"], "msg_1");
        assert_eq!(seen.body, message.payload());
        let stamp: i64 = seen.headers["webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(stamp, attempt.at().unix_timestamp());
        stamps.push(stamp);
        // Valid at its own time, and only near it.
        clock.set(attempt.at());
        let verified = verifier.verify(&seen.headers, &seen.body).await.unwrap();
        assert_eq!(verified.id(), Some("msg_1"));
    }
    assert!(stamps.windows(2).all(|w| w[1] > w[0]), "{stamps:?}");
    // An old attempt's signature does not pass once its time is past.
    clock.set(START + Duration::from_secs(3600));
    assert!(verifier
        .verify(&seen[0].headers, &seen[0].body)
        .await
        .is_err());
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"type": "key.revoked", "timestamp": "2026-11-27T12:00:00Z",
                           "data": {"key_id": "key_1"}})
    );
}

// ---- Real round trips: an axum receiver on 127.0.0.1 ----

/// What the receiver got.
#[derive(Clone, Default)]
struct Received {
    replies: Arc<Mutex<VecDeque<StatusCode>>>,
    got: Arc<Mutex<Vec<(String, Bytes)>>>,
    tx: Option<tokio::sync::mpsc::UnboundedSender<(String, Bytes)>>,
}

async fn receive(
    State(state): State<Received>,
    Extension(hook): Extension<VerifiedWebhook>,
    body: Bytes,
) -> StatusCode {
    let id = hook.id().unwrap_or_default().to_owned();
    state.got.lock().unwrap().push((id.clone(), body.clone()));
    if let Some(tx) = &state.tx {
        let _ = tx.send((id, body));
    }
    state
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(StatusCode::OK)
}

/// A receiver verifying signatures with `secret()`; `/redirect` answers
/// 307 to `/in`. Returns its base URL.
async fn serve(state: Received) -> String {
    let verifier = Verifier::standard([secret()]).build().unwrap();
    let app = Router::new()
        .route("/in", post(receive))
        .route(
            "/redirect",
            post(|| async { (StatusCode::TEMPORARY_REDIRECT, [("location", "/in")]) }),
        )
        .layer(VerifyWebhookLayer::new(verifier))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn quick() -> DeliveryPolicy {
    DeliveryPolicy::builder()
        .schedule([Duration::ZERO, Duration::from_millis(20)])
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_real_receiver_gets_the_retry_after_a_500() {
    let state = Received::default();
    state
        .replies
        .lock()
        .unwrap()
        .push_back(StatusCode::INTERNAL_SERVER_ERROR);
    let base = serve(state.clone()).await;
    let message = message();
    let report = Deliverer::http()
        .unwrap()
        .policy(quick())
        .deliver(&endpoint(&format!("{base}/in")), &message)
        .await;
    assert_eq!(report.outcome(), DeliveryOutcome::Delivered);
    assert_eq!(statuses(&report), [Some(500), Some(200)]);
    let got = state.got.lock().unwrap();
    assert_eq!(got.len(), 2, "both attempts passed the signature check");
    assert!(got
        .iter()
        .all(|(id, body)| id == "msg_1" && body == message.payload()));
}

#[tokio::test]
async fn a_real_receiver_that_is_gone_disables_the_endpoint() {
    let state = Received::default();
    state.replies.lock().unwrap().push_back(StatusCode::GONE);
    let base = serve(state.clone()).await;
    let endpoint = endpoint(&format!("{base}/in"));
    let deliverer = Deliverer::http().unwrap().policy(quick());
    let report = deliverer.deliver(&endpoint, &message()).await;
    assert_eq!(report.outcome(), DeliveryOutcome::Gone);
    assert_eq!(statuses(&report), [Some(410)]);
    assert!(!endpoint.is_enabled());
    let report = deliverer.deliver(&endpoint, &message()).await;
    assert_eq!(report.outcome(), DeliveryOutcome::EndpointDisabled);
    assert_eq!(state.got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_http_transport_never_follows_redirects() {
    let state = Received::default();
    let base = serve(state.clone()).await;
    let report = Deliverer::http()
        .unwrap()
        .policy(quick())
        .deliver(&endpoint(&format!("{base}/redirect")), &message())
        .await;
    assert_eq!(report.outcome(), DeliveryOutcome::GaveUp);
    assert_eq!(statuses(&report), [Some(307), Some(307)]);
    assert!(state.got.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_receiver_is_a_transport_error() {
    // Bound, then closed: nothing listens there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let report = Deliverer::http()
        .unwrap()
        .policy(quick())
        .deliver(&endpoint(&format!("http://{addr}/in")), &message())
        .await;
    assert_eq!(report.outcome(), DeliveryOutcome::GaveUp);
    assert!(report
        .attempts()
        .iter()
        .all(|a| matches!(a.error(), Some(AttemptError::Transport(_)))));
}

// ---- The keyring's events as webhooks ----

fn keyring(sink: WebhookSink) -> Keyring {
    Keyring::builder()
        .store(MemoryStore::new())
        .kind(KeyKind::new("pk", ScopeCatalog::builder().build().unwrap()).unwrap())
        .events(sink)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_revoked_key_reaches_the_receiver_signed() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let state = Received {
        tx: Some(tx),
        ..Received::default()
    };
    let base = serve(state.clone()).await;
    let sink = WebhookSink::builder(
        Deliverer::http().unwrap().policy(quick()),
        vec![endpoint(&format!("{base}/in"))],
    )
    .only_events(["key.revoked"])
    .spawn()
    .unwrap();
    let keyring = keyring(sink);
    let issued = keyring
        .issue(NewKey::new("pk", "tenant_1", "Backend"))
        .await
        .unwrap();
    let id = issued.info.id().clone();
    keyring.revoke(&id).await.unwrap();

    let (message_id, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(message_id.starts_with("msg_"));
    let body_text = std::str::from_utf8(&body).unwrap();
    assert!(!body_text.contains(issued.token.expose_secret()));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["type"], "key.revoked");
    assert_eq!(body["data"]["key_id"], id.as_str());
    assert_eq!(body["data"]["tenant"], "tenant_1");
    assert_eq!(body["data"]["kind"], "pk");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    // `key.issued` was filtered out: only the revocation came.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state.got.lock().unwrap().len(), 1);
}

fn event() -> LifecycleEvent {
    LifecycleEvent::new(
        EventKind::Issued,
        KeyId::parse("key_1").unwrap(),
        TenantId::parse("org_1").unwrap(),
        "pk",
        START,
    )
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_is_an_error_never_a_silent_drop() {
    let fake = Fake::new([Reply::Hang]);
    let one = endpoint("https://hooks.example.com/a");
    let sink = WebhookSink::builder(deliverer(&fake), vec![one.clone()])
        .queue_capacity(1)
        .max_in_flight(1)
        .spawn()
        .unwrap();
    // The worker has not run yet: the first event fills the queue.
    sink.deliver(&event()).await.unwrap();
    assert!(sink.deliver(&event()).await.is_err());
    // Two endpoints need two slots: all or none.
    let two = WebhookSink::builder(deliverer(&fake), vec![one.clone(), one])
        .queue_capacity(1)
        .spawn()
        .unwrap();
    assert!(two.deliver(&event()).await.is_err());
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        fake.count(),
        1,
        "only the first sink's one delivery went out"
    );
}

#[tokio::test(start_paused = true)]
async fn the_sink_routes_filters_and_delivers_in_the_background() {
    let fake = Fake::new([Reply::Status(200)]);
    let sink = WebhookSink::builder(
        deliverer(&fake),
        vec![endpoint("https://hooks.example.com/a")],
    )
    .only_events(["key.issued"])
    .spawn()
    .unwrap();
    let revoked = LifecycleEvent::new(
        EventKind::Revoked { reason: None },
        KeyId::parse("key_1").unwrap(),
        TenantId::parse("org_1").unwrap(),
        "pk",
        START,
    );
    sink.deliver(&revoked).await.unwrap();
    sink.deliver(&event()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["type"], "key.issued");
    assert_eq!(body["timestamp"], "2026-11-27T12:00:00Z");
    assert_eq!(body["data"]["tenant"], "org_1");

    // No endpoint: nothing to do.
    let none = WebhookSink::builder(deliverer(&fake), Vec::new())
        .spawn()
        .unwrap();
    none.deliver(&event()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.count(), 1);
}

#[test]
fn a_sink_needs_a_runtime_and_room() {
    let fake = Fake::default();
    assert!(
        WebhookSink::builder(Deliverer::new(fake.clone()), Vec::new())
            .spawn()
            .is_err()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    assert!(
        WebhookSink::builder(Deliverer::new(fake.clone()), Vec::new())
            .queue_capacity(0)
            .spawn()
            .is_err()
    );
    assert!(
        WebhookSink::builder(Deliverer::new(fake.clone()), Vec::new())
            .max_in_flight(0)
            .spawn()
            .is_err()
    );
    assert!(WebhookSink::builder(Deliverer::new(fake), Vec::new())
        .spawn()
        .is_ok());
}

/// A log buffer for `tracing_subscriber::fmt`.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn final_outcomes_are_logged_without_secrets() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let url = "https://hooks.example.com/p/secret-path?token=abc";
    let fake = Fake::new([Reply::Status(204), Reply::Status(410)]);
    let sink = WebhookSink::builder(deliverer(&fake).policy(exact(&[0])), vec![endpoint(url)])
        .spawn()
        .unwrap();
    for expected in [
        "webhook delivered",
        "webhook endpoint answered 410 Gone: disabled",
        "webhook not delivered: endpoint disabled",
    ] {
        sink.deliver(&event()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            logs.text().contains(expected),
            "{expected}: {}",
            logs.text()
        );
    }
    let failing = Fake::new([Reply::Fail]);
    let sink = WebhookSink::builder(deliverer(&failing).policy(exact(&[0])), vec![endpoint(url)])
        .spawn()
        .unwrap();
    sink.deliver(&event()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let text = logs.text();
    assert!(text.contains("webhook delivery gave up"), "{text}");
    assert!(text.contains("connection reset"), "{text}");
    assert!(text.contains("status=204"), "{text}");
    assert!(text.contains("status=410"), "{text}");
    assert!(text.contains("attempts=1"), "{text}");
    assert!(text.contains("key.issued"), "{text}");
    assert!(text.contains("https://hooks.example.com"), "{text}");
    assert!(text.contains("msg_"), "{text}");
    assert!(text.contains("keyward::webhooks"), "{text}");
    assert!(
        !text.contains("secret-path") && !text.contains("token=abc"),
        "{text}"
    );
    assert!(!text.contains("whsec_") && !text.contains("v1,"), "{text}");
}

#[test]
fn names_accessors_and_redacted_debug() {
    assert_eq!(
        [
            DeliveryOutcome::Delivered,
            DeliveryOutcome::Gone,
            DeliveryOutcome::EndpointDisabled,
            DeliveryOutcome::GaveUp
        ]
        .map(DeliveryOutcome::name),
        ["delivered", "gone", "endpoint_disabled", "gave_up"]
    );
    let policy = exact(&[0, 3]);
    let deliverer = Deliverer::new(Fake::default()).policy(policy.clone());
    assert_eq!(deliverer.get_policy(), &policy);
    assert_eq!(
        Deliverer::new(Fake::default()).get_policy(),
        &DeliveryPolicy::default()
    );
    let debug = format!("{deliverer:?}");
    assert!(
        debug.starts_with("Deliverer {") && debug.contains("schedule"),
        "{debug}"
    );

    let endpoint = endpoint("https://hooks.example.com/p/secret-path?token=abc");
    let debug = format!("{endpoint:?}");
    assert!(
        debug.contains("https://hooks.example.com") && debug.contains("enabled: true"),
        "{debug}"
    );
    assert!(
        !debug.contains("secret-path") && !debug.contains("whsec_"),
        "{debug}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let builder = WebhookSink::builder(deliverer.clone(), vec![endpoint.clone()])
        .only_events(["key.revoked"])
        .queue_capacity(7);
    let debug = format!("{builder:?}");
    assert!(
        debug.starts_with("WebhookSinkBuilder {") && debug.contains("queue_capacity: 7"),
        "{debug}"
    );
    assert!(
        debug.contains("key.revoked") && !debug.contains("secret-path"),
        "{debug}"
    );
    let debug = format!("{:?}", builder.spawn().unwrap());
    assert!(
        debug.starts_with("WebhookSink {") && debug.contains("queue_capacity: 7"),
        "{debug}"
    );
    assert!(debug.contains("key.revoked"), "{debug}");
}

#[test]
fn transport_errors_keep_their_cause() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connect failed")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let err = TransportError::new(Outer(std::io::Error::other("refused")));
    assert_eq!(err.to_string(), "webhook request failed: connect failed");
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(
        source.to_string(),
        "refused",
        "the cause below the message, once"
    );
    let attempt = AttemptError::Transport(err);
    assert_eq!(
        std::error::Error::source(&attempt).unwrap().to_string(),
        "webhook request failed: connect failed"
    );
}
