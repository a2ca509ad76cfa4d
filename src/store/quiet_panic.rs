//! Catching a panic without printing it: sled 0.34 can panic while recovering damaged files,
//! and a library must report that as an error without writing the panic message and a backtrace
//! to its host's stderr (the C API's callers included).
//!
//! While `quietly` runs, a process-wide panic hook is installed that stays silent for panics on
//! the threads inside `quietly` and forwards every other panic to the hook that was installed
//! before; the previous hook is put back when the last `quietly` call returns. (A hook another
//! thread installs in between is replaced by that restore: hooks are process-wide.)

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe, PanicHookInfo};
use std::sync::Arc;

use parking_lot::Mutex;

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

thread_local! {
    static QUIET: Cell<u32> = const { Cell::new(0) };
}

/// How many `quietly` calls are running, and the hook that was installed before the first.
static ACTIVE: Mutex<(usize, Option<Arc<Hook>>)> = Mutex::new((0, None));

/// Runs `f`, catching a panic silently on this thread (like `catch_unwind`, without the print).
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    install();
    QUIET.with(|q| q.set(q.get() + 1));
    let out = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(q.get() - 1));
    uninstall();
    out
}

fn install() {
    let mut active = ACTIVE.lock();
    if active.0 == 0 {
        let previous: Arc<Hook> = Arc::new(std::panic::take_hook());
        let forward = Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(|q| q.get()) == 0 {
                forward(info);
            }
        }));
        active.1 = Some(previous);
    }
    active.0 += 1;
}

fn uninstall() {
    let mut active = ACTIVE.lock();
    active.0 -= 1;
    if active.0 == 0 {
        // Dropping our hook drops its clone of the previous one, so it can be moved back.
        drop(std::panic::take_hook());
        if let Some(previous) = active.1.take() {
            match Arc::try_unwrap(previous) {
                Ok(hook) => std::panic::set_hook(hook),
                Err(shared) => std::panic::set_hook(Box::new(move |info| shared(info))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_is_caught_and_the_hook_restored() {
        let r: std::thread::Result<()> = quietly(|| panic!("inside"));
        assert!(r.is_err());
        assert_eq!(quietly(|| 7).unwrap(), 7);
        assert_eq!(ACTIVE.lock().0, 0);
    }
}
