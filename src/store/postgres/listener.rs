//! Cross-process revocation: a task that `LISTEN`s for the schema's
//! `keyward_revoked` notifications and invalidates a cache.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, NoTls, Socket};

use crate::key::KeyId;
use crate::store::CacheInvalidator;

/// The channel the schema's trigger notifies, with the key id as payload.
const CHANNEL: &str = "keyward_revoked";

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often an idle listening connection is checked.
const PING_EVERY: Duration = Duration::from_secs(10);

/// Keeps a [`CachedStore`](crate::store::CachedStore) in step with revocations
/// made by other processes: a task on a dedicated connection that
/// `LISTEN`s on [`RevocationListener::CHANNEL`] and invalidates each revoked
/// key id, typically within milliseconds of the revoking commit. Changes of
/// a key's usage controls (allowlist, budget, rate limit, whether it has
/// credits) are notified on the same channel.
///
/// When the connection drops (or stops answering a periodic ping),
/// notifications may have been lost, so it clears the whole cache, reconnects
/// with exponential backoff (100 ms up to 5 s), and clears the cache again
/// once it listens. The cache's TTL bounds the lag should notifications be
/// lost without the connection noticing.
///
/// # What a notification can do
///
/// Any database role that may connect can `NOTIFY keyward_revoked`, not only
/// the schema's trigger, so a notification is a hint, never a command: its
/// payload is parsed as a [`KeyId`], and a valid id drops that one key from
/// the cache, which then reads it from the database again (and so sees
/// exactly what the database holds: a notification can never grant access,
/// nor revoke a key the database does not show revoked). A payload that is
/// not a key id (empty, too long, other characters) is ignored: counted in
/// [`ignored_notifications`](Self::ignored_notifications) and logged once per
/// listener (a warning with the payload's length and the sender's process
/// id, never the payload). No notification clears the cache; only a lost
/// connection does. A flood of valid ids costs database reads of those
/// keys; it holds back other keys' cache fills only while more than 64
/// arrive during a single lookup.
///
/// Dropping the listener stops the task.
#[derive(Debug)]
pub struct RevocationListener {
    task: JoinHandle<()>,
    listening: Arc<AtomicBool>,
    ignored: Arc<AtomicU64>,
}

impl RevocationListener {
    /// The notification channel.
    pub const CHANNEL: &'static str = CHANNEL;

    /// Spawns the listener on the current tokio runtime, connecting without
    /// TLS with `config`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    #[must_use]
    pub fn spawn(config: tokio_postgres::Config, cache: CacheInvalidator) -> Self {
        Self::spawn_with_tls(config, NoTls, cache)
    }

    /// Like [`spawn`](Self::spawn), connecting with a TLS connector (e.g.
    /// `postgres-native-tls` or `tokio-postgres-rustls`).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn_with_tls<T>(
        config: tokio_postgres::Config,
        tls: T,
        cache: CacheInvalidator,
    ) -> Self
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let listening = Arc::new(AtomicBool::new(false));
        let ignored = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(
            config,
            tls,
            cache,
            Arc::clone(&listening),
            Arc::clone(&ignored),
        ));
        RevocationListener {
            task,
            listening,
            ignored,
        }
    }

    /// Whether it is connected and listening now.
    #[must_use]
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// How many notifications it ignored because their payload was not a key
    /// id (see [What a notification can do](Self#what-a-notification-can-do)).
    #[must_use]
    pub fn ignored_notifications(&self) -> u64 {
        self.ignored.load(Ordering::Relaxed)
    }
}

impl Drop for RevocationListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run<T>(
    config: tokio_postgres::Config,
    tls: T,
    cache: CacheInvalidator,
    listening: Arc<AtomicBool>,
    ignored: Arc<AtomicU64>,
) where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        let result = session(&config, tls.clone(), &cache, &listening, &ignored).await;
        let was_listening = listening.swap(false, Ordering::SeqCst);
        // Whatever happened, notifications may have been missed.
        cache.clear();
        if was_listening {
            backoff = FIRST_BACKOFF;
        }
        match result {
            Ok(()) => {
                tracing::warn!(target: "keyward::postgres", "revocation listener connection closed; cache cleared, reconnecting")
            }
            Err(err) => {
                tracing::warn!(target: "keyward::postgres", error = %err, "revocation listener connection failed; cache cleared, reconnecting")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: returns when it ends.
async fn session<T>(
    config: &tokio_postgres::Config,
    tls: T,
    cache: &CacheInvalidator,
    listening: &AtomicBool,
    ignored: &AtomicU64,
) -> Result<(), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + Send + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let timeout = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(5));
    let (client, mut connection) = match tokio::time::timeout(timeout, config.connect(tls)).await {
        Ok(connected) => connected?,
        Err(_) => return Ok(()),
    };
    // Drives the connection (replies to `client` too) and applies notifications.
    let mut driver = pin!(async move {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => match KeyId::parse(n.payload()) {
                    Some(id) => cache.invalidate(&id),
                    None => ignore(&n, ignored),
                },
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err),
                None => return Ok(()),
            }
        }
    });
    let listen = format!("LISTEN {CHANNEL}");
    tokio::select! {
        listened = client.batch_execute(&listen) => listened?,
        ended = &mut driver => return ended,
    }
    // Revocations made before LISTEN took effect were not notified to us.
    cache.clear();
    listening.store(true, Ordering::SeqCst);
    loop {
        let ping = async {
            tokio::time::sleep(PING_EVERY).await;
            tokio::time::timeout(timeout, client.simple_query("")).await
        };
        tokio::select! {
            ended = &mut driver => return ended,
            answered = ping => match answered {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err(err),
                Err(_) => return Ok(()),
            },
        }
    }
}

/// A notification whose payload is not a key id: anyone who may connect can
/// send one, so it changes nothing. Logged the first time only (a sender
/// could flood the log otherwise), without the payload.
fn ignore(notification: &tokio_postgres::Notification, ignored: &AtomicU64) {
    if ignored.fetch_add(1, Ordering::Relaxed) == 0 {
        tracing::warn!(
            target: "keyward::postgres",
            payload_bytes = notification.payload().len(),
            sender_pid = notification.process_id(),
            "ignored a keyward_revoked notification whose payload is not a key id; further ones are only counted"
        );
    }
}
