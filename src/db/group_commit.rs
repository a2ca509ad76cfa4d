//! Group commit: concurrent `record_interactions` calls share one transaction and one flush.
//!
//! A caller that finds the writer lock free writes at once (a lone caller pays nothing extra),
//! taking along every batch queued meanwhile. A caller that finds it held queues its batch and
//! waits for the lock; when it gets it, either a leader already took its batch (it then waits
//! for that leader's result) or it leads the next group itself. Each caller returns only after
//! its own batch is committed and, under `Durability::Sync`, flushed.
//!
//! Flushes are grouped for every write (`DurableGate`): a writer that needs its commit on disk
//! waits for the flush in progress and returns without flushing again when that flush already
//! covered it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::{Error, Interaction, Result};

/// A queued batch and the slot its result goes to.
pub(super) struct Pending {
    pub events: Vec<Interaction>,
    taken: AtomicBool,
    result: Mutex<Option<Result<()>>>,
    done: Condvar,
}

impl Pending {
    pub(super) fn new(events: Vec<Interaction>) -> Arc<Pending> {
        Arc::new(Pending {
            events,
            taken: AtomicBool::new(false),
            result: Mutex::new(None),
            done: Condvar::new(),
        })
    }

    /// Whether a leader took this batch into its group.
    pub(super) fn taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }

    pub(super) fn finish(&self, result: Result<()>) {
        *self.result.lock() = Some(result);
        self.done.notify_all();
    }

    /// Waits for the leader that took this batch.
    pub(super) fn wait(&self) -> Result<()> {
        let mut slot = self.result.lock();
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            self.done.wait(&mut slot);
        }
    }
}

/// Batches waiting for the writer lock.
#[derive(Default)]
pub(super) struct GroupQueue {
    waiting: Mutex<Vec<Arc<Pending>>>,
    /// Batches committed by a leader on another caller's behalf.
    pub(super) grouped: AtomicU64,
}

impl GroupQueue {
    pub(super) fn push(&self, p: Arc<Pending>) {
        self.waiting.lock().push(p);
    }

    /// Takes every waiting batch (the caller holds the writer lock).
    pub(super) fn drain(&self) -> Vec<Arc<Pending>> {
        let taken = std::mem::take(&mut *self.waiting.lock());
        for p in &taken {
            p.taken.store(true, Ordering::Release);
        }
        self.grouped
            .fetch_add(taken.len() as u64, Ordering::Relaxed);
        taken
    }
}

/// Numbers commits and groups the flushes that make them durable.
#[derive(Default)]
pub(super) struct DurableGate {
    /// Commits so far (bumped under the writer lock after each committed transaction).
    committed: AtomicU64,
    /// Whether a flush runs, and the highest commit number known to be on disk.
    state: Mutex<FlushState>,
    /// Signalled when a flush ends.
    flushed: Condvar,
    /// Flushes run to make writes durable.
    pub(super) flushes: AtomicU64,
    /// Writes started and not yet committed (`Arrival`).
    arriving: AtomicUsize,
}

#[derive(Default)]
struct FlushState {
    flushing: bool,
    durable: u64,
}

/// How long a flush waits for writes already on their way to commit, so that one flush covers
/// them too (PostgreSQL's `commit_delay`, applied only while another writer is in flight: a lone
/// writer never waits).
const GATHER: Duration = Duration::from_micros(100);

/// A write on its way to commit, counted until it commits (or fails), so a flush starting
/// meanwhile can wait for it briefly. A group's leader counts for every batch in its group.
pub(super) struct Arrival<'a> {
    gate: &'a DurableGate,
    n: usize,
}

impl Arrival<'_> {
    /// The leader also commits `n` batches of callers that arrived on their own.
    pub(super) fn take_over(&mut self, n: usize) {
        self.n += n;
    }

    /// Another leader committed this batch (and counted it).
    pub(super) fn handed_over(mut self) {
        self.n = 0;
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        self.gate.arriving.fetch_sub(self.n, Ordering::AcqRel);
    }
}

impl DurableGate {
    pub(super) fn commits(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    pub(super) fn arrive(&self) -> Arrival<'_> {
        self.arriving.fetch_add(1, Ordering::AcqRel);
        Arrival { gate: self, n: 1 }
    }

    /// Counts a commit; returns its number.
    pub(super) fn commit(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Makes commit `seq` durable with `flush`, unless a flush since it already did. While a
    /// flush runs, later writers wait for it to end: those it covered return at once, and one
    /// of the others runs the next flush for all of them.
    pub(super) fn make_durable(&self, seq: u64, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        {
            let mut st = self.state.lock();
            loop {
                if st.durable >= seq {
                    return Ok(());
                }
                if !st.flushing {
                    st.flushing = true;
                    break;
                }
                self.flushed.wait(&mut st);
            }
        }
        let deadline = Instant::now() + GATHER;
        while self.arriving.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        // Every commit numbered up to here reserved its log space before this flush starts.
        let target = self.committed.load(Ordering::Acquire);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        let result = flush();
        let mut st = self.state.lock();
        st.flushing = false;
        if result.is_ok() {
            st.durable = st.durable.max(target);
        }
        self.flushed.notify_all();
        result
    }
}

/// The error a grouped caller sees when the group's shared transaction or flush failed: the
/// handle is poisoned then, and the leader holds the original error.
pub(super) fn group_failed(leader: &Error) -> Error {
    Error::Poisoned(format!("a grouped write failed: {leader}"))
}
