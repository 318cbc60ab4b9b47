//! The refresher as a redis-rs [`StreamingCredentialsProvider`].
//!
//! redis-rs (1.8) subscribes **twice** for every connection it makes:
//!
//! 1. once for the initial `AUTH`: it awaits the first item from the task that
//!    is making the connection, then drops the stream;
//! 2. once more after the handshake, handing the stream to a task it spawns,
//!    which re-authenticates the connection with *every* item.
//!
//! Yielding the current token on every rotation would re-`AUTH` every
//! connection every 10 minutes, and yielding it at once on every subscription
//! would authenticate each new connection twice. So a subscription works out
//! which of the two it is from where it is first polled:
//!
//! * polled first in the task that subscribed: an **initial** subscription. Its
//!   first item is the current token, at once.
//! * polled first in another task, after an initial subscription from the
//!   subscribing task yielded one token and was dropped: a **re-authentication**
//!   subscription. Its first item comes at the re-auth point.
//!
//! After its first item, every subscription yields the then-current token once
//! per re-auth period: at a time picked at random between 90 % and 100 % of
//! [`reauth_after`](crate::TokenRefresherBuilder::reauth_after) (10 hours by
//! default), fresh for each connection and each period, so a pool does not
//! re-authenticate all at once and no connection reaches the server's
//! 12-hour cut. A failed read yields an error (redis-rs logs it and keeps the
//! stream) and is retried after 30 seconds.
//!
//! Measured against the local stack (`tests/redis_integration.rs`): a new
//! multiplexed connection authenticates **once**, and re-authenticates only on
//! that schedule, not on token rotations.
//!
//! Limits that belong to redis-rs, not to this stream: if a re-`AUTH` fails,
//! redis-rs ends its re-authentication task for good and keeps the connection,
//! which the server then closes at 12 hours; and the token is copied into
//! redis-rs's connection info, where it is not zeroized. This crate's own
//! connections (pool, shared handle, dedicated connections) therefore take
//! only the first token from redis-rs's cluster client (`InitialAuthOnly`)
//! and re-authenticate every node themselves, with retries that do not stop.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use redis::auth::{BasicAuth, StreamingCredentialsProvider};
use redis::{RedisError, RedisResult};

use crate::error::{Error, display_chain};
use crate::lifecycle::reauth_delay;
use crate::lock::lock;
use crate::refresher::TokenRefresher;

/// After a failed read, the next attempt comes this much later.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

type Item = RedisResult<BasicAuth>;
type NextItem = Pin<Box<dyn Future<Output = Item> + Send>>;

/// What the subscriptions of one refresher share, kept with the refresher.
#[derive(Debug, Default)]
struct Bookkeeping {
    /// Per task, initial subscriptions that yielded one token and were
    /// dropped. Bounded: if it ever fills (many tasks whose connections
    /// failed after the initial `AUTH`), it is cleared, which only costs the
    /// next subscriptions an extra `AUTH`.
    one_shots: Mutex<HashMap<Option<tokio::task::Id>, u32>>,
}

impl Bookkeeping {
    fn of(refresher: &TokenRefresher) -> &Bookkeeping {
        let slot = refresher
            .shared()
            .integration
            .get_or_init(|| Box::new(Bookkeeping::default()));
        // Only this module fills the slot, always with a `Bookkeeping`.
        match slot.downcast_ref::<Bookkeeping>() {
            Some(books) => books,
            None => unreachable!("the refresher's integration slot holds redis_auth's state"),
        }
    }

    fn note_one_shot(&self, task: Option<tokio::task::Id>) {
        const MAX_TASKS: usize = 1024;
        let mut one_shots = lock(&self.one_shots);
        if one_shots.len() >= MAX_TASKS && !one_shots.contains_key(&task) {
            one_shots.clear();
        }
        *one_shots.entry(task).or_insert(0) += 1;
    }

    fn take_one_shot(&self, task: Option<tokio::task::Id>) -> bool {
        let mut one_shots = lock(&self.one_shots);
        match one_shots.get_mut(&task) {
            Some(count) if *count > 1 => {
                *count -= 1;
                true
            }
            Some(_) => {
                one_shots.remove(&task);
                true
            }
            None => false,
        }
    }
}

impl StreamingCredentialsProvider for TokenRefresher {
    fn subscribe(&self) -> Pin<Box<dyn Stream<Item = Item> + Send + 'static>> {
        Box::pin(Subscription::new(self, true))
    }
}

/// The refresher as a credentials provider that only authenticates new
/// connections: its subscriptions yield the first token and no more, so
/// redis-rs never re-authenticates by itself. For connections whose holder
/// re-authenticates them on the lifecycle's schedule, with retries that do
/// not stop and answers that it counts (the shared handle's cluster
/// connections).
#[derive(Clone, Debug)]
pub(crate) struct InitialAuthOnly(pub(crate) TokenRefresher);

impl StreamingCredentialsProvider for InitialAuthOnly {
    fn subscribe(&self) -> Pin<Box<dyn Stream<Item = Item> + Send + 'static>> {
        Box::pin(Subscription::new(&self.0, false))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Initial,
    Reauth,
}

struct Subscription {
    refresher: TokenRefresher,
    /// Yields re-authentication tokens (else only an initial one).
    reauth: bool,
    subscribed_in: Option<tokio::task::Id>,
    /// Decided at the first poll.
    role: Option<Role>,
    yielded: u64,
    last_failed: bool,
    next: Option<NextItem>,
}

impl Subscription {
    fn new(refresher: &TokenRefresher, reauth: bool) -> Self {
        Subscription {
            refresher: refresher.clone(),
            reauth,
            subscribed_in: tokio::task::try_id(),
            role: None,
            yielded: 0,
            last_failed: false,
            next: None,
        }
    }

    fn role(&mut self) -> Role {
        *self.role.get_or_insert_with(|| {
            let polled_in = tokio::task::try_id();
            if polled_in != self.subscribed_in
                && Bookkeeping::of(&self.refresher).take_one_shot(self.subscribed_in)
            {
                Role::Reauth
            } else {
                Role::Initial
            }
        })
    }

    /// The future of the next item: now for an initial subscription's first,
    /// after a retry delay following a failure, else at a re-auth point.
    fn next_item(&mut self) -> NextItem {
        let initial = self.yielded == 0 && self.role() == Role::Initial;
        if !self.reauth && !initial {
            // Re-authentication is the holder's.
            return Box::pin(std::future::pending());
        }
        let delay = if initial {
            None
        } else if self.last_failed {
            Some(RETRY_AFTER_FAILURE)
        } else {
            Some(reauth_delay(self.refresher.reauth_after()))
        };
        let refresher = self.refresher.clone();
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let token = refresher.token().await.map_err(to_redis_error)?;
            Ok(BasicAuth::new(
                refresher.signer().user_id().as_str().to_owned(),
                token.expose_secret().to_owned(),
            ))
        })
    }
}

impl Stream for Subscription {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = &mut *self;
        if this.next.is_none() {
            this.next = Some(this.next_item());
        }
        let Some(next) = this.next.as_mut() else {
            return Poll::Pending;
        };
        let item = std::task::ready!(next.as_mut().poll(cx));
        this.next = None;
        this.yielded += 1;
        this.last_failed = item.is_err();
        Poll::Ready(Some(item))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.role == Some(Role::Initial) && self.yielded == 1 && !self.last_failed {
            Bookkeeping::of(&self.refresher).note_one_shot(self.subscribed_in);
        }
    }
}

fn to_redis_error(err: Error) -> RedisError {
    RedisError::from((
        redis::ErrorKind::AuthenticationFailed,
        "no IAM auth token",
        display_chain(&err),
    ))
}
