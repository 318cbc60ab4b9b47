//! One connection of the shared handle: redis-rs's multiplexed connection
//! (standalone) or cluster connection, its life, and its
//! re-authentication.
//!
//! Every request clones redis-rs's handle and holds the `Link` until its
//! replies arrive, so a link that was replaced closes only when the last
//! request on it is answered (or given up): its socket is closed when the
//! last holder drops it.
//!
//! Re-authentication is one more request on the connection: redis-rs writes
//! each request (one command, or a whole pipeline, which an atomic
//! pipeline's `MULTI` ... `EXEC` is) in one piece, so the `AUTH` lands
//! between requests, never inside a transaction. In cluster mode it goes to
//! every node the connection holds, and each node's answer is counted.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Cmd, Pipeline, RedisError, RedisResult, Value};

use crate::connection::ClusterHandle;
use crate::connector::{Opened, Raw};
use crate::life::Life;
use crate::reauth::{Reauth, Reauthenticator, confirmation};

/// What a subscription names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `SUBSCRIBE`
    Channel,
    /// `PSUBSCRIBE`
    Pattern,
    /// `SSUBSCRIBE`
    Shard,
}

pub(crate) struct Link {
    raw: Held,
    pub(crate) life: Arc<Life>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("cluster", &self.is_cluster())
            .field("life", &self.life)
            .finish_non_exhaustive()
    }
}

/// redis-rs's handle; a cluster connection's can be taken, which ends it
/// once the requests holding clones of it are done or dropped.
enum Held {
    Standalone(MultiplexedConnection),
    Cluster(ClusterHandle),
}

impl Drop for Link {
    fn drop(&mut self) {
        // The task driving a standalone socket ends, closing it; a cluster
        // connection ends with its last handle.
        self.life.close_now();
    }
}

impl Link {
    pub(crate) fn new(opened: Opened) -> Arc<Self> {
        // Never idle: the task driving it leaves its deadline to the
        // holder, which replaces it first.
        opened.life.check_out();
        let raw = match opened.raw {
            Raw::Standalone(c) => Held::Standalone(c),
            Raw::Cluster(c) => Held::Cluster(ClusterHandle::new(c)),
        };
        Arc::new(Self {
            raw,
            life: opened.life,
        })
    }

    /// A clone of redis-rs's handle for one request, unless it was closed.
    fn handle(&self) -> RedisResult<Raw> {
        match &self.raw {
            Held::Standalone(c) => Ok(Raw::Standalone(c.clone())),
            Held::Cluster(c) => c.get().map(Raw::Cluster).ok_or_else(|| {
                RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the connection was closed",
                ))
            }),
        }
    }

    /// Closes it now: a standalone socket at once, a cluster connection
    /// once no request holds it; true if it was not closed already.
    pub(crate) fn close(&self) -> bool {
        if let Held::Cluster(c) = &self.raw {
            c.close();
        }
        self.life.close_now()
    }

    /// Subscribes to (or unsubscribes from) `names` of `kind` on this
    /// connection (RESP3: the messages arrive as pushes).
    pub(crate) async fn subscription(
        &self,
        kind: Kind,
        on: bool,
        names: &[Vec<u8>],
    ) -> RedisResult<()> {
        if names.is_empty() {
            return Ok(());
        }
        match self.handle()? {
            Raw::Standalone(mut c) => match (kind, on) {
                (Kind::Channel, true) => c.subscribe(names).await,
                (Kind::Channel, false) => c.unsubscribe(names).await,
                (Kind::Pattern, true) => c.psubscribe(names).await,
                (Kind::Pattern, false) => c.punsubscribe(names).await,
                (Kind::Shard, _) => Err(RedisError::from((
                    redis::ErrorKind::Client,
                    "sharded pub/sub (SSUBSCRIBE) needs cluster mode",
                ))),
            },
            Raw::Cluster(mut c) => match (kind, on) {
                (Kind::Channel, true) => c.subscribe(names).await,
                (Kind::Channel, false) => c.unsubscribe(names).await,
                (Kind::Pattern, true) => c.psubscribe(names).await,
                (Kind::Pattern, false) => c.punsubscribe(names).await,
                (Kind::Shard, true) => c.ssubscribe(names).await,
                (Kind::Shard, false) => c.sunsubscribe(names).await,
            },
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.raw, Held::Cluster(_))
    }

    pub(crate) async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        match self.handle()? {
            Raw::Standalone(mut c) => c.send_packed_command(cmd).await,
            Raw::Cluster(mut c) => c.req_packed_command(cmd).await,
        }
    }

    pub(crate) async fn pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self.handle()? {
            Raw::Standalone(mut c) => c.send_packed_commands(pipeline, offset, count).await,
            Raw::Cluster(mut c) => c.req_packed_commands(pipeline, offset, count).await,
        }
    }

    /// Whether it answers `PING` (on every node, in cluster mode) within
    /// `limit`.
    pub(crate) async fn answers(&self, limit: Duration) -> bool {
        let mut ping = redis::cmd("PING");
        ping.arg("elasticache-iam");
        let answer = async {
            match self.handle()? {
                Raw::Standalone(mut c) => c.send_packed_command(&ping).await.map(|_| ()),
                Raw::Cluster(c) => {
                    let every_node =
                        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None));
                    match c.clone().route_command(ping, every_node).await? {
                        Value::Map(answers)
                            if answers
                                .iter()
                                .any(|(_, answer)| matches!(answer, Value::ServerError(_))) =>
                        {
                            Err(RedisError::from((
                                redis::ErrorKind::Client,
                                "a node refused PING",
                            )))
                        }
                        _ => Ok(()),
                    }
                }
            }
        };
        matches!(tokio::time::timeout(limit, answer).await, Ok(Ok(())))
    }

    /// `AUTH` with the current token, on the connection (every node of a
    /// cluster connection), waiting at most `limit`; the outcome is recorded
    /// in `reauth` (when to try next) and the link's life (its deadline).
    pub(crate) async fn reauthenticate(
        &self,
        reauthenticator: &Reauthenticator,
        reauth: &mut Reauth,
        limit: Duration,
    ) {
        let Ok(handle) = self.handle() else {
            // Closed: nothing to re-authenticate.
            return;
        };
        match handle {
            Raw::Standalone(c) => {
                let Some(auth) = reauthenticator.command(reauth, &self.life) else {
                    // No usable token: counted, and retried later.
                    return;
                };
                let answer = async {
                    let reply = c.clone().send_packed_command(&auth).await?;
                    confirmation(&reply).map(|()| 1)
                };
                settle(answer, reauthenticator, reauth, &self.life, limit).await;
            }
            Raw::Cluster(c) => {
                reauthenticate_cluster(&c, &self.life, reauthenticator, reauth, limit).await;
            }
        }
    }
}

/// `AUTH` with the current token to every node of a cluster connection,
/// waiting at most `limit`; each node's confirmation is counted, and the
/// outcome recorded in `reauth` and `life` (its deadline moves only when
/// every node confirmed).
pub(crate) async fn reauthenticate_cluster(
    connection: &ClusterConnection,
    life: &Life,
    reauthenticator: &Reauthenticator,
    reauth: &mut Reauth,
    limit: Duration,
) {
    let Some(auth) = reauthenticator.command(reauth, life) else {
        return;
    };
    let answer = async {
        // No response policy: one answer per node.
        let every_node = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None));
        let reply = connection.clone().route_command(auth, every_node).await?;
        let (confirmed, refused) = every_node_confirmed(&reply);
        match refused {
            None => Ok(confirmed),
            Some(err) => {
                // The nodes that did confirm are counted.
                reauthenticator.confirmed(confirmed);
                Err(err)
            }
        }
    };
    settle(answer, reauthenticator, reauth, life, limit).await;
}

/// Waits up to `limit` for the nodes' confirmations of an `AUTH`, and
/// records the outcome.
async fn settle(
    answer: impl Future<Output = RedisResult<u64>>,
    reauthenticator: &Reauthenticator,
    reauth: &mut Reauth,
    life: &Life,
    limit: Duration,
) {
    match tokio::time::timeout(limit, answer).await {
        Ok(Ok(nodes)) => reauthenticator.succeeded(nodes, reauth, life),
        Ok(Err(err)) => reauthenticator.failed(err, reauth, life),
        Err(_) => reauthenticator.failed(
            crate::connection::timed_out(format!("no answer to AUTH within {limit:?}")),
            reauth,
            life,
        ),
    }
}

/// How many nodes confirmed an `AUTH` sent to every node (a map of node
/// address to answer), and the first refusal, if any.
fn every_node_confirmed(reply: &Value) -> (u64, Option<RedisError>) {
    let answers: Vec<&Value> = match reply {
        Value::Map(pairs) => pairs.iter().map(|(_, answer)| answer).collect(),
        one => vec![one],
    };
    let mut confirmed = 0;
    let mut refused = None;
    for answer in answers {
        match confirmation(answer) {
            Ok(()) => confirmed += 1,
            Err(err) => {
                refused.get_or_insert(err);
            }
        }
    }
    (confirmed, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_must_confirm() {
        let node = |n: &str| Value::BulkString(n.as_bytes().to_vec());
        let ok = Value::Map(vec![(node("a:1"), Value::Okay), (node("b:2"), Value::Okay)]);
        let (confirmed, refused) = every_node_confirmed(&ok);
        assert_eq!((confirmed, refused.is_none()), (2, true));
        let throttled = Value::Map(vec![
            (node("a:1"), Value::Okay),
            (
                node("b:2"),
                redis::parse_redis_value(b"-ERR Exceeded limit of IAM Authentication requests\r\n")
                    .unwrap(),
            ),
        ]);
        let (confirmed, refused) = every_node_confirmed(&throttled);
        assert_eq!(confirmed, 1);
        assert!(refused.unwrap().to_string().contains("Exceeded limit"));
    }
}
