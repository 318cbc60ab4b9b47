//! A local Amazon ElastiCache stand-in, for testing IAM authentication end to
//! end on one machine with no AWS account.
//!
//! A [`Stack`] runs, in one process:
//!
//! - an **upstream** `valkey-server` (or `redis-server`) on a free loopback port;
//! - the **front**: a TLS listener (certificate made at start-up, CA written to a
//!   file; with mutual TLS a client certificate demanded, and one made) and RESP proxy that authenticates every connection as ElastiCache
//!   does: `AUTH`/`HELLO ... AUTH` first, the IAM token's SigV4 signature
//!   recomputed from the stack's known credentials, every claim checked (see
//!   [`verify::Refusal`] for the reasons counted), connections closed once their
//!   last authentication is older than the max auth age (the 12-hour rule,
//!   scalable to seconds); a serverless cache's endpoint and replica-read
//!   endpoint route to a real cluster behind them;
//! - **mock AWS credential endpoints** (ECS container credentials, EKS Pod
//!   Identity, STS `AssumeRoleWithWebIdentity`) issuing temporary credentials the
//!   front accepts until they expire, and an **admin endpoint** for counters and
//!   faults.
//!
//! | module | concern |
//! |---|---|
//! | `config` | [`StackConfig`]: how to run a stack |
//! | `stack` | [`Stack`]: the running stack, started and stopped |
//! | `shared` | what the front, the endpoints and the stack share |
//! | `upstream` | the real server process |
//! | `cluster` | [`Cluster`]: a real Valkey cluster of such processes, formed by the stack itself |
//! | `tls` | CA, server certificate and (mutual TLS) client certificate, rustls configuration |
//! | `resp` | command and reply framing |
//! | `verify` | IAM token verification |
//! | `registry` | known credentials and allowed principals |
//! | `front` | the TLS RESP proxy: authentication, 12-hour rule, topology |
//! | `topology` | topology replies and redirects with the fronts' addresses |
//! | `keys`, `router` | the serverless fronts' routing: the server's key specs, key slots, the slot map |
//! | `serverless` | one serverless connection's routing: transactions, `ASKING`, pub/sub, replica reads |
//! | `writer` | the front's replies in command order, pushes (and RESP2 messages) as they arrive |
//! | `subscriptions` | a connection's pub/sub channels, per family |
//! | `endpoints` | the mock AWS credential endpoints (ECS, EKS Pod Identity, STS) and the admin API (`/stats`, `/faults`) |
//! | `stats`, `faults` | counters and injected faults |
//! | `node_faults` | faults of the servers: stop, kill, restart, failover, slot migration |
//! | `clock` | the wall clock, injectable |

#![forbid(unsafe_code)]

pub mod clock;
mod cluster;
mod config;
pub mod endpoints;
mod faults;
mod front;
mod keys;
mod node_faults;
pub mod registry;
pub mod resp;
mod router;
mod serverless;
mod shared;
mod stack;
mod stats;
mod subscriptions;
mod tls;
mod topology;
mod upstream;
pub mod verify;
mod writer;

pub use clock::{ManualClock, SystemClock, WallClock};
pub use cluster::{Cluster, ClusterNode, SLOTS};
pub use config::{ClusterShape, Mode, StackConfig};
pub use faults::Faults;
pub use registry::{
    KnownCredentials, Registry, STATIC_ACCESS_KEY_ID, STATIC_PRINCIPAL, STATIC_SECRET_ACCESS_KEY,
};
pub use stack::{Stack, StartError};
pub use stats::{NodeStats, Stats, StatsSnapshot};
pub use upstream::{Engine, UpstreamError};
