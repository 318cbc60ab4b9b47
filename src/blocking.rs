//! A dedicated connection for blocking consumers (`BLPOP 0` worker loops,
//! `XREADGROUP ... BLOCK`), held for hours.
//!
//! A blocking command holds its connection until the server answers, so no
//! `AUTH` can run on it meanwhile. With IAM, a long or endless block is
//! therefore sent in slices (at most a quarter of `reauth_after`, between
//! 1 s and 10 s): the same command with a shorter block time, sent again
//! while it answers "nothing yet" and time remains. Between slices, and
//! between commands, the connection re-authenticates when due and is
//! replaced when past its deadline or lost. The caller sees one command
//! with its own block time.
//!
//! A blocking command whose reply does not arrive in time, or whose caller
//! stops waiting, closes the connection at once: the server then unblocks
//! it instead of popping a job into a reply nobody reads.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Arg, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::clock::monotonic_now;
use crate::command::{Block, Command};
use crate::connector::Connector;
use crate::health::{self, Counts};
use crate::reauth::Reauth;
use crate::shared::link::Link;

/// A connection of its own for a blocking consumer: implements
/// [`ConnectionLike`], so `BLPOP`, `BRPOPLPUSH`, `XREADGROUP ... BLOCK` and
/// every other command work on it through [`redis::AsyncCommands`]. Made by
/// [`SharedConnectionBuilder::build_blocking`](crate::SharedConnectionBuilder::build_blocking).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use elasticache_iam::{ConnectionConfig, SharedConnection};
/// use redis::AsyncCommands;
///
/// let config = ConnectionConfig::from_env()?;
/// let mut jobs = SharedConnection::builder(config).build_blocking().await?;
/// loop {
///     // Waits as long as it takes, re-authenticating on the way.
///     let (_queue, job): (String, String) = jobs.blpop("jobs", 0.0).await?;
///     println!("{job}");
/// }
/// # }
/// ```
///
/// Session state (`SELECT`, `CLIENT SETNAME`, ...) is not carried over to a
/// replacement connection.
pub struct BlockingConnection {
    connector: Arc<Connector>,
    link: Option<Arc<Link>>,
    reauth: Reauth,
    response_timeout: Option<Duration>,
}

impl fmt::Debug for BlockingConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingConnection")
            .field("connector", &self.connector)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl BlockingConnection {
    pub(crate) fn new(
        connector: Arc<Connector>,
        link: Arc<Link>,
        response_timeout: Option<Duration>,
    ) -> Self {
        let reauth = Reauth::new(&connector.settings().lifecycle);
        Self {
            connector,
            link: Some(link),
            reauth,
            response_timeout,
        }
    }

    /// Counts since it started, read without I/O.
    pub fn counts(&self) -> Counts {
        health::counts(&self.connector)
    }

    /// The link to send on: re-authenticated if due, replaced if lost or
    /// past its deadline.
    async fn ready(&mut self) -> RedisResult<Arc<Link>> {
        let settings = Arc::clone(self.connector.settings());
        let iam = settings.reauthenticator.is_some();
        if let Some(link) = &self.link
            && (link.life.is_closed() || (iam && link.life.is_expired()))
        {
            let counters = self.connector.counters();
            crate::counters::bump(if link.life.is_closed() {
                &counters.reconnects
            } else {
                &counters.recycles
            });
            self.link = None;
        }
        let link = match &self.link {
            Some(link) => Arc::clone(link),
            None => {
                let opened = self.connector.open_connection().await.map_err(|e| {
                    RedisError::from(std::io::Error::other(crate::error::display_chain(&e)))
                })?;
                let link = Link::new(opened);
                self.reauth = Reauth::new(&settings.lifecycle);
                self.link = Some(Arc::clone(&link));
                link
            }
        };
        if let Some(reauthenticator) = &settings.reauthenticator
            && self.reauth.is_due()
        {
            link.reauthenticate(reauthenticator, &mut self.reauth, settings.auth_timeout)
                .await;
        }
        Ok(link)
    }

    /// The longest slice of a block, with IAM.
    fn slice(&self) -> Option<Duration> {
        self.connector.settings().reauthenticator.as_ref()?;
        let reauth_after = self.connector.settings().lifecycle.reauth_after;
        Some((reauth_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(10)))
    }

    async fn command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        let command = Command::of(cmd);
        refuse_session_state(command)?;
        let block = command.block;
        let started = monotonic_now();
        loop {
            let link = self.ready().await?;
            // This round's command and how long it may block.
            let (round, blocks) = match (block, self.slice()) {
                (Block::No, _) | (_, None) => (None, block),
                (Block::For(total), Some(slice)) => {
                    let left =
                        total.saturating_sub(monotonic_now().saturating_duration_since(started));
                    if left.is_zero() {
                        return Ok(Value::Nil);
                    }
                    sliced(cmd, left.min(slice))
                }
                (Block::Forever, Some(slice)) => sliced(cmd, slice),
            };
            // A slice gets a generous margin: a stall must not fail a
            // caller who asked to wait as long as it takes.
            let margin = self
                .response_timeout
                .map(|t| t.max(self.connector.settings().auth_timeout));
            let limit = match blocks {
                Block::No => self.response_timeout,
                Block::For(time) => margin.map(|t| t.saturating_add(time)),
                Block::Forever => None,
            };
            let reply = send(&link, round.as_ref().unwrap_or(cmd), limit).await;
            if reply.is_err() || blocks == Block::No {
                if matches!(&reply, Err(err) if crate::connection::failed_transport(err))
                    && link.close()
                {
                    self.connector.lost();
                }
                return reply;
            }
            // A slice that answered "nothing yet" goes round again, unless it
            // was the whole command.
            match reply {
                Ok(Value::Nil) if round.is_some() => continue,
                other => return other,
            }
        }
    }
}

/// `cmd` with its block time set to `slice` (rounded up to whole
/// milliseconds), and how long it blocks; `cmd` unchanged when its block
/// time is not where a rewrite can find it, or when sending it again would
/// change what it reads (`XREAD ... $`: "entries newer than now").
fn sliced(cmd: &Cmd, slice: Duration) -> (Option<Cmd>, Block) {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .map(|arg| match arg {
            Arg::Simple(bytes) => bytes,
            _ => b"".as_slice(),
        })
        .collect();
    let unchanged = (None, Command::of(cmd).block);
    let Some(name) = args.first().map(|n| n.to_ascii_uppercase()) else {
        return unchanged;
    };
    let millis = slice.as_micros().div_ceil(1000).max(1);
    let seconds = format!("{}.{:03}", millis / 1000, millis % 1000);
    let at = match name.as_slice() {
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BZPOPMIN" | b"BZPOPMAX" => {
            Some((args.len() - 1, seconds))
        }
        b"BLMPOP" | b"BZMPOP" if args.len() > 1 => Some((1, seconds)),
        b"XREAD" | b"XREADGROUP" => {
            // XREADGROUP GROUP group consumer: names, whatever they spell.
            let first = if name.as_slice() == b"XREADGROUP" {
                4
            } else {
                1
            };
            let options = args
                .iter()
                .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))
                .unwrap_or(args.len());
            if args[options..].iter().any(|a| *a == b"$") {
                return unchanged;
            }
            (first..options)
                .find(|&i| args[i].eq_ignore_ascii_case(b"BLOCK"))
                .filter(|i| i + 1 < options)
                .map(|i| (i + 1, millis.to_string()))
        }
        _ => None,
    };
    let Some((at, value)) = at.filter(|(at, _)| *at > 0) else {
        return unchanged;
    };
    let mut round = redis::cmd(std::str::from_utf8(args[0]).unwrap_or("BLPOP"));
    for (i, arg) in args.iter().enumerate().skip(1) {
        if i == at {
            round.arg(value.as_str());
        } else {
            round.arg(*arg);
        }
    }
    (
        Some(round),
        Block::For(Duration::from_millis(millis as u64)),
    )
}

/// A dedicated connection is replaced and re-authenticated between
/// commands, which would break or lose state a command leaves on it
/// (`MULTI` sent alone, `WATCH`, `SELECT`, subscriptions, ...): those are
/// refused, naming what to use instead.
fn refuse_session_state(command: Command) -> RedisResult<()> {
    if command.change == crate::command::Change::None {
        return Ok(());
    }
    Err(RedisError::from((
        redis::ErrorKind::Client,
        "refused by the blocking connection",
        format!(
            "{:?} leaves state on the connection, which a re-authentication or replacement \
             between commands would break: use an atomic pipeline (redis::pipe().atomic()) for \
             MULTI/EXEC, a pooled connection (Pool::get) for WATCH and SELECT, a Subscriber \
             for subscriptions",
            command.change
        ),
    )))
}

/// Sends `cmd` on `link`, waiting at most `limit`. If the reply does not
/// arrive (the limit, or the caller dropping this future), the connection is
/// closed at once, so that the server unblocks it rather than handing a job
/// to a reply nobody reads.
async fn send(link: &Link, cmd: &Cmd, limit: Option<Duration>) -> RedisResult<Value> {
    struct Unanswered<'a>(&'a Link, bool);
    impl Drop for Unanswered<'_> {
        fn drop(&mut self) {
            if !self.1 {
                self.0.close();
            }
        }
    }
    let mut pending = Unanswered(link, false);
    let reply = match limit {
        None => link.command(cmd).await,
        Some(limit) => match tokio::time::timeout(limit, link.command(cmd)).await {
            Ok(reply) => reply,
            Err(_) => {
                return Err(crate::connection::timed_out(format!(
                    "no reply within {limit:?} (the response timeout plus the block time); \
                         the connection was closed so that the server stops blocking for it"
                )));
            }
        },
    };
    pending.1 = true;
    reply
}

impl ConnectionLike for BlockingConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            if !pipeline.is_transaction() {
                for cmd in pipeline.cmd_iter() {
                    refuse_session_state(Command::of(cmd))?;
                }
            }
            let link = self.ready().await?;
            let blocks = pipeline
                .cmd_iter()
                .any(|cmd| Command::of(cmd).block != Block::No);
            let limit = if blocks { None } else { self.response_timeout };
            let request = link.pipeline(pipeline, offset, count);
            match limit {
                None => request.await,
                Some(limit) => tokio::time::timeout(limit, request).await.map_err(|_| {
                    crate::connection::timed_out(format!(
                        "no reply within {limit:?} (the response timeout)"
                    ))
                })?,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.connector.config().db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(cmd: &Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|a| match a {
                Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            })
            .collect()
    }

    #[test]
    fn block_times_are_sliced_where_each_command_keeps_them() {
        let slice = Duration::from_millis(1500);
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg("a").arg("b").arg(0);
        let (round, blocks) = sliced(&blpop, slice);
        assert_eq!(words(&round.unwrap()), ["BLPOP", "a", "b", "1.500"]);
        // Rounded up, never to 0 (which would block forever).
        let mut short = redis::cmd("BLPOP");
        short.arg("a").arg(5);
        let (short_round, short_blocks) = sliced(&short, Duration::from_micros(300));
        assert_eq!(words(&short_round.unwrap()), ["BLPOP", "a", "0.001"]);
        assert_eq!(short_blocks, Block::For(Duration::from_millis(1)));
        assert_eq!(blocks, Block::For(slice));

        let mut blmpop = redis::cmd("BLMPOP");
        blmpop.arg(0).arg(1).arg("q").arg("LEFT");
        assert_eq!(
            words(&sliced(&blmpop, slice).0.unwrap()),
            ["BLMPOP", "1.500", "1", "q", "LEFT"]
        );

        let mut xread = redis::cmd("XREADGROUP");
        xread
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("BLOCK")
            .arg(0)
            .arg("STREAMS")
            .arg("s")
            .arg(">");
        assert_eq!(
            words(&sliced(&xread, slice).0.unwrap()),
            [
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "BLOCK",
                "1500",
                "STREAMS",
                "s",
                ">"
            ]
        );

        // A consumer named 1000, or BLOCK: names, not the option.
        let mut named = redis::cmd("XREADGROUP");
        named
            .arg("GROUP")
            .arg("block")
            .arg("BLOCK")
            .arg("BLOCK")
            .arg(0)
            .arg("STREAMS")
            .arg("s")
            .arg(">");
        assert_eq!(
            words(&sliced(&named, slice).0.unwrap()),
            [
                "XREADGROUP",
                "GROUP",
                "block",
                "BLOCK",
                "BLOCK",
                "1500",
                "STREAMS",
                "s",
                ">"
            ]
        );
        // `$` read again would skip what arrived in between: not sliced.
        let mut tail = redis::cmd("XREAD");
        tail.arg("BLOCK").arg(0).arg("STREAMS").arg("s").arg("$");
        assert!(sliced(&tail, slice).0.is_none());

        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(0);
        assert!(sliced(&wait, slice).0.is_none());
    }
}
