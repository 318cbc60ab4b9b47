//! Locking a `std::sync::Mutex` that a panic may have poisoned.
//!
//! The crate's locks are never held across an await or a call that can
//! panic, so a poisoned lock still guards consistent data: it is taken
//! anyway rather than turning one panic elsewhere into a panic at every
//! later use.

use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
