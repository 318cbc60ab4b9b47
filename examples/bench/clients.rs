//! The ways of reaching the same Valkey, side by side.

use std::time::Duration;

use bb8_redis::RedisConnectionManager;
use elasticache_iam::{Pool, SharedConnection};
use redis::aio::MultiplexedConnection;

/// One client under test. Pools are used as services use them: a connection
/// is checked out for each command and given back.
pub(crate) enum Client {
    /// (a) This crate's pool: TLS, IAM authentication, re-auth and recycling.
    Iam(Pool),
    /// (b) A plain bb8-redis pool with password authentication, through the
    /// same TLS front.
    Plain(bb8::Pool<RedisConnectionManager>),
    /// (b′) A second pool exactly like (b): (b′)/(b) shows how far two
    /// identical clients differ on this machine, the noise floor.
    PlainAgain(bb8::Pool<RedisConnectionManager>),
    /// (s) This crate's shared handle: one multiplexed connection with TLS,
    /// IAM authentication, background re-auth and replacement, shared by
    /// every worker.
    Shared(SharedConnection),
    /// (c) One redis-rs multiplexed connection through the front, shared by
    /// every worker: the pipelining ceiling. With `TCP_NODELAY`, like every
    /// connection of this crate and redis-rs's own default from 2.0.
    Raw(MultiplexedConnection),
    /// (c₀) (c) with redis-rs 1.x's default TCP settings, Nagle's algorithm
    /// on: only on request (`--clients cn`), to show what that setting does
    /// on loopback.
    RawNagle(MultiplexedConnection),
    /// (d) One multiplexed connection to the upstream Valkey directly, without
    /// TLS or the front: for reference.
    Upstream(MultiplexedConnection),
}

impl Client {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Client::Iam(_) => "(a) IAM pool",
            Client::Plain(_) => "(b) bb8-redis, password",
            Client::PlainAgain(_) => "(b′) (b) again, noise control",
            Client::Shared(_) => "(s) IAM shared handle",
            Client::Raw(_) => "(c) one multiplexed connection",
            Client::RawNagle(_) => "(c₀) (c) with Nagle's algorithm",
            Client::Upstream(_) => "(d) upstream, no TLS",
        }
    }

    pub(crate) fn key(&self) -> &'static str {
        match self {
            Client::Iam(_) => "a",
            Client::Plain(_) => "b",
            Client::PlainAgain(_) => "b2",
            Client::Shared(_) => "s",
            Client::Raw(_) => "c",
            Client::RawNagle(_) => "cn",
            Client::Upstream(_) => "d",
        }
    }

    /// Run `cmd`, ignoring its reply.
    pub(crate) async fn run(&self, cmd: &redis::Cmd) -> Result<(), String> {
        match self {
            Client::Iam(pool) => {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                cmd.query_async::<()>(&mut *conn)
                    .await
                    .map_err(|e| e.to_string())
            }
            Client::Plain(pool) | Client::PlainAgain(pool) => {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                cmd.query_async::<()>(&mut *conn)
                    .await
                    .map_err(|e| e.to_string())
            }
            Client::Shared(shared) => cmd
                .query_async::<()>(&mut shared.clone())
                .await
                .map_err(|e| e.to_string()),
            Client::Raw(conn) | Client::RawNagle(conn) | Client::Upstream(conn) => cmd
                .query_async::<()>(&mut conn.clone())
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// A bb8-redis pool as its documentation builds one, with two settings made
/// to match ours so that only the connection layer differs: no `PING` on
/// every checkout (bb8's default, which would double its round trips), and
/// the same size and timeouts.
pub(crate) async fn plain_pool(url: &str, max_size: u32) -> bb8::Pool<RedisConnectionManager> {
    let manager = RedisConnectionManager::new(url).expect("bb8-redis URL");
    bb8::Pool::builder()
        .max_size(max_size)
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(30))
        .build(manager)
        .await
        .expect("bb8-redis pool")
}
