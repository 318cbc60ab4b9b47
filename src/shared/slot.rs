//! One of the shared handle's connections over time: the current link, and
//! the task that keeps it authenticated and replaces it.
//!
//! The task, per slot:
//!
//! * at the link's **re-auth point** sends `AUTH` with the current token (to
//!   every node, in cluster mode); a refusal, throttle or timeout is retried
//!   after a growing, jittered delay, sooner as the deadline nears, for as
//!   long as the link lives;
//! * at the link's **deadline** (still without a successful re-auth), or as
//!   soon as the link is **lost** (closed by the server or the network),
//!   opens a successor through the connector (so its gate paces the
//!   attempts) and switches new requests to it; the old link closes when its
//!   last request has its reply. A failed attempt is tried again, paced by
//!   the gate's backoff, and meanwhile a due re-auth of the old link still
//!   runs: whichever succeeds first ends the need.
//!
//! * when requests on the link time out or fail, checks that it still
//!   answers `PING` (every node, in cluster mode) within twice the response
//!   timeout, and replaces it if not (no sooner than 5 s after the last such
//!   replacement), while its re-authentication goes on.
//!
//! Requests that find the link lost wait for the successor, up to the
//! connect timeout.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::RedisError;
use tokio::sync::{Notify, watch};
use tokio::time::sleep_until;

use super::link::Link;
use crate::clock::monotonic_now;
use crate::connector::Connector;
use crate::counters::bump;
use crate::reauth::Reauth;

#[derive(Debug)]
pub(super) struct Slot {
    current: RwLock<Arc<Link>>,
    /// Signalled when a successor replaces the link.
    replaced: Notify,
    /// Signalled when a request on the link timed out or failed: the task
    /// checks that it still answers.
    suspect: Notify,
}

impl Slot {
    pub(super) fn new(link: Arc<Link>) -> Self {
        Self {
            current: RwLock::new(link),
            replaced: Notify::new(),
            suspect: Notify::new(),
        }
    }

    /// A request on the current link timed out or failed.
    pub(super) fn suspect(&self) {
        self.suspect.notify_one();
    }

    /// The current link, lost or not.
    pub(super) fn link(&self) -> Arc<Link> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The current link if it is live; if it was lost, its successor, waited
    /// for up to `wait`.
    pub(super) async fn live(&self, wait: Duration) -> Result<Arc<Link>, RedisError> {
        let link = self.link();
        if !link.life.is_closed() {
            return Ok(link);
        }
        let until = monotonic_now() + wait;
        loop {
            let replaced = self.replaced.notified();
            let mut replaced = std::pin::pin!(replaced);
            replaced.as_mut().enable();
            let link = self.link();
            if !link.life.is_closed() {
                return Ok(link);
            }
            if tokio::time::timeout_at(until, replaced).await.is_err() {
                return Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    format!(
                        "the shared connection was lost and no new one could be opened within \
                         {wait:?} (the connect timeout); it keeps trying: see the health report's \
                         last connection error"
                    ),
                )));
            }
        }
    }

    fn replace(&self, successor: Arc<Link>) -> Arc<Link> {
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
            successor,
        );
        self.replaced.notify_waiters();
        old
    }
}

/// Why a link is being replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    Deadline,
    Lost,
    /// It stopped answering `PING` after requests failed on it.
    Unresponsive,
}

/// Keeps `slot` authenticated and live until `stop`'s sender is dropped
/// (with the last handle).
pub(super) async fn upkeep(
    connector: Arc<Connector>,
    slot: Arc<Slot>,
    probe_limit: Duration,
    mut stop: watch::Receiver<()>,
) {
    let settings = Arc::clone(connector.settings());
    let reauthenticator = settings.reauthenticator.as_ref();
    let mut reauth = Reauth::new(&settings.lifecycle);
    // The link stopped answering: replaced like one past its deadline, while
    // its re-authentication goes on.
    let mut unresponsive = false;
    // Checks come no sooner than this: a slow server is not a dead one.
    let mut next_check = monotonic_now();
    loop {
        let link = slot.link();
        let step = async {
            let deadline = link.life.deadline();
            tokio::select! {
                biased;
                () = link.life.closed() => replace(&connector, &slot, Why::Lost).await,
                () = sleep_until(reauth.at()), if reauthenticator.is_some() => {
                    if let Some(reauthenticator) = reauthenticator {
                        link.reauthenticate(reauthenticator, &mut reauth, settings.auth_timeout)
                            .await;
                    }
                    false
                }
                // Only IAM connections have a deadline to meet.
                () = sleep_until(deadline), if reauthenticator.is_some() => {
                    replace(&connector, &slot, Why::Deadline).await
                }
                // redis-rs does not always bring a cluster connection back
                // after all its node connections dropped.
                () = std::future::ready(()), if unresponsive => {
                    replace(&connector, &slot, Why::Unresponsive).await
                }
                () = slot.suspect.notified() => {
                    if monotonic_now() >= next_check && !link.answers(probe_limit).await {
                        unresponsive = true;
                    }
                    false
                }
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            replaced = step => {
                if replaced {
                    reauth = Reauth::new(&settings.lifecycle);
                    if unresponsive {
                        unresponsive = false;
                        next_check = monotonic_now() + CHECK_PAUSE;
                    }
                }
            }
        }
    }
}

/// After a link was replaced for not answering, its successor is not
/// checked again for this long, so that a slow server does not have its
/// connections replaced again and again.
const CHECK_PAUSE: Duration = Duration::from_secs(5);

/// One attempt to open a successor and switch to it; true if it succeeded.
async fn replace(connector: &Connector, slot: &Slot, why: Why) -> bool {
    let Ok(opened) = connector.open_connection().await else {
        // Logged and counted by the connector; tried again by the caller.
        return false;
    };
    // Dropped here; closed when its last request is answered.
    let old = slot.replace(Link::new(opened));
    if why == Why::Deadline && !old.life.is_closed() {
        bump(&connector.counters().recycles);
    }
    tracing::debug!(endpoint = %connector.endpoint(), ?why, "shared connection replaced");
    true
}
