//! Re-authentication of a live standalone connection: when it is due, the
//! `AUTH` command that does it, and what the server's answer means.
//!
//! Each connection re-authenticates at its **re-auth point**, 90-100 % of
//! `reauth_after` after its last successful authentication: its `AUTH` is
//! queued just before the borrower's next request (the first after checkout,
//! or the next while held), only while no transaction or subscription is
//! open. A throttled or refused `AUTH` keeps the connection serving (its
//! current authentication still holds) and is retried after a jittered,
//! growing delay, for as long as the connection lives; the deadline is the
//! safety net. A refusal also has a new token signed, in the background.

use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBackoff;
use redis::{Cmd, Value};
use tokio::time::Instant;

use crate::backoff::exponential;
use crate::clock::monotonic_now;
use crate::config::IamAuth;
use crate::counters::{Counters, add, bump};
use crate::error::display_chain;
use crate::life::Life;
use crate::lifecycle::Lifecycle;
use crate::refresher::TokenRefresher;
use crate::replies::{self, Meaning};

/// When a connection re-authenticates next.
#[derive(Debug)]
pub(crate) struct Reauth {
    at: Instant,
    retry: Option<ExponentialBackoff>,
}

impl Reauth {
    /// Just authenticated.
    pub(crate) fn new(lifecycle: &Lifecycle) -> Self {
        Self {
            at: lifecycle.reauth_point(),
            retry: None,
        }
    }

    pub(crate) fn is_due(&self) -> bool {
        monotonic_now() >= self.at
    }

    /// When the next attempt is due.
    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// A failed attempt: try again after a jittered, growing delay (1-2 s,
    /// 2-4 s, ... up to a minute or two), but before the connection's
    /// `deadline` at most half the time left (so several attempts fit before
    /// it), and past it at most a twentieth of the maximum connection age
    /// (the server's cut is near): never sooner than [`MIN_RETRY`].
    fn failed(&mut self, deadline: Instant, lifecycle: &Lifecycle) -> Duration {
        let now = monotonic_now();
        let backoff = self
            .retry
            .get_or_insert_with(|| exponential(Duration::from_secs(1), Duration::from_secs(60)))
            .next()
            .unwrap_or(Duration::from_secs(60));
        let cap = match deadline.checked_duration_since(now) {
            Some(left) if !left.is_zero() => left / 2,
            _ => lifecycle.max_connection_age / 20,
        };
        let delay = backoff.min(cap.max(MIN_RETRY));
        self.at = now + delay;
        delay
    }
}

/// The shortest delay between two attempts to re-authenticate a connection.
const MIN_RETRY: Duration = Duration::from_millis(500);

/// What re-authenticating a pool's IAM connections takes.
#[derive(Debug)]
pub(crate) struct Reauthenticator {
    refresher: TokenRefresher,
    iam: IamAuth,
    endpoint: String,
    lifecycle: Lifecycle,
    counters: Arc<Counters>,
}

impl Reauthenticator {
    pub(crate) fn new(
        refresher: TokenRefresher,
        iam: IamAuth,
        endpoint: String,
        lifecycle: Lifecycle,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            refresher,
            iam,
            endpoint,
            lifecycle,
            counters,
        }
    }

    /// `AUTH <user_id> <token>` with the refresher's current token, read
    /// from memory: a borrower never waits for a signing here. Without a
    /// usable token (the refresher is between cycles or failing), `None`:
    /// counted as a failed re-authentication and retried later, while a
    /// signing cycle is started in the background.
    pub(crate) fn command(&self, reauth: &mut Reauth, life: &Life) -> Option<Cmd> {
        if let Some(token) = self.refresher.current() {
            let mut cmd = redis::cmd("AUTH");
            cmd.arg(self.iam.user_id.as_str())
                .arg(token.expose_secret());
            return Some(cmd);
        }
        bump(&self.counters.reauth_failures);
        let retry = reauth.failed(life.deadline(), &self.lifecycle);
        tracing::warn!(endpoint = %self.endpoint, ?retry, "no usable token for re-authentication yet; the connection keeps serving");
        let refresher = self.refresher.clone();
        tokio::spawn(async move {
            let _ = refresher.token().await;
        });
        None
    }

    /// The server answered the `AUTH`: a success restarts the connection's
    /// clocks; a refusal or throttle schedules a retry.
    pub(crate) fn answered(&self, reply: &Value, reauth: &mut Reauth, life: &Life) {
        match confirmation(reply) {
            Ok(()) => self.succeeded(1, reauth, life),
            Err(err) => self.failed(err, reauth, life),
        }
    }

    /// `nodes` confirmed the `AUTH` (all the connection has): its clocks
    /// restart.
    pub(crate) fn succeeded(&self, nodes: u64, reauth: &mut Reauth, life: &Life) {
        add(&self.counters.reauths, nodes);
        life.authenticated();
        *reauth = Reauth::new(&self.lifecycle);
        tracing::debug!(endpoint = %self.endpoint, nodes, "connection re-authenticated");
    }

    /// `nodes` of a cluster connection confirmed the `AUTH` while another
    /// refused it: counted, though the connection's clocks do not restart.
    pub(crate) fn confirmed(&self, nodes: u64) {
        add(&self.counters.reauths, nodes);
    }

    /// The `AUTH` was refused, throttled or not answered: retried later,
    /// sooner as the deadline nears.
    pub(crate) fn failed(&self, err: redis::RedisError, reauth: &mut Reauth, life: &Life) {
        bump(&self.counters.reauth_failures);
        let retry = reauth.failed(life.deadline(), &self.lifecycle);
        let meaning = replies::meaning(&err);
        let err = replies::to_error(err, Some(&self.iam), &self.endpoint);
        tracing::warn!(endpoint = %self.endpoint, error = %display_chain(&err), ?retry, "re-authentication failed; the connection keeps serving until its deadline");
        if meaning == Meaning::Refused {
            // The next attempt, here or on a new connection, uses a newly
            // signed token; bursts of refusals share one signing.
            let refresher = self.refresher.clone();
            tokio::spawn(async move {
                let _ = refresher.refresh_now().await;
            });
        }
    }
}

/// Whether `reply` confirms an `AUTH`; the error it is otherwise.
pub(crate) fn confirmation(reply: &Value) -> Result<(), redis::RedisError> {
    match reply {
        Value::Okay => Ok(()),
        Value::SimpleString(ok) if ok == "OK" => Ok(()),
        Value::ServerError(err) => Err(redis::RedisError::from(err.clone())),
        // Not an answer to AUTH (`QUEUED` would mean it landed in a
        // transaction): unknown, so not authenticated; retried later.
        _ => Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "unexpected answer to a re-authentication",
        ))),
    }
}
