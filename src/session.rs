//! The state a borrower can leave on a connection: an open `MULTI`, a
//! `WATCH`, another database, subscriptions, replies switched off, tracking,
//! `READONLY`, client settings, or a changed identity (`RESET`, `HELLO`,
//! `AUTH`).
//!
//! A [`Session`] records each command with the server's answer
//! ([`Session::record`]). A command the server refused changed nothing; a
//! command queued in a transaction takes effect at `EXEC`, with the reply
//! `EXEC` gives for it; state is cleared only when an answer shows it
//! cleared, so an unknown outcome counts as dirty. (A command whose answer
//! never came closes its connection: see `connection`.) A dirty connection
//! is never cleaned by guessing: the pool closes and replaces it.

use redis::{PushKind, Value};

use crate::command::{Change, Command};

/// What the server holds for this connection beyond its authentication.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// The configured database, which every connection starts in.
    home_db: i64,
    /// The selected database; `None` when unknown.
    db: Option<i64>,
    in_multi: bool,
    /// Commands queued in the open transaction, to be applied with the
    /// replies `EXEC` gives for them.
    queued: Vec<Command>,
    watching: bool,
    subscribed: bool,
    shard_subscribed: bool,
    tracking: bool,
    readonly: bool,
    /// Tracked only on standalone connections: redis-rs's cluster client
    /// sends `READONLY` to replicas itself.
    standalone: bool,
    resp3: bool,
    /// `CLIENT SETNAME`, `NO-EVICT`, `NO-TOUCH`.
    client_setting: Option<&'static str>,
    /// Set for good: the user's own `AUTH`, or `QUIT`.
    identity: Option<&'static str>,
    /// Set for good: replies can no longer be matched to commands.
    untrackable: Option<&'static str>,
}

impl Session {
    /// A new connection: in `home_db`, nothing else.
    pub(crate) fn new(home_db: i64, standalone: bool, resp3: bool) -> Self {
        Self {
            home_db,
            db: Some(home_db),
            in_multi: false,
            queued: Vec::new(),
            watching: false,
            subscribed: false,
            shard_subscribed: false,
            tracking: false,
            readonly: false,
            standalone,
            resp3,
            client_setting: None,
            identity: None,
            untrackable: None,
        }
    }

    /// Inside `MULTI`: commands are queued, not run (and do not block).
    pub(crate) fn in_multi(&self) -> bool {
        self.in_multi
    }

    /// Why the connection must not be handed to another borrower, if it
    /// must not.
    pub(crate) fn dirty(&self) -> Option<&'static str> {
        if let Some(reason) = self.untrackable.or(self.identity) {
            return Some(reason);
        }
        [
            (self.in_multi, "MULTI left open"),
            (self.watching, "WATCH left in place"),
            (self.db != Some(self.home_db), "another database selected"),
            (self.subscribed, "subscribed"),
            (self.shard_subscribed, "subscribed to shard channels"),
            (self.tracking, "client tracking on"),
            (self.readonly, "READONLY"),
        ]
        .into_iter()
        .find_map(|(on, reason)| on.then_some(reason))
        .or(self.client_setting)
    }

    /// Whether an `AUTH` with the connection's IAM user may be sent before
    /// the next command: not inside a transaction (the server refuses it
    /// there), not while subscribed, not after the user's own `AUTH` (it
    /// would switch the user back), and not once replies are unmatchable.
    pub(crate) fn reauth_allowed(&self) -> bool {
        !self.in_multi
            && !self.subscribed
            && !self.shard_subscribed
            && self.identity.is_none()
            && self.untrackable.is_none()
    }

    /// Replies can no longer be matched to commands (the server stopped
    /// answering, or streams replies): nothing more may be sent.
    pub(crate) fn untrackable(&self) -> Option<&'static str> {
        self.untrackable
    }

    /// Why sending `command` would leave replies that cannot be matched to
    /// commands (redis-rs matches one reply to each), if it would: the
    /// server stops answering (`CLIENT REPLY OFF`/`SKIP`), streams replies
    /// (`MONITOR`), may switch protocol (`RESET`, `HELLO`: RESP2 delivers
    /// pub/sub messages as replies), or answers a subscription command with
    /// several confirmations (several channels, or all of them), or
    /// subscribes in RESP2.
    pub(crate) fn unmatchable(&self, command: &Command) -> Option<&'static str> {
        match command.change {
            Change::RepliesOff => Some("CLIENT REPLY OFF or SKIP (the server stopped answering)"),
            Change::Stream(what) => Some(what),
            Change::Identity(what @ ("RESET" | "HELLO")) => Some(what),
            Change::Subscribe { .. } | Change::Unsubscribe { .. } if !self.resp3 => {
                Some("a subscription in RESP2 (messages arrive as replies)")
            }
            Change::Subscribe { confirmations, .. } | Change::Unsubscribe { confirmations, .. }
                if confirmations != 1 =>
            {
                Some(
                    "a subscription command for several channels, or all (its confirmations \
                     cannot be matched to commands)",
                )
            }
            _ => None,
        }
    }

    /// `command` was sent and answered with `reply` (`None`: its outcome is
    /// unknown, so it counts as having done what it asks, and a database it
    /// selects is unknown).
    pub(crate) fn record(&mut self, command: &Command, reply: Option<&Value>) {
        if self.in_multi && !matches!(command.change, Change::Exec | Change::Discard) {
            self.queue(command, reply);
            return;
        }
        match reply {
            // Refused (outside a transaction): it changed nothing.
            Some(Value::ServerError(_)) if !matches!(command.change, Change::Exec) => {}
            _ => self.apply(command, reply),
        }
    }

    /// A command sent inside `MULTI`: queued (`QUEUED`), or refused.
    fn queue(&mut self, command: &Command, reply: Option<&Value>) {
        match (command.change, reply) {
            // Refused: not queued (a nested MULTI, a WATCH inside MULTI,
            // an unknown command: EXEC then aborts).
            (_, Some(Value::ServerError(_))) => {}
            // Protocol changes and streams take effect when queued.
            _ if self.unmatchable(command).is_some() => self.apply(command, None),
            (Change::Multi, _) => {}
            _ => self.queued.push(*command),
        }
    }

    /// `command` took effect (`reply` its own reply, `None` if unknown).
    fn apply(&mut self, command: &Command, reply: Option<&Value>) {
        if let Some(why) = self.unmatchable(command) {
            self.untrackable.get_or_insert(why);
        }
        match command.change {
            Change::Multi => self.in_multi = true,
            Change::Exec | Change::Discard => self.end_transaction(command, reply),
            Change::Watch => self.watching = true,
            Change::Unwatch if reply.is_some_and(is_ok) => self.watching = false,
            Change::Select(n) => {
                self.db = match reply {
                    Some(reply) if is_ok(reply) => n,
                    _ => None,
                }
            }
            Change::Subscribe { shard: true, .. } => self.shard_subscribed = true,
            Change::Subscribe { shard: false, .. } => self.subscribed = true,
            Change::Unsubscribe { shard, .. } if remaining_subscriptions(reply) == Some(0) => {
                if shard {
                    self.shard_subscribed = false;
                } else {
                    self.subscribed = false;
                }
            }
            Change::TrackingOn => self.tracking = true,
            Change::TrackingOff if reply.is_some_and(is_ok) => self.tracking = false,
            Change::ReadOnly if self.standalone => self.readonly = true,
            Change::ReadWrite if reply.is_some_and(is_ok) => self.readonly = false,
            Change::Identity(what) => {
                self.identity.get_or_insert(what);
            }
            Change::ClientSetting(what) => {
                self.client_setting.get_or_insert(what);
            }
            _ => {}
        }
    }

    /// `EXEC` or `DISCARD` answered with `reply`: the transaction ended
    /// (run, aborted by a WATCH, discarded, or refused whole with
    /// EXECABORT), and with it every WATCH; the queued commands took effect
    /// with their replies if it ran. Another error, or no answer, leaves the
    /// outcome unknown (Redis 6.0 and older stay in MULTI after a refused
    /// EXEC): dirty.
    fn end_transaction(&mut self, command: &Command, reply: Option<&Value>) {
        if !self.in_multi {
            // EXEC or DISCARD without MULTI: refused, nothing changes.
            return;
        }
        let queued = std::mem::take(&mut self.queued);
        let ran = match (command.change, reply) {
            (Change::Exec, Some(Value::Array(replies))) => Some(replies),
            (Change::Exec, Some(Value::ServerError(err))) if err.code() != "EXECABORT" => {
                self.queued = queued;
                return;
            }
            (_, None) => {
                // Unknown: as if everything queued ran, with unknown replies.
                self.in_multi = false;
                self.watching = false;
                for command in &queued {
                    self.apply(command, None);
                }
                self.in_multi = true;
                return;
            }
            _ => None,
        };
        self.in_multi = false;
        self.watching = false;
        if let Some(replies) = ran {
            if replies.len() == queued.len() {
                for (command, reply) in queued.iter().zip(replies) {
                    self.record(command, Some(reply));
                }
            } else {
                // More ran than this saw queued (an atomic pipeline inside
                // an open MULTI): their effects are unknown.
                for command in &queued {
                    self.apply(command, None);
                }
            }
        }
    }
}

fn is_ok(reply: &Value) -> bool {
    matches!(reply, Value::Okay) || matches!(reply, Value::SimpleString(s) if s == "OK")
}

/// The subscription count in the last confirmation of an unsubscribe
/// command's reply.
fn remaining_subscriptions(reply: Option<&Value>) -> Option<i64> {
    let confirmation = match reply? {
        Value::Array(items) => items.last()?,
        other => other,
    };
    match confirmation {
        Value::Push {
            kind: PushKind::Unsubscribe | PushKind::PUnsubscribe | PushKind::SUnsubscribe,
            data,
        } => match data.last()? {
            Value::Int(n) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Block;

    fn cmd(change: Change) -> Command {
        Command {
            block: Block::No,
            change,
        }
    }

    fn run(session: &mut Session, change: Change, reply: Option<Value>) {
        session.record(&cmd(change), reply.as_ref());
    }

    fn ok() -> Option<Value> {
        Some(Value::Okay)
    }

    fn queued() -> Option<Value> {
        Some(Value::SimpleString("QUEUED".into()))
    }

    fn error(text: &str) -> Option<Value> {
        redis::parse_redis_value(format!("-{text}\r\n").as_bytes()).ok()
    }

    fn exec(replies: Vec<Value>) -> Option<Value> {
        Some(Value::Array(replies))
    }

    #[test]
    fn a_transaction_is_dirty_until_it_ends() {
        let mut s = Session::new(0, true, true);
        run(&mut s, Change::Multi, ok());
        assert_eq!(s.dirty(), Some("MULTI left open"));
        assert!(!s.reauth_allowed());
        run(&mut s, Change::None, queued());
        run(&mut s, Change::Exec, exec(vec![Value::Okay]));
        assert_eq!(s.dirty(), None);
        run(&mut s, Change::Multi, ok());
        run(&mut s, Change::Discard, ok());
        assert_eq!(s.dirty(), None);
        // EXECABORT ends it; another refusal of EXEC may not (Redis 6.0).
        run(&mut s, Change::Multi, ok());
        run(
            &mut s,
            Change::Exec,
            error("EXECABORT Transaction discarded"),
        );
        assert_eq!(s.dirty(), None);
        run(&mut s, Change::Multi, ok());
        run(&mut s, Change::Exec, error("ERR something"));
        assert_eq!(s.dirty(), Some("MULTI left open"));
        // An EXEC whose answer never came: still dirty.
        let mut s = Session::new(0, true, true);
        run(&mut s, Change::Multi, ok());
        run(&mut s, Change::Exec, None);
        assert!(s.dirty().is_some());
        // A refused MULTI opened nothing.
        let mut s = Session::new(0, true, true);
        run(
            &mut s,
            Change::Multi,
            error("NOPERM this user has no permissions"),
        );
        assert_eq!(s.dirty(), None);
        assert!(!s.in_multi());
    }

    #[test]
    fn watch_ends_with_unwatch_exec_or_discard() {
        let mut s = Session::new(0, true, true);
        run(&mut s, Change::Watch, ok());
        assert_eq!(s.dirty(), Some("WATCH left in place"));
        assert!(s.reauth_allowed(), "AUTH does not touch a WATCH");
        run(&mut s, Change::Unwatch, ok());
        assert_eq!(s.dirty(), None);
        run(&mut s, Change::Watch, ok());
        run(&mut s, Change::Multi, ok());
        run(&mut s, Change::Exec, Some(Value::Nil)); // aborted by the WATCH
        assert_eq!(s.dirty(), None);
        // EXEC without MULTI leaves the WATCH in place.
        run(&mut s, Change::Watch, ok());
        run(&mut s, Change::Exec, error("ERR EXEC without MULTI"));
        assert_eq!(s.dirty(), Some("WATCH left in place"));
        // A WATCH refused inside MULTI set nothing; EXEC ends the first.
        run(&mut s, Change::Multi, ok());
        run(
            &mut s,
            Change::Watch,
            error("ERR WATCH inside MULTI is not allowed"),
        );
        run(&mut s, Change::Exec, exec(vec![]));
        assert_eq!(s.dirty(), None);
    }

    #[test]
    fn the_database_must_be_the_configured_one() {
        let mut s = Session::new(2, true, true);
        run(&mut s, Change::Select(Some(2)), ok());
        assert_eq!(s.dirty(), None);
        run(&mut s, Change::Select(Some(1)), ok());
        assert_eq!(s.dirty(), Some("another database selected"));
        assert!(s.reauth_allowed());
        run(&mut s, Change::Select(Some(2)), ok());
        assert_eq!(s.dirty(), None);
        // Refused: nothing changed.
        run(
            &mut s,
            Change::Select(Some(99)),
            error("ERR DB index is out of range"),
        );
        assert_eq!(s.dirty(), None);
        // Unknown outcome: unknown database.
        run(&mut s, Change::Select(Some(2)), None);
        assert!(s.dirty().is_some());
        run(&mut s, Change::Select(Some(2)), ok());
        // Queued in a transaction: takes effect with EXEC's reply for it.
        run(&mut s, Change::Multi, ok());
        run(&mut s, Change::Select(Some(2)), queued());
        run(&mut s, Change::None, queued());
        run(&mut s, Change::Exec, exec(vec![Value::Okay, Value::Int(1)]));
        assert_eq!(s.dirty(), None);
        run(&mut s, Change::Multi, ok());
        run(&mut s, Change::Select(Some(1)), queued());
        run(&mut s, Change::Exec, exec(vec![Value::Okay]));
        assert_eq!(s.dirty(), Some("another database selected"));
        // Aborted by a WATCH: the queued SELECT never ran.
        let mut s = Session::new(0, true, true);
        run(&mut s, Change::Multi, ok());
        run(&mut s, Change::Select(Some(1)), queued());
        run(&mut s, Change::Exec, Some(Value::Nil));
        assert_eq!(s.dirty(), None);
    }

    fn confirmation(kind: PushKind, count: i64) -> Option<Value> {
        Some(Value::Push {
            kind,
            data: vec![Value::BulkString(b"ch".to_vec()), Value::Int(count)],
        })
    }

    #[test]
    fn subscriptions_until_the_last_is_gone() {
        let mut s = Session::new(0, true, true);
        let sub = Change::Subscribe {
            shard: false,
            confirmations: 1,
        };
        let unsub = Change::Unsubscribe {
            shard: false,
            confirmations: 1,
        };
        run(&mut s, sub, confirmation(PushKind::Subscribe, 1));
        run(&mut s, sub, confirmation(PushKind::PSubscribe, 2));
        assert_eq!(s.dirty(), Some("subscribed"));
        assert!(!s.reauth_allowed());
        run(&mut s, unsub, confirmation(PushKind::Unsubscribe, 1));
        assert_eq!(s.dirty(), Some("subscribed"));
        run(&mut s, unsub, confirmation(PushKind::PUnsubscribe, 0));
        assert_eq!(s.dirty(), None);
        assert_eq!(s.untrackable(), None);
        // Several confirmations for one command cannot be matched.
        let several = Change::Subscribe {
            shard: false,
            confirmations: 2,
        };
        assert!(s.unmatchable(&cmd(several)).is_some());
        run(&mut s, several, confirmation(PushKind::Subscribe, 1));
        assert!(s.untrackable().is_some());
    }

    #[test]
    fn resp2_subscriptions_streams_and_protocol_changes_are_untrackable() {
        let sub = Change::Subscribe {
            shard: false,
            confirmations: 1,
        };
        let mut s = Session::new(0, true, false);
        run(&mut s, sub, Some(Value::Array(vec![])));
        assert!(s.untrackable().is_some());
        for (change, reply) in [
            (Change::Stream("MONITOR"), ok()),
            (Change::RepliesOff, Some(Value::Nil)),
            (
                Change::Identity("RESET"),
                Some(Value::SimpleString("RESET".into())),
            ),
            (Change::Identity("HELLO"), Some(Value::Map(vec![]))),
        ] {
            let mut s = Session::new(0, true, true);
            assert!(s.unmatchable(&cmd(change)).is_some(), "{change:?}");
            run(&mut s, change, reply);
            assert!(
                s.untrackable().is_some() && s.dirty().is_some(),
                "{change:?}"
            );
            assert!(!s.reauth_allowed());
        }
        // The user's own AUTH: dirty, and never re-authenticated over.
        let mut s = Session::new(0, true, true);
        run(&mut s, Change::Identity("AUTH"), ok());
        assert_eq!((s.untrackable(), s.dirty()), (None, Some("AUTH")));
        assert!(!s.reauth_allowed());
        // Refused: nothing changed.
        let mut s = Session::new(0, true, true);
        run(&mut s, Change::Identity("AUTH"), error("WRONGPASS invalid"));
        assert_eq!(s.dirty(), None);
    }

    #[test]
    fn tracking_readonly_and_client_settings() {
        let mut s = Session::new(0, true, true);
        run(&mut s, Change::TrackingOn, ok());
        assert_eq!(s.dirty(), Some("client tracking on"));
        run(&mut s, Change::TrackingOff, ok());
        run(&mut s, Change::ReadOnly, ok());
        assert_eq!(s.dirty(), Some("READONLY"));
        run(&mut s, Change::ReadWrite, ok());
        assert_eq!(s.dirty(), None);
        run(&mut s, Change::TrackingOn, error("NOPERM"));
        assert_eq!(s.dirty(), None, "refused");
        run(&mut s, Change::ClientSetting("CLIENT SETNAME"), ok());
        assert_eq!(s.dirty(), Some("CLIENT SETNAME"));
        assert!(s.reauth_allowed());
        run(&mut s, Change::Identity("QUIT"), ok());
        assert_eq!(s.dirty(), Some("QUIT"));
        // Cluster connections: redis-rs manages READONLY.
        let mut cluster = Session::new(0, false, true);
        run(&mut cluster, Change::ReadOnly, ok());
        assert_eq!(cluster.dirty(), None);
    }
}
