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
use crate::counters::{Counters, bump};
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

    /// A failed attempt: try again after a jittered, growing delay (1-2 s,
    /// 2-4 s, ... up to a minute or two).
    fn failed(&mut self) -> Duration {
        let delay = self
            .retry
            .get_or_insert_with(|| exponential(Duration::from_secs(1), Duration::from_secs(60)))
            .next()
            .unwrap_or(Duration::from_secs(60));
        self.at = monotonic_now() + delay;
        delay
    }
}

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
    pub(crate) fn command(&self, reauth: &mut Reauth) -> Option<Cmd> {
        if let Some(token) = self.refresher.current() {
            let mut cmd = redis::cmd("AUTH");
            cmd.arg(self.iam.user_id.as_str())
                .arg(token.expose_secret());
            return Some(cmd);
        }
        bump(&self.counters.reauth_failures);
        let retry = reauth.failed();
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
        let err = match reply {
            Value::Okay => {
                bump(&self.counters.reauths);
                life.authenticated();
                *reauth = Reauth::new(&self.lifecycle);
                tracing::debug!(endpoint = %self.endpoint, "connection re-authenticated");
                return;
            }
            Value::SimpleString(ok) if ok == "OK" => {
                return self.answered(&Value::Okay, reauth, life);
            }
            Value::ServerError(err) => redis::RedisError::from(err.clone()),
            // Not an answer to AUTH (`QUEUED` would mean it landed in a
            // transaction): unknown, so not authenticated; retried later.
            _ => redis::RedisError::from((
                redis::ErrorKind::Client,
                "unexpected answer to a re-authentication",
            )),
        };
        bump(&self.counters.reauth_failures);
        let retry = reauth.failed();
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
