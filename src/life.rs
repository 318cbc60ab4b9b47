//! A connection's life: idle, in use or closed; its deadline; and the task
//! that drives a standalone connection's socket and closes it when it must.
//!
//! The **deadline** is 95-100 % of `max_connection_age` after the connection's
//! last successful authentication, always under the 12-hour cut: past it the
//! connection is broken and the pool replaces it. An idle connection is closed
//! at its deadline by the task that drives it, so that no idle connection
//! meets the server's cut either. A connection whose reply will never be read
//! (a timed-out or cancelled command) is closed at once with
//! [`Life::close_now`], so that the server stops working for nobody (a
//! `BLPOP` would otherwise pop a job into a reply that is thrown away).

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock::monotonic_now;
use crate::lifecycle::Lifecycle;
use crate::lock::lock;

const IDLE: u8 = 0;
const IN_USE: u8 = 1;
const CLOSED: u8 = 2;

/// What a connection and the task driving it share.
pub(crate) struct Life {
    state: AtomicU8,
    deadline: Mutex<Instant>,
    /// Signalled when the deadline moves.
    moved: Notify,
    /// Signalled by [`close_now`](Self::close_now).
    closing: Notify,
    /// Signalled to every waiter of [`closed`](Self::closed) when it closes.
    ended: Notify,
    lifecycle: Lifecycle,
}

impl fmt::Debug for Life {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state.load(Ordering::Acquire) {
            IDLE => "idle",
            IN_USE => "in use",
            _ => "closed",
        };
        f.debug_struct("Life")
            .field("state", &state)
            .field("deadline", &self.deadline())
            .finish()
    }
}

impl Life {
    /// A connection authenticated now.
    pub(crate) fn new(lifecycle: &Lifecycle) -> Self {
        Self {
            state: AtomicU8::new(IDLE),
            deadline: Mutex::new(lifecycle.deadline()),
            moved: Notify::new(),
            closing: Notify::new(),
            ended: Notify::new(),
            lifecycle: *lifecycle,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        *lock(&self.deadline)
    }

    /// After a successful re-authentication: a new deadline from now.
    pub(crate) fn authenticated(&self) {
        *lock(&self.deadline) = self.lifecycle.deadline();
        self.moved.notify_one();
    }

    pub(crate) fn is_expired(&self) -> bool {
        monotonic_now() >= self.deadline()
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.state.load(Ordering::Acquire) == IDLE
    }

    /// Closes it if it is idle; true if this closed it (and counts it).
    pub(crate) fn close_idle(&self) -> bool {
        self.close_if_idle() == Some(true)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    /// Checkout: idle to in use; false if it was closed.
    pub(crate) fn check_out(&self) -> bool {
        self.state
            .compare_exchange(IDLE, IN_USE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Back in the pool.
    pub(crate) fn check_in(&self) {
        let _ = self
            .state
            .compare_exchange(IN_USE, IDLE, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Marks it closed; true if it was not already, so that whoever closes
    /// it counts it, once.
    pub(crate) fn close(&self) -> bool {
        let first = self.state.swap(CLOSED, Ordering::AcqRel) != CLOSED;
        self.ended.notify_waiters();
        first
    }

    /// Resolves once it is closed (by anyone, for any reason).
    pub(crate) async fn closed(&self) {
        loop {
            let ended = self.ended.notified();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            if self.is_closed() {
                return;
            }
            ended.await;
        }
    }

    /// Marks it closed and has the driving task close the socket now, even
    /// while a borrower holds it; true if it was not closed already.
    pub(crate) fn close_now(&self) -> bool {
        let first = self.close();
        self.closing.notify_one();
        first
    }

    /// The driver's side at the deadline: `Some(true)` if it closed an idle
    /// connection (and counts it), `Some(false)` if someone else already
    /// closed it (and counted it), `None` if it is in use.
    fn close_if_idle(&self) -> Option<bool> {
        match self
            .state
            .compare_exchange(IDLE, CLOSED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.ended.notify_waiters();
                Some(true)
            }
            Err(CLOSED) => Some(false),
            Err(_) => None,
        }
    }

    /// Drives a standalone connection (redis-rs's `driver` future) until the
    /// server closes it, its handle is dropped, it is closed with
    /// [`close_now`](Self::close_now), or it reaches its deadline while idle.
    /// `on_idle_expiry` runs when it is closed for its deadline, `on_lost`
    /// when the server or the network closed it.
    pub(crate) async fn drive(
        &self,
        driver: impl Future<Output = ()>,
        on_idle_expiry: impl FnOnce(),
        on_lost: impl FnOnce(),
    ) {
        let mut driver = std::pin::pin!(driver);
        loop {
            let deadline = self.deadline();
            tokio::select! {
                () = &mut driver => break,
                // Dropping the driver closes the socket; whoever closed it
                // counted it.
                () = self.closing.notified() => return,
                () = tokio::time::sleep_until(deadline) => {}
            }
            if self.deadline() > deadline {
                continue;
            }
            match self.close_if_idle() {
                Some(true) => {
                    on_idle_expiry();
                    return;
                }
                Some(false) => return,
                None => {}
            }
            // In use past its deadline: replaced when it comes back, unless a
            // re-authentication moves the deadline first.
            tokio::select! {
                () = &mut driver => break,
                () = self.closing.notified() => return,
                () = self.moved.notified() => {}
            }
        }
        // A connection dropped by the pool was marked closed first (see
        // `Drop for Connection`); otherwise the server or the network ended it.
        if self.close() {
            on_lost();
        }
    }
}
