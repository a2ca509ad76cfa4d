//! The loss bound of `Durability::Buffered`.
//!
//! sled's own timer flush gives no bound under load (its flush thread can fall behind the
//! writers; acknowledged writes 1.6 s old were lost with a 500 ms interval). So convergedb
//! flushes itself: a background thread flushes every half interval, and every write checks,
//! after it committed and before it returns, when the last *completed* flush started; when that
//! is longer ago than the interval, the write flushes before returning. Hence the guarantee
//! (docs/design.md, "Durability"): when a write returns, every write that had returned more
//! than `flush_every_ms` before it was called is on disk. A crash therefore loses at most the
//! writes acknowledged within `flush_every_ms` of the last write acknowledged before it; after
//! the last write, the background thread flushes within about half an interval, as fast as
//! the machine schedules it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{Db, Inner};
use crate::config::Durability;
use crate::Result;

/// When the last completed flush started, in nanoseconds since `epoch`.
pub(super) struct FlushClock {
    epoch: Instant,
    last_start: AtomicU64,
}

impl FlushClock {
    pub(super) fn new() -> Self {
        FlushClock {
            epoch: Instant::now(),
            last_start: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

impl Db {
    /// Runs `flush` and, once it succeeded, records when it started.
    pub(super) fn timed_flush(&self, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        let clock = &self.inner.flush_clock;
        let started = clock.now();
        flush()?;
        clock.last_start.fetch_max(started, Ordering::SeqCst);
        Ok(())
    }

    /// Called by every write after its commit, before it returns: with `Buffered`, flushes when
    /// the last completed flush started more than the interval ago.
    pub(super) fn bound_buffered_loss(&self) -> Result<()> {
        let Durability::Buffered { flush_every_ms } = self.inner.config.durability else {
            return Ok(());
        };
        let clock = &self.inner.flush_clock;
        let bound = flush_every_ms.saturating_mul(1_000_000);
        if clock
            .now()
            .saturating_sub(clock.last_start.load(Ordering::SeqCst))
            > bound
        {
            self.flush_store()?;
        }
        Ok(())
    }
}

/// Starts the background flush thread of a `Buffered` database (none for `Sync`).
pub(super) fn start(db: &Db) -> std::io::Result<()> {
    let Durability::Buffered { flush_every_ms } = db.inner.config.durability else {
        return Ok(());
    };
    let period = Duration::from_millis(flush_every_ms.div_ceil(2).max(1));
    let weak: Weak<Inner> = Arc::downgrade(&db.inner);
    std::thread::Builder::new()
        .name("convergedb-flush".into())
        .spawn(move || loop {
            std::thread::sleep(period);
            // Runs until the last handle is dropped (a closed clone's siblings keep the bound).
            let Some(inner) = weak.upgrade() else { return };
            let db = Db { inner };
            if db.inner.poison.check().is_ok() {
                // A failure poisons the handle (flush_store); the next write reports it.
                let _ = db.flush_store();
            }
        })?;
    Ok(())
}
