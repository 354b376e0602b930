//! Coalesced last-used tracking: uses are kept in memory and written in one
//! batch per interval, so a busy key costs one store write per interval, not
//! one per request.

// Seeded foldhash: only verified key ids are recorded, and this runs on every
// verification.
use hashbrown::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use time::{Duration, OffsetDateTime};

use crate::key::KeyId;

/// Pending uses and the flush schedule.
#[derive(Debug)]
pub(crate) struct LastUsedTracker {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<KeyId, OffsetDateTime>,
    /// When the next batch is due; `None` while nothing is pending.
    due: Option<OffsetDateTime>,
    /// A batch is being written: nobody else starts one.
    flushing: bool,
}

impl State {
    fn merge(&mut self, id: KeyId, at: OffsetDateTime) {
        self.pending
            .entry(id)
            .and_modify(|t| *t = (*t).max(at))
            .or_insert(at);
    }
}

/// A batch taken for writing. Dropping it without [`Batch::written`] (the
/// write failed, or the future writing it was cancelled or never ran) puts
/// its uses back so the next flush retries them. It owns its tracker handle,
/// so a background task can carry it.
#[derive(Debug)]
pub(crate) struct Batch {
    tracker: Arc<LastUsedTracker>,
    uses: Vec<(KeyId, OffsetDateTime)>,
    done: bool,
}

impl Batch {
    pub(crate) fn uses(&self) -> &[(KeyId, OffsetDateTime)] {
        &self.uses
    }

    pub(crate) fn written(mut self) {
        self.done = true;
        self.tracker.lock().flushing = false;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.tracker.lock();
        state.flushing = false;
        for (id, at) in self.uses.drain(..) {
            state.merge(id, at);
        }
    }
}

impl LastUsedTracker {
    pub(crate) fn new(interval: Duration) -> Self {
        LastUsedTracker {
            interval,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a use; returns a batch when one is due and nobody is writing.
    pub(crate) fn record(self: &Arc<Self>, id: &KeyId, now: OffsetDateTime) -> Option<Batch> {
        let mut state = self.lock();
        match state.pending.get_mut(id) {
            Some(at) => *at = (*at).max(now),
            None => {
                state.pending.insert(id.clone(), now);
            }
        }
        // `_with`: the sum is only worked out when nothing is pending yet.
        let due = *state
            .due
            .get_or_insert_with(|| now.saturating_add(self.interval));
        (now >= due && !state.flushing).then(|| self.take(&mut state, now))
    }

    /// Takes every pending use now (shutdown, or an explicit flush), even
    /// while another batch is out: writes are "later wins", so two batches in
    /// flight cannot undo each other, and a shutdown flush must not skip the
    /// uses recorded since the last batch was taken.
    pub(crate) fn take_all(self: &Arc<Self>, now: OffsetDateTime) -> Option<Batch> {
        let mut state = self.lock();
        (!state.pending.is_empty()).then(|| self.take(&mut state, now))
    }

    fn take(self: &Arc<Self>, state: &mut State, now: OffsetDateTime) -> Batch {
        state.flushing = true;
        // The next batch is due one interval after this one, whatever comes.
        state.due = Some(now.saturating_add(self.interval));
        Batch {
            tracker: Arc::clone(self),
            uses: state.pending.drain().collect(),
            done: false,
        }
    }

    /// The latest use of `id` waiting to be written, if any.
    pub(crate) fn pending_use(&self, id: &KeyId) -> Option<OffsetDateTime> {
        self.lock().pending.get(id).copied()
    }

    /// Uses waiting to be written.
    pub(crate) fn pending(&self) -> usize {
        self.lock().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::seconds(s)
    }

    #[test]
    fn one_batch_per_interval() {
        let tracker = Arc::new(LastUsedTracker::new(Duration::seconds(60)));
        let id = KeyId::generate();
        assert!(tracker.record(&id, t(0)).is_none());
        assert!(tracker.record(&id, t(59)).is_none());
        let batch = tracker.record(&id, t(60)).expect("due");
        assert_eq!(batch.uses(), &[(id.clone(), t(60))]);
        // While a batch is out nobody takes another.
        assert!(tracker.record(&id, t(200)).is_none());
        batch.written();
        assert_eq!(tracker.pending(), 1);
    }

    #[test]
    fn a_failed_batch_is_put_back() {
        let tracker = Arc::new(LastUsedTracker::new(Duration::seconds(60)));
        let id = KeyId::generate();
        tracker.record(&id, t(0));
        let batch = tracker.take_all(t(1)).unwrap();
        drop(batch);
        assert_eq!(tracker.pending(), 1);
        let batch = tracker.take_all(t(2)).unwrap();
        assert_eq!(batch.uses()[0].1, t(0));
    }
}
