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
use tokio::time::{Instant, sleep_until};

use super::link::Link;
use crate::clock::monotonic_now;
use crate::connector::Connector;
use crate::counters::bump;
use crate::reauth::Reauth;
use crate::subscriber::Subscriptions;

#[derive(Debug)]
pub(crate) struct Slot {
    current: RwLock<Arc<Link>>,
    /// Signalled when a successor replaces the link.
    replaced: Notify,
    /// Signalled when a request on the link timed out or failed: the task
    /// checks that it still answers.
    suspect: Notify,
    /// A subscriber's: every successor is opened with its push channel and
    /// subscribed to all it holds before it takes over.
    subscriptions: Option<Arc<Subscriptions>>,
}

impl Slot {
    pub(crate) fn new(link: Arc<Link>, subscriptions: Option<Arc<Subscriptions>>) -> Self {
        Self {
            current: RwLock::new(link),
            replaced: Notify::new(),
            suspect: Notify::new(),
            subscriptions,
        }
    }

    /// A request on the current link timed out or failed.
    pub(crate) fn suspect(&self) {
        self.suspect.notify_one();
    }

    /// The current link, lost or not.
    pub(crate) fn link(&self) -> Arc<Link> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The current link if it is live; if it was lost, its successor, waited
    /// for up to `wait`.
    pub(crate) async fn live(&self, wait: Duration) -> Result<Arc<Link>, RedisError> {
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
    /// Lost at this instant.
    Lost(Instant),
    /// It stopped answering `PING` after requests failed on it.
    Unresponsive,
}

/// Keeps `slot` authenticated and live until `stop`'s sender is dropped
/// (with the last handle).
pub(crate) async fn upkeep(
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
    // When the current link was found lost.
    let mut lost_at = None;
    loop {
        let link = slot.link();
        let step = async {
            let deadline = link.life.deadline();
            tokio::select! {
                biased;
                () = link.life.closed() => {
                    let since = *lost_at.get_or_insert_with(monotonic_now);
                    replace(&connector, &slot, Why::Lost(since)).await
                }
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
                    lost_at = None;
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

/// After re-subscribing on a new connection failed, or a new cluster
/// connection did not answer on every node, the next attempt waits this long.
const RESUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// After a link was replaced for not answering, its successor is not
/// checked again for this long, so that a slow server does not have its
/// connections replaced again and again.
const CHECK_PAUSE: Duration = Duration::from_secs(5);

/// One attempt to open a successor (a subscriber's: subscribed to all it
/// holds) and switch to it; true if it succeeded.
async fn replace(connector: &Connector, slot: &Slot, why: Why) -> bool {
    let pushes = slot.subscriptions.as_ref().map(|s| s.pushes());
    let Ok(opened) = connector.open_connection_with(pushes).await else {
        // Logged and counted by the connector; tried again by the caller.
        return false;
    };
    let successor = Link::new(opened);
    // A cluster connection can come back with some node connections missing
    // (their AUTH throttled while it connected): it takes over only once
    // every node answers, or requests would wait on its reconnects.
    if successor.is_cluster() && !successor.answers(connector.connect_timeout()).await {
        successor.close();
        tracing::warn!(endpoint = %connector.endpoint(), "a new cluster connection did not answer PING on every node; trying again");
        // It opened, which reset the gate's backoff: a pause of its own.
        tokio::time::sleep(RESUBSCRIBE_RETRY).await;
        return false;
    }
    // Dropped here; closed when its last request is answered.
    let old = match &slot.subscriptions {
        None => slot.replace(successor),
        Some(subscriptions) => {
            // No subscription changes until the successor has them all.
            let held = subscriptions.lock().await;
            let limit = connector.connect_timeout();
            let restored = match tokio::time::timeout(limit, held.restore(&successor)).await {
                Ok(restored) => restored.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no confirmation within {limit:?}")),
            };
            if let Err(err) = restored {
                drop(held);
                tracing::warn!(endpoint = %connector.endpoint(), error = %err, "re-subscribing on a new connection failed; trying again");
                // The connection opened, which reset the gate's backoff: a
                // pause of its own before the next attempt.
                tokio::time::sleep(RESUBSCRIBE_RETRY).await;
                return false;
            }
            slot.replace(successor)
        }
    };
    let counters = connector.counters();
    bump(match why {
        Why::Deadline if !old.life.is_closed() => &counters.recycles,
        // Lost, at its deadline or before, or no longer answering.
        _ => &counters.reconnects,
    });
    match why {
        Why::Unresponsive if slot.subscriptions.is_some() => {
            bump(&connector.counters().subscription_gaps);
            tracing::warn!(endpoint = %connector.endpoint(), "subscriber's connection stopped answering; re-subscribed on a new one, and messages published meanwhile may not have been received");
        }
        Why::Lost(since) if slot.subscriptions.is_some() => {
            bump(&connector.counters().subscription_gaps);
            let gap = monotonic_now().saturating_duration_since(since);
            tracing::warn!(endpoint = %connector.endpoint(), gap_ms = gap.as_millis() as u64, "subscriber reconnected and re-subscribed; messages published during the gap were not received");
        }
        _ => {}
    }
    tracing::debug!(endpoint = %connector.endpoint(), ?why, "connection replaced");
    true
}
