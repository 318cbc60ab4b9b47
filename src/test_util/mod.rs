//! Fakes for testing code that uses this crate (feature `test-util`).
//!
//! * [`TokioWallClock`]: a wall clock that follows tokio's clock, so a test
//!   with paused tokio time moves both clocks together and simulates hours in
//!   milliseconds.
//! * [`ScriptedCredentials`]: a credentials provider with a script: long-term
//!   or temporary credentials, a cache-like reuse rule, outages and hangs at
//!   set times, and a log of every call.
//! * [`FakeServer`]: an in-process server over memory (given to a builder's
//!   `transport`), counting authentications and dropping every connection on
//!   demand, for simulations of many processes with tokio's paused clock.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), elasticache_iam::Error> {
//! use std::time::{Duration, UNIX_EPOCH};
//! use elasticache_iam::TokenRefresher;
//! use elasticache_iam::test_util::{ScriptedCredentials, TokioWallClock};
//!
//! let clock = TokioWallClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
//! let credentials = ScriptedCredentials::temporary(clock.clone(), Duration::from_secs(300));
//! let refresher = TokenRefresher::builder()
//!     .replication_group("my-group")
//!     .user_id("app")
//!     .region("eu-west-1")
//!     .credentials_provider(credentials.clone())
//!     .time_source(clock.clone())
//!     .build()
//!     .await?;
//! refresher.token().await?;
//! tokio::time::sleep(Duration::from_secs(3600)).await; // an hour, instantly
//! assert!(credentials.calls().len() > 10);
//! # Ok(()) }
//! ```

mod server;

pub use server::{FakeServer, Transport};

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials};
use aws_smithy_async::time::{SharedTimeSource, TimeSource};

use crate::clock::monotonic_now;
use crate::lock::lock;

/// A wall clock that starts at a given time and then follows tokio's clock
/// (paused and advanced in tests), plus any [`jump`](Self::jump)s.
#[derive(Clone, Debug)]
pub struct TokioWallClock {
    inner: Arc<Mutex<ClockState>>,
}

#[derive(Debug)]
struct ClockState {
    start: SystemTime,
    started: tokio::time::Instant,
    jumped: Duration,
}

impl TokioWallClock {
    /// A clock showing `start` now. Call inside a Tokio runtime.
    pub fn new(start: SystemTime) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ClockState {
                start,
                started: monotonic_now(),
                jumped: Duration::ZERO,
            })),
        }
    }

    /// Move the wall clock forward without moving tokio's clock (a suspended
    /// process, or a clock correction).
    pub fn jump(&self, by: Duration) {
        lock(&self.inner).jumped += by;
    }
}

impl TimeSource for TokioWallClock {
    fn now(&self) -> SystemTime {
        let state = lock(&self.inner);
        state.start + (monotonic_now() - state.started) + state.jumped
    }
}

/// One call to a [`ScriptedCredentials`] provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderCall {
    /// When it was made (by the provider's clock).
    pub at: SystemTime,
    /// The access key id handed out, or the failure text.
    pub outcome: Result<String, String>,
}

/// A scripted credentials provider. Clones share one script and one log.
///
/// Access key ids are `AKIDSCRIPTED0001`, `AKIDSCRIPTED0002`, ... in the order
/// the credentials are issued; secrets and session tokens are derived from
/// them and contain `SCRIPTED-SECRET` (a marker for leak tests).
#[derive(Clone)]
pub struct ScriptedCredentials {
    inner: Arc<Mutex<Script>>,
}

struct Script {
    clock: SharedTimeSource,
    lifetime: Option<Duration>,
    reuse_while_more_than: Option<Duration>,
    latency: Duration,
    windows: Vec<(SystemTime, SystemTime, Fault)>,
    issued: u32,
    current: Option<Credentials>,
    calls: Vec<ProviderCall>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Fail,
    Hang,
}

/// The failure a [`ScriptedCredentials`] outage returns, as the source of its
/// `CredentialsError`.
#[derive(Debug)]
pub struct ScriptedOutage;

impl fmt::Display for ScriptedOutage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("scripted credentials outage")
    }
}

impl std::error::Error for ScriptedOutage {}

impl ScriptedCredentials {
    /// Long-term credentials (no expiry), the same on every call.
    pub fn long_term(clock: impl TimeSource + 'static) -> Self {
        Self::new(SharedTimeSource::new(clock), None)
    }

    /// Temporary credentials valid for `lifetime`, new on every call (as the
    /// container, instance-metadata and STS providers hand out).
    pub fn temporary(clock: impl TimeSource + 'static, lifetime: Duration) -> Self {
        Self::new(SharedTimeSource::new(clock), Some(lifetime))
    }

    fn new(clock: SharedTimeSource, lifetime: Option<Duration>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Script {
                clock,
                lifetime,
                reuse_while_more_than: None,
                latency: Duration::ZERO,
                windows: Vec::new(),
                issued: 0,
                current: None,
                calls: Vec::new(),
            })),
        }
    }

    /// Behave like a cache: hand out the same temporary credentials while more
    /// than `remaining` of their life is left, then new ones.
    pub fn reuse_while_more_than(self, remaining: Duration) -> Self {
        lock(&self.inner).reuse_while_more_than = Some(remaining);
        self
    }

    /// Answer every call after `latency` (on tokio's clock), as a provider
    /// that makes a network call does. The call is logged when it is made.
    pub fn with_latency(self, latency: Duration) -> Self {
        lock(&self.inner).latency = latency;
        self
    }

    /// Fail every call made in `[from, until)`.
    pub fn fail_between(&self, from: SystemTime, until: SystemTime) {
        lock(&self.inner).windows.push((from, until, Fault::Fail));
    }

    /// Never answer calls made in `[from, until)`.
    pub fn hang_between(&self, from: SystemTime, until: SystemTime) {
        lock(&self.inner).windows.push((from, until, Fault::Hang));
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<ProviderCall> {
        lock(&self.inner).calls.clone()
    }

    fn call(&self) -> Option<provider::Result> {
        let mut script = lock(&self.inner);
        let now = script.clock.now();
        let fault = script
            .windows
            .iter()
            .find(|(from, until, _)| (*from..*until).contains(&now))
            .map(|(_, _, fault)| *fault);
        let outcome = match fault {
            Some(Fault::Hang) => {
                script.calls.push(ProviderCall {
                    at: now,
                    outcome: Err("hung".into()),
                });
                return None;
            }
            Some(Fault::Fail) => Err(CredentialsError::provider_error(ScriptedOutage)),
            None => Ok(script.credentials(now)),
        };
        script.calls.push(ProviderCall {
            at: now,
            outcome: match &outcome {
                Ok(c) => Ok(c.access_key_id().to_owned()),
                Err(_) => Err(ScriptedOutage.to_string()),
            },
        });
        Some(outcome)
    }
}

impl Script {
    fn credentials(&mut self, now: SystemTime) -> Credentials {
        let reusable = match (&self.current, self.reuse_while_more_than) {
            (Some(current), Some(remaining)) => current
                .expiry()
                .is_none_or(|expiry| expiry > now + remaining),
            (Some(_), None) => self.lifetime.is_none(),
            (None, _) => false,
        };
        if let (true, Some(current)) = (reusable, &self.current) {
            return current.clone();
        }
        self.issued += 1;
        let n = self.issued;
        let credentials = Credentials::new(
            format!("AKIDSCRIPTED{n:04}"),
            format!("SCRIPTED-SECRET-key-{n}"),
            self.lifetime
                .map(|_| format!("SCRIPTED-SECRET-session-{n}")),
            self.lifetime.map(|lifetime| now + lifetime),
            "scripted",
        );
        self.current = Some(credentials.clone());
        credentials
    }
}

impl ProvideCredentials for ScriptedCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let latency = lock(&self.inner).latency;
        match self.call() {
            Some(outcome) if latency.is_zero() => {
                provider::future::ProvideCredentials::ready(outcome)
            }
            Some(outcome) => provider::future::ProvideCredentials::new(async move {
                tokio::time::sleep(latency).await;
                outcome
            }),
            None => provider::future::ProvideCredentials::new(std::future::pending()),
        }
    }
}

impl fmt::Debug for ScriptedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let script = lock(&self.inner);
        f.debug_struct("ScriptedCredentials")
            .field("lifetime", &script.lifetime)
            .field("issued", &script.issued)
            .field("calls", &script.calls.len())
            .finish_non_exhaustive()
    }
}
