//! What the refresh workers did, for `stats().refresh`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::queue::{Outcome, QueueCounts};

/// Freshness lags kept for the percentiles (the most recent ones).
const LAG_WINDOW: usize = 8192;

#[derive(Default)]
pub(crate) struct Counters {
    written: AtomicU64,
    conflicts: AtomicU64,
    failures: AtomicU64,
    panics: AtomicU64,
    batches: AtomicU64,
    batched_users: AtomicU64,
    sweeps: AtomicU64,
    last_error: Mutex<Option<String>>,
    last_panic: Mutex<Option<String>>,
    lags_ms: Mutex<VecDeque<f64>>,
}

impl Counters {
    pub(crate) fn batch(&self, users: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_users
            .fetch_add(users as u64, Ordering::Relaxed);
    }

    /// A cluster refresh batch's outcomes (`Db::refresh_cluster_batch`).
    pub(crate) fn cluster_batch(&self, b: &crate::ClusterBatch, users: usize) {
        self.batch(users);
        self.written.fetch_add(b.written as u64, Ordering::Relaxed);
        self.conflicts
            .fetch_add(b.conflicts as u64, Ordering::Relaxed);
        self.failures.fetch_add(b.failed as u64, Ordering::Relaxed);
    }

    pub(crate) fn outcome(&self, outcome: &Outcome, lag: Option<Duration>) {
        match outcome {
            Outcome::Written => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Conflict => {
                self.conflicts.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::NoModel => {}
            Outcome::Failed(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock() = Some(e.clone());
            }
        }
        if let Some(lag) = lag {
            let mut lags = self.lags_ms.lock();
            if lags.len() == LAG_WINDOW {
                lags.pop_front();
            }
            lags.push_back(lag.as_secs_f64() * 1e3);
        }
    }

    /// Zeroes every counter and forgets the lags.
    pub(crate) fn reset(&self) {
        for c in [
            &self.written,
            &self.conflicts,
            &self.failures,
            &self.panics,
            &self.batches,
            &self.batched_users,
            &self.sweeps,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        *self.last_error.lock() = None;
        *self.last_panic.lock() = None;
        self.lags_ms.lock().clear();
    }

    pub(crate) fn panic(&self, message: String) {
        self.panics.fetch_add(1, Ordering::Relaxed);
        *self.last_panic.lock() = Some(message);
    }

    pub(crate) fn sweep(&self) {
        self.sweeps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, workers: usize, q: QueueCounts) -> RefreshStats {
        let lags: Vec<f64> = self.lags_ms.lock().iter().copied().collect();
        RefreshStats {
            workers,
            queued: q.queued as u64,
            in_flight: q.in_flight as u64,
            parked: q.parked as u64,
            lists_written: self.written.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            batched_users: self.batched_users.load(Ordering::Relaxed),
            sweeps: self.sweeps.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
            last_panic: self.last_panic.lock().clone(),
            lag: LagSummary::of(lags),
        }
    }
}

/// The refresh pipeline as `stats()` reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RefreshStats {
    /// Background workers running (0 after `close`, or when configured so).
    pub workers: usize,
    /// Users waiting for a refresh.
    pub queued: u64,
    /// Users a worker holds now.
    pub in_flight: u64,
    /// Users whose refresh failed repeatedly; they stay stale until queued again.
    pub parked: u64,
    /// Lists written since open.
    pub lists_written: u64,
    /// Refreshes discarded because the history (or the model) changed meanwhile; the user went
    /// back in line (invariant 5).
    pub conflicts: u64,
    /// Refreshes that failed (see `last_error`).
    pub failures: u64,
    /// Worker panics caught (see `last_panic`); the worker went on.
    pub panics: u64,
    /// Batches run through the model.
    pub batches: u64,
    /// Users in those batches (divide by `batches` for the mean batch size).
    pub batched_users: u64,
    /// Scans for lists that are not current (after open, a model swap, deletions).
    pub sweeps: u64,
    /// The last refresh error.
    pub last_error: Option<String>,
    /// The last worker panic's message.
    pub last_panic: Option<String>,
    /// Freshness lag (a user queued to its fresh list written) over the latest refreshes.
    pub lag: Option<LagSummary>,
}

/// Percentiles of the freshness lag, in milliseconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LagSummary {
    /// Refreshes counted (the most recent, at most 8,192).
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LagSummary {
    fn of(mut lags: Vec<f64>) -> Option<LagSummary> {
        if lags.is_empty() {
            return None;
        }
        lags.sort_by(f64::total_cmp);
        let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
        Some(LagSummary {
            count: lags.len() as u64,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: lags[lags.len() - 1],
        })
    }
}
