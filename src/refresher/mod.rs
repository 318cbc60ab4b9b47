//! The token refresher: a fresh token in memory, rotated in the background.
//!
//! One [`TokenRefresher`] serves a whole process. It holds the current token
//! with its signing time and usable-until time as one value; reading it is a
//! short lock and a clone, never a signing. A background task re-signs every
//! token refresh interval, and earlier when the credentials expire sooner. Whoever
//! needs a token when none is usable runs one signing cycle, and everyone else
//! arriving meanwhile shares its outcome (single-flight).
//!
//! Failures are retried by the background task with jittered exponential
//! backoff, capped, for as long as the refresher lives. Meanwhile the last good
//! token is served until its usable life ends; after that, reading fails with an
//! error whose source is the last failure's cause. Reads do not start cycles
//! while the task is retrying, so an outage does not turn every read into a
//! call to the credentials provider. The error names where the last
//! credentials came from (`source.rs`), so the message says what to check.
//! The default chain's credentials are reused until near their expiry
//! (`reuse.rs`), so the credential source is asked about once per credential
//! lifetime, not once per rotation.

mod builder;
mod reuse;
mod source;
mod status;
mod task;

use std::any::Any;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_async::time::SharedTimeSource;
use futures_util::FutureExt;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::clock::monotonic_now;
use crate::error::{Error, display_chain};
use crate::lock::lock;
use crate::signer::TokenSigner;
use crate::telemetry::{self, Telemetry};
use crate::token::{AuthToken, SAFETY_MARGIN, format_time};
use aws_credential_types::Credentials;
use reuse::Kept;

pub use builder::TokenRefresherBuilder;
pub use status::RefresherStatus;

/// The background task re-signs at the latest this long before a token's
/// usable-until, so that retries fit before [`SAFETY_MARGIN`](TokenRefresher::SAFETY_MARGIN) stops it being
/// handed out.
const RESIGN_LEAD: Duration = Duration::from_secs(90);

/// However short-lived the credentials, two scheduled signings are at least
/// this far apart.
const MIN_RESIGN_GAP: Duration = Duration::from_secs(5);

/// A background retry this late means the task is not running.
const STALL_GRACE: Duration = Duration::from_secs(5);

/// A credentials provider that has not answered after this long has failed.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);

/// `refresh_now` calls within this long of a completed cycle get that cycle's
/// outcome instead of starting another, so a burst of refused connections
/// signs once.
const REFRESH_NOW_MIN_GAP: Duration = Duration::from_secs(1);

/// Keeps a fresh IAM auth token for one target, user and region.
///
/// Cheap to clone; all clones share one token and one background task, which
/// stops when the last clone is dropped. The redis-rs integration
/// ([`redis::aio::MultiplexedConnection`], `ConnectionManager`,
/// `ClusterClient`) holds a clone per connection (see the
/// [`redis::auth::StreamingCredentialsProvider`] implementation).
///
/// ```no_run
/// # async fn example() -> Result<(), elasticache_iam::Error> {
/// use elasticache_iam::TokenRefresher;
///
/// // Credentials from the aws-config default chain, loaded once.
/// let refresher = TokenRefresher::builder()
///     .serverless_cache("my-serverless-cache")
///     .user_id("iam-user-01")
///     .region("us-east-1")
///     .build()
///     .await?;
/// let token = refresher.token().await?; // signs once, then served from memory
/// // AUTH iam-user-01 <token.expose_secret()>
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenRefresher {
    handle: Arc<Handle>,
}

/// Owns the background task: dropping the last handle aborts it.
struct Handle {
    shared: Arc<Shared>,
    task: Mutex<AbortHandle>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        lock(&self.task).abort();
    }
}

impl Handle {
    /// Whether the background task has stopped doing its job: it ended (its
    /// runtime shut down, or it panicked), or its planned retry is overdue
    /// (its runtime is no longer driven). If so, and this is called on a
    /// runtime, a new task is started there. Reads then run a signing cycle
    /// themselves rather than wait for retries that no task makes.
    fn task_stalled(&self, now: SystemTime) -> bool {
        // Taken, so that concurrent reads restart the task once.
        let overdue = {
            let mut state = self.shared.state();
            let overdue = state.retry_due.is_some_and(|due| now > due + STALL_GRACE);
            if overdue {
                state.retry_due = None;
            }
            overdue
        };
        let mut task = lock(&self.task);
        if !task.is_finished() && !overdue {
            return false;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return true;
        };
        task.abort();
        *task = runtime
            .spawn(task::run(Arc::clone(&self.shared)))
            .abort_handle();
        drop(task);
        tracing::info!(
            target_name = %self.shared.signer.target(),
            "the token refresher's background task had stopped (its runtime shut down or is \
             no longer driven); started again on the current runtime"
        );
        true
    }
}

/// What the handle and the background task share.
pub(crate) struct Shared {
    signer: TokenSigner,
    /// The labels of its metrics.
    telemetry: Telemetry,
    provider: SharedCredentialsProvider,
    /// The default chain's credentials, reused until near their expiry;
    /// `None` for an injected provider, asked every time.
    reuse: Option<Mutex<Kept>>,
    wall: SharedTimeSource,
    token_refresh_interval: Duration,
    reauth_after: Duration,
    state: Mutex<State>,
    /// Held for the whole of a signing cycle: the single-flight gate.
    cycle: tokio::sync::Mutex<()>,
    /// Signalled after every cycle, so the background task re-plans.
    cycle_done: tokio::sync::Notify,
    /// The state of an integration built on the refresher (the redis-rs
    /// credentials stream, `redis_auth`), kept and dropped with it; the
    /// refresher does not know its type.
    pub(crate) integration: OnceLock<Box<dyn Any + Send + Sync>>,
}

#[derive(Default)]
struct State {
    current: Option<AuthToken>,
    /// Completed cycles. A caller that saw generation `g` and finds a larger
    /// one after waiting for the gate takes the outcome of the cycle it joined.
    generation: u64,
    last_outcome: Option<Result<AuthToken, Error>>,
    last_cycle_at: Option<Instant>,
    rotations: u64,
    consecutive_failures: u32,
    failing_since: Option<SystemTime>,
    last_error: Option<Error>,
    /// Where the last credentials came from (see [`source`]).
    credential_source: Option<&'static str>,
    /// When the background task plans its next retry after a failure (wall
    /// time); `None` while it is not waiting to retry.
    retry_due: Option<SystemTime>,
}

/// Why a cycle ran, for its tracing span.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Trigger {
    Schedule,
    Read,
    RefreshNow,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Read => "read",
            Trigger::RefreshNow => "refresh_now",
        }
    }
}

impl TokenRefresher {
    /// A token is handed out only while at least this much of its usable
    /// life remains (30 s): room for the connection attempt that carries it
    /// and for a clock a little ahead of the server's.
    pub const SAFETY_MARGIN: Duration = SAFETY_MARGIN;

    /// A builder; target, user id and region (or an `SdkConfig`) are required.
    pub fn builder() -> TokenRefresherBuilder {
        TokenRefresherBuilder::default()
    }

    fn start(shared: Shared) -> Self {
        let shared = Arc::new(shared);
        let task = tokio::spawn(task::run(Arc::clone(&shared))).abort_handle();
        Self {
            handle: Arc::new(Handle {
                shared,
                task: Mutex::new(task),
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// The current token, with at least [`SAFETY_MARGIN`](Self::SAFETY_MARGIN) of usable life left.
    ///
    /// In steady state this returns at once from memory. If no usable token is
    /// held (at start-up, or after the process was suspended), one signing
    /// cycle runs, shared with every concurrent caller. If the refresher is
    /// failing and the last good token's usable life has ended, this fails at
    /// once (kind [`ErrorKind::Credentials`](crate::ErrorKind::Credentials))
    /// with the last failure's cause as [`source`](std::error::Error::source);
    /// the background task keeps retrying and reads succeed again as soon as
    /// one retry does.
    pub async fn token(&self) -> Result<AuthToken, Error> {
        let shared = self.shared();
        let now = shared.wall.now();
        let (seen, failing) = {
            let state = shared.state();
            if let Some(token) = state.fresh(now) {
                return Ok(token.clone());
            }
            (state.generation, state.consecutive_failures > 0)
        };
        // The background task is retrying: wait for it, unless it stopped
        // (then nobody retries but this read).
        if failing && !self.handle.task_stalled(now) {
            return Err(shared.state().unavailable(shared, now));
        }
        match shared.join_or_run(seen, Trigger::Read).await {
            Ok(token) => Ok(token),
            Err(_) => {
                let state = shared.state();
                let now = shared.wall.now();
                match state.fresh(now) {
                    Some(token) => Ok(token.clone()),
                    None => Err(state.unavailable(shared, now)),
                }
            }
        }
    }

    /// The current token if one with at least [`SAFETY_MARGIN`](Self::SAFETY_MARGIN) of usable
    /// life is held, from memory: never signs, never waits.
    pub(crate) fn current(&self) -> Option<AuthToken> {
        let shared = self.shared();
        shared.state().fresh(shared.wall.now()).cloned()
    }

    /// Signs a new token now, for a caller whose `AUTH` was just refused.
    ///
    /// Joins a cycle already in flight instead of starting another, and calls
    /// within a second of a completed cycle get that cycle's outcome, so a
    /// burst of refusals signs once. Errors are the cycle's own: the provider's
    /// failure (kind [`ErrorKind::Credentials`](crate::ErrorKind::Credentials))
    /// or the signer's.
    pub async fn refresh_now(&self) -> Result<AuthToken, Error> {
        let shared = self.shared();
        let seen = {
            let state = shared.state();
            if let (Some(at), Some(outcome)) = (state.last_cycle_at, &state.last_outcome)
                && monotonic_now().saturating_duration_since(at) < REFRESH_NOW_MIN_GAP
            {
                return outcome.clone();
            }
            state.generation
        };
        shared.join_or_run(seen, Trigger::RefreshNow).await
    }

    /// The refresher's state, for health reports. Contains no secret.
    pub fn status(&self) -> RefresherStatus {
        RefresherStatus::new(&self.shared().state())
    }

    /// Sets the token's age gauge (with the `metrics` feature), now.
    pub(crate) fn record_metrics(&self) {
        let shared = self.shared();
        let signed_at = shared.state().current.as_ref().map(AuthToken::signed_at);
        if let Some(signed_at) = signed_at {
            let age = shared
                .wall
                .now()
                .duration_since(signed_at)
                .unwrap_or_default();
            shared
                .telemetry
                .set(telemetry::TOKEN_AGE, &[], age.as_secs_f64());
        }
    }

    /// The signer: target, user id and region.
    pub fn signer(&self) -> &TokenSigner {
        &self.shared().signer
    }

    /// How often the token is re-signed (see
    /// [`Lifecycle::token_refresh_interval`](crate::Lifecycle::token_refresh_interval)).
    pub fn token_refresh_interval(&self) -> Duration {
        self.shared().token_refresh_interval
    }

    /// How long after its last authentication a connection re-authenticates
    /// (each picks its own time between 90 % and 100 % of this).
    pub fn reauth_after(&self) -> Duration {
        self.shared().reauth_after
    }
}

impl fmt::Debug for TokenRefresher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared();
        f.debug_struct("TokenRefresher")
            .field("signer", &shared.signer)
            .field("token_refresh_interval", &shared.token_refresh_interval)
            .field("reauth_after", &shared.reauth_after)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Waits for the gate; if a cycle completed meanwhile (the caller had seen
    /// generation `seen`), returns its outcome, else runs one.
    async fn join_or_run(&self, seen: u64, trigger: Trigger) -> Result<AuthToken, Error> {
        let _gate = self.cycle.lock().await;
        {
            let state = self.state();
            if state.generation != seen
                && let Some(outcome) = &state.last_outcome
            {
                return outcome.clone();
            }
        }
        self.run_cycle(trigger).await
    }

    /// One signing cycle: credentials, signature, new state. Called with the
    /// gate held.
    async fn run_cycle(&self, trigger: Trigger) -> Result<AuthToken, Error> {
        let span = tracing::debug_span!(
            "token_refresh",
            target_name = %self.signer.target(),
            user_id = %self.signer.user_id(),
            trigger = trigger.as_str(),
        );
        async {
            if matches!(trigger, Trigger::RefreshNow)
                && let Some(reuse) = &self.reuse
            {
                // A connection's authentication was refused (or the caller
                // asked): the source is asked again.
                lock(reuse).forget();
            }
            let outcome = self.fetch_and_sign().await;
            self.record(&outcome);
            self.cycle_done.notify_one();
            outcome
        }
        .instrument(span)
        .await
    }

    async fn fetch_and_sign(&self) -> Result<AuthToken, Error> {
        let kept = self
            .reuse
            .as_ref()
            .and_then(|reuse| lock(reuse).usable(self.wall.now()));
        let credentials = match kept {
            Some(credentials) => credentials,
            None => {
                let credentials = self.fetch().await?;
                if let Some(reuse) = &self.reuse {
                    lock(reuse).keep(&credentials, self.wall.now());
                }
                credentials
            }
        };
        self.state().credential_source = source::describe(&credentials);
        self.sign(&credentials)
    }

    /// Credentials from the provider, within [`PROVIDER_TIMEOUT`].
    async fn fetch(&self) -> Result<Credentials, Error> {
        // A provider that panics fails this cycle like one that errs, instead
        // of ending the task (or the caller) that runs it.
        let call =
            AssertUnwindSafe(async { self.provider.provide_credentials().await }).catch_unwind();
        let credentials = match tokio::time::timeout(PROVIDER_TIMEOUT, call).await {
            Ok(Ok(Ok(credentials))) => credentials,
            Ok(Err(_panic)) => {
                return Err(Error::credentials(format!(
                    "the credentials provider panicked{}",
                    self.last_source()
                )));
            }
            Ok(Ok(Err(err))) => {
                return Err(Error::credentials(format!(
                    "the credentials provider failed{}: {}",
                    self.last_source(),
                    display_chain(&err)
                ))
                .with_source(err));
            }
            Err(_) => {
                return Err(Error::credentials(format!(
                    "the credentials provider did not answer within {} s{}: check the \
                         credential source (container or instance metadata endpoint, STS, \
                         profile) is reachable",
                    PROVIDER_TIMEOUT.as_secs(),
                    self.last_source(),
                )));
            }
        };
        Ok(credentials)
    }

    /// A token signed with `credentials` now, if it has a usable life.
    fn sign(&self, credentials: &Credentials) -> Result<AuthToken, Error> {
        let now = self.wall.now();
        let token = self.signer.sign(credentials, now)?;
        if token.usable_until() <= now + SAFETY_MARGIN {
            return Err(Error::credentials(format!(
                "the credentials expire at {}, too soon to sign a usable token (a token is \
                 handed out only while {} s of its life remain): check that the credentials \
                 provider refreshes temporary credentials before they expire",
                format_time(token.usable_until()),
                SAFETY_MARGIN.as_secs()
            )));
        }
        Ok(token)
    }

    /// ` (the last credentials came from ...)`, or nothing when unknown.
    fn last_source(&self) -> String {
        self.state()
            .credential_source
            .map(|source| format!(" (the last credentials came from {source})"))
            .unwrap_or_default()
    }

    fn record(&self, outcome: &Result<AuthToken, Error>) {
        let now = self.wall.now();
        let mut state = self.state();
        state.generation += 1;
        state.last_cycle_at = Some(monotonic_now());
        state.last_outcome = Some(outcome.clone());
        match outcome {
            Ok(token) => {
                let recovered_after = state.consecutive_failures;
                state.current = Some(token.clone());
                state.rotations += 1;
                self.telemetry.count(telemetry::TOKEN_ROTATIONS, &[], 1);
                self.telemetry.set(telemetry::TOKEN_AGE, &[], 0.0);
                state.consecutive_failures = 0;
                state.failing_since = None;
                drop(state);
                if recovered_after > 0 {
                    tracing::info!(
                        failed_attempts = recovered_after,
                        usable_until = %format_time(token.usable_until()),
                        "IAM auth token refresh recovered"
                    );
                } else {
                    tracing::debug!(
                        signed_at = %format_time(token.signed_at()),
                        usable_until = %format_time(token.usable_until()),
                        "rotated IAM auth token"
                    );
                }
            }
            Err(err) => {
                state.consecutive_failures += 1;
                self.telemetry
                    .count(telemetry::TOKEN_REFRESH_FAILURES, &[], 1);
                state.failing_since.get_or_insert(now);
                state.last_error = Some(err.clone());
                let failures = state.consecutive_failures;
                let serving_until = state
                    .current
                    .as_ref()
                    .map(|t| format_time(t.usable_until() - SAFETY_MARGIN));
                drop(state);
                tracing::warn!(
                    error = %display_chain(err),
                    consecutive_failures = failures,
                    last_token_served_until = serving_until.as_deref().unwrap_or("none held"),
                    "IAM auth token refresh failed; retrying with backoff"
                );
            }
        }
    }
}

impl State {
    /// The current token if it has at least [`SAFETY_MARGIN`](TokenRefresher::SAFETY_MARGIN) left at `now`.
    fn fresh(&self, now: SystemTime) -> Option<&AuthToken> {
        self.current
            .as_ref()
            .filter(|token| now + SAFETY_MARGIN < token.usable_until())
    }

    /// The error for a read that finds no usable token while refreshes fail.
    fn unavailable(&self, shared: &Shared, now: SystemTime) -> Error {
        let target = shared.signer.target();
        let held = match &self.current {
            Some(token) => format!(
                "the last token was usable until {}",
                format_time(token.usable_until() - SAFETY_MARGIN)
            ),
            None => "no token has been signed yet".to_owned(),
        };
        let since = self
            .failing_since
            .map_or_else(|| format_time(now), format_time);
        let Some(last) = &self.last_error else {
            return Error::credentials(format!("no usable IAM auth token for {target}: {held}"));
        };
        let message = format!(
            "no usable IAM auth token for {target}: {held}, and {} refresh attempt(s) since {since} \
             failed; the last: {last}",
            self.consecutive_failures
        );
        let source = last
            .shared_source()
            .unwrap_or_else(|| Arc::new(last.clone()));
        Error::new(last.kind(), message).with_shared_source(source)
    }
}
