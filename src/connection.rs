//! A pooled connection and its command path: per-command reply deadlines
//! (blocking commands get their block time), session tracking, and
//! re-authentication while a borrower holds it.
//!
//! Every command goes through [`Connection`]'s [`ConnectionLike`]
//! implementation, which:
//!
//! 1. refuses to send on a connection whose replies can no longer be matched
//!    to commands (`CLIENT REPLY OFF`, `MONITOR`, `RESET`, a lost
//!    connection), or that is past its deadline; and refuses a pipeline that
//!    would itself make them unmatchable, before sending anything;
//! 2. re-authenticates when the connection's re-auth point has passed and no
//!    transaction or subscription is open: `AUTH` is queued just before the
//!    borrower's request and written with it, so it costs no round trip of
//!    its own;
//! 3. waits for the reply up to the response timeout plus the request's own
//!    block time (`BLPOP q 5`: 5 s more; a block time of 0: no limit);
//! 4. closes the connection at once if the reply does not arrive in time or
//!    the caller drops the future before it does, so that no later command,
//!    of this borrower or the next, can receive it;
//! 5. records the session state the request leaves (see `session`), so that
//!    the pool replaces a dirty connection instead of handing it on.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::command::{Block, Change, Command};
use crate::counters::{Counters, bump};
use crate::life::Life;
use crate::lifecycle::Lifecycle;
use crate::lock::lock;
use crate::reauth::{Reauth, Reauthenticator};
use crate::session::Session;
use crate::shared::link::reauthenticate_cluster;
use crate::telemetry;

/// A connection from the pool: run commands on it as on any redis-rs async
/// connection (it implements [`ConnectionLike`], so [`redis::AsyncCommands`]
/// and `query_async` work through the pool's guard).
///
/// What it guarantees (see the README's "What the pool guarantees"):
/// blocking commands wait their block time plus the response timeout; a
/// command whose reply does not arrive (timed out, or its future dropped)
/// closes the connection, which then refuses further commands; a connection
/// given back with session state (`MULTI`, `WATCH`, another database,
/// subscriptions, ...) is closed and replaced, never handed on; a
/// connection held past its re-auth point re-authenticates with its holder's
/// next command. A connection held without commands for hours (a
/// subscriber, `BLPOP 0`) is not re-authenticated and meets the server's
/// 12-hour cut.
pub struct Connection {
    pub(crate) inner: Inner,
    pub(crate) life: Arc<Life>,
    reauth: Reauth,
    session: Session,
    /// The connection failed under a command (I/O error, closed): it takes
    /// no more commands.
    pub(crate) failed: bool,
    settings: Arc<Settings>,
}

pub(crate) enum Inner {
    Standalone(MultiplexedConnection),
    /// Shared with the guard that closes it when a reply is abandoned.
    Cluster(ClusterSlot),
}

/// A cluster connection that can be closed while requests hold clones of
/// it: once taken, no new request gets it, and redis-rs's cluster task and
/// its node connections end when the last clone drops.
pub(crate) struct ClusterHandle(Mutex<Option<ClusterConnection>>);

impl ClusterHandle {
    pub(crate) fn new(connection: ClusterConnection) -> Self {
        Self(Mutex::new(Some(connection)))
    }

    /// A clone for one request, unless it was closed.
    pub(crate) fn get(&self) -> Option<ClusterConnection> {
        lock(&self.0).clone()
    }

    pub(crate) fn close(&self) {
        drop(lock(&self.0).take());
    }
}

/// A pooled cluster connection that an abandoned request can close. Its
/// re-authentication state is the lane that requests and the idle timer
/// (`cluster_upkeep`) take in turn, so that an `AUTH` to every node never
/// interleaves with a borrower's request.
#[derive(Clone)]
pub(crate) struct ClusterSlot {
    connection: Arc<ClusterHandle>,
    lane: Arc<tokio::sync::Mutex<Reauth>>,
}

impl ClusterSlot {
    pub(crate) fn new(connection: ClusterConnection, lifecycle: &Lifecycle) -> Self {
        Self {
            connection: Arc::new(ClusterHandle::new(connection)),
            lane: Arc::new(tokio::sync::Mutex::new(Reauth::new(lifecycle))),
        }
    }

    /// A handle for one request, unless the connection was closed.
    fn handle(&self) -> Option<ClusterConnection> {
        self.connection.get()
    }

    fn close(&self) {
        self.connection.close();
    }
}

/// Re-authenticates a pooled cluster connection while it is idle in the
/// pool, on the lifecycle's schedule (a borrower's next request does it while
/// it is held); at its deadline, if it is idle, it gets one more attempt and
/// is closed if that fails too. Ends when the connection closes.
pub(crate) async fn cluster_upkeep(slot: ClusterSlot, life: Arc<Life>, settings: Arc<Settings>) {
    let Some(reauthenticator) = settings.reauthenticator.as_ref() else {
        return;
    };
    loop {
        let next = slot.lane.lock().await.at().min(life.deadline());
        tokio::select! {
            () = life.closed() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        let mut reauth = slot.lane.lock().await;
        if !life.is_idle() {
            // Held: its borrower's next request re-authenticates it.
            drop(reauth);
            tokio::select! {
                () = life.closed() => return,
                () = tokio::time::sleep(HELD_RECHECK) => {}
            }
            continue;
        }
        // At its deadline it gets one more attempt.
        if (reauth.is_due() || life.is_expired())
            && let Some(connection) = slot.handle()
        {
            reauthenticate_cluster(
                &connection,
                &life,
                reauthenticator,
                &mut reauth,
                settings.auth_timeout,
            )
            .await;
        }
        if life.is_expired() {
            if life.close_idle() {
                slot.close();
                bump(&settings.counters.recycles);
            }
            return;
        }
    }
}

/// How often the idle timer looks again at a held cluster connection that is
/// due.
const HELD_RECHECK: Duration = Duration::from_secs(1);

/// What every connection of a pool shares.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The reply deadline of a command that does not block.
    pub(crate) response_timeout: Option<Duration>,
    /// What a re-authentication's `AUTH` may add to a request's deadline
    /// (IAM answers slowly when it is degraded): the connect timeout.
    pub(crate) auth_timeout: Duration,
    /// The configured database.
    pub(crate) db: i64,
    /// IAM: re-authentication (of every node, in cluster mode).
    pub(crate) reauthenticator: Option<Reauthenticator>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) lifecycle: Lifecycle,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.inner {
            Inner::Standalone(_) => "standalone",
            Inner::Cluster(_) => "cluster",
        };
        f.debug_struct("Connection")
            .field("mode", &mode)
            .field("life", &self.life)
            .field("dirty", &self.session.dirty())
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Before the redis-rs handle drops and its driver ends.
        self.life.close();
    }
}

/// A request: one command, or a pipeline and the replies wanted from it.
#[derive(Clone, Copy)]
enum Request<'a> {
    Command(&'a Cmd),
    Pipeline(&'a Pipeline, usize, usize),
}

/// A request's replies.
enum Replies {
    Command(Value),
    Pipeline(Vec<Value>),
}

fn client_error(what: &'static str, detail: String) -> RedisError {
    RedisError::from((redis::ErrorKind::Client, what, detail))
}

impl Connection {
    /// A connection just opened and authenticated; `resp3` is the protocol
    /// it speaks.
    pub(crate) fn new(inner: Inner, life: Arc<Life>, settings: Arc<Settings>, resp3: bool) -> Self {
        let standalone = matches!(inner, Inner::Standalone(_));
        Self {
            inner,
            life,
            reauth: Reauth::new(&settings.lifecycle),
            session: Session::new(settings.db, standalone, resp3),
            failed: false,
            settings,
        }
    }

    /// Whether it must not be handed to another borrower, and why.
    pub(crate) fn dirty(&self) -> Option<&'static str> {
        self.session.dirty()
    }

    /// The `AUTH` to send before the next request, if the re-auth point has
    /// passed and the session allows it (no transaction or subscription
    /// open, no identity of the borrower's own).
    fn reauth_command(&mut self) -> Option<Cmd> {
        let reauthenticator = self.settings.reauthenticator.as_ref()?;
        if !matches!(self.inner, Inner::Standalone(_))
            || !self.reauth.is_due()
            || !self.session.reauth_allowed()
        {
            return None;
        }
        reauthenticator.command(&mut self.reauth, &self.life)
    }

    /// Records the answer to a re-authentication's `AUTH` (a failed
    /// transport has failed the request too, and marked the connection).
    fn answered_auth(&mut self, reply: Option<RedisResult<Value>>) {
        if let (Some(Ok(reply)), Some(reauthenticator)) = (reply, &self.settings.reauthenticator) {
            reauthenticator.answered(&reply, &mut self.reauth, &self.life);
        }
    }

    /// Refuses to send on a connection that has lost track of its replies,
    /// was closed, or is past its deadline while held.
    fn usable(&self) -> RedisResult<()> {
        if let Some(why) = self.session.untrackable() {
            return Err(client_error(
                "this pooled connection takes no more commands",
                format!(
                    "after {why} its replies can no longer be matched to commands; it is \
                     replaced when given back: get another connection from the pool"
                ),
            ));
        }
        let expired = self.settings.reauthenticator.is_some() && self.life.is_expired();
        if self.failed || self.life.is_closed() || expired {
            return Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "this pooled connection was closed (its server went away, a reply did not \
                 arrive in time, or it reached its deadline without re-authenticating); it is \
                 replaced when given back: get another connection from the pool",
            )));
        }
        Ok(())
    }

    /// The reply deadline for a request that may block the server `block`.
    fn limit(&self, block: Block) -> Option<Duration> {
        let base = self.settings.response_timeout?;
        match block {
            Block::No => Some(base),
            Block::For(time) => Some(base.saturating_add(time)),
            Block::Forever => None,
        }
    }

    async fn command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        self.usable()?;
        let command = Command::of(cmd);
        let auth = self.reauth_command();
        // Queued in a transaction, a blocking command does not block.
        let block = if self.session.in_multi() {
            Block::No
        } else {
            command.block
        };
        let mut silent;
        let cmd = if command.change == Change::RepliesOff {
            // The server does not answer it: do not wait for an answer.
            silent = cmd.clone();
            silent.set_no_response(true);
            &silent
        } else {
            cmd
        };
        let (auth_reply, reply) = self
            .send(self.limit(block), auth, Some(Request::Command(cmd)))
            .await;
        self.answered_auth(auth_reply);
        let reply = match reply {
            Some(Ok(Replies::Command(reply))) => reply,
            Some(Err(err)) => return Err(err),
            _ => return Err(client_error("no reply to the command", String::new())),
        };
        self.session.record(&command, Some(&reply));
        Ok(reply)
    }

    async fn pipeline(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.usable()?;
        let commands: Vec<Command> = pipeline.cmd_iter().map(Command::of).collect();
        // A pipeline goes out whole: one whose replies could not all be
        // matched to its commands is refused before anything is sent.
        if let Some(why) = commands.iter().find_map(|c| self.session.unmatchable(c)) {
            return Err(client_error(
                "refused: a pipeline on a pooled connection cannot hold this command",
                format!("{why}; send it on its own"),
            ));
        }
        let atomic = pipeline.is_transaction();
        let block = pipeline_block(&commands, self.session.in_multi() || atomic);
        let auth = self.reauth_command();
        let (auth_reply, result) = self
            .send(
                self.limit(block),
                auth,
                Some(Request::Pipeline(pipeline, offset, count)),
            )
            .await;
        self.answered_auth(auth_reply);
        let result = match result {
            Some(Ok(Replies::Pipeline(replies))) => Ok(replies),
            Some(Err(err)) => Err(err),
            _ => Err(client_error("no reply to the pipeline", String::new())),
        };
        let replies = match &result {
            Ok(replies) => Some(replies),
            // The connection failed: it is replaced, whatever it holds.
            Err(err) if failed_transport(err) => return result,
            // Refused by the server (an aborted transaction): answered.
            Err(_) => None,
        };
        if atomic {
            // MULTI, each command QUEUED, then EXEC's reply, which holds the
            // commands' own replies if the transaction ran (none if a WATCH
            // aborted it or the server refused it).
            let exec = replies.and_then(|r| r.last()).unwrap_or(&Value::Nil);
            self.session.record(&MULTI, Some(&Value::Okay));
            let queued = Value::SimpleString("QUEUED".into());
            for command in &commands {
                self.session.record(command, Some(&queued));
            }
            self.session.record(&EXEC, Some(exec));
        } else {
            // Each command's own reply, where redis-rs hands them all back.
            let each = replies.filter(|r| offset == 0 && r.len() == commands.len());
            for (i, command) in commands.iter().enumerate() {
                self.session.record(command, each.and_then(|r| r.get(i)));
            }
        }
        result
    }

    /// Sends the re-authentication `auth` (if any) and then `request` (if
    /// any), written together, and waits up to `limit` (plus the AUTH's
    /// allowance) for their replies. The AUTH is queued first on the
    /// connection's channel, which keeps its order, so it reaches the server
    /// first.
    async fn send(
        &mut self,
        limit: Option<Duration>,
        auth: Option<Cmd>,
        request: Option<Request<'_>>,
    ) -> (Option<RedisResult<Value>>, Option<RedisResult<Replies>>) {
        let limit = match (&auth, limit) {
            (Some(_), Some(limit)) => Some(limit.saturating_add(self.settings.auth_timeout)),
            (_, limit) => limit,
        };
        let (auth_reply, reply) = match &mut self.inner {
            Inner::Standalone(c) => {
                // Only a re-authentication needs a second handle.
                let auth = auth.map(|auth| {
                    let mut auth_conn = c.clone();
                    async move { auth_conn.req_packed_command(&auth).await }
                });
                let request = request_on(c, request);
                let both = async {
                    match auth {
                        Some(auth) => {
                            // `biased`: the AUTH is always polled first, so
                            // its message enters the connection's channel
                            // first (the channel keeps order; an unbiased
                            // join takes turns, and a task that spent its
                            // budget could queue the request first).
                            let (auth, reply) = tokio::join!(biased; auth, request);
                            (Some(auth), reply)
                        }
                        None => (None, request.await),
                    }
                };
                answer(&self.life, &self.settings.counters, None, limit, both).await
            }
            Inner::Cluster(slot) => {
                let Some(mut c) = slot.handle() else {
                    return (None, Some(Err(closed_error())));
                };
                // The lane: no idle-timer AUTH while this request is out.
                let mut reauth = slot.lane.lock().await;
                if let Some(reauthenticator) = &self.settings.reauthenticator
                    && reauth.is_due()
                    && self.session.reauth_allowed()
                {
                    reauthenticate_cluster(
                        &c,
                        &self.life,
                        reauthenticator,
                        &mut reauth,
                        self.settings.auth_timeout,
                    )
                    .await;
                }
                let only = async { (None, request_on(&mut c, request).await) };
                answer(
                    &self.life,
                    &self.settings.counters,
                    Some(&*slot),
                    limit,
                    only,
                )
                .await
            }
        };
        // A standalone connection whose transport failed takes no more
        // commands (its driver may not have noticed yet); redis-rs's
        // cluster client reconnects its nodes by itself.
        if matches!(self.inner, Inner::Standalone(_))
            && (failed(auth_reply.as_ref()) || failed(reply.as_ref()))
        {
            self.failed = true;
        }
        (auth_reply, reply)
    }
}

/// `request` on `connection`, if there is one.
async fn request_on(
    connection: &mut impl ConnectionLike,
    request: Option<Request<'_>>,
) -> Option<RedisResult<Replies>> {
    Some(match request? {
        Request::Command(cmd) => connection
            .req_packed_command(cmd)
            .await
            .map(Replies::Command),
        Request::Pipeline(pipeline, offset, count) => connection
            .req_packed_commands(pipeline, offset, count)
            .await
            .map(Replies::Pipeline),
    })
}

/// A reply (or confirmation) that did not come within its time.
pub(crate) fn timed_out(what: String) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
}

fn closed_error() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "this pooled connection was closed",
    ))
}

const MULTI: Command = Command {
    block: Block::No,
    change: Change::Multi,
};
const EXEC: Command = Command {
    block: Block::No,
    change: Change::Exec,
};

/// How long a pipeline may keep the server busy: the block times of its
/// commands that run as they arrive (not those queued in a transaction).
fn pipeline_block(commands: &[Command], mut in_multi: bool) -> Block {
    let mut block = Block::No;
    for command in commands {
        if !in_multi {
            block = block.then(command.block);
        }
        match command.change {
            Change::Multi => in_multi = true,
            Change::Exec | Change::Discard => in_multi = false,
            _ => {}
        }
    }
    block
}

fn failed<T>(reply: Option<&RedisResult<T>>) -> bool {
    matches!(reply, Some(Err(err)) if failed_transport(err))
}

/// The connection itself failed (or lost track of its replies), as opposed
/// to the server answering with an error.
pub(crate) fn failed_transport(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_timeout()
        || err.is_unrecoverable_error()
}

/// Awaits `request` up to `limit`. If its replies do not arrive (the limit
/// passes, or the caller drops this future first), the connection is closed
/// at once: its replies must reach nobody.
async fn answer<A, R>(
    life: &Life,
    counters: &Counters,
    cluster: Option<&ClusterSlot>,
    limit: Option<Duration>,
    request: impl Future<Output = (Option<A>, Option<RedisResult<R>>)>,
) -> (Option<A>, Option<RedisResult<R>>) {
    let mut pending = Unanswered {
        life,
        counters,
        cluster,
        answered: false,
    };
    let result = match limit {
        None => request.await,
        Some(limit) => match tokio::time::timeout(limit, request).await {
            Ok(result) => result,
            // `pending` closes the connection as it drops.
            Err(_) => {
                let err = timed_out(format!(
                    "no reply within {limit:?} (the response timeout, plus the block time \
                         of blocking commands); the connection was closed so that the late \
                         reply reaches no other command"
                ));
                return (None, Some(Err(err)));
            }
        },
    };
    pending.answered = true;
    result
}

/// Closes the connection when dropped before its replies arrived.
struct Unanswered<'a> {
    life: &'a Life,
    counters: &'a Counters,
    cluster: Option<&'a ClusterSlot>,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        if let Some(cluster) = self.cluster {
            cluster.close();
        }
        if self.life.close_now() {
            bump(&self.counters.discarded_unanswered);
            tracing::debug!(
                "connection closed: a command's reply did not arrive in time, or its caller went away"
            );
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if !telemetry::ENABLED {
            return Box::pin(self.command(cmd));
        }
        let settings = Arc::clone(&self.settings);
        Box::pin(async move {
            settings
                .counters
                .telemetry
                .operation_of(telemetry::operation_name(cmd), self.command(cmd))
                .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        if !telemetry::ENABLED {
            return Box::pin(self.pipeline(pipeline, offset, count));
        }
        let settings = Arc::clone(&self.settings);
        Box::pin(async move {
            settings
                .counters
                .telemetry
                .operation_of(
                    telemetry::pipeline_name(pipeline),
                    self.pipeline(pipeline, offset, count),
                )
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.settings.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(text: &str) -> Command {
        let mut cmd = redis::cmd(text.split(' ').next().unwrap());
        for arg in text.split(' ').skip(1) {
            cmd.arg(arg);
        }
        Command::of(&cmd)
    }

    #[test]
    fn pipelines_block_for_their_commands_outside_transactions() {
        let secs = |s| Block::For(Duration::from_secs(s));
        let commands = [cmd("BLPOP a 2"), cmd("GET k"), cmd("BRPOP b 3")];
        assert_eq!(pipeline_block(&commands, false), secs(5));
        // Queued in a transaction (atomic pipeline, or an open MULTI):
        // nothing blocks.
        assert_eq!(pipeline_block(&commands, true), Block::No);
        let explicit = [
            cmd("MULTI"),
            cmd("BLPOP a 0"),
            cmd("EXEC"),
            cmd("BLPOP b 1"),
        ];
        assert_eq!(pipeline_block(&explicit, false), secs(1));
        assert_eq!(
            pipeline_block(&[cmd("XREAD BLOCK 0 STREAMS s $")], false),
            Block::Forever
        );
    }
}
