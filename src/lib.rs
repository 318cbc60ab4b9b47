//! IAM authentication for Amazon ElastiCache (Valkey / Redis OSS, serverless or
//! node-based) and Amazon MemoryDB.
//!
//! With IAM authentication a client connects with `AUTH <user_id> <token>`, where
//! the token is a SigV4-presigned request that the server verifies. Tokens are
//! valid for 15 minutes, and no longer than the temporary credentials that signed
//! them. This crate makes them correctly the first time: the right name (the
//! cache's, lowercased, never the endpoint host), `ResourceType=ServerlessCache`
//! for serverless caches, the user id as `AUTH` must send it, and a usable-until
//! time that accounts for the credentials' expiry.
//!
//! # Layout
//!
//! | module | concern |
//! |---|---|
//! | `target` | [`Target`] (serverless cache, replication group, MemoryDB cluster) and [`UserId`]: AWS's naming rules, checked on ASCII only; the one-target choice every builder makes |
//! | `region` | AWS region ids, checked before they are signed |
//! | `signer` | [`TokenSigner`]: a pure function (credentials, time) -> [`AuthToken`], on `aws-sigv4` query presigning |
//! | `token` | [`AuthToken`]: the bearer secret (redacted `Debug`, no `Display`, zeroized) and its validity window |
//! | `lifecycle` | [`Lifecycle`]: one home for the 12-hour rules: token refresh interval, re-auth time, maximum connection age; their defaults, environment variables, bounds, cross-checks and per-connection jitter |
//! | `refresher` | [`TokenRefresher`]: the current token in memory, a background task that rotates it, single-flight signing, backoff, [`RefresherStatus`] |
//! | `redis_auth` | the refresher as redis-rs's `StreamingCredentialsProvider`, and its bookkeeping: one `AUTH` per new connection, re-authentication on a per-connection schedule; the initial-token-only variant this crate's own cluster connections use |
//! | `config` | [`ConnectionConfig`]: endpoint, [`Auth`] (none, password, IAM), [`TlsOptions`], [`Lifecycle`]; built from a URL, builder methods or the environment (`config::builder`, `config::url`) |
//! | `env` | values from environment variables |
//! | `tls` | one rustls client configuration per pool (roots, client certificate, minimum version); handshakes with SNI and hostname verification |
//! | `socket` | TCP settings of every connection: no delay, keepalive and `TCP_USER_TIMEOUT`, so a vanished node is noticed in about 30 s |
//! | `replies` | what the server's error replies mean: refused (with the checklist), throttled, no `HELLO`, I/O |
//! | `gate` | the connection-attempt pacer: a bounded number at once, backoff after failures, replacements after a loss spread over `reconnect_spread` |
//! | `connector` | opening one authenticated connection, whatever holds it: its settings checked before anything starts (`connector::checked`), TCP, TLS, `HELLO 3 AUTH` / `AUTH` fallback (`connector::standalone`), cluster client set-up, the record of attempts (`connector::attempts`) |
//! | `command` | what a command does to its connection: its block time (`BLPOP`, `XREAD BLOCK`, `WAIT`), the session state it sets or clears |
//! | `session` | the session state a borrower can leave on a connection (`MULTI`, `WATCH`, `SELECT`, subscriptions, ...), recorded with the server's answers |
//! | `life` | a connection's life: idle, in use or closed; its deadline; the task that drives its socket and closes it at its deadline when idle, or at once when a reply will never be read |
//! | `reauth` | re-authentication of a live connection: its re-auth point, the `AUTH` with the current token, what a refusal or throttle means |
//! | `connection` | [`Connection`]: the command path of a pooled connection: reply deadlines with block times, closing on unanswered commands, session tracking, re-authentication riding with the next command (every node in cluster mode, and a timer for idle cluster connections) |
//! | `counters` | the event counts of a pool, shared handle or dedicated connection, each also recorded as a metric |
//! | `telemetry` | (feature `metrics`) metrics through the `metrics` facade: OpenTelemetry database-client names for connections and operations, `elasticache_iam.*` for the IAM lifecycle; without the feature, nothing |
//! | `shared` | [`SharedConnection`]: multiplexed connections every task shares (`shared::link`: one connection, its requests and re-authentication; `shared::slot`: the task that re-authenticates it in the background and replaces it successor-first at its deadline, on loss or when it stops answering; `shared::refusal`: the commands that need a connection of their own); [`SharedConnectionBuilder`] (`shared::builder`) |
//! | `subscriber` | [`Subscriber`]: a dedicated RESP3 subscriber, re-authenticated while subscribed, re-subscribed on a successor, its gaps counted and logged |
//! | `blocking` | [`BlockingConnection`]: a dedicated connection for blocking consumers; long blocks sent in slices so that it re-authenticates between them |
//! | `manager` | [`Manager`], the thin `bb8::ManageConnection` adapter over the connector: report closed, failed, dirty and expired connections |
//! | `pool` | [`Pool`]: the bb8 pool and `get` with precise errors; [`PoolBuilder`] (`pool::builder`): its settings and defaults |
//! | `health` | [`Health`]: pool, token and server state for `/health` endpoints |
//! | `error` | [`Error`], one opaque type with an [`ErrorKind`] and the parameters at fault; gathering every problem a `build()` finds |
//! | `backoff` | per-connection jitter, and the exponential backoff of every retry loop |
//! | `clock` | the two clocks: wall time (an injected `TimeSource`) and tokio's scheduling time |
//! | `lock` | locking a mutex a panic may have poisoned |
//! | `test_util` | (feature `test-util`) a wall clock following tokio's paused clock, a scripted credentials provider, an in-process fake server over memory |
//!
//! ```text
//! credentials provider (aws-config default chain, or injected)
//!         |  Credentials (+ expiry), once per signing cycle
//!         v
//!   TokenSigner    pure: (credentials, time) -> AuthToken
//!         |
//!         v
//!   TokenRefresher current token in memory; background rotation; single-flight
//!         |                  (Lifecycle: when to rotate, re-authenticate, replace)
//!         v
//!   Connector      connect: gate, TCP + TLS + HELLO 3 AUTH <user_id> <token> (once)
//!         |        (cluster mode: redis-rs authenticates each node connection it
//!         |        opens with the current token; re-authentication is ours)
//!         v
//!   Connection     each command: block-time deadlines, session tracking,
//!         |        re-AUTH (when due) written with the next command
//!         v
//!   Manager        bb8 adapter; check-in: dirty, unanswered or past its deadline -> replaced
//!         |
//!         v
//!   bb8 Pool  -->  service code;  Pool::health() reports pool, token and server
//!
//!   Connector  --> SharedConnection: one multiplexed connection per node,
//!                  shared by every task; AUTH in the background between
//!                  requests (every node in cluster mode), successor-first
//!                  replacement; health() like the pool's
//! ```
//!
//! The binary `elasticache-iam-token` prints a token for `valkey-cli` /
//! `redis-cli` and scripts, with credentials from the AWS default chain.
//!
//! # Quick start
//!
//! ```
//! use std::time::SystemTime;
//! use aws_credential_types::Credentials;
//! use elasticache_iam::TokenSigner;
//!
//! let signer = TokenSigner::builder()
//!     .serverless_cache("my-serverless-cache") // the cache's name, not its endpoint
//!     .user_id("iam-user-01")                  // user id == user name
//!     .region("us-east-1")
//!     .build()?;
//!
//! // In a service the credentials come from the aws-config default chain
//! // (`SdkConfig::credentials_provider()`); the time from your clock.
//! # let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "docs");
//! # let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_705_322_096);
//! let token = signer.sign(&credentials, now)?;
//!
//! // AUTH <user> <token>, over TLS:
//! let (user, password) = (signer.user_id().as_str(), token.expose_secret());
//! # assert_eq!(user, "iam-user-01");
//! # assert!(password.contains("ResourceType=ServerlessCache"));
//! // The token may be used until token.usable_until(); re-sign before then.
//! # Ok::<(), elasticache_iam::Error>(())
//! ```
//!
//! In a service, most traffic goes through a [`SharedConnection`]: cheap to
//! clone, every request in flight pipelined on one multiplexed connection per
//! node, re-authenticated in the background between requests and replaced
//! before the 12-hour cut without failing a command. Commands that need a
//! connection of their own (`WATCH` transactions, `SELECT`, subscriptions,
//! blocking commands, ...) are refused by it with an error naming the right
//! tool:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use elasticache_iam::{ConnectionConfig, SharedConnection};
//! use redis::AsyncCommands;
//!
//! let config = ConnectionConfig::from_env()?; // REDIS_URL, USE_IAM_AUTH, ...
//! let redis = SharedConnection::builder(config).build().await?;
//! let () = redis.clone().set_ex("greeting", "hello", 60).await?;
//! # Ok(()) }
//! ```
//!
//! For transactions with `WATCH` and per-connection state, use the [`Pool`]: connections authenticated with the
//! refresher's current token, re-authenticated before the 12-hour cut and
//! replaced before it as a safety net. A connection comes back to the next
//! borrower as a fresh one would: one given back inside `MULTI`, with a
//! `WATCH`, in another database or subscribed is replaced, and one whose
//! reply never arrived is closed (see [`Connection`]):
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use elasticache_iam::{ConnectionConfig, Pool};
//! use redis::AsyncCommands;
//!
//! let config = ConnectionConfig::builder()
//!     .url("rediss://my-cache-abc123.serverless.use1.cache.amazonaws.com:6379")
//!     .serverless_cache("my-cache")
//!     .user_id("iam-user-01")
//!     .region("us-east-1")
//!     .build()?; // or ConnectionConfig::from_env()
//! let pool = Pool::builder(config).build().await?;
//! let mut conn = pool.get().await?;
//! let () = conn.set_ex("greeting", "hello", 60).await?;
//! # Ok(()) }
//! ```
//!
//! With redis-rs's own clients, hand a [`TokenRefresher`] to redis-rs as the
//! connection's credentials provider:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use elasticache_iam::TokenRefresher;
//!
//! let refresher = TokenRefresher::builder()
//!     .serverless_cache("my-serverless-cache")
//!     .user_id("iam-user-01")
//!     .region("us-east-1")
//!     .from_env() // ELASTICACHE_TOKEN_REFRESH_INTERVAL, ELASTICACHE_REAUTH_AFTER
//!     .build()    // credentials from the aws-config default chain
//!     .await?;
//! let client = redis::cluster::ClusterClientBuilder::new(vec![
//!     "rediss://my-serverless-cache-abc123.serverless.use1.cache.amazonaws.com:6379",
//! ])
//! .set_credentials_provider(refresher.clone())
//! .build()?;
//! # Ok(()) }
//! ```
//!
//! # Troubleshooting `WRONGPASS`
//!
//! The server answers every refused token with the same `WRONGPASS`. Check, in
//! order: the cache *name* is signed (not the endpoint host name); the user id
//! equals the user name; serverless caches need `ResourceType=ServerlessCache`
//! (use [`Target::serverless_cache`]); the region is the cache's; the principal
//! has `elasticache:Connect` (or `memorydb:Connect`) on both the cache and the
//! user ARNs; the clock is right (`elasticache-iam-token --signing-time` helps
//! compare); the credentials had not expired ([`AuthToken::usable_until`]).
//!
//! # Secrets
//!
//! Tokens, secret keys and session tokens never appear in `Debug`, `Display`,
//! errors or logs. `aws-sigv4` logs the canonical request at TRACE level, which
//! when presigning holds the session token; the signer silences that crate's
//! events for the duration of the signing call.

#![forbid(unsafe_code)]

mod backoff;
mod blocking;
mod clock;
mod command;
mod config;
mod connection;
mod connector;
mod counters;
mod env;
mod error;
mod gate;
mod health;
mod life;
mod lifecycle;
mod lock;
mod manager;
mod pool;
mod presign;
mod reauth;
mod redis_auth;
mod refresher;
mod region;
mod replies;
mod session;
mod shared;
mod signer;
mod socket;
mod subscriber;
mod target;
mod telemetry;
#[cfg(feature = "test-util")]
pub mod test_util;
mod tls;
mod token;

pub use blocking::BlockingConnection;
pub use config::{
    Auth, ConnectionConfig, ConnectionConfigBuilder, IamAuth, TlsOptions, TlsVersion,
};
pub use connection::Connection;
pub use error::{Error, ErrorKind, display_chain};
pub use health::{Counts, Health, PoolHealth};
pub use lifecycle::Lifecycle;
pub use manager::Manager;
pub use pool::{Pool, PoolBuilder};
pub use refresher::{RefresherStatus, TokenRefresher, TokenRefresherBuilder};
pub use shared::{SharedConnection, SharedConnectionBuilder};
pub use signer::{TokenSigner, TokenSignerBuilder};
pub use subscriber::Subscriber;
pub use target::{Target, TargetKind, UserId};
pub use token::AuthToken;
