//! A lifecycle sink that keeps what it is given, for tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::lifecycle::{LifecycleEvent, LifecycleSink, SinkError};

/// A [`LifecycleSink`] that records every event it takes, and can be told to
/// refuse the next ones (to test that nothing is lost). Clones share the
/// record.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward::testing::RecordingSink;
/// use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog};
///
/// let sink = RecordingSink::new();
/// let keyring = Keyring::builder()
///     .store(MemoryStore::new())
///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
///     .events(sink.clone())
///     .build()?;
/// keyring.issue(NewKey::new("pk", "t", "CI")).await?;
/// assert_eq!(sink.names(), ["issued"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct RecordingSink {
    events: Arc<Mutex<Vec<LifecycleEvent>>>,
    refuse: Arc<AtomicUsize>,
}

impl RecordingSink {
    /// An empty sink that takes everything.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event taken so far, in order.
    #[must_use]
    pub fn events(&self) -> Vec<LifecycleEvent> {
        self.lock().clone()
    }

    /// The names of the events taken so far ([`EventKind::name`](crate::EventKind::name)).
    #[must_use]
    pub fn names(&self) -> Vec<&'static str> {
        self.lock().iter().map(|e| e.kind.name()).collect()
    }

    /// Empties the record; returns what it held.
    #[must_use]
    pub fn take(&self) -> Vec<LifecycleEvent> {
        std::mem::take(&mut *self.lock())
    }

    /// Empties the record.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Refuses the next `n` events (they are not recorded).
    pub fn refuse_next(&self, n: usize) {
        self.refuse.store(n, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LifecycleEvent>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl LifecycleSink for RecordingSink {
    async fn deliver(&self, event: &LifecycleEvent) -> Result<(), SinkError> {
        let refused = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(SinkError::new("refused by RecordingSink::refuse_next"));
        }
        self.lock().push(event.clone());
        Ok(())
    }
}
