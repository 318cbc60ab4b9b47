//! The shared handle: multiplexed connections that every caller shares,
//! with the IAM lifecycle (`builder` makes it).
//!
//! A [`SharedConnection`] holds a few slots (one connection per node by
//! default), each with its current [`link`] and a task that keeps it
//! authenticated and replaces it (`slot`). A request:
//!
//! 1. is refused before anything is sent if it needs a connection of its own
//!    (`refusal`);
//! 2. goes to the next slot in turn, on its current link (or, if that link
//!    was lost, on its successor, waited for up to the connect timeout);
//! 3. waits for its reply up to the response timeout (a late reply is
//!    matched and dropped by redis-rs, so nothing else is affected);
//! 4. on a failed connection (an I/O error), has the link closed, so that the
//!    slot's task replaces it at once.

mod builder;
pub(crate) mod link;
mod refusal;
pub(crate) mod slot;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::watch;

pub use builder::SharedConnectionBuilder;

use crate::clock::monotonic_now;
use crate::config::ConnectionConfig;
use crate::connection::failed_transport;
use crate::connector::Connector;
use crate::health::{self, Counts, Health, PoolHealth};
use crate::refresher::TokenRefresher;
use crate::telemetry;
use link::Link;
use slot::Slot;

/// A connection every task of a service can share: cheap to clone, and a
/// [`ConnectionLike`], so [`redis::AsyncCommands`], `query_async` and
/// atomic pipelines work on it directly. Every request in flight is
/// pipelined on one multiplexed connection per node (see
/// [`SharedConnectionBuilder::connections`]), which is what makes it several
/// times faster than checking a connection out of a pool per command.
///
/// It keeps the IAM lifecycle for you: each connection re-authenticates in
/// the background at its re-auth point, between requests (an atomic pipeline
/// is one request, so `AUTH` never lands inside its `MULTI`), retrying a
/// throttled or refused `AUTH` for as long as the connection lives; one that
/// reaches its deadline anyway, or is lost, is replaced by a successor opened
/// first, while requests already sent finish on the old one. In cluster mode
/// (serverless caches, MemoryDB, cluster-mode-enabled replication groups)
/// the `AUTH` goes to every node of the cluster connection.
///
/// Commands that need a connection of their own (`MULTI` or `WATCH` sent
/// alone, `SELECT`, the `SUBSCRIBE` family, blocking commands, `CLIENT
/// REPLY`, `RESET`, a user's `AUTH` or `HELLO`, ...) are refused before
/// anything is sent, with an error of kind [`redis::ErrorKind::Client`]
/// whose text starts with "refused by the shared connection" and says what
/// to use instead: a pooled connection ([`Pool`](crate::Pool)) for
/// transactions with `WATCH` and per-connection state.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use elasticache_iam::{ConnectionConfig, SharedConnection};
/// use redis::AsyncCommands;
///
/// let config = ConnectionConfig::from_env()?; // REDIS_URL, USE_IAM_AUTH, ...
/// let redis = SharedConnection::builder(config).build().await?;
/// let mut conn = redis.clone(); // one per task: clones share the connections
/// let () = conn.set_ex("greeting", "hello", 60).await?;
/// let mut pipe = redis::pipe();
/// pipe.atomic().incr("visits", 1).expire("visits", 3600);
/// let (visits, ()): (u64, ()) = pipe.query_async(&mut conn).await?;
/// # let _ = visits;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SharedConnection {
    inner: Arc<Shared>,
}

struct Shared {
    connector: Arc<Connector>,
    slots: Vec<Arc<Slot>>,
    next: AtomicUsize,
    response_timeout: Option<Duration>,
    connect_timeout: Duration,
    /// Dropped with the last handle: the slots' tasks end, and the links
    /// close once their last requests are answered.
    _stop: watch::Sender<()>,
}

impl fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedConnection")
            .field("connector", &self.inner.connector)
            .field("connections", &self.inner.slots.len())
            .finish_non_exhaustive()
    }
}

impl SharedConnection {
    /// A builder for a shared connection connecting as `config` says.
    pub fn builder(config: ConnectionConfig) -> SharedConnectionBuilder {
        SharedConnectionBuilder::new(config)
    }

    /// Counts since it started (connections opened, re-authentications the
    /// server confirmed, replacements, ...), read without I/O.
    pub fn counts(&self) -> Counts {
        health::counts(&self.inner.connector)
    }

    /// Sets its gauges (with the `metrics` feature): its live connections
    /// (as `idle`: a shared connection is never checked out), the
    /// configured number, and the token's age. Call it before rendering
    /// metrics (a `/metrics` handler); [`health`](Self::health) calls it too.
    /// Events (re-authentications, replacements, ...) and timings are
    /// recorded as they happen.
    pub fn record_metrics(&self) {
        let live = self.live();
        self.inner
            .connector
            .telemetry()
            .connections_now(live, 0, self.inner.slots.len() as u32);
        if let Some(refresher) = self.refresher() {
            refresher.record_metrics();
        }
    }

    /// Its live connections.
    fn live(&self) -> u32 {
        self.inner
            .slots
            .iter()
            .filter(|slot| !slot.link().life.is_closed())
            .count() as u32
    }

    /// Its, the token's and the server's state, for a `/health` endpoint: it
    /// runs `PING` and `INFO server` through the shared connection, or, when
    /// no connection is live (lost, its successor not open yet), reports that
    /// at once, so that a load balancer's check gets its answer in time. In
    /// [`Health::pool`], `connections` counts the live connections, `idle`
    /// is the same number (a shared connection is never checked out), and
    /// `max_size` is the configured number. Contains no secret.
    pub async fn health(&self) -> Health {
        self.record_metrics();
        let live = self.live();
        let connections = PoolHealth {
            connections: live,
            idle: live,
            max_size: self.inner.slots.len() as u32,
        };
        let token = self.refresher().map(TokenRefresher::status);
        // Without a live connection there is nothing to wait for: a health
        // check answers at once (the last connection error says why).
        let server = if live == 0 {
            Err("no live connection: it was lost, and a new one is not open yet".to_owned())
        } else {
            match tokio::time::timeout(health::WAIT, health::ping(&mut self.clone())).await {
                Ok(result) => result,
                Err(_) => Err(format!("no reply within {:?}", health::WAIT)),
            }
        };
        health::report(&self.inner.connector, connections, token, server)
    }

    /// The token refresher, with IAM authentication.
    pub fn refresher(&self) -> Option<&TokenRefresher> {
        self.inner.connector.refresher()
    }

    /// The configuration it connects with.
    pub fn config(&self) -> &ConnectionConfig {
        self.inner.connector.config()
    }

    /// Whether its connections are cluster-mode connections.
    pub fn is_cluster(&self) -> bool {
        self.inner.connector.is_cluster()
    }
}

impl Shared {
    /// The next slot with a live link. After a failover the successors come
    /// one by one (see `gate`): requests go to those back meanwhile. If none
    /// is live, the first successor to open, waited for up to the connect
    /// timeout (with one slot, as it opens; with more, checked every 10 ms).
    async fn link(&self) -> RedisResult<(&Slot, Arc<Link>)> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.slots.len();
        let any_live = || {
            (0..count).find_map(|i| {
                let slot = &self.slots[(first + i) % count];
                let link = slot.link();
                (!link.life.is_closed()).then_some((&**slot, link))
            })
        };
        if let Some(live) = any_live() {
            return Ok(live);
        }
        let slot = &self.slots[first % count];
        if count == 1 {
            return Ok((slot, slot.live(self.connect_timeout).await?));
        }
        let until = monotonic_now() + self.connect_timeout;
        while monotonic_now() < until {
            tokio::time::sleep(ANY_LIVE_CHECK).await;
            if let Some(live) = any_live() {
                return Ok(live);
            }
        }
        // The same error as a slot gives after waiting.
        Ok((slot, slot.live(Duration::ZERO).await?))
    }

    async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        refusal::command(cmd)?;
        let (slot, link) = self.link().await?;
        let reply = self.timed(slot, link.command(cmd)).await?;
        self.check(slot, &link, reply)
    }

    async fn pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        refusal::pipeline(pipeline)?;
        let (slot, link) = self.link().await?;
        let replies = self
            .timed(slot, link.pipeline(pipeline, offset, count))
            .await?;
        self.check(slot, &link, replies)
    }

    /// `request`'s own result, or a timeout after the response timeout
    /// (which has the slot check that its link still answers).
    async fn timed<T>(
        &self,
        slot: &Slot,
        request: impl Future<Output = RedisResult<T>>,
    ) -> RedisResult<RedisResult<T>> {
        let Some(limit) = self.response_timeout else {
            return Ok(request.await);
        };
        tokio::time::timeout(limit, request).await.map_err(|_| {
            slot.suspect();
            crate::connection::timed_out(format!(
                "no reply within {limit:?} (the response timeout)"
            ))
        })
    }

    /// A standalone connection that failed under a request is closed, so
    /// that its slot replaces it now; a cluster connection (whose nodes
    /// redis-rs reconnects) is checked by its slot.
    fn check<T>(&self, slot: &Slot, link: &Link, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(err) = &result
            && failed_transport(err)
        {
            if link.is_cluster() {
                slot.suspect();
            } else if link.life.close_now() {
                self.connector.lost();
                tracing::debug!(endpoint = %self.connector.endpoint(), error = %err, "shared connection failed under a request; replacing it");
            }
        }
        result
    }
}

/// How often a request that found no live connection checks whether one is
/// back (with more than one connection).
const ANY_LIVE_CHECK: Duration = Duration::from_millis(10);

impl ConnectionLike for SharedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if !telemetry::ENABLED {
            return Box::pin(self.inner.command(cmd));
        }
        Box::pin(
            self.inner
                .connector
                .telemetry()
                .operation_of(telemetry::operation_name(cmd), self.inner.command(cmd)),
        )
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        if !telemetry::ENABLED {
            return Box::pin(self.inner.pipeline(pipeline, offset, count));
        }
        Box::pin(self.inner.connector.telemetry().operation_of(
            telemetry::pipeline_name(pipeline),
            self.inner.pipeline(pipeline, offset, count),
        ))
    }

    fn get_db(&self) -> i64 {
        self.inner.connector.config().db()
    }
}
