//! The front's writer: replies to the client in command order, RESP3 pushes
//! as they arrive.
//!
//! Each command leaves a [`Slot`]: the front's own reply, "the next reply
//! from upstream", or, for a RESP3 (un)subscribe command (which has no reply
//! of its own), "its confirming pushes, one per channel, or an error". Pushes
//! are passed on as they come, also while no command waits; while a reply
//! waits for its command's slot, upstream is not read further (so it waits
//! too, as a slow client would make it).

use std::collections::HashSet;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use crate::resp;
use crate::topology::Addresses;

/// What the writer does for one command, in order.
pub(crate) enum Slot {
    /// The front's own reply.
    Local(Vec<u8>),
    /// The next reply from upstream.
    Upstream,
    /// A RESP3 (un)subscribe command's confirmations.
    Confirmation(Confirmation),
    /// From now on upstream replies come from here.
    UpstreamConnected(OwnedReadHalf),
    /// Write what is pending, then close.
    Close,
}

/// The pushes that answer a RESP3 (un)subscribe command.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Confirmation {
    /// Their kind: `subscribe`, `punsubscribe`, ...
    kind: &'static [u8],
    /// One per channel named; `None`: one per current subscription of this
    /// family (at least one), for an unsubscribe without channels.
    pushes: Option<usize>,
}

impl Confirmation {
    /// For command `name` (upper case) with `channels` arguments, if it is
    /// confirmed by pushes in RESP3. (A subscribe without channels is an
    /// error, an ordinary reply.)
    pub(crate) fn of(name: &[u8], channels: usize) -> Option<Self> {
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
            (_, 0) => Some(Self { kind, pushes: None }),
            (_, n) => Some(Self {
                kind,
                pushes: Some(n),
            }),
        }
    }
}

/// The subscriptions the client holds, per family, as upstream's
/// confirmations say.
#[derive(Default)]
struct Subscriptions([HashSet<Vec<u8>>; 3]);

impl Subscriptions {
    /// Which family a confirmation's kind belongs to, and whether it adds.
    fn family(kind: &[u8]) -> Option<(usize, bool)> {
        Some(match kind {
            b"subscribe" => (0, true),
            b"unsubscribe" => (0, false),
            b"psubscribe" => (1, true),
            b"punsubscribe" => (1, false),
            b"ssubscribe" => (2, true),
            b"sunsubscribe" => (2, false),
            _ => return None,
        })
    }

    /// Follows one push.
    fn observe(&mut self, items: &[Option<&[u8]>]) {
        let (Some(Some(kind)), Some(Some(channel))) = (items.first(), items.get(1)) else {
            return;
        };
        if let Some((family, adds)) = Self::family(kind) {
            if adds {
                self.0[family].insert(channel.to_vec());
            } else {
                self.0[family].remove(*channel);
            }
        }
    }

    /// How many pushes confirm `confirmation` now.
    fn expected(&self, confirmation: Confirmation) -> usize {
        confirmation.pushes.unwrap_or_else(|| {
            Self::family(confirmation.kind).map_or(1, |(family, _)| self.0[family].len().max(1))
        })
    }
}

/// Sends replies to the client in command order, pushes as they come;
/// `-MOVED` and `-ASK` name the fronts of `redirects` (cluster modes).
pub(crate) async fn write_replies<W: AsyncWrite + Unpin>(
    client: W,
    mut slots: mpsc::UnboundedReceiver<Slot>,
    redirects: Option<Arc<Addresses>>,
) {
    let mut replies = Replies {
        redirects,
        out: BufWriter::with_capacity(32 * 1024, client),
        upstream: None,
        pending: Vec::with_capacity(32 * 1024),
        start: 0,
        chunk: vec![0u8; 32 * 1024],
        subscriptions: Subscriptions::default(),
    };
    loop {
        // Nothing waits for a reply: pass pushes on as they arrive.
        if replies.pass_pushes().await.is_err() {
            return;
        }
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
}

impl<W: AsyncWrite + Unpin> Replies<W> {
    /// One command's answer from upstream, with the pushes before it: the
    /// next frame that is not a push, or (`confirmation`) its confirming
    /// pushes (an error reply ends it too). `Err`: upstream or client gone.
    async fn reply(&mut self, confirmation: Option<Confirmation>) -> Result<(), ()> {
        let mut expected = confirmation.map(|c| self.subscriptions.expected(c));
        loop {
            match resp::reply_len(&self.pending[self.start..]) {
                Ok(Some(n)) => {
                    let frame = &self.pending[self.start..self.start + n];
                    let done = match resp::push_items(frame) {
                        Some(items) => {
                            self.subscriptions.observe(&items);
                            match (confirmation, &mut expected) {
                                (Some(c), Some(left)) if items.first() == Some(&Some(c.kind)) => {
                                    *left = left.saturating_sub(1);
                                    *left == 0
                                }
                                _ => false,
                            }
                        }
                        // A push with nested items is still a push.
                        None => frame.first() != Some(&b'>'),
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

    /// Passes on the complete pushes at the head of what upstream sent (a
    /// reply there stays for its command's slot, and the pushes after it
    /// with it).
    async fn pass_pushes(&mut self) -> Result<(), ()> {
        let mut passed = false;
        while let Ok(Some(n)) = resp::reply_len(&self.pending[self.start..]) {
            let frame = &self.pending[self.start..self.start + n];
            if frame.first() != Some(&b'>') {
                break;
            }
            if let Some(items) = resp::push_items(frame) {
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

    /// Whether a complete reply (not a push) is at the head, waiting for its
    /// command's slot.
    fn reply_waits(&self) -> bool {
        let head = &self.pending[self.start..];
        matches!(resp::reply_len(head), Ok(Some(_))) && head.first() != Some(&b'>')
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_count_channels_or_current_subscriptions() {
        let c = Confirmation::of(b"SUBSCRIBE", 2).unwrap();
        assert_eq!((c.kind, c.pushes), (&b"subscribe"[..], Some(2)));
        assert!(Confirmation::of(b"SUBSCRIBE", 0).is_none());
        assert!(Confirmation::of(b"GET", 1).is_none());
        let all = Confirmation::of(b"UNSUBSCRIBE", 0).unwrap();
        let mut subs = Subscriptions::default();
        assert_eq!(subs.expected(all), 1, "one push even with none");
        for channel in [&b"a"[..], b"b", b"a"] {
            subs.observe(&[Some(b"subscribe"), Some(channel), Some(b"1")]);
        }
        subs.observe(&[Some(b"psubscribe"), Some(b"p*"), Some(b"3")]);
        assert_eq!(subs.expected(all), 2);
        subs.observe(&[Some(b"unsubscribe"), Some(b"a"), Some(b"2")]);
        assert_eq!(subs.expected(all), 1);
        let patterns = Confirmation::of(b"PUNSUBSCRIBE", 0).unwrap();
        assert_eq!(subs.expected(patterns), 1);
    }
}
