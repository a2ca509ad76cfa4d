//! The poisoned state: after a storage error or a failed flush, the handle refuses every call.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::{Error, Result};

#[derive(Default)]
pub(super) struct Poison {
    set: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Poison {
    pub(super) fn check(&self) -> Result<()> {
        if !self.set.load(Ordering::Acquire) {
            return Ok(());
        }
        let reason = self.reason.lock().clone().unwrap_or_default();
        Err(Error::Poisoned(reason))
    }

    pub(super) fn set(&self, cause: &Error) {
        let mut reason = self.reason.lock();
        if reason.is_none() {
            *reason = Some(cause.to_string());
        }
        self.set.store(true, Ordering::Release);
    }

    pub(super) fn reason(&self) -> Option<String> {
        self.reason.lock().clone()
    }
}
