//! The in-memory side of the refresh queue: which users are queued, in which order, and which
//! a worker holds.
//!
//! The durable side is the `stale` tree (written in the same transaction as the history change
//! that queues a user). Every `stale` record has a member here (loaded on open); members may also
//! exist without a record: users queued by a read or a sweep, which the sweep on open finds
//! again after a crash. A member carries the `seq` of its newest durable record (0: none), so a
//! worker that finishes removes the record only if nobody queued the user again meanwhile.
//!
//! Two lanes: `urgent` (a read served a stale answer or none) before `normal`. A lane may hold
//! a user twice (once per lane) or a user no longer queued; `take_batch` skips those.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

/// Attempts before a user whose refresh keeps failing is parked (kept queued, not retried
/// until it is queued again).
pub(crate) const MAX_ATTEMPTS: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting in a lane (not before `not_before`).
    Queued,
    /// Handed to a worker with this seq.
    InFlight,
    /// Failed `MAX_ATTEMPTS` times; waits for the next trigger.
    Parked,
}

#[derive(Debug)]
struct Member {
    /// Newest durable record's seq (0: none).
    seq: u64,
    /// Queued again while in flight.
    dirty: bool,
    state: State,
    in_urgent: bool,
    attempts: u32,
    not_before: Option<Instant>,
    /// When the user first became stale since its last fresh list (for the freshness lag).
    since: Instant,
}

/// What became of one dispatched user.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// The list was written; `removed` when the durable record was removed with it.
    Written,
    /// Not written: the history (or model) changed while computing; the user stays queued.
    Conflict,
    /// No usable model; back in line without counting an attempt.
    NoModel,
    /// Generation failed (or the worker panicked).
    Failed(String),
}

#[derive(Default)]
struct Lanes {
    /// ahash: membership is tested on every read, and user keys are not attacker-chosen hash
    /// floods in an embedded database (ahash is still randomly keyed per process).
    members: HashMap<Arc<str>, Member, ahash::RandomState>,
    urgent: VecDeque<Arc<str>>,
    normal: VecDeque<Arc<str>>,
    queued: usize,
    in_flight: usize,
    parked: usize,
}

/// Counts for `stats()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueueCounts {
    pub queued: usize,
    pub in_flight: usize,
    pub parked: usize,
}

#[derive(Default)]
pub(crate) struct Queue {
    lanes: RwLock<Lanes>,
    /// Paired with `bell`: waiters hold it while checking, notifiers take it before ringing.
    bell_lock: Mutex<()>,
    bell: Condvar,
    next_seq: std::sync::atomic::AtomicU64,
    /// `lanes.members.len()`, updated under the write lock: lets `contains` skip the lock when
    /// nothing is queued (a membership added before a history write is acknowledged is seen).
    len: std::sync::atomic::AtomicUsize,
}

impl Queue {
    pub(crate) fn new(first_seq: u64) -> Self {
        let q = Queue::default();
        q.next_seq
            .store(first_seq.max(1), std::sync::atomic::Ordering::Relaxed);
        q
    }

    /// Reserves `n` consecutive sequence numbers for durable records.
    pub(crate) fn reserve_seqs(&self, n: usize) -> u64 {
        self.next_seq
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed)
    }

    /// True when `user` is queued or held by a worker (its list, if any, is not current).
    pub(crate) fn contains(&self, user: &str) -> bool {
        if self.len.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return false;
        }
        self.lanes.read().members.contains_key(user)
    }

    pub(crate) fn counts(&self) -> QueueCounts {
        let l = self.lanes.read();
        QueueCounts {
            queued: l.queued,
            in_flight: l.in_flight,
            parked: l.parked,
        }
    }

    /// Users with a durable record's seq, for `check()`.
    pub(crate) fn durable_seq(&self, user: &str) -> Option<u64> {
        self.lanes.read().members.get(user).map(|m| m.seq)
    }

    /// Queues users (`seq` 0: no durable record). A user already queued keeps its place (or
    /// moves to the urgent lane when `urgent`); one held by a worker is marked to go again.
    pub(crate) fn push(&self, users: impl IntoIterator<Item = (Arc<str>, u64)>, urgent: bool) {
        let now = Instant::now();
        let mut pushed = false;
        {
            let mut l = self.lanes.write();
            for (user, seq) in users {
                pushed = true;
                l.push_one(user, seq, urgent, now);
            }
            self.len
                .store(l.members.len(), std::sync::atomic::Ordering::Release);
        }
        if pushed {
            self.ring();
        }
    }

    /// Moves a queued user to the urgent lane (a read is waiting on a stale answer).
    pub(crate) fn promote(&self, user: &str) {
        let mut l = self.lanes.write();
        if let Some((key, m)) = l.members.get_key_value(user) {
            if m.state == State::Queued && !m.in_urgent {
                let key = Arc::clone(key);
                if let Some(m) = l.members.get_mut(user) {
                    m.in_urgent = true;
                }
                l.urgent.push_back(key);
                drop(l);
                self.ring();
            }
        }
    }

    /// Takes up to `max` dispatchable users (urgent lane first) and marks them in flight:
    /// (user, seq of its durable record when taken).
    pub(crate) fn take_batch(&self, max: usize) -> Vec<(Arc<str>, u64)> {
        let now = Instant::now();
        let mut l = self.lanes.write();
        let mut out = Vec::new();
        let mut deferred = Vec::new();
        while out.len() < max {
            let Some((user, urgent)) = l
                .urgent
                .pop_front()
                .map(|u| (u, true))
                .or_else(|| l.normal.pop_front().map(|u| (u, false)))
            else {
                break;
            };
            let Some(m) = l.members.get_mut(&user) else {
                continue;
            };
            if m.state != State::Queued || (urgent && !m.in_urgent) {
                continue;
            }
            if !urgent && m.in_urgent {
                // Its urgent copy is still ahead in the other lane.
                continue;
            }
            if m.not_before.is_some_and(|t| t > now) {
                deferred.push(user);
                continue;
            }
            m.state = State::InFlight;
            m.in_urgent = false;
            m.dirty = false;
            out.push((user, m.seq));
        }
        l.normal.extend(deferred);
        l.queued -= out.len();
        l.in_flight += out.len();
        out
    }

    /// Records what became of a dispatched user. `report` gets the freshness lag when the
    /// user's list is now current; it runs under the queue's lock, so whoever sees the queue
    /// idle also sees what was reported.
    pub(crate) fn finish(
        &self,
        user: &Arc<str>,
        outcome: &Outcome,
        report: impl FnOnce(Option<Duration>),
    ) {
        let mut l = self.lanes.write();
        let Some(m) = l
            .members
            .get_mut(user)
            .filter(|m| m.state == State::InFlight)
        else {
            report(None);
            return;
        };
        let mut lag = None;
        let next = match outcome {
            Outcome::Written if !m.dirty => {
                lag = Some(m.since.elapsed());
                None
            }
            Outcome::Written | Outcome::Conflict => Some((State::Queued, None, 0)),
            Outcome::NoModel => Some((State::Queued, None, m.attempts)),
            Outcome::Failed(_) => {
                let attempts = m.attempts + 1;
                if attempts >= MAX_ATTEMPTS && !m.dirty {
                    Some((State::Parked, None, attempts))
                } else {
                    let backoff = Duration::from_millis(100 << attempts.min(6));
                    Some((State::Queued, Some(Instant::now() + backoff), attempts))
                }
            }
        };
        l.in_flight -= 1;
        match next {
            None => {
                l.members.remove(user);
            }
            Some((state, not_before, attempts)) => {
                if let Some(m) = l.members.get_mut(user) {
                    m.state = state;
                    m.not_before = not_before;
                    m.attempts = attempts;
                }
                if state == State::Parked {
                    l.parked += 1;
                } else if not_before.is_some() {
                    // A failure: retried after the others, once its delay has passed.
                    l.queued += 1;
                    l.normal.push_back(Arc::clone(user));
                } else {
                    // Queued again while computing (or no model): it has waited longest, so it
                    // goes first rather than to the back.
                    l.queued += 1;
                    l.normal.push_front(Arc::clone(user));
                }
            }
        }
        report(lag);
        self.len
            .store(l.members.len(), std::sync::atomic::Ordering::Release);
        drop(l);
        self.ring();
    }

    /// Drops `user` (its list was just written synchronously and no record is left).
    pub(crate) fn forget(&self, user: &str, seq: u64) {
        let mut l = self.lanes.write();
        let Some(m) = l.members.get(user) else { return };
        if m.seq > seq || m.state == State::InFlight {
            // Queued again meanwhile, or a worker holds it (it finishes the job).
            return;
        }
        match m.state {
            State::Queued => l.queued -= 1,
            State::Parked => l.parked -= 1,
            State::InFlight => {}
        }
        l.members.remove(user);
        self.len
            .store(l.members.len(), std::sync::atomic::Ordering::Release);
        drop(l);
        self.ring();
    }

    /// Nothing queued and nothing in flight (parked users do not count).
    pub(crate) fn is_idle(&self) -> bool {
        let l = self.lanes.read();
        l.queued == 0 && l.in_flight == 0
    }

    /// Wakes every waiter (queue changed, shutdown, sweep requested).
    pub(crate) fn ring(&self) {
        let _g = self.bell_lock.lock();
        self.bell.notify_all();
    }

    /// Waits until `ready()` holds or `timeout` passes; `ready` is checked under the bell lock,
    /// so a ring between the check and the wait is not lost.
    pub(crate) fn wait(&self, timeout: Duration, ready: impl Fn() -> bool) {
        let mut g = self.bell_lock.lock();
        if !ready() {
            self.bell.wait_for(&mut g, timeout);
        }
    }
}

impl Lanes {
    fn push_one(&mut self, user: Arc<str>, seq: u64, urgent: bool, now: Instant) {
        match self.members.get_mut(&user) {
            Some(m) => {
                m.seq = m.seq.max(seq);
                match m.state {
                    State::InFlight => m.dirty = true,
                    State::Parked => {
                        m.state = State::Queued;
                        m.attempts = 0;
                        m.not_before = None;
                        m.in_urgent = urgent;
                        self.parked -= 1;
                        self.queued += 1;
                        self.lane(urgent).push_back(user);
                    }
                    State::Queued => {
                        if urgent && !m.in_urgent {
                            m.in_urgent = true;
                            self.urgent.push_back(user);
                        }
                    }
                }
            }
            None => {
                self.members.insert(
                    Arc::clone(&user),
                    Member {
                        seq,
                        dirty: false,
                        state: State::Queued,
                        in_urgent: urgent,
                        attempts: 0,
                        not_before: None,
                        since: now,
                    },
                );
                self.queued += 1;
                self.lane(urgent).push_back(user);
            }
        }
    }

    fn lane(&mut self, urgent: bool) -> &mut VecDeque<Arc<str>> {
        if urgent {
            &mut self.urgent
        } else {
            &mut self.normal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn finish(q: &Queue, user: &str, outcome: Outcome) -> Option<Duration> {
        let mut lag = None;
        q.finish(&u(user), &outcome, |l| lag = l);
        lag
    }

    #[test]
    fn fifo_with_urgent_first_and_no_duplicates() {
        let q = Queue::new(1);
        q.push([(u("a"), 1), (u("b"), 2), (u("c"), 0)], false);
        q.push([(u("b"), 0)], false);
        q.promote("c");
        let batch: Vec<String> = q
            .take_batch(10)
            .into_iter()
            .map(|(u, _)| u.to_string())
            .collect();
        assert_eq!(batch, ["c", "a", "b"]);
        assert_eq!(q.counts().in_flight, 3);
        assert!(q.take_batch(10).is_empty());
    }

    #[test]
    fn requeued_while_in_flight_goes_again() {
        let q = Queue::new(1);
        q.push([(u("a"), 1)], false);
        let batch = q.take_batch(1);
        assert_eq!(batch[0].1, 1);
        q.push([(u("a"), 2)], false);
        assert!(finish(&q, "a", Outcome::Written).is_none());
        assert!(q.contains("a"));
        let again = q.take_batch(1);
        assert_eq!(again[0].1, 2);
        assert!(finish(&q, "a", Outcome::Written).is_some());
        assert!(!q.contains("a"));
        assert!(q.is_idle());
    }

    #[test]
    fn failures_back_off_then_park_and_a_trigger_unparks() {
        let q = Queue::new(1);
        q.push([(u("a"), 1)], false);
        for _ in 0..MAX_ATTEMPTS {
            let b = loop {
                let b = q.take_batch(1);
                if !b.is_empty() {
                    break b;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            finish(&q, &b[0].0, Outcome::Failed("boom".into()));
        }
        assert_eq!(q.counts().parked, 1);
        assert!(q.is_idle());
        assert!(q.contains("a"), "a parked user still has a stale list");
        q.push([(u("a"), 5)], false);
        assert_eq!(q.take_batch(1)[0].1, 5);
    }

    #[test]
    fn forget_respects_newer_seq_and_workers() {
        let q = Queue::new(1);
        q.push([(u("a"), 3)], false);
        q.forget("a", 2);
        assert!(q.contains("a"));
        q.forget("a", 3);
        assert!(!q.contains("a"));
        assert!(q.is_idle());
    }
}
