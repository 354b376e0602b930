//! Coalesced last-used tracking: uses are kept in memory and written in one
//! batch per interval, so a busy key costs one store write per interval, not
//! one per request.
//!
//! Two ways a batch gets written:
//! - **on the request path** (no timer): the `record` that finds a batch due
//!   takes it, and the keyring writes it inline or hands it to the spawner;
//! - **by a timer** (`KeyringBuilder::last_used_timer`): the first use after
//!   a quiet spell arms one timer task, which writes a batch each interval
//!   while uses keep coming and ends when a wake-up finds nothing pending.
//!   Requests then never take a batch: they only note the use.
//!
//! A use stays visible to [`LastUsedTracker::unwritten_use`] from `record`
//! until its write is confirmed: first in `pending`, then in `in_flight`.

// Seeded foldhash: only verified key ids are recorded, and this runs on every
// verification.
use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use time::{Duration, OffsetDateTime};

use crate::clock::{at_or_before, span};
use crate::key::KeyId;
use crate::usage::{clean_user_agent, KeyUse, RECENT_IPS};

/// One key's uses since its last batch: the latest instant, the distinct
/// client IPs (newest first, bounded) and the latest user agent.
#[derive(Debug)]
struct Pending {
    at: OffsetDateTime,
    ips: Vec<IpAddr>,
    user_agent: Option<Arc<str>>,
}

impl Pending {
    fn new(at: OffsetDateTime) -> Self {
        Pending {
            at,
            ips: Vec::new(),
            user_agent: None,
        }
    }

    /// Notes a use at `at` from `ip` with `user_agent`. The order of the
    /// IPs and the agent kept are by arrival: the last use noted is the
    /// most recent (instants taken on several threads may arrive a little
    /// out of order; `at` keeps the latest).
    fn note(&mut self, at: OffsetDateTime, ip: Option<IpAddr>, user_agent: Option<&str>) {
        if !at_or_before(at, self.at) {
            self.at = at;
        }
        if let Some(ip) = ip {
            match self.ips.iter().position(|seen| *seen == ip) {
                // To the front (a no-op when it is there already).
                Some(i) => self.ips[..=i].rotate_right(1),
                None => {
                    self.ips.insert(0, ip);
                    self.ips.truncate(RECENT_IPS);
                }
            }
        }
        if let Some(raw) = user_agent {
            // A repeated agent (the common case) costs one comparison.
            if self.user_agent.as_deref() != Some(raw) {
                let clean = clean_user_agent(raw);
                if self.user_agent.as_deref() != Some(clean.as_str()) {
                    self.user_agent = Some(Arc::from(clean));
                }
            }
        }
    }

    /// Folds a batch's use that was not written (put back) into this one,
    /// which arrived after it: its IPs go after these, its agent only if
    /// none arrived since.
    fn absorb(&mut self, older: KeyUse) {
        if older.at > self.at {
            self.at = older.at;
        }
        for ip in older.ips {
            if self.ips.len() < RECENT_IPS && !self.ips.contains(&ip) {
                self.ips.push(ip);
            }
        }
        if self.user_agent.is_none() {
            self.user_agent = older.user_agent;
        }
    }

    fn into_use(self, id: KeyId) -> KeyUse {
        let mut key_use = KeyUse::new(id, self.at);
        key_use.ips = self.ips;
        key_use.user_agent = self.user_agent;
        key_use
    }
}

impl From<KeyUse> for Pending {
    fn from(key_use: KeyUse) -> Self {
        Pending {
            at: key_use.at,
            ips: key_use.ips,
            user_agent: key_use.user_agent,
        }
    }
}

/// Pending uses and the flush schedule.
#[derive(Debug)]
pub(crate) struct LastUsedTracker {
    interval: Duration,
    /// The same interval, for the timer's sleeps.
    period: std::time::Duration,
    /// Batches are written by a timer task, never taken by `record`.
    timed: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<KeyId, Pending>,
    /// Uses taken for writing and not yet confirmed written (the latest per
    /// key over every batch out); `get`/`list` still see them. An entry goes
    /// when a batch carrying that very instant is written or put back.
    in_flight: HashMap<KeyId, OffsetDateTime>,
    /// When the next batch is due; `None` while nothing is pending.
    due: Option<OffsetDateTime>,
    /// A batch is being written: nobody else starts one.
    flushing: bool,
    /// A timer task is alive: nobody arms another.
    timer: bool,
}

impl State {
    /// Puts a use of a batch that was not written back.
    fn merge(&mut self, key_use: KeyUse) {
        match self.pending.get_mut(&key_use.id) {
            Some(pending) => pending.absorb(key_use),
            None => {
                let id = key_use.id.clone();
                self.pending.insert(id, Pending::from(key_use));
            }
        }
    }

    /// A batch carrying `(id, at)` is done (written or put back).
    fn landed(&mut self, id: &KeyId, at: OffsetDateTime) {
        // A later instant belongs to another batch still out.
        if self.in_flight.get(id) == Some(&at) {
            self.in_flight.remove(id);
        }
    }
}

/// A batch taken for writing. Dropping it without [`Batch::written`] (the
/// write failed, or the future writing it was cancelled or never ran) puts
/// its uses back so the next flush retries them. It owns its tracker handle,
/// so a background task can carry it.
#[derive(Debug)]
pub(crate) struct Batch {
    tracker: Arc<LastUsedTracker>,
    uses: Vec<KeyUse>,
    done: bool,
}

impl Batch {
    pub(crate) fn uses(&self) -> &[KeyUse] {
        &self.uses
    }

    pub(crate) fn written(mut self) {
        self.done = true;
        let mut state = self.tracker.lock();
        state.flushing = false;
        for key_use in &self.uses {
            state.landed(&key_use.id, key_use.at);
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.tracker.lock();
        state.flushing = false;
        for key_use in self.uses.drain(..) {
            state.landed(&key_use.id, key_use.at);
            state.merge(key_use);
        }
    }
}

/// What a recorded use asks of the keyring.
#[derive(Debug)]
#[must_use]
pub(crate) enum Recorded {
    /// Nothing: the use waits for its batch.
    Noted,
    /// Write this batch (it was due).
    Write(Batch),
    /// Spawn the timer task (see [`TimerTask`]): its first batch is due
    /// after this span.
    Arm(std::time::Duration, TimerTask),
}

/// The timer task's hold on the "armed" flag. Dropping it while the task is
/// still armed (the host dropped the future, or its runtime shut down)
/// disarms, so the next use arms a new timer.
#[derive(Debug)]
pub(crate) struct TimerTask {
    tracker: Weak<LastUsedTracker>,
    armed: bool,
}

impl TimerTask {
    /// The timer woke: the batch to write now, or `None` (nothing pending,
    /// or the keyring is gone), and the task ends, disarmed.
    pub(crate) fn tick(&mut self, now: OffsetDateTime) -> Option<Batch> {
        let tracker = self.tracker.upgrade()?;
        let mut state = tracker.lock();
        if state.pending.is_empty() {
            state.timer = false;
            self.armed = false;
            return None;
        }
        Some(tracker.take(&mut state, now))
    }

    /// How long the task sleeps between batches.
    pub(crate) fn period(&self) -> Option<std::time::Duration> {
        self.tracker.upgrade().map(|t| t.period)
    }
}

impl Drop for TimerTask {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(tracker) = self.tracker.upgrade() {
            tracker.lock().timer = false;
        }
    }
}

impl LastUsedTracker {
    /// A tracker writing at most once per `interval`; `timed`: by a timer
    /// task rather than on the request path.
    pub(crate) fn new(interval: std::time::Duration, timed: bool) -> Self {
        LastUsedTracker {
            interval: span(interval),
            period: interval,
            timed,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a use (from `ip`, with `user_agent`, when known); returns a
    /// batch when one is due and nobody is writing, or (timed) a timer to
    /// arm when none is.
    pub(crate) fn record(
        self: &Arc<Self>,
        id: &KeyId,
        now: OffsetDateTime,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> Recorded {
        let mut state = self.lock();
        match state.pending.get_mut(id) {
            Some(pending) => pending.note(now, ip, user_agent),
            None => {
                let mut pending = Pending::new(now);
                pending.note(now, ip, user_agent);
                state.pending.insert(id.clone(), pending);
            }
        }
        // `_with`: the sum is only worked out when nothing is pending yet.
        let due = *state
            .due
            .get_or_insert_with(|| now.saturating_add(self.interval));
        if self.timed {
            if state.timer {
                return Recorded::Noted;
            }
            state.timer = true;
            // Negative (the last batch was more than an interval ago): now.
            let wait = std::time::Duration::try_from(due - now).unwrap_or_default();
            let task = TimerTask {
                tracker: Arc::downgrade(self),
                armed: true,
            };
            return Recorded::Arm(wait, task);
        }
        if now >= due && !state.flushing {
            Recorded::Write(self.take(&mut state, now))
        } else {
            Recorded::Noted
        }
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
        let uses: Vec<KeyUse> = state
            .pending
            .drain()
            .map(|(id, pending)| pending.into_use(id))
            .collect();
        // Ids are `Arc<str>`: the copies are counts, not strings.
        for key_use in &uses {
            let at = key_use.at;
            let latest = state.in_flight.entry(key_use.id.clone()).or_insert(at);
            *latest = (*latest).max(at);
        }
        Batch {
            tracker: Arc::clone(self),
            uses,
            done: false,
        }
    }

    /// The latest use of `id` not yet confirmed written (pending, or in a
    /// batch being written), if any.
    pub(crate) fn unwritten_use(&self, id: &KeyId) -> Option<OffsetDateTime> {
        let state = self.lock();
        match (state.pending.get(id).map(|p| p.at), state.in_flight.get(id)) {
            (Some(a), Some(b)) => Some(a.max(*b)),
            (a, b) => a.or(b.copied()),
        }
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

    fn tracker(timed: bool) -> Arc<LastUsedTracker> {
        Arc::new(LastUsedTracker::new(
            std::time::Duration::from_secs(60),
            timed,
        ))
    }

    impl LastUsedTracker {
        fn record0(self: &Arc<Self>, id: &KeyId, now: OffsetDateTime) -> Recorded {
            self.record(id, now, None, None)
        }
    }

    fn due(recorded: Recorded) -> Option<Batch> {
        match recorded {
            Recorded::Write(batch) => Some(batch),
            Recorded::Noted => None,
            Recorded::Arm(..) => panic!("an untimed tracker arms no timer"),
        }
    }

    #[test]
    fn one_batch_per_interval() {
        let tracker = tracker(false);
        let id = KeyId::generate();
        assert!(due(tracker.record0(&id, t(0))).is_none());
        assert!(due(tracker.record0(&id, t(59))).is_none());
        let batch = due(tracker.record0(&id, t(60))).expect("due");
        assert_eq!(batch.uses(), &[KeyUse::new(id.clone(), t(60))]);
        // While a batch is out nobody takes another.
        assert!(due(tracker.record0(&id, t(200))).is_none());
        batch.written();
        assert_eq!(tracker.pending(), 1);
    }

    #[test]
    fn a_failed_batch_is_put_back() {
        let tracker = tracker(false);
        let id = KeyId::generate();
        assert!(due(tracker.record0(&id, t(0))).is_none());
        let batch = tracker.take_all(t(1)).unwrap();
        drop(batch);
        assert_eq!(tracker.pending(), 1);
        let batch = tracker.take_all(t(2)).unwrap();
        assert_eq!(batch.uses()[0].at, t(0));
    }

    #[test]
    fn a_use_is_visible_until_its_write_is_confirmed() {
        let tracker = tracker(false);
        let id = KeyId::generate();
        assert_eq!(tracker.unwritten_use(&id), None);
        assert!(due(tracker.record0(&id, t(0))).is_none());
        assert_eq!(tracker.unwritten_use(&id), Some(t(0)), "pending");
        let first = tracker.take_all(t(1)).unwrap();
        assert_eq!(tracker.pending(), 0);
        assert_eq!(tracker.unwritten_use(&id), Some(t(0)), "in flight");
        // A later use, and a second batch out with it.
        assert!(due(tracker.record0(&id, t(5))).is_none());
        assert_eq!(tracker.unwritten_use(&id), Some(t(5)));
        let second = tracker.take_all(t(6)).unwrap();
        assert_eq!(tracker.unwritten_use(&id), Some(t(5)));
        // The older batch landing does not hide the newer one still out.
        first.written();
        assert_eq!(tracker.unwritten_use(&id), Some(t(5)));
        second.written();
        assert_eq!(
            tracker.unwritten_use(&id),
            None,
            "written: the store has it"
        );
    }

    #[test]
    fn a_batch_put_back_stays_visible() {
        let tracker = tracker(false);
        let id = KeyId::generate();
        assert!(due(tracker.record0(&id, t(0))).is_none());
        drop(tracker.take_all(t(1)).unwrap());
        assert_eq!(tracker.unwritten_use(&id), Some(t(0)));
        tracker.take_all(t(2)).unwrap().written();
        assert_eq!(tracker.unwritten_use(&id), None);
    }

    #[test]
    fn a_timed_tracker_arms_once_and_never_takes_on_record() {
        let tracker = tracker(true);
        let (a, b) = (KeyId::generate(), KeyId::generate());
        let Recorded::Arm(wait, mut task) = tracker.record0(&a, t(0)) else {
            panic!("the first use arms the timer");
        };
        assert_eq!(wait, std::time::Duration::from_secs(60));
        // Later uses, even past the due instant, only note.
        assert!(matches!(tracker.record0(&b, t(30)), Recorded::Noted));
        assert!(matches!(tracker.record0(&a, t(90)), Recorded::Noted));
        let batch = task.tick(t(90)).expect("pending uses");
        assert_eq!(batch.uses().len(), 2);
        batch.written();
        // Nothing pending at the next wake-up: the task ends, disarmed.
        assert!(task.tick(t(150)).is_none());
        drop(task);
        // A use after a quiet spell longer than the interval is due at once.
        let Recorded::Arm(wait, _task) = tracker.record0(&a, t(400)) else {
            panic!("re-armed");
        };
        assert_eq!(wait, std::time::Duration::ZERO);
    }

    #[test]
    fn a_dropped_timer_disarms() {
        let tracker = tracker(true);
        let id = KeyId::generate();
        let Recorded::Arm(_, task) = tracker.record0(&id, t(0)) else {
            panic!("armed");
        };
        assert!(matches!(tracker.record0(&id, t(1)), Recorded::Noted));
        drop(task);
        assert!(matches!(tracker.record0(&id, t(2)), Recorded::Arm(..)));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn client_ips_are_distinct_newest_first_and_bounded() {
        let tracker = tracker(false);
        let id = KeyId::generate();
        for (i, addr) in [
            "10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6",
        ]
        .iter()
        .enumerate()
        {
            assert!(due(tracker.record(&id, t(i as i64), Some(ip(addr)), Some("ua/1"))).is_none());
        }
        let batch = tracker.take_all(t(10)).unwrap();
        let u = &batch.uses()[0];
        assert_eq!(
            u.ips,
            [
                ip("10.0.0.6"),
                ip("10.0.0.5"),
                ip("10.0.0.4"),
                ip("10.0.0.3"),
                ip("10.0.0.1")
            ]
        );
        assert_eq!(u.user_agent.as_deref(), Some("ua/1"));
        // A repeat moves to the front; the agent is cleaned, the latest wins.
        batch.written();
        let _ = tracker.record(&id, t(20), Some(ip("10.0.0.2")), Some("a\u{1b}[31mb"));
        let _ = tracker.record(&id, t(21), Some(ip("10.0.0.3")), None);
        let _ = tracker.record(&id, t(22), Some(ip("10.0.0.2")), None);
        let batch = tracker.take_all(t(30)).unwrap();
        assert_eq!(batch.uses()[0].ips, [ip("10.0.0.2"), ip("10.0.0.3")]);
        assert_eq!(batch.uses()[0].user_agent.as_deref(), Some("a[31mb"));
    }

    #[test]
    fn a_failed_batch_keeps_its_ips_behind_newer_ones() {
        let tracker = tracker(false);
        let id = KeyId::generate();
        let _ = tracker.record(&id, t(0), Some(ip("10.0.0.1")), Some("old"));
        let batch = tracker.take_all(t(1)).unwrap();
        let _ = tracker.record(&id, t(2), Some(ip("10.0.0.2")), None);
        drop(batch); // the write failed
        let batch = tracker.take_all(t(3)).unwrap();
        let u = &batch.uses()[0];
        assert_eq!(u.at, t(2));
        assert_eq!(u.ips, [ip("10.0.0.2"), ip("10.0.0.1")]);
        assert_eq!(u.user_agent.as_deref(), Some("old"), "kept: no newer agent");
    }

    #[test]
    fn a_put_back_batch_fills_up_to_the_bound_without_repeats() {
        let tracker = tracker(false);
        let id = KeyId::generate();
        for addr in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"] {
            let _ = tracker.record(&id, t(0), Some(ip(addr)), None);
        }
        let batch = tracker.take_all(t(1)).unwrap();
        // Arrived after the batch was taken, with an earlier instant (another
        // thread's clock reading).
        let _ = tracker.record(&id, t(0), Some(ip("10.0.0.9")), Some("new"));
        let _ = tracker.record(&id, t(0), Some(ip("10.0.0.3")), None);
        drop(batch);
        let batch = tracker.take_all(t(2)).unwrap();
        let u = &batch.uses()[0];
        assert_eq!(
            u.ips,
            [
                ip("10.0.0.3"),
                ip("10.0.0.9"),
                ip("10.0.0.5"),
                ip("10.0.0.4"),
                ip("10.0.0.2")
            ]
        );
        assert_eq!(u.at, t(0));
        assert_eq!(u.user_agent.as_deref(), Some("new"));
        // Arrival order, whatever the instants: a later-arriving earlier
        // instant still goes first, and the latest instant is kept.
        batch.written();
        let _ = tracker.record(&id, t(9), Some(ip("10.0.0.1")), Some("first"));
        let _ = tracker.record(&id, t(8), Some(ip("10.0.0.2")), Some("second"));
        let batch = tracker.take_all(t(10)).unwrap();
        let u = &batch.uses()[0];
        assert_eq!(
            (u.at, u.ips.clone()),
            (t(9), vec![ip("10.0.0.2"), ip("10.0.0.1")])
        );
        assert_eq!(u.user_agent.as_deref(), Some("second"));
    }

    #[test]
    fn a_put_back_batch_with_a_later_instant_keeps_it() {
        let tracker = tracker(false);
        let id = KeyId::generate();
        let _ = tracker.record(&id, t(5), None, None);
        let batch = tracker.take_all(t(6)).unwrap();
        let _ = tracker.record(&id, t(3), None, None);
        drop(batch);
        assert_eq!(tracker.take_all(t(7)).unwrap().uses()[0].at, t(5));
    }
}
