//! The front's writer: replies to the client in command order, RESP3 pushes
//! as they arrive.
//!
//! Each command leaves a [`Slot`]: the front's own reply, "the next reply
//! from upstream connection N", or, for a RESP3 (un)subscribe command (which
//! has no reply of its own), "its confirming pushes, one per channel, or an
//! error". A task per upstream connection ([`read_upstream`]) passes what it
//! reads on to the writer, which keeps it per connection until its slot
//! comes. Pushes are passed on as they come, also while no command waits;
//! while a reply waits for its command's slot, upstream is not received
//! further (so it waits too, as a slow client would make it). (With several
//! upstream connections, the others are received while a command waits for
//! one: what they send waits in memory.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::resp;
use crate::router::Router;
use crate::subscriptions::Subscriptions;
use crate::topology::Addresses;

/// What the writer does for one command, in order. Upstream connections
/// are numbered in the order they opened (the serverless front has one per
/// cluster server it used, and a new one for a server whose connection
/// closed; the other fronts one).
pub(crate) enum Slot {
    /// The front's own reply.
    Local(Vec<u8>),
    /// The next reply from this upstream.
    Upstream(usize),
    /// A RESP3 (un)subscribe command's confirmations, from this upstream.
    Confirmation(Confirmation, usize),
    /// The next reply from this upstream, to `RESET`: no subscription is left.
    Reset(usize),
    /// The next reply from this upstream, not passed on: it answers a
    /// command the front sent itself (setting up a connection it opened).
    Discard(usize),
    /// This upstream connection opened.
    Opened(usize),
    /// Write what is pending, then close.
    Close,
}

/// Bytes read from upstream connection `upstream`; empty: it closed.
pub(crate) struct Chunk {
    pub(crate) upstream: usize,
    pub(crate) bytes: Vec<u8>,
}

/// Reads upstream connection `upstream` into `chunks` until it closes (then
/// says so in `closed`) or the writer is gone.
pub(crate) async fn read_upstream(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    upstream: usize,
    chunks: mpsc::Sender<Chunk>,
    closed: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let bytes = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => Vec::new(),
            Ok(n) => buf[..n].to_vec(),
        };
        let end = bytes.is_empty();
        if end {
            closed.store(true, Ordering::Relaxed);
        }
        if chunks.send(Chunk { upstream, bytes }).await.is_err() || end {
            return;
        }
    }
}

/// The frames that answer an (un)subscribe command: RESP3 pushes, or in
/// RESP2 arrays of the same shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Confirmation {
    /// Their kind: `subscribe`, `punsubscribe`, ...
    pub(crate) kind: &'static [u8],
    /// One per channel named; `None`: one per current subscription of this
    /// family (at least one), for an unsubscribe without channels.
    pub(crate) pushes: Option<usize>,
    /// Whether the connection speaks RESP3 (pushes) or RESP2 (arrays).
    resp3: bool,
}

impl Confirmation {
    /// For command `name` (upper case) with `channels` arguments, if it is
    /// confirmed by one frame per channel. (A subscribe without channels is
    /// an error, an ordinary reply.)
    pub(crate) fn of(name: &[u8], channels: usize, resp3: bool) -> Option<Self> {
        let (kind, subscribe): (&'static [u8], bool) = match name {
            b"SUBSCRIBE" => (b"subscribe", true),
            b"PSUBSCRIBE" => (b"psubscribe", true),
            b"SSUBSCRIBE" => (b"ssubscribe", true),
            b"UNSUBSCRIBE" => (b"unsubscribe", false),
            b"PUNSUBSCRIBE" => (b"punsubscribe", false),
            b"SUNSUBSCRIBE" => (b"sunsubscribe", false),
            _ => return None,
        };
        match (subscribe, channels) {
            (true, 0) => None,
            (_, 0) => Some(Self {
                kind,
                pushes: None,
                resp3,
            }),
            (_, n) => Some(Self {
                kind,
                pushes: Some(n),
                resp3,
            }),
        }
    }
}

/// How the writer rewrites redirects: `-MOVED` and `-ASK` name the fronts
/// of `addresses`; the serverless front's `router` learns from them.
#[derive(Clone, Default)]
pub(crate) struct Redirects {
    pub(crate) addresses: Option<Arc<Addresses>>,
    pub(crate) router: Option<Arc<Router>>,
}

/// Sends replies to the client in command order, pushes as they come.
pub(crate) async fn write_replies<W: AsyncWrite + Unpin>(
    client: W,
    mut slots: mpsc::UnboundedReceiver<Slot>,
    chunks: mpsc::Receiver<Chunk>,
    redirects: Redirects,
    resp2_subscribed: Arc<AtomicBool>,
) {
    let mut replies = Replies {
        redirects,
        out: BufWriter::with_capacity(32 * 1024, client),
        chunks,
        pending: Vec::new(),
        subscriptions: Subscriptions::default(),
        resp2: false,
    };
    loop {
        // Nothing is owed and no upstream connection is left: done.
        if slots.is_empty() && replies.all_closed() {
            let _ = replies.out.flush().await;
            return;
        }
        // Nothing waits for a reply: pass pushes on as they arrive (a
        // subscription's confirmation only if no command's slot waits: it
        // may be that command's).
        if replies.pass_pushes(None, slots.is_empty()).await.is_err() {
            return;
        }
        resp2_subscribed.store(replies.resp2_subscribed(), Ordering::Relaxed);
        let slot = tokio::select! {
            biased;
            slot = slots.recv() => match slot {
                Some(slot) => slot,
                None => return,
            },
            // (Only receiving here, which is cancel-safe: a slot may win. Not
            // past a reply that waits for its slot: upstream waits too.)
            read = replies.read(), if !replies.reply_waits() => {
                if read.is_err() {
                    let _ = replies.out.flush().await;
                    return;
                }
                continue;
            }
        };
        let written = match slot {
            Slot::Local(bytes) => replies.out.write_all(&bytes).await.is_ok(),
            Slot::Opened(link) => {
                replies.pending_of(link);
                true
            }
            Slot::Upstream(from) => replies.reply(from, None, false).await.is_ok(),
            Slot::Discard(from) => replies.reply(from, None, true).await.is_ok(),
            Slot::Reset(from) => {
                let written = replies.reply(from, None, false).await.is_ok();
                replies.subscriptions.clear();
                replies.resp2 = false;
                written
            }
            Slot::Confirmation(confirmation, from) => {
                replies.reply(from, Some(confirmation), false).await.is_ok()
            }
            Slot::Close => {
                let _ = replies.out.flush().await;
                let _ = replies.out.shutdown().await;
                return;
            }
        };
        if !written {
            return;
        }
        resp2_subscribed.store(replies.resp2_subscribed(), Ordering::Relaxed);
        if slots.is_empty() && replies.out.flush().await.is_err() {
            return;
        }
    }
}

/// What one upstream connection sent that is not written yet
/// (`data[start..]`), and whether it closed.
#[derive(Default)]
struct Pending {
    data: Vec<u8>,
    start: usize,
    closed: bool,
}

impl Pending {
    fn head(&self) -> &[u8] {
        &self.data[self.start..]
    }
}

/// The client's side of the writer and what upstream sent that is not
/// written yet.
struct Replies<W> {
    out: BufWriter<W>,
    redirects: Redirects,
    chunks: mpsc::Receiver<Chunk>,
    /// By upstream connection.
    pending: Vec<Pending>,
    subscriptions: Subscriptions,
    /// Whether the last (un)subscribe was in RESP2: then, while subscribed,
    /// message arrays come unasked like pushes.
    resp2: bool,
}

impl<W: AsyncWrite + Unpin> Replies<W> {
    /// One command's answer from upstream `from`, with the pushes before it:
    /// the next frame that is not a push, or (`confirmation`) its confirming
    /// frames (an error reply ends it too); `discard`: the answer is not
    /// passed on (the pushes are). `Err`: upstream or client gone.
    async fn reply(
        &mut self,
        from: usize,
        confirmation: Option<Confirmation>,
        discard: bool,
    ) -> Result<(), ()> {
        if let Some(c) = confirmation {
            self.resp2 = !c.resp3;
        }
        let mut expected = confirmation.map(|c| self.subscriptions.expected(c));
        loop {
            // (Every connection's `Opened` came before its commands' slots.)
            let Some(pending) = self.pending.get(from) else {
                return Err(());
            };
            let head = pending.head();
            match resp::reply_len(head) {
                Ok(Some(n)) => {
                    let frame = &head[..n];
                    let resp2_pubsub =
                        self.resp2 && (confirmation.is_some() || self.subscriptions.any());
                    let (push, items) = pubsub_frame(frame, resp2_pubsub);
                    let done = if push {
                        if let Some(items) = &items {
                            self.subscriptions.observe(items);
                        }
                        match (confirmation, &mut expected, items.as_deref()) {
                            (Some(c), Some(left), Some([Some(kind), ..])) if *kind == c.kind => {
                                *left = left.saturating_sub(1);
                                *left == 0
                            }
                            _ => false,
                        }
                    } else {
                        true
                    };
                    if !push
                        && frame.first() == Some(&b'-')
                        && let Some(router) = &self.redirects.router
                    {
                        router.observe(frame);
                    }
                    let redirect = match (&self.redirects.addresses, frame.first()) {
                        (Some(fronts), Some(b'-')) => fronts.redirect(frame),
                        _ => None,
                    };
                    let frame = redirect.as_deref().unwrap_or(frame);
                    if push || !discard {
                        self.out.write_all(frame).await.map_err(|_| ())?;
                    }
                    self.pending[from].start += n;
                    if done {
                        return Ok(());
                    }
                }
                Ok(None) => {
                    if self.pending[from].closed {
                        return Err(()); // the answer will not come
                    }
                    self.out.flush().await.map_err(|_| ())?;
                    self.read().await?;
                    // Messages from the other connections go on meanwhile
                    // (not confirmations: they answer commands after this).
                    self.pass_pushes(Some(from), false).await?;
                }
                Err(_) => return Err(()),
            }
        }
    }

    /// Passes on the complete pushes (and RESP2 messages) at the head of
    /// what each upstream connection (but `except`) sent (a reply there
    /// stays for its command's slot, and the pushes after it with it; so
    /// does a subscription's confirmation unless `confirmations`).
    async fn pass_pushes(&mut self, except: Option<usize>, confirmations: bool) -> Result<(), ()> {
        let mut passed = false;
        let resp2_pubsub = self.resp2 && self.subscriptions.any();
        for (index, pending) in self.pending.iter_mut().enumerate() {
            if Some(index) == except {
                continue;
            }
            while let Ok(Some(n)) = resp::reply_len(pending.head()) {
                let frame = &pending.head()[..n];
                let (push, items) = pubsub_frame(frame, resp2_pubsub);
                let confirmation = matches!(
                    items.as_deref(),
                    Some([Some(kind), ..]) if Subscriptions::is_confirmation(kind)
                );
                if !push || (confirmation && !confirmations) {
                    break;
                }
                if let Some(items) = items {
                    self.subscriptions.observe(&items);
                }
                self.out.write_all(frame).await.map_err(|_| ())?;
                pending.start += n;
                passed = true;
            }
        }
        if passed {
            self.out.flush().await.map_err(|_| ())?;
        }
        Ok(())
    }

    /// Whether the server keeps the connection in RESP2 subscribed mode.
    fn resp2_subscribed(&self) -> bool {
        self.resp2 && self.subscriptions.any()
    }

    /// Whether a complete reply (not a push) is at the head of what an
    /// upstream connection sent, waiting for its command's slot.
    fn reply_waits(&self) -> bool {
        let resp2_pubsub = self.resp2 && self.subscriptions.any();
        self.pending.iter().any(|pending| {
            let head = pending.head();
            matches!(resp::reply_len(head), Ok(Some(_))) && !pubsub_frame(head, resp2_pubsub).0
        })
    }

    /// Whether every upstream connection that opened closed (and one did).
    fn all_closed(&self) -> bool {
        !self.pending.is_empty() && self.pending.iter().all(|p| p.closed)
    }

    /// What upstream connection `link` sent (none yet for a new one).
    fn pending_of(&mut self, link: usize) -> &mut Pending {
        if self.pending.len() <= link {
            self.pending.resize_with(link + 1, Pending::default);
        }
        &mut self.pending[link]
    }

    /// More bytes from an upstream connection (after compacting what was
    /// written), or its end: what it sent before still answers its commands
    /// (and the others' answers go on). Cancel-safe: nothing is lost if
    /// dropped while receiving.
    async fn read(&mut self) -> Result<(), ()> {
        let Some(Chunk { upstream, bytes }) = self.chunks.recv().await else {
            return Err(());
        };
        let pending = self.pending_of(upstream);
        if bytes.is_empty() {
            pending.closed = true;
            if pending.head().is_empty() {
                *pending = Pending {
                    closed: true,
                    ..Pending::default()
                };
            }
            return Ok(());
        }
        pending.data.drain(..pending.start);
        pending.start = 0;
        pending.data.extend_from_slice(&bytes);
        Ok(())
    }
}

/// Whether a complete `frame` is a push (RESP3), or with `resp2_pubsub` a
/// RESP2 pub/sub array (a confirmation or a message), and its items when
/// they are flat.
fn pubsub_frame(frame: &[u8], resp2_pubsub: bool) -> (bool, Option<Vec<Option<&[u8]>>>) {
    match frame.first() {
        // A push with nested items is still a push.
        Some(b'>') => (true, resp::push_items(frame)),
        Some(b'*') if resp2_pubsub => match resp::array_items(frame) {
            Some(items) if matches!(items.first(), Some(Some(kind)) if Subscriptions::is_pubsub_kind(kind)) => {
                (true, Some(items))
            }
            _ => (false, None),
        },
        _ => (false, None),
    }
}
