//! What the shared handle refuses: commands that need a connection of their
//! own, because on a connection every caller shares they would change what
//! the others see (`SELECT`, `CLIENT REPLY`, a user `AUTH`), reach into
//! their requests (`MULTI` sent alone, `WATCH`), hold the connection for
//! everyone (blocking commands), or turn it into something else
//! (subscriptions, `MONITOR`, `RESET`). Refused before anything is sent.

use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisResult};

use crate::command::{Block, Change, Command};

/// The first words of the error every refusal carries (its kind is
/// [`redis::ErrorKind::Client`]).
pub(super) const REFUSED: &str = "refused by the shared connection";

/// A command sent on its own.
pub(super) fn command(cmd: &Cmd) -> RedisResult<()> {
    check(Command::of(cmd), false)
}

/// A pipeline: refused whole if any command in it is. In an atomic pipeline
/// (one request: `MULTI`, the commands, `EXEC`) blocking commands are only
/// queued, so they do not block.
pub(super) fn pipeline(pipeline: &Pipeline) -> RedisResult<()> {
    let atomic = pipeline.is_transaction();
    pipeline
        .cmd_iter()
        .try_for_each(|cmd| check(Command::of(cmd), atomic))
}

fn check(command: Command, queued: bool) -> RedisResult<()> {
    let what = match command.change {
        Change::None => None,
        Change::Multi | Change::Exec | Change::Discard | Change::Watch | Change::Unwatch => {
            Some("a transaction command (MULTI, EXEC, DISCARD, WATCH, UNWATCH)")
        }
        Change::Select(_) => Some("SELECT"),
        Change::Subscribe { .. } | Change::Unsubscribe { .. } => {
            Some("a subscription command (SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UN-)")
        }
        Change::RepliesOff => Some("CLIENT REPLY"),
        Change::TrackingOn | Change::TrackingOff => Some("CLIENT TRACKING"),
        Change::ReadOnly | Change::ReadWrite => Some("READONLY / READWRITE"),
        Change::Identity(name) | Change::ClientSetting(name) | Change::Stream(name) => Some(name),
    };
    let what = what.or_else(|| {
        (!queued && command.block != Block::No)
            .then_some("a blocking command (BLPOP and the other B* pops, XREAD BLOCK, WAIT)")
    });
    match what {
        None => Ok(()),
        Some(what) => Err(RedisError::from((
            ErrorKind::Client,
            REFUSED,
            format!(
                "{what} needs a connection of its own: every caller's commands share this \
                 connection. Use a pooled connection (Pool::get) for transactions with WATCH, \
                 SELECT and other per-connection state, or a dedicated connection for \
                 subscribers and blocking consumers; MULTI/EXEC without WATCH works here as \
                 an atomic pipeline (redis::pipe().atomic())"
            ),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(text: &str) -> Cmd {
        let mut words = text.split(' ');
        let mut cmd = redis::cmd(words.next().unwrap());
        for word in words {
            cmd.arg(word);
        }
        cmd
    }

    #[test]
    fn commands_of_a_connection_of_their_own_are_refused() {
        for text in [
            "MULTI",
            "exec",
            "DISCARD",
            "WATCH k",
            "UNWATCH",
            "SELECT 1",
            "SUBSCRIBE a b",
            "PSUBSCRIBE p*",
            "SSUBSCRIBE s",
            "UNSUBSCRIBE",
            "BLPOP q 0",
            "BRPOP q 5",
            "BLMOVE a b LEFT RIGHT 1",
            "BZPOPMIN z 1",
            "XREAD BLOCK 0 STREAMS s $",
            "WAIT 1 100",
            "CLIENT REPLY OFF",
            "CLIENT TRACKING ON",
            "RESET",
            "AUTH user secret",
            "HELLO 3",
            "MONITOR",
            "READONLY",
            "CLIENT SETNAME mine",
        ] {
            let err = command(&cmd(text)).expect_err(text);
            assert_eq!(err.kind(), ErrorKind::Client, "{text}");
            assert!(err.to_string().contains(REFUSED), "{text}: {err}");
            assert!(
                err.to_string().contains("needs a connection of its own"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn ordinary_commands_pass() {
        for text in [
            "GET k",
            "SET k v EX 60",
            "XREAD COUNT 5 STREAMS s 0",
            "LPOP q",
            "CLIENT ID",
            "PING",
            "EVAL return 1 0",
        ] {
            command(&cmd(text)).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    #[test]
    fn an_atomic_pipeline_may_queue_a_blocking_pop_but_nothing_else_of_its_own() {
        let mut atomic = redis::pipe();
        atomic
            .atomic()
            .cmd("SET")
            .arg("k")
            .arg("v")
            .cmd("BLPOP")
            .arg("q")
            .arg(0);
        pipeline(&atomic).unwrap();

        let mut plain = redis::pipe();
        plain
            .cmd("SET")
            .arg("k")
            .arg("v")
            .cmd("BLPOP")
            .arg("q")
            .arg(0);
        assert!(pipeline(&plain).is_err());

        let mut select = redis::pipe();
        select.atomic().cmd("SELECT").arg(1).cmd("GET").arg("k");
        assert!(pipeline(&select).is_err());

        let mut explicit = redis::pipe();
        explicit.cmd("MULTI").cmd("GET").arg("k").cmd("EXEC");
        assert!(pipeline(&explicit).is_err());
    }
}
