//! One serverless front connection's routing: which of the cluster's
//! servers each command goes to, and what the front sends there first.
//!
//! - A command goes where its first key's slot is served ([`Router`]);
//!   commands without keys to the primary of slot 0.
//! - A transaction stays on one server. `MULTI` is answered at once and sent
//!   with the first command that has a key, to that key's server; commands
//!   without keys before it are answered `QUEUED` and sent after `MULTI`
//!   then. After `WATCH`, `MULTI` goes to the watched key's server. A key of
//!   another slot in a transaction is refused with `CROSSSLOT` and `EXEC`
//!   then answers `EXECABORT`, as a command refused while queued makes it.
//! - `ASKING` goes with the next command, to where the server's `-ASK`
//!   pointed (an `ASKING` before `MULTI` with the transaction; inside one it
//!   is queued, as the server would).
//! - Pub/sub stays where it started: `(P)SUBSCRIBE` and their opposites (and
//!   `PING`) on the server of the first `(P)SUBSCRIBE`, sharded
//!   subscriptions on one shard's server (a channel of another shard is
//!   refused on this connection).
//! - On the replica-read endpoint, after `READONLY`, commands that only read
//!   go to a replica of the key's shard.
//!
//! [`Routing::route`] decides without changing anything but the
//! transaction's failure; what a forwarded command changes is applied by
//! [`Routing::commit`] once it was sent.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::resp;
use crate::router::Router;

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// A serverless connection's routing state.
#[derive(Debug)]
pub(crate) struct Routing {
    router: Arc<Router>,
    /// The replica-read endpoint's connection.
    reader: bool,
    /// After `READONLY`.
    readonly: bool,
    /// The server of a transaction or `WATCH`, and its slot once a key
    /// named it.
    pinned: Option<Pin>,
    /// `MULTI` answered, not sent: the commands without keys queued since.
    deferred: Option<Vec<Vec<u8>>>,
    /// An `ASKING` came before that `MULTI`.
    deferred_asking: bool,
    /// A command of the transaction was refused: `EXEC` aborts.
    failed: bool,
    /// The client's `ASKING` waits for its next command.
    asking: bool,
    /// Where the connection's `(P)SUBSCRIBE`s went.
    subscribed_on: Option<usize>,
    /// Where its `SSUBSCRIBE`s went.
    sharded_on: Option<usize>,
}

#[derive(Clone, Copy, Debug)]
struct Pin {
    upstream: usize,
    slot: Option<u16>,
}

/// Where one command goes, and what goes there before it (each answered by
/// a reply that is not passed on).
#[derive(Debug)]
pub(crate) struct Forward {
    pub(crate) upstream: usize,
    /// The server is a replica (a new connection to it needs `READONLY`).
    pub(crate) replica: bool,
    pub(crate) prelude: Vec<Vec<u8>>,
    effects: Effects,
}

/// What a forwarded command changes, once sent.
#[derive(Debug, Default)]
struct Effects {
    pin: Option<Pin>,
    multi_sent: bool,
    subscribed_on: Option<usize>,
    /// The new `sharded_on`, if it changes.
    sharded_on: Option<Option<usize>>,
}

impl Forward {
    /// The command as it is, to `upstream`.
    pub(crate) fn to(upstream: usize) -> Self {
        Self {
            upstream,
            replica: false,
            prelude: Vec::new(),
            effects: Effects::default(),
        }
    }
}

/// What becomes of one command.
#[derive(Debug)]
pub(crate) enum Routed {
    Forward(Forward),
    /// The front answers it (refused, or queued until `MULTI` is sent).
    Reply(Vec<u8>),
}

/// What a transaction command does.
#[derive(Debug)]
pub(crate) enum Decision {
    Reply(Vec<u8>),
    Forward(Forward),
    /// `DISCARD` to this server, and this answer (an aborted `EXEC`).
    DiscardAndReply(usize, Vec<u8>),
}

fn command(name: &[u8]) -> Vec<u8> {
    resp::array(&[resp::bulk(name)])
}

impl Routing {
    pub(crate) fn new(router: Arc<Router>, reader: bool) -> Self {
        Self {
            router,
            reader,
            readonly: false,
            pinned: None,
            deferred: None,
            deferred_asking: false,
            failed: false,
            asking: false,
            subscribed_on: None,
            sharded_on: None,
        }
    }

    pub(crate) fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Server `upstream`'s address.
    pub(crate) fn server(&self, upstream: usize) -> Option<SocketAddr> {
        self.router.server(upstream)
    }

    /// Where commands without keys go.
    pub(crate) fn home(&self) -> usize {
        self.router.home()
    }

    /// The client's `ASKING`, if it waits for this command.
    pub(crate) fn take_asking(&mut self) -> bool {
        std::mem::take(&mut self.asking)
    }

    /// `READONLY` (`true`) or `READWRITE` on the replica-read endpoint:
    /// whether the servers need to know (every connection follows).
    pub(crate) fn set_readonly(&mut self, on: bool) -> bool {
        self.readonly = on;
        self.reader
    }

    /// Whether a new connection needs `READONLY` even to a primary (it may
    /// become a replica after a failover).
    pub(crate) fn replica_reads(&self) -> bool {
        self.reader && self.readonly
    }

    /// `RESET`: everything but where it is.
    pub(crate) fn reset(&mut self) {
        *self = Self::new(self.router.clone(), self.reader);
    }

    /// Whether server `upstream`'s connection holds state of this one: its
    /// subscriptions, or its transaction or `WATCH`.
    pub(crate) fn holds_state_on(&self, upstream: usize) -> bool {
        self.subscribed_on == Some(upstream)
            || self.sharded_on == Some(upstream)
            || self.pinned.is_some_and(|pin| pin.upstream == upstream)
    }

    /// A forwarded command could not be sent (its server is unreachable).
    pub(crate) fn not_sent(&mut self, in_multi: bool) {
        self.failed |= in_multi;
        self.router.mark_stale();
    }

    /// `ASKING`, `MULTI`, `EXEC`, `DISCARD`, `UNWATCH` (`name` upper case;
    /// `asking`: the command before was `ASKING`), or `None` to route the
    /// command.
    pub(crate) fn transaction(
        &mut self,
        name: &[u8],
        in_multi: &mut bool,
        asking: bool,
    ) -> Option<Decision> {
        match name {
            // (Inside a transaction it is queued, as any command.)
            b"ASKING" if !*in_multi => {
                self.asking = true;
                Some(Decision::Reply(resp::simple("OK")))
            }
            b"MULTI" if *in_multi => Some(Decision::Reply(resp::error(
                "ERR MULTI calls can not be nested",
            ))),
            b"MULTI" => {
                *in_multi = true;
                Some(match self.pinned {
                    Some(pin) => {
                        // (WATCH's server; the transaction's slot is its
                        // first key's.)
                        self.pinned = Some(Pin {
                            upstream: pin.upstream,
                            slot: None,
                        });
                        let mut forward = Forward::to(pin.upstream);
                        if asking {
                            forward.prelude.push(command(b"ASKING"));
                        }
                        Decision::Forward(forward)
                    }
                    None => {
                        self.deferred = Some(Vec::new());
                        self.deferred_asking = asking;
                        Decision::Reply(resp::simple("OK"))
                    }
                })
            }
            b"EXEC" | b"DISCARD" if *in_multi => {
                *in_multi = false;
                let failed = std::mem::take(&mut self.failed);
                let pin = self.pinned.take();
                self.deferred_asking = false;
                if let Some(queued) = self.deferred.take() {
                    // MULTI was not sent.
                    return Some(match () {
                        () if name == b"DISCARD" => Decision::Reply(resp::simple("OK")),
                        () if failed => Decision::Reply(resp::error(EXECABORT)),
                        () if queued.is_empty() => Decision::Reply(resp::array(&[])),
                        () => {
                            let mut forward = Forward::to(self.home());
                            forward.prelude.push(command(b"MULTI"));
                            forward.prelude.extend(queued);
                            Decision::Forward(forward)
                        }
                    });
                }
                let pin = pin?;
                Some(if failed && name == b"EXEC" {
                    Decision::DiscardAndReply(pin.upstream, resp::error(EXECABORT))
                } else {
                    Decision::Forward(Forward::to(pin.upstream))
                })
            }
            b"UNWATCH" if !*in_multi => {
                let pin = self.pinned.take()?;
                Some(Decision::Forward(Forward::to(pin.upstream)))
            }
            _ => None,
        }
    }

    /// Where the command `args` (its name upper case in `name`) goes;
    /// `reply`: it has a reply of its own (not a subscription's pushes).
    pub(crate) fn route(
        &mut self,
        command_bytes: &[u8],
        args: &[&[u8]],
        name: &[u8],
        reply: bool,
        in_multi: bool,
        asking: bool,
    ) -> Routed {
        let router = &self.router;
        let slot = router.slot_of(args);
        // Pub/sub first: it stays where it is.
        match name {
            b"SUBSCRIBE" | b"PSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" | b"SSUBSCRIBE"
            | b"SUNSUBSCRIBE"
                if in_multi =>
            {
                self.failed = true;
                return Routed::Reply(resp::error(
                    "ERR pub/sub commands inside MULTI are not supported by this serverless \
                     endpoint",
                ));
            }
            b"SUBSCRIBE" | b"PSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" => {
                let upstream = self.subscribed_on.unwrap_or_else(|| router.home());
                let mut forward = Forward::to(upstream);
                forward.effects.subscribed_on = Some(upstream);
                return Routed::Forward(forward);
            }
            b"SSUBSCRIBE" | b"SUNSUBSCRIBE" => {
                let by_slot = slot.map(|s| router.owner(s));
                let upstream = match (self.sharded_on, by_slot) {
                    (Some(on), Some(other)) if name == b"SSUBSCRIBE" && on != other => {
                        return Routed::Reply(resp::error(
                            "ERR this connection's sharded subscriptions are on another shard: \
                             subscribe to this channel on another connection",
                        ));
                    }
                    (Some(on), _) => on,
                    (None, by_slot) => by_slot.unwrap_or_else(|| router.home()),
                };
                let mut forward = Forward::to(upstream);
                forward.effects.sharded_on = match (name, args.len()) {
                    // Unsubscribed from every channel: none left.
                    (b"SUNSUBSCRIBE", 1) => Some(None),
                    // (Without a channel the server refuses it.)
                    (b"SUNSUBSCRIBE", _) | (_, 1) => None,
                    _ => Some(Some(upstream)),
                };
                return Routed::Forward(forward);
            }
            b"PING" if !in_multi && (self.subscribed_on.is_some() || self.sharded_on.is_some()) => {
                // (In RESP2 subscribed mode its answer is the subscribed
                // server's.)
                let upstream = self.subscribed_on.or(self.sharded_on).unwrap_or_default();
                return Routed::Forward(Forward::to(upstream));
            }
            _ => {}
        }
        if let Some(pin) = self.pinned.filter(|_| in_multi) {
            // In a transaction: its server, for keys of its slot only (the
            // server refuses a WATCH there itself).
            let mut forward = Forward::to(pin.upstream);
            if let Some(slot) = slot.filter(|_| name != b"WATCH") {
                let same = match pin.slot {
                    Some(pinned) => pinned == slot,
                    None => router.owner(slot) == pin.upstream,
                };
                if !same {
                    self.failed = true;
                    return Routed::Reply(resp::error(CROSSSLOT));
                }
                forward.effects.pin = Some(Pin {
                    upstream: pin.upstream,
                    slot: Some(slot),
                });
            }
            return Routed::Forward(forward);
        }
        if let Some(queued) = &mut self.deferred {
            if slot.is_none() && reply {
                queued.push(command_bytes.to_vec());
                return Routed::Reply(resp::simple("QUEUED"));
            }
            // The transaction's first key: MULTI goes to its server now.
            let upstream = slot.map_or_else(|| router.home(), |s| router.owner(s));
            let mut forward = Forward::to(upstream);
            let asking = asking || self.deferred_asking;
            if let Some(target) = slot.filter(|_| asking).and_then(|s| router.asked(s)) {
                // (Before MULTI: the server keeps it for the transaction.)
                forward.upstream = target;
                forward.prelude.push(command(b"ASKING"));
            }
            forward.prelude.push(command(b"MULTI"));
            forward.prelude.extend(queued.iter().cloned());
            forward.effects.multi_sent = true;
            forward.effects.pin = Some(Pin {
                upstream: forward.upstream,
                slot,
            });
            return Routed::Forward(forward);
        }
        let watch = name == b"WATCH";
        let route = router.route(args, slot, self.replica_reads() && !watch);
        let mut forward = Forward {
            upstream: route.server,
            replica: route.replica,
            prelude: Vec::new(),
            effects: Effects::default(),
        };
        if let Some(target) = slot.filter(|_| asking).and_then(|s| router.asked(s)) {
            forward.upstream = target;
            forward.replica = false;
            forward.prelude.push(command(b"ASKING"));
        }
        if watch {
            // Keys watched on one server only, unless that server no longer
            // owns the slot watched before (the client retries after a
            // -MOVED).
            if let Some(pin) = self.pinned
                && pin.upstream != forward.upstream
                && pin
                    .slot
                    .is_none_or(|pinned| router.owner(pinned) == pin.upstream)
            {
                return Routed::Reply(resp::error(CROSSSLOT));
            }
            forward.effects.pin = Some(Pin {
                upstream: forward.upstream,
                slot,
            });
        }
        Routed::Forward(forward)
    }

    /// What the command `forward` sent changes.
    pub(crate) fn commit(&mut self, forward: &Forward) {
        let effects = &forward.effects;
        if effects.multi_sent {
            self.deferred = None;
            self.deferred_asking = false;
        }
        if let Some(pin) = effects.pin {
            self.pinned = Some(pin);
        }
        if let Some(upstream) = effects.subscribed_on {
            self.subscribed_on = Some(upstream);
        }
        if let Some(sharded_on) = effects.sharded_on {
            self.sharded_on = sharded_on;
        }
    }
}
