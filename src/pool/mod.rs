//! The pool: a bb8 pool of authenticated connections (`builder` makes it),
//! and `get` with precise errors.

mod builder;

use std::fmt;

use bb8::{PooledConnection, RunError};

pub use builder::PoolBuilder;

use crate::clock::monotonic_now;
use crate::config::ConnectionConfig;
use crate::error::{Error, ErrorKind, display_chain};
use crate::health::{self, Counts, Health, PoolHealth};
use crate::manager::Manager;
use crate::refresher::TokenRefresher;
use crate::telemetry;

/// A pool of connections that are always authenticated and never meet the
/// 12-hour cut. Cheap to clone; clones share the pool.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use elasticache_iam::{ConnectionConfig, Pool};
/// use redis::AsyncCommands;
///
/// let config = ConnectionConfig::from_env()?; // REDIS_URL, USE_IAM_AUTH, ...
/// let pool = Pool::builder(config).build().await?;
/// let mut conn = pool.get().await?;
/// let _: () = conn.set_ex("greeting", "hello", 60).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    inner: bb8::Pool<Manager>,
    manager: Manager,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("manager", &self.manager)
            .field("state", &self.inner.state())
            .finish()
    }
}

impl Pool {
    /// A builder for a pool connecting as `config` says.
    pub fn builder(config: ConnectionConfig) -> PoolBuilder {
        PoolBuilder::new(config)
    }

    /// A connection, authenticated, within its lifetime, and clean (as a new
    /// one would be).
    ///
    /// Waits for a free connection or a new one, up to the connection timeout.
    /// A caller that needs a new connection (none idle, room for one) gets a
    /// failure that waiting will not fix (authentication refused, TLS,
    /// credentials, configuration) at once; otherwise, at the timeout, the
    /// last attempt's error (kind [`Throttled`](ErrorKind::Throttled) or
    /// [`Io`](ErrorKind::Io)). A caller that found every connection in use
    /// waits for one to be given back, whatever new connections do meanwhile
    /// (unless none is left in use), and at the timeout is told the pool was
    /// busy (kind [`Io`](ErrorKind::Io)).
    pub async fn get(&self) -> Result<PooledConnection<'_, Manager>, Error> {
        if !telemetry::ENABLED {
            return self.checkout().await;
        }
        let started = monotonic_now();
        let got = self.checkout().await;
        self.manager.connector.telemetry().time(
            telemetry::WAIT_TIME,
            &[],
            monotonic_now().saturating_duration_since(started),
        );
        got
    }

    async fn checkout(&self) -> Result<PooledConnection<'_, Manager>, Error> {
        let attempts = self.manager.connector.attempts();
        let max_size = self.inner.config().max_size;
        let mut failures = attempts.subscribe();
        let seen = *failures.borrow_and_update();
        let state = self.inner.state();
        // Every connection in use: this caller waits for one to be given back,
        // and connection failures do not concern it while some are in use.
        let waits_for_busy_pool = state.idle_connections == 0 && state.connections >= max_size;
        // A caller that needs a new connection while the last attempt failed
        // hopelessly gets that error at once; its get() still asks bb8 for a
        // connection, so attempts (paced by the backoff) go on and the pool
        // recovers by itself.
        let already = attempts
            .failing()
            .filter(|e| hopeless(e) && !waits_for_busy_pool && needs_new(&state, max_size));
        let hopeless_failure = async {
            if let Some(err) = already {
                return err;
            }
            loop {
                if failures.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let Some(err) = attempts.last_failure().filter(hopeless) else {
                    continue;
                };
                let now = self.inner.state();
                let in_use = now.connections.saturating_sub(now.idle_connections);
                let concerns_caller = if waits_for_busy_pool {
                    // Nothing left that could be given back.
                    in_use == 0
                } else {
                    needs_new(&now, max_size)
                };
                if concerns_caller {
                    return err;
                }
            }
        };
        tokio::select! {
            biased;
            got = self.inner.get() => match got {
                Ok(conn) => Ok(conn),
                Err(RunError::User(err)) => Err(err),
                Err(RunError::TimedOut) => Err(self.timed_out(seen, waits_for_busy_pool)),
            },
            err = hopeless_failure => Err(err),
        }
    }

    fn timed_out(&self, seen: u64, waited_for_busy_pool: bool) -> Error {
        let connector = &self.manager.connector;
        let attempts = connector.attempts();
        let failed_meanwhile = (attempts.failures() != seen)
            .then(|| attempts.last_failure())
            .flatten();
        if !waited_for_busy_pool && let Some(err) = failed_meanwhile {
            return err;
        }
        let state = self.inner.state();
        let also = failed_meanwhile
            .map(|err| {
                format!(
                    "; opening a new one failed meanwhile: {}",
                    display_chain(&err)
                )
            })
            .unwrap_or_default();
        Error::new(
            ErrorKind::Io,
            format!(
                "the pool was busy: no connection to {} became free within the connection \
                 timeout ({} of {} connections in use{also}): raise max_size, or give \
                 connections back sooner",
                connector.endpoint(),
                state.connections.saturating_sub(state.idle_connections),
                self.inner.config().max_size,
            ),
        )
    }

    /// The pool's counts since it started (connections opened, re-auths,
    /// recycles, ...), read without I/O: cheap enough for a metrics scrape
    /// or a tight loop. [`health`](Self::health) includes them.
    pub fn counts(&self) -> Counts {
        health::counts(&self.manager.connector)
    }

    /// The pool's, the token's and the server's state, for a `/health`
    /// endpoint: it runs `PING` and `INFO server` on a pooled
    /// connection, waiting at most 5 s for one. Contains no secret.
    pub async fn health(&self) -> Health {
        self.record_metrics();
        let state = self.inner.state();
        let pool = PoolHealth {
            connections: state.connections,
            idle: state.idle_connections,
            max_size: self.inner.config().max_size,
        };
        let token = self.refresher().map(TokenRefresher::status);
        let server = match tokio::time::timeout(health::WAIT, self.get()).await {
            Ok(Ok(mut conn)) => health::ping(&mut *conn).await,
            Ok(Err(err)) => Err(display_chain(&err)),
            Err(_) => Err(format!(
                "no connection became free within {:?}",
                health::WAIT
            )),
        };
        health::report(&self.manager.connector, pool, token, server)
    }

    /// Sets the pool's gauges (with the `metrics` feature): connections
    /// idle and in use, the maximum, and the token's age. Call it before
    /// rendering metrics (a `/metrics` handler); [`health`](Self::health)
    /// calls it too. Events (re-authentications, replacements, ...) and
    /// timings are recorded as they happen.
    pub fn record_metrics(&self) {
        let state = self.inner.state();
        self.manager.connector.telemetry().connections_now(
            state.idle_connections,
            state.connections.saturating_sub(state.idle_connections),
            self.inner.config().max_size,
        );
        if let Some(refresher) = self.refresher() {
            refresher.record_metrics();
        }
    }

    /// The token refresher, with IAM authentication.
    pub fn refresher(&self) -> Option<&TokenRefresher> {
        self.manager.connector.refresher()
    }

    /// The configuration the pool connects with.
    pub fn config(&self) -> &ConnectionConfig {
        self.manager.connector.config()
    }

    /// Whether connections are cluster-mode connections.
    pub fn is_cluster(&self) -> bool {
        self.manager.connector.is_cluster()
    }

    /// bb8's view: connections open and idle, and its statistics.
    pub fn state(&self) -> bb8::State {
        self.inner.state()
    }
}

/// Whether a caller can only be served by a new connection: none idle, and
/// room to open one.
fn needs_new(state: &bb8::State, max_size: u32) -> bool {
    state.idle_connections == 0 && state.connections < max_size
}

/// Failures that waiting for another attempt will not fix soon.
fn hopeless(err: &Error) -> bool {
    !matches!(err.kind(), ErrorKind::Throttled | ErrorKind::Io)
}
