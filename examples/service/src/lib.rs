//! An HTTP service on `elasticache-iam`, as services on ECS and EKS are
//! written: configured only from the environment, one shared connection
//! handle for every request, a `/health/redis` endpoint a load balancer's
//! target group can use, Prometheus metrics, and a shutdown on SIGTERM that
//! drains.
//!
//! What it serves (every answer JSON; errors as `{"error": {"code",
//! "message"}}`):
//!
//! | route | what |
//! |---|---|
//! | `GET /health/redis` | the crate's health report; 200 when healthy, 503 when not |
//! | `GET /metrics` | Prometheus text format |
//! | `POST /users/{user}/sessions` | log in: a new session |
//! | `GET /users/{user}/sessions` | the user's live sessions |
//! | `DELETE /users/{user}/sessions` | revoke all of the user's sessions |
//! | `GET /users/{user}/sessions/{id}` | a session, its lifetime renewed |
//! | `DELETE /users/{user}/sessions/{id}` | revoke one session |
//! | `POST /users/{user}/tokens/revoked` | blacklist a token id until its expiry |
//! | `POST /users/{user}/families/revoked` | blacklist a whole token family |
//! | `GET /users/{user}/tokens/{id}?family=F` | whether a token is revoked |
//! | `POST /users/{user}/codes/{purpose}` | issue a one-time code |
//! | `POST /users/{user}/codes/{purpose}/verify` | check a code: works once, void after 5 wrong guesses |
//!
//! Layout:
//!
//! | file | concern |
//! |---|---|
//! | `settings.rs` | the service's own environment variables |
//! | `store.rs` | the Valkey data model: keys, TTLs, atomic operations |
//! | `routes.rs` | HTTP handlers and the router |
//! | `problem.rs` | the JSON error shape and status codes |
//! | `telemetry.rs` | the Prometheus recorder and logging |
//! | `client.rs` | an HTTP client of the API, and one round of the flows, checked |
//! | `startup.rs` | start-up diagnosis (exit 2: configuration, 1: the rest) and graceful shutdown |
//! | `main.rs` | the `elasticache-iam-service` binary |
//! | `bin/service-load.rs` | the load client the demo drives it with |

pub mod client;
pub mod problem;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
