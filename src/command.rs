//! What a command does to the connection it runs on: how long the server may
//! hold its reply back (blocking commands), and what session state it leaves
//! behind for whoever uses the connection next.
//!
//! Read from the command's own arguments, before it is sent; nothing here
//! does I/O. [`Session`](crate::session::Session) keeps the state, and the
//! connection sets its reply deadline from [`Block`].

use std::time::Duration;

use redis::{Arg, Cmd};

/// How long the server may wait before it answers, by the command's own
/// arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Block {
    /// Answers at once (or the block time is invalid and the server refuses
    /// it at once).
    No,
    /// Blocks up to this long (`BLPOP ... 5`, `XREAD BLOCK 5000`, `WAIT 1 5000`).
    For(Duration),
    /// Blocks until it is answered (a block time of 0).
    Forever,
}

impl Block {
    /// Two blocking commands one after the other on the server.
    pub(crate) fn then(self, next: Block) -> Block {
        match (self, next) {
            (Block::Forever, _) | (_, Block::Forever) => Block::Forever,
            (Block::No, other) | (other, Block::No) => other,
            (Block::For(a), Block::For(b)) => Block::For(a.saturating_add(b)),
        }
    }
}

/// The session state a command sets or clears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing that outlives the command.
    None,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    /// `SELECT n`; `None` if the argument is not a number (the server
    /// refuses it).
    Select(Option<i64>),
    /// `SUBSCRIBE`, `PSUBSCRIBE` (`shard`: `SSUBSCRIBE`), with the number of
    /// confirmations the server sends (one per argument).
    Subscribe {
        shard: bool,
        confirmations: usize,
    },
    /// `UNSUBSCRIBE`, `PUNSUBSCRIBE` (`shard`: `SUNSUBSCRIBE`); zero
    /// arguments (all of them) has an unknown number of confirmations.
    Unsubscribe {
        shard: bool,
        confirmations: usize,
    },
    /// `CLIENT REPLY OFF | SKIP`: the server stops answering.
    RepliesOff,
    /// `CLIENT TRACKING ON`.
    TrackingOn,
    /// `CLIENT TRACKING OFF`.
    TrackingOff,
    ReadOnly,
    ReadWrite,
    /// A command that changes the connection for good: `RESET`, `HELLO`,
    /// `AUTH` (the user's own), `QUIT`.
    Identity(&'static str),
    /// A client setting the next borrower would inherit: `CLIENT SETNAME`,
    /// `CLIENT NO-EVICT ON`, `CLIENT NO-TOUCH ON`.
    ClientSetting(&'static str),
    /// The server streams replies nobody asked for: `MONITOR`, `SYNC`,
    /// `PSYNC`.
    Stream(&'static str),
}

/// A command, as far as its connection is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Command {
    pub(crate) block: Block,
    pub(crate) change: Change,
}

impl Command {
    /// A command that leaves nothing behind and answers at once.
    pub(crate) const PLAIN: Command = Command {
        block: Block::No,
        change: Change::None,
    };

    pub(crate) fn of(cmd: &Cmd) -> Command {
        let arg = |arg| match arg {
            Arg::Simple(bytes) => bytes,
            // A cursor, or anything a later redis-rs adds: not a block time
            // nor a mode this looks at.
            _ => b"".as_slice(),
        };
        // Most commands are known by their name alone (GET, SET, ...):
        // their arguments are not gathered.
        match cmd.args_iter().next().map(arg) {
            Some(name) if is_of_interest(name) => {
                let args: Vec<&[u8]> = cmd.args_iter().map(arg).collect();
                Command::parse(&args)
            }
            _ => Command::PLAIN,
        }
    }

    fn parse(args: &[&[u8]]) -> Command {
        let Some((name, rest)) = args.split_first() else {
            return Command::PLAIN;
        };
        let is = |word: &[u8], expected: &str| word.eq_ignore_ascii_case(expected.as_bytes());
        let name = name.to_ascii_uppercase();
        let change = |change| Command {
            block: Block::No,
            change,
        };
        let block = |block| Command {
            block,
            change: Change::None,
        };
        match name.as_slice() {
            b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BZPOPMIN" | b"BZPOPMAX" => {
                block(rest.last().map_or(Block::No, |t| seconds(t)))
            }
            b"BLMPOP" | b"BZMPOP" => block(rest.first().map_or(Block::No, |t| seconds(t))),
            b"XREAD" => block(stream_block(rest, 0)),
            // XREADGROUP GROUP group consumer ...: the group and consumer
            // are names, whatever they spell.
            b"XREADGROUP" => block(stream_block(rest, 3)),
            b"WAIT" | b"WAITAOF" => block(rest.last().map_or(Block::No, |t| millis(t))),
            b"MULTI" => change(Change::Multi),
            b"EXEC" => change(Change::Exec),
            b"DISCARD" => change(Change::Discard),
            b"WATCH" => change(Change::Watch),
            b"UNWATCH" => change(Change::Unwatch),
            b"SELECT" => change(Change::Select(
                rest.first()
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .and_then(|n| n.trim().parse().ok()),
            )),
            b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" => change(Change::Subscribe {
                shard: name.as_slice() == b"SSUBSCRIBE",
                confirmations: rest.len(),
            }),
            b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" | b"SUNSUBSCRIBE" => change(Change::Unsubscribe {
                shard: name.as_slice() == b"SUNSUBSCRIBE",
                confirmations: rest.len(),
            }),
            b"CLIENT" => match rest {
                [sub, mode, ..] if is(sub, "REPLY") && (is(mode, "OFF") || is(mode, "SKIP")) => {
                    change(Change::RepliesOff)
                }
                [sub, mode, ..] if is(sub, "TRACKING") && is(mode, "ON") => {
                    change(Change::TrackingOn)
                }
                [sub, mode, ..] if is(sub, "TRACKING") && is(mode, "OFF") => {
                    change(Change::TrackingOff)
                }
                [sub, ..] if is(sub, "SETNAME") => change(Change::ClientSetting("CLIENT SETNAME")),
                [sub, mode, ..] if is(sub, "NO-EVICT") && is(mode, "ON") => {
                    change(Change::ClientSetting("CLIENT NO-EVICT ON"))
                }
                [sub, mode, ..] if is(sub, "NO-TOUCH") && is(mode, "ON") => {
                    change(Change::ClientSetting("CLIENT NO-TOUCH ON"))
                }
                _ => Command::PLAIN,
            },
            b"READONLY" => change(Change::ReadOnly),
            b"READWRITE" => change(Change::ReadWrite),
            b"RESET" => change(Change::Identity("RESET")),
            b"HELLO" => change(Change::Identity("HELLO")),
            b"AUTH" => change(Change::Identity("AUTH")),
            b"QUIT" => change(Change::Identity("QUIT")),
            b"MONITOR" => change(Change::Stream("MONITOR")),
            b"SYNC" | b"PSYNC" => change(Change::Stream("SYNC")),
            _ => Command::PLAIN,
        }
    }
}

/// The commands that block or change session state: the names
/// [`Command::parse`] looks at. Any other command is plain.
const OF_INTEREST: [&str; 34] = [
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BLMOVE",
    "BZPOPMIN",
    "BZPOPMAX",
    "BLMPOP",
    "BZMPOP",
    "XREAD",
    "XREADGROUP",
    "WAIT",
    "WAITAOF",
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "SELECT",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "SUNSUBSCRIBE",
    "CLIENT",
    "READONLY",
    "READWRITE",
    "RESET",
    "HELLO",
    "AUTH",
    "QUIT",
    "MONITOR",
    "SYNC",
    "PSYNC",
];

fn is_of_interest(name: &[u8]) -> bool {
    OF_INTEREST
        .iter()
        .any(|known| name.eq_ignore_ascii_case(known.as_bytes()))
}

/// A block time in seconds (`BLPOP`'s last argument): 0 is forever.
fn seconds(arg: &[u8]) -> Block {
    let Some(secs) = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
    else {
        return Block::No;
    };
    if secs == 0.0 {
        Block::Forever
    } else if secs.is_finite() && secs > 0.0 {
        // Longer than any Duration: as good as forever.
        Duration::try_from_secs_f64(secs).map_or(Block::Forever, Block::For)
    } else {
        Block::No
    }
}

/// A block time in milliseconds (`WAIT`, `XREAD BLOCK`): 0 is forever.
fn millis(arg: &[u8]) -> Block {
    match std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        Some(0) => Block::Forever,
        Some(ms) => Block::For(Duration::from_millis(ms)),
        None => Block::No,
    }
}

/// `XREAD [COUNT n] [BLOCK ms] STREAMS ...` and `XREADGROUP GROUP g c [COUNT
/// n] [BLOCK ms] [NOACK] STREAMS ...`: the options before `STREAMS`, after
/// `skip` arguments.
fn stream_block(args: &[&[u8]], skip: usize) -> Block {
    let mut options = args.iter().skip(skip);
    while let Some(option) = options.next() {
        let upper = option.to_ascii_uppercase();
        match upper.as_slice() {
            b"STREAMS" => break,
            b"BLOCK" => return options.next().map_or(Block::No, |ms| millis(ms)),
            b"COUNT" => {
                options.next();
            }
            _ => {}
        }
    }
    Block::No
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command as redis-rs builds it, read the way the connection
    /// reads it (so each case also checks the list of names of interest).
    fn command(text: &str) -> Command {
        let mut words = text.split(' ');
        let mut cmd = redis::cmd(words.next().unwrap());
        for word in words {
            cmd.arg(word);
        }
        Command::of(&cmd)
    }

    fn secs(s: u64) -> Block {
        Block::For(Duration::from_secs(s))
    }

    #[test]
    fn block_times_come_from_each_commands_own_argument() {
        let cases = [
            ("BLPOP q 5", secs(5)),
            ("blpop a b 0.5", Block::For(Duration::from_millis(500))),
            ("BRPOP q 0", Block::Forever),
            ("BRPOPLPUSH a b 3", secs(3)),
            ("BLMOVE a b LEFT RIGHT 7", secs(7)),
            ("BZPOPMIN z 2", secs(2)),
            ("BZPOPMAX z 0", Block::Forever),
            ("BLMPOP 4 2 a b LEFT", secs(4)),
            ("BZMPOP 0 1 z MIN", Block::Forever),
            (
                "XREAD COUNT 10 BLOCK 2500 STREAMS s 0",
                Block::For(Duration::from_millis(2500)),
            ),
            ("XREAD STREAMS s $", Block::No),
            ("XREAD BLOCK 0 STREAMS s $", Block::Forever),
            // A stream called BLOCK is a key, not the option.
            ("XREAD STREAMS BLOCK 0", Block::No),
            (
                "XREADGROUP GROUP BLOCK COUNT COUNT 1 BLOCK 100 STREAMS s >",
                Block::For(Duration::from_millis(100)),
            ),
            ("XREADGROUP GROUP g c STREAMS s >", Block::No),
            ("WAIT 1 3000", Block::For(Duration::from_secs(3))),
            ("WAIT 1 0", Block::Forever),
            ("WAITAOF 1 0 200", Block::For(Duration::from_millis(200))),
            // Refused by the server at once: no block.
            ("BLPOP q -1", Block::No),
            ("BLPOP q soon", Block::No),
            ("BLPOP q inf", Block::No),
            ("BLPOP q", Block::No),
            ("BLPOP q 1e300", Block::Forever),
            ("GET k", Block::No),
        ];
        for (text, expected) in cases {
            assert_eq!(command(text).block, expected, "{text}");
        }
    }

    #[test]
    fn blocks_add_up_and_forever_wins() {
        assert_eq!(secs(1).then(secs(2)), secs(3));
        assert_eq!(Block::No.then(secs(2)), secs(2));
        assert_eq!(secs(1).then(Block::Forever), Block::Forever);
        assert_eq!(
            Block::For(Duration::MAX).then(secs(1)),
            Block::For(Duration::MAX)
        );
    }

    #[test]
    fn session_changes() {
        let cases = [
            ("MULTI", Change::Multi),
            ("exec", Change::Exec),
            ("DISCARD", Change::Discard),
            ("WATCH a b", Change::Watch),
            ("UNWATCH", Change::Unwatch),
            ("SELECT 1", Change::Select(Some(1))),
            ("SELECT x", Change::Select(None)),
            (
                "SUBSCRIBE a b",
                Change::Subscribe {
                    shard: false,
                    confirmations: 2,
                },
            ),
            (
                "SSUBSCRIBE a",
                Change::Subscribe {
                    shard: true,
                    confirmations: 1,
                },
            ),
            (
                "PUNSUBSCRIBE",
                Change::Unsubscribe {
                    shard: false,
                    confirmations: 0,
                },
            ),
            ("CLIENT REPLY OFF", Change::RepliesOff),
            ("client reply skip", Change::RepliesOff),
            ("CLIENT REPLY ON", Change::None),
            ("CLIENT TRACKING ON", Change::TrackingOn),
            ("CLIENT TRACKING OFF", Change::TrackingOff),
            ("CLIENT SETINFO LIB-NAME x", Change::None),
            (
                "CLIENT SETNAME worker",
                Change::ClientSetting("CLIENT SETNAME"),
            ),
            (
                "CLIENT NO-EVICT on",
                Change::ClientSetting("CLIENT NO-EVICT ON"),
            ),
            (
                "CLIENT NO-TOUCH ON",
                Change::ClientSetting("CLIENT NO-TOUCH ON"),
            ),
            ("CLIENT NO-TOUCH OFF", Change::None),
            ("READONLY", Change::ReadOnly),
            ("READWRITE", Change::ReadWrite),
            ("RESET", Change::Identity("RESET")),
            ("HELLO 3", Change::Identity("HELLO")),
            ("AUTH u p", Change::Identity("AUTH")),
            ("QUIT", Change::Identity("QUIT")),
            ("MONITOR", Change::Stream("MONITOR")),
            ("SET k v", Change::None),
        ];
        for (text, expected) in cases {
            assert_eq!(command(text).change, expected, "{text}");
        }
    }

    #[test]
    fn every_command_of_interest_is_parsed_and_no_other() {
        for name in OF_INTEREST {
            let mut cmd = redis::cmd(name);
            cmd.arg("0");
            let parsed = Command::parse(&[name.as_bytes(), b"0"]);
            assert_eq!(Command::of(&cmd), parsed, "{name}");
        }
        let mut get = redis::cmd("GET");
        get.arg("k");
        assert_eq!(Command::of(&get), Command::PLAIN);
    }

    #[test]
    fn commands_built_by_redis_rs() {
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg("q").arg(2.5);
        assert_eq!(
            Command::of(&blpop).block,
            Block::For(Duration::from_millis(2500))
        );
        assert_eq!(
            Command::of(&redis::cmd("SELECT").arg(3).clone()).change,
            Change::Select(Some(3))
        );
    }
}
