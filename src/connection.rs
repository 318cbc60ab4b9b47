//! A pooled connection and its life: when it must re-authenticate, when it
//! must be replaced, and whether the server has closed it.
//!
//! Two clocks per connection, both on tokio's (pausable) clock:
//!
//! * the **re-auth point**, 90-100 % of `reauth_after` after its last
//!   successful authentication: at the first checkout past it, it sends
//!   `AUTH` with the current token;
//! * the **deadline**, 95-100 % of `max_connection_age` after its last
//!   successful authentication, always under the 12-hour cut: past it the
//!   connection is broken and bb8 replaces it. An idle connection is closed
//!   at its deadline by the task that drives it, so that no idle connection
//!   meets the server's cut either.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use backon::ExponentialBackoff;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backoff::{exponential, jittered};
use crate::clock::monotonic_now;
use crate::config::Lifecycle;

/// A connection from the pool: run commands on it as on any redis-rs async
/// connection (it implements [`ConnectionLike`], so [`redis::AsyncCommands`]
/// and `query_async` work through the pool's guard).
///
/// Give it back (drop the guard) when done: re-authentication and
/// replacement happen only while a connection is in the pool, so holding one
/// for hours lets it meet the server's 12-hour cut.
pub struct Connection {
    pub(crate) inner: Inner,
    pub(crate) life: std::sync::Arc<Life>,
    /// The next re-authentication, and the backoff after failed ones.
    pub(crate) reauth: Reauth,
}

pub(crate) enum Inner {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.inner {
            Inner::Standalone(_) => "standalone",
            Inner::Cluster(_) => "cluster",
        };
        f.debug_struct("Connection")
            .field("mode", &mode)
            .field("life", &self.life)
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Before the redis-rs handle drops and its driver ends.
        self.life.close();
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Inner::Standalone(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Inner::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Standalone(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

const IDLE: u8 = 0;
const IN_USE: u8 = 1;
const CLOSED: u8 = 2;

/// What a connection and the task driving it share.
pub(crate) struct Life {
    state: AtomicU8,
    deadline: Mutex<Instant>,
    /// Signalled when the deadline moves.
    moved: Notify,
    max_age: Duration,
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
        let max_age = lifecycle.max_connection_age;
        Self {
            state: AtomicU8::new(IDLE),
            deadline: Mutex::new(monotonic_now() + jittered(max_age, 0.95)),
            moved: Notify::new(),
            max_age,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a successful re-authentication: a new deadline from now.
    pub(crate) fn authenticated(&self) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) =
            monotonic_now() + jittered(self.max_age, 0.95);
        self.moved.notify_one();
    }

    pub(crate) fn is_expired(&self) -> bool {
        monotonic_now() >= self.deadline()
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
        self.state.swap(CLOSED, Ordering::AcqRel) != CLOSED
    }

    /// The driver's side: close an idle connection; false if it is in use.
    fn close_if_idle(&self) -> bool {
        self.state
            .compare_exchange(IDLE, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            || self.state.load(Ordering::Acquire) == CLOSED
    }

    /// Drives a standalone connection (redis-rs's `driver` future) until the
    /// server closes it, its handle is dropped, or it reaches its deadline
    /// while idle. `on_idle_expiry` runs when it is closed for its deadline,
    /// `on_lost` when the server or the network closed it.
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
                () = tokio::time::sleep_until(deadline) => {}
            }
            if self.deadline() > deadline {
                continue;
            }
            if self.close_if_idle() {
                // Dropping the driver closes the socket.
                on_idle_expiry();
                return;
            }
            // In use past its deadline: replaced when it comes back, unless a
            // re-authentication moves the deadline first.
            tokio::select! {
                () = &mut driver => break,
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

/// When a connection re-authenticates next.
#[derive(Debug)]
pub(crate) struct Reauth {
    pub(crate) at: Instant,
    retry: Option<ExponentialBackoff>,
}

impl Reauth {
    /// Just authenticated.
    pub(crate) fn new(lifecycle: &Lifecycle) -> Self {
        Self {
            at: monotonic_now() + jittered(lifecycle.reauth_after, 0.9),
            retry: None,
        }
    }

    pub(crate) fn is_due(&self) -> bool {
        monotonic_now() >= self.at
    }

    /// A failed attempt: try again after a jittered, growing delay (1-2 s,
    /// 2-4 s, ... up to a minute or two).
    pub(crate) fn failed(&mut self) -> Duration {
        let delay = self
            .retry
            .get_or_insert_with(|| exponential(Duration::from_secs(1), Duration::from_secs(60)))
            .next()
            .unwrap_or(Duration::from_secs(60));
        self.at = monotonic_now() + delay;
        delay
    }
}
