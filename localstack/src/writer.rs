//! The front's writer: replies to the client in command order, RESP3 pushes
//! as they arrive.
//!
//! Each command leaves a [`Slot`]: the front's own reply, "the next reply
//! from upstream", or, for a RESP3 (un)subscribe command (which has no reply
//! of its own), "its confirming pushes, one per channel, or an error". Pushes
//! are passed on as they come, also while no command waits; while a reply
//! waits for its command's slot, upstream is not read further (so it waits
//! too, as a slow client would make it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use crate::resp;
use crate::subscriptions::Subscriptions;
use crate::topology::Addresses;

/// What the writer does for one command, in order.
pub(crate) enum Slot {
    /// The front's own reply.
    Local(Vec<u8>),
    /// The next reply from upstream.
    Upstream,
    /// A RESP3 (un)subscribe command's confirmations.
    Confirmation(Confirmation),
    /// The next reply from upstream, to `RESET`: no subscription is left.
    Reset,
    /// From now on upstream replies come from here.
    UpstreamConnected(OwnedReadHalf),
    /// Write what is pending, then close.
    Close,
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

/// Sends replies to the client in command order, pushes as they come;
/// `-MOVED` and `-ASK` name the fronts of `redirects` (cluster modes).
pub(crate) async fn write_replies<W: AsyncWrite + Unpin>(
    client: W,
    mut slots: mpsc::UnboundedReceiver<Slot>,
    redirects: Option<Arc<Addresses>>,
    resp2_subscribed: Arc<AtomicBool>,
) {
    let mut replies = Replies {
        redirects,
        out: BufWriter::with_capacity(32 * 1024, client),
        upstream: None,
        pending: Vec::with_capacity(32 * 1024),
        start: 0,
        chunk: vec![0u8; 32 * 1024],
        subscriptions: Subscriptions::default(),
        resp2: false,
    };
    loop {
        // Nothing waits for a reply: pass pushes on as they arrive.
        if replies.pass_pushes().await.is_err() {
            return;
        }
        resp2_subscribed.store(replies.resp2_subscribed(), Ordering::Relaxed);
        let slot = tokio::select! {
            biased;
            slot = slots.recv() => match slot {
                Some(slot) => slot,
                None => return,
            },
            // (Only reading here, which is cancel-safe: a slot may win. Not
            // past a reply that waits for its slot: upstream waits too.)
            read = replies.read(), if replies.upstream.is_some() && !replies.reply_waits() => {
                if read.is_err() {
                    return;
                }
                continue;
            }
        };
        let written = match slot {
            Slot::Local(bytes) => replies.out.write_all(&bytes).await.is_ok(),
            Slot::UpstreamConnected(reader) => {
                replies.upstream = Some(reader);
                true
            }
            Slot::Upstream => replies.reply(None).await.is_ok(),
            Slot::Reset => {
                let written = replies.reply(None).await.is_ok();
                replies.subscriptions.clear();
                replies.resp2 = false;
                written
            }
            Slot::Confirmation(confirmation) => replies.reply(Some(confirmation)).await.is_ok(),
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

/// The client's side of the writer and what upstream sent that is not
/// written yet (`pending[start..]`).
struct Replies<W> {
    out: BufWriter<W>,
    redirects: Option<Arc<Addresses>>,
    upstream: Option<OwnedReadHalf>,
    pending: Vec<u8>,
    start: usize,
    chunk: Vec<u8>,
    subscriptions: Subscriptions,
    /// Whether the last (un)subscribe was in RESP2: then, while subscribed,
    /// message arrays come unasked like pushes.
    resp2: bool,
}

impl<W: AsyncWrite + Unpin> Replies<W> {
    /// One command's answer from upstream, with the pushes before it: the
    /// next frame that is not a push, or (`confirmation`) its confirming
    /// frames (an error reply ends it too). `Err`: upstream or client gone.
    async fn reply(&mut self, confirmation: Option<Confirmation>) -> Result<(), ()> {
        if let Some(c) = confirmation {
            self.resp2 = !c.resp3;
        }
        let mut expected = confirmation.map(|c| self.subscriptions.expected(c));
        loop {
            match resp::reply_len(&self.pending[self.start..]) {
                Ok(Some(n)) => {
                    let frame = &self.pending[self.start..self.start + n];
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
                    let redirect = match (&self.redirects, frame.first()) {
                        (Some(fronts), Some(b'-')) => fronts.redirect(frame),
                        _ => None,
                    };
                    let frame = redirect.as_deref().unwrap_or(frame);
                    self.out.write_all(frame).await.map_err(|_| ())?;
                    self.start += n;
                    if done {
                        return Ok(());
                    }
                }
                Ok(None) => {
                    self.out.flush().await.map_err(|_| ())?;
                    self.read().await?;
                }
                Err(_) => return Err(()),
            }
        }
    }

    /// Passes on the complete pushes (and RESP2 messages) at the head of what
    /// upstream sent (a reply there stays for its command's slot, and the
    /// pushes after it with it).
    async fn pass_pushes(&mut self) -> Result<(), ()> {
        let mut passed = false;
        while let Ok(Some(n)) = resp::reply_len(&self.pending[self.start..]) {
            let frame = &self.pending[self.start..self.start + n];
            let (push, items) = pubsub_frame(frame, self.resp2 && self.subscriptions.any());
            if !push {
                break;
            }
            if let Some(items) = items {
                self.subscriptions.observe(&items);
            }
            self.out.write_all(frame).await.map_err(|_| ())?;
            self.start += n;
            passed = true;
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

    /// Whether a complete reply (not a push) is at the head, waiting for its
    /// command's slot.
    fn reply_waits(&self) -> bool {
        let head = &self.pending[self.start..];
        matches!(resp::reply_len(head), Ok(Some(_)))
            && !pubsub_frame(head, self.resp2 && self.subscriptions.any()).0
    }

    /// More bytes from upstream (after compacting what was written).
    /// Cancel-safe: nothing is lost if dropped while reading.
    async fn read(&mut self) -> Result<(), ()> {
        self.pending.drain(..self.start);
        self.start = 0;
        let reader = self.upstream.as_mut().ok_or(())?;
        match reader.read(&mut self.chunk).await {
            Ok(0) | Err(_) => Err(()), // upstream closed: close the client
            Ok(n) => {
                self.pending.extend_from_slice(&self.chunk[..n]);
                Ok(())
            }
        }
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
