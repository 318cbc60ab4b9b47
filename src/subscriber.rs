//! A dedicated subscriber: one RESP3 connection (a cluster connection in
//! cluster mode) held for hours, re-authenticated in the background while
//! subscribed (RESP3 allows `AUTH` then), and, when it must be replaced (its
//! deadline, a lost connection), re-subscribed to every channel, pattern and
//! shard channel on its successor before that takes over.
//!
//! The subscriptions it holds are kept here (`Subscriptions`), so that a
//! successor can be given them all; changes and re-subscription take the
//! same lock, so none is missed in between. A successor for the deadline is
//! subscribed before the old connection closes (a message published in that
//! moment can arrive twice); one for a lost connection comes after a gap,
//! which is counted (`Counts::subscription_gaps`) and logged with its
//! duration: messages published during it are lost, as with any pub/sub.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use redis::{Msg, PushKind, RedisResult, ToRedisArgs};
use tokio::sync::{Mutex, MutexGuard, mpsc, watch};

use crate::connector::{Connector, Pushes};
use crate::counters::bump;
use crate::health::{self, Counts};
use crate::shared::link::{Kind, Link};
use crate::shared::slot::Slot;

/// A subscriber that never meets the 12-hour cut. Made by
/// [`SharedConnectionBuilder::build_subscriber`](crate::SharedConnectionBuilder::build_subscriber).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use elasticache_iam::{ConnectionConfig, SharedConnection};
///
/// let config = ConnectionConfig::from_env()?;
/// let mut subscriber = SharedConnection::builder(config).build_subscriber().await?;
/// subscriber.subscribe("orders").await?;
/// subscriber.psubscribe("events.*").await?;
/// while let Some(message) = subscriber.next_message().await {
///     let payload: String = message.get_payload()?;
///     println!("{}: {payload}", message.get_channel_name());
/// }
/// # Ok(()) }
/// ```
pub struct Subscriber {
    connector: Arc<Connector>,
    slot: Arc<Slot>,
    subscriptions: Arc<Subscriptions>,
    pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
    /// Dropped with the subscriber: its task ends.
    _stop: watch::Sender<()>,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

/// The channels, patterns and shard channels a subscriber holds, and the
/// sender its connections push to.
pub(crate) struct Subscriptions {
    pushes: Pushes,
    wanted: Mutex<Wanted>,
}

#[derive(Default)]
pub(crate) struct Wanted {
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
    shards: BTreeSet<Vec<u8>>,
}

impl Wanted {
    fn of(&mut self, kind: Kind) -> &mut BTreeSet<Vec<u8>> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shards,
        }
    }

    /// Subscribes `link` to everything held.
    pub(crate) async fn restore(&self, link: &Link) -> RedisResult<()> {
        for (kind, names) in [
            (Kind::Channel, &self.channels),
            (Kind::Pattern, &self.patterns),
        ] {
            let names: Vec<Vec<u8>> = names.iter().cloned().collect();
            link.subscription(kind, true, &names).await?;
        }
        // One SSUBSCRIBE names channels of one slot only.
        for name in &self.shards {
            link.subscription(Kind::Shard, true, std::slice::from_ref(name))
                .await?;
        }
        Ok(())
    }
}

impl fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriptions").finish_non_exhaustive()
    }
}

impl Subscriptions {
    pub(crate) fn pushes(&self) -> Pushes {
        self.pushes.clone()
    }

    pub(crate) async fn lock(&self) -> MutexGuard<'_, Wanted> {
        self.wanted.lock().await
    }
}

impl Subscriber {
    pub(crate) fn new(
        connector: Arc<Connector>,
        link: Arc<Link>,
        pushes: (Pushes, mpsc::UnboundedReceiver<redis::PushInfo>),
        stop: watch::Sender<()>,
        slot_for: impl FnOnce(Arc<Slot>),
    ) -> Self {
        let subscriptions = Arc::new(Subscriptions {
            pushes: pushes.0,
            wanted: Mutex::new(Wanted::default()),
        });
        let slot = Arc::new(Slot::new(link, Some(Arc::clone(&subscriptions))));
        slot_for(Arc::clone(&slot));
        Self {
            connector,
            slot,
            subscriptions,
            pushes: pushes.1,
            _stop: stop,
        }
    }

    /// `SUBSCRIBE` to `channels` (one name or several).
    pub async fn subscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::Channel, true, channels).await
    }

    /// `UNSUBSCRIBE` from `channels`.
    pub async fn unsubscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::Channel, false, channels).await
    }

    /// `PSUBSCRIBE` to `patterns`.
    pub async fn psubscribe(&mut self, patterns: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::Pattern, true, patterns).await
    }

    /// `PUNSUBSCRIBE` from `patterns`.
    pub async fn punsubscribe(&mut self, patterns: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::Pattern, false, patterns).await
    }

    /// `SSUBSCRIBE` to shard `channels` (cluster mode: each goes to the node
    /// that owns its slot).
    pub async fn ssubscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::Shard, true, channels).await
    }

    /// `SUNSUBSCRIBE` from shard `channels`.
    pub async fn sunsubscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::Shard, false, channels).await
    }

    async fn change(&mut self, kind: Kind, on: bool, names: impl ToRedisArgs) -> RedisResult<()> {
        let names = names.to_redis_args();
        // Waits for a successor first: the task re-subscribing one holds the
        // lock.
        self.slot.live(self.connector.connect_timeout()).await?;
        let mut wanted = self.subscriptions.lock().await;
        // The current link: a successor that took over meanwhile was given
        // everything held before this change.
        let link = self.slot.link();
        let limit = self.connector.connect_timeout();
        let result = match tokio::time::timeout(limit, link.subscription(kind, on, &names)).await {
            Ok(result) => result,
            Err(_) => Err(crate::connection::timed_out(format!(
                "no confirmation within {limit:?}"
            ))),
        };
        let lost = matches!(&result, Err(err) if crate::connection::failed_transport(err));
        if lost {
            // Its successor takes everything held, this change included.
            if link.close() {
                self.connector.lost();
            }
        }
        if result.is_ok() || lost {
            let held = wanted.of(kind);
            for name in names {
                if on {
                    held.insert(name);
                } else {
                    held.remove(&name);
                }
            }
        }
        result
    }

    /// The next message on any channel, pattern or shard channel subscribed
    /// to; `None` only if the subscriber was dropped. Subscription
    /// confirmations are not messages. Cancel-safe.
    pub async fn next_message(&mut self) -> Option<Msg> {
        loop {
            let push = self.pushes.recv().await?;
            match push.kind {
                PushKind::Message | PushKind::PMessage | PushKind::SMessage => {
                    if let Some(message) = Msg::from_push_info(push) {
                        return Some(message);
                    }
                }
                // redis-rs reconnects a cluster connection's node and
                // re-subscribes it itself (a standalone connection lost is
                // replaced, and its gap counted, by the subscriber's task).
                PushKind::Disconnection if self.slot.link().is_cluster() => {
                    bump(&self.connector.counters().subscription_gaps);
                    tracing::warn!(endpoint = %self.connector.endpoint(), "a node of the subscriber's cluster connection disconnected; redis-rs re-subscribes it, and messages published meanwhile are not received");
                }
                _ => {}
            }
        }
    }

    /// Counts since it started (re-authentications, replacements,
    /// `subscription_gaps`), read without I/O.
    pub fn counts(&self) -> Counts {
        health::counts(&self.connector)
    }
}
