//! Faults of the servers behind the fronts, for one node or the cluster:
//! stop and start, kill and restart a node, fail over a shard, move slots,
//! drop one node's connections.

use crate::shared::{Backend, Shared};
use crate::upstream::{Upstream, UpstreamError};

impl Shared {
    /// Stops every server (clients' connections close; new ones are refused).
    pub(crate) async fn stop_upstream(&self) {
        match &self.backend {
            Backend::Single(upstream) => upstream.lock().await.stop().await,
            Backend::Cluster(cluster) => {
                for index in 0..cluster.len() {
                    if let Some(node) = cluster.upstream(index) {
                        node.lock().await.stop().await;
                    }
                }
            }
        }
    }

    /// Starts every stopped server again on its port.
    pub(crate) async fn start_upstream(&self) -> Result<(), UpstreamError> {
        match &self.backend {
            Backend::Single(upstream) => upstream.lock().await.restart().await,
            Backend::Cluster(cluster) => {
                for index in 0..cluster.len() {
                    if let Some(node) = cluster.upstream(index) {
                        let mut node = node.lock().await;
                        if !node.is_running() {
                            node.restart().await?;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// How many shards the cluster has (`None`: one server, no cluster).
    pub(crate) fn shards(&self) -> Option<usize> {
        match &self.backend {
            Backend::Single(_) => None,
            Backend::Cluster(cluster) => Some(cluster.shards()),
        }
    }

    /// How many replicas each shard started with (`None`: no cluster).
    pub(crate) fn replicas(&self) -> Option<usize> {
        match &self.backend {
            Backend::Single(_) => None,
            Backend::Cluster(cluster) => Some(cluster.len() / cluster.shards() - 1),
        }
    }

    /// Whether every server runs.
    pub(crate) async fn upstream_running(&self) -> bool {
        match &self.backend {
            Backend::Single(upstream) => upstream.lock().await.is_running(),
            Backend::Cluster(cluster) => {
                for index in 0..cluster.len() {
                    if let Some(node) = cluster.upstream(index)
                        && !node.lock().await.is_running()
                    {
                        return false;
                    }
                }
                true
            }
        }
    }

    /// `f` on node `index`'s server.
    async fn with_node(
        &self,
        index: usize,
        f: impl AsyncFnOnce(&mut Upstream) -> Result<(), UpstreamError>,
    ) -> Result<(), UpstreamError> {
        match &self.backend {
            Backend::Single(upstream) if index == 0 => f(&mut *upstream.lock().await).await,
            Backend::Single(_) => Err(no_node(index, 1)),
            Backend::Cluster(cluster) => match cluster.upstream(index) {
                Some(node) => f(&mut *node.lock().await).await,
                None => Err(no_node(index, cluster.len())),
            },
        }
    }

    /// Kills node `index`'s server: its clients' connections close; in a
    /// cluster, a replica takes over once the others notice (about 2 s).
    pub(crate) async fn kill_node(&self, index: usize) -> Result<(), UpstreamError> {
        self.with_node(index, async |node| {
            node.stop().await;
            Ok(())
        })
        .await
    }

    /// Starts node `index`'s server again, on its port, with its cluster
    /// state (it rejoins; a former primary comes back as a replica).
    pub(crate) async fn restart_node(&self, index: usize) -> Result<(), UpstreamError> {
        self.with_node(index, async |node| {
            if node.is_running() {
                Ok(())
            } else {
                node.restart().await
            }
        })
        .await
    }

    /// Fails over shard `shard` (a replica takes over) and closes the client
    /// connections of the old primary's front, as ElastiCache's failover
    /// does (serverless: none close). Returns (old primary, new primary) node indexes.
    pub(crate) async fn fail_over(&self, shard: usize) -> Result<(usize, usize), UpstreamError> {
        let Backend::Cluster(cluster) = &self.backend else {
            return Err(not_a_cluster("a failover"));
        };
        let (old, new) = cluster.fail_over(shard).await?;
        if self.clustered() {
            self.drop_connections_of(old);
        }
        // (Serverless: the fronts follow the servers' -MOVED.)
        Ok((old, new))
    }

    /// Moves `count` slots from shard `from` to shard `to` while clients
    /// work (they see `-ASK`, then `-MOVED`). Returns the slots moved.
    pub(crate) async fn migrate_slots(
        &self,
        from: usize,
        to: usize,
        count: usize,
    ) -> Result<Vec<u16>, UpstreamError> {
        let Backend::Cluster(cluster) = &self.backend else {
            return Err(not_a_cluster("a slot migration"));
        };
        cluster.migrate_slots(from, to, count).await
    }
}

fn no_node(index: usize, len: usize) -> UpstreamError {
    UpstreamError(format!("there is no node {index}: the stack has {len}"))
}

fn not_a_cluster(what: &str) -> UpstreamError {
    UpstreamError(format!(
        "{what} needs a cluster (--cluster-mode or --memorydb-cluster)"
    ))
}
