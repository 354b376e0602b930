//! Key events as signed webhooks, sent and received by the same server.
//!
//! The keyring's event sink is a [`WebhookSink`]: each lifecycle event
//! (`key.issued`, `key.revoked`, `key.rotated`, …) becomes a Standard
//! Webhooks message signed with this server's `whsec_` secret and delivered,
//! with the specification's retries, to [`RECEIVER_PATH`] on this server.
//! That route is a receiver as a customer would write one:
//! `VerifyWebhookLayer` checks the signature, the timestamp (5 minutes) and
//! that the message id is new, then the handler keeps the event. The last
//! [`INBOX_LEN`] events are listed at `GET /api/webhooks/received`, those of
//! the caller's tenant only (for keys holding `keys:manage`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::handler::Handler as _;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use keyward::webhooks::{
    Deliverer, Endpoint, MemoryReplayGuard, Signer, VerifiedWebhook, Verifier, VerifyWebhookLayer,
    WebhookSecret, WebhookSink,
};
use serde_json::Value;

/// Where the server receives its own key events.
pub(crate) const RECEIVER_PATH: &str = "/webhooks/keyward";
/// How many received events are kept.
pub(crate) const INBOX_LEN: usize = 50;

/// The signing secret, shared by the sender and the receiver (a real
/// customer would be shown it once), and the receiver's inbox.
#[derive(Clone)]
pub(crate) struct Webhooks {
    secret: WebhookSecret,
    inbox: Arc<Mutex<VecDeque<Value>>>,
}

impl Webhooks {
    /// A fresh secret and an empty inbox.
    pub(crate) fn new() -> Self {
        Webhooks {
            secret: WebhookSecret::generate(),
            inbox: Arc::default(),
        }
    }

    /// The keyring's event sink, delivering to this server's receiver at
    /// `addr`. Spawns its worker on the current tokio runtime.
    pub(crate) fn sink(&self, addr: SocketAddr) -> WebhookSink {
        let url = format!("http://{addr}{RECEIVER_PATH}");
        let endpoint =
            Endpoint::new(&url, Signer::new(self.secret.clone())).expect("a loopback endpoint");
        let deliverer = Deliverer::http().expect("an HTTP client");
        WebhookSink::builder(deliverer, vec![endpoint])
            .spawn()
            .expect("inside the tokio runtime")
    }

    /// `POST /webhooks/keyward`: verified, then kept.
    pub(crate) fn receiver<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let verifier = Verifier::standard([self.secret.clone()])
            .replay_guard(MemoryReplayGuard::new())
            .build()
            .expect("a valid verifier");
        let inbox = self.inbox.clone();
        let receive = move |Extension(hook): Extension<VerifiedWebhook>, body: Bytes| async move {
            let Ok(mut event) = serde_json::from_slice::<Value>(&body) else {
                return StatusCode::BAD_REQUEST;
            };
            if let Some(object) = event.as_object_mut() {
                object.insert("webhook_id".into(), hook.id().into());
            }
            let mut inbox = inbox.lock().unwrap_or_else(PoisonError::into_inner);
            if inbox.len() == INBOX_LEN {
                inbox.pop_front();
            }
            inbox.push_back(event);
            StatusCode::NO_CONTENT
        };
        // On the handler: only POST to this route is verified (the router's
        // 404 and 405 answers stay as they are); the server's 16 KiB body
        // limit holds here too (the layer reads the body itself).
        let layer = VerifyWebhookLayer::new(verifier).body_limit(super::MAX_BODY);
        Router::new().route(RECEIVER_PATH, post(receive.layer(layer)))
    }

    /// The events received about keys of `tenant`, oldest first.
    pub(crate) fn received(&self, tenant: &str) -> Vec<Value> {
        let inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        inbox
            .iter()
            .filter(|event| event["data"]["tenant"] == tenant)
            .cloned()
            .collect()
    }
}
