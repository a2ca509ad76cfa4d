//! Update triggers: the refresh queue and the state the background workers share.
//!
//! - `queue.rs`: the in-memory queue (lanes, members, in-flight users), mirroring the durable
//!   `stale` tree;
//! - `counters.rs`: what the workers did, for `stats()` (lists written, conflicts, failures,
//!   panics, freshness lag);
//! - `params.rs`: workers, batch size, cached list length.
//!
//! The threads themselves (a dispatcher, a bounded crossbeam channel and N workers) and the
//! compare-and-swap write live in `db/refresh*.rs`, next to the store they touch. Plain threads,
//! not tokio: the work is CPU-bound ONNX Runtime inference that must not run on an async
//! executor, and an embedded library should not impose a runtime on its users.

mod counters;
mod params;
pub(crate) mod queue;

pub(crate) use counters::Counters;
pub use counters::{LagSummary, RefreshStats};
pub use params::{default_workers, RefreshParams};
pub(crate) use queue::{Outcome, Queue};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::Mutex;

/// Everything the refresh threads share with the database handle.
pub(crate) struct Refresh {
    pub queue: Queue,
    pub counters: Counters,
    pub params: RefreshParams,
    /// Set by `close` and on drop: the threads stop taking work.
    shutdown: AtomicBool,
    /// Sweeps (scans for lists that are not current) requested, and the request count the
    /// last finished sweep covered: a sweep is pending while `sweep_done < sweep_requested`.
    sweep_requested: AtomicU64,
    sweep_done: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Test hook: a worker refreshing this user panics (fault injection for `stats().refresh`).
    #[cfg(feature = "fuzzing")]
    pub panic_on: Mutex<Option<String>>,
}

impl Refresh {
    pub(crate) fn new(params: RefreshParams, first_seq: u64) -> Self {
        Refresh {
            queue: Queue::new(first_seq),
            counters: Counters::default(),
            params,
            shutdown: AtomicBool::new(false),
            sweep_requested: AtomicU64::new(0),
            sweep_done: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            #[cfg(feature = "fuzzing")]
            panic_on: Mutex::new(None),
        }
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Asks the threads to stop and wakes them.
    pub(crate) fn signal_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.queue.ring();
    }

    /// Stops and joins the threads (workers finish the batch they hold; queued users stay
    /// queued durably). Never call from a refresh thread.
    pub(crate) fn stop(&self) {
        self.signal_shutdown();
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            let _ = t.join();
        }
    }

    pub(crate) fn add_thread(&self, t: JoinHandle<()>) {
        self.threads.lock().push(t);
    }

    /// True while background threads run.
    pub(crate) fn has_threads(&self) -> bool {
        !self.is_shutdown() && !self.threads.lock().is_empty()
    }

    pub(crate) fn request_sweep(&self) {
        self.sweep_requested.fetch_add(1, Ordering::AcqRel);
        self.queue.ring();
    }

    pub(crate) fn sweep_pending(&self) -> bool {
        self.sweep_done.load(Ordering::Acquire) < self.sweep_requested.load(Ordering::Acquire)
    }

    /// Before running a sweep: the request count it will cover (pass it to `sweep_finished`).
    pub(crate) fn sweep_started(&self) -> u64 {
        self.sweep_requested.load(Ordering::Acquire)
    }

    pub(crate) fn sweep_finished(&self, covered: u64) {
        self.sweep_done.fetch_max(covered, Ordering::AcqRel);
        self.counters.sweep();
        self.queue.ring();
    }
}
