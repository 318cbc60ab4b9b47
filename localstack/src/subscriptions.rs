//! The channels a client connection is subscribed to, per family (channels,
//! patterns, shard channels), followed by the writer from the confirmations
//! the server sends: how many frames an unsubscribe without channels gets,
//! and whether a RESP2 connection is in subscribed mode (where the front
//! refuses `AUTH` and `HELLO`, as Valkey does).

use std::collections::HashSet;

use crate::writer::Confirmation;

#[derive(Debug, Default)]
pub(crate) struct Subscriptions([HashSet<Vec<u8>>; 3]);

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

    /// Whether a push of `kind` confirms an (un)subscribe command.
    pub(crate) fn is_confirmation(kind: &[u8]) -> bool {
        Self::family(kind).is_some()
    }

    /// Whether `kind` (the first item of a RESP2 array) is a pub/sub frame's:
    /// a confirmation or a message.
    pub(crate) fn is_pubsub_kind(kind: &[u8]) -> bool {
        Self::family(kind).is_some() || matches!(kind, b"message" | b"pmessage" | b"smessage")
    }

    /// Follows one confirmation (a push's or RESP2 array's items).
    pub(crate) fn observe(&mut self, items: &[Option<&[u8]>]) {
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

    /// Whether any subscription is held.
    pub(crate) fn any(&self) -> bool {
        self.0.iter().any(|family| !family.is_empty())
    }

    /// Forgets every subscription (`RESET`).
    pub(crate) fn clear(&mut self) {
        for family in &mut self.0 {
            family.clear();
        }
    }

    /// How many frames confirm `confirmation` now.
    pub(crate) fn expected(&self, confirmation: Confirmation) -> usize {
        confirmation.pushes.unwrap_or_else(|| {
            Self::family(confirmation.kind).map_or(1, |(family, _)| self.0[family].len().max(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_count_channels_or_current_subscriptions() {
        let c = Confirmation::of(b"SUBSCRIBE", 2, true).unwrap();
        assert_eq!((c.kind, c.pushes), (&b"subscribe"[..], Some(2)));
        assert!(Confirmation::of(b"SUBSCRIBE", 0, true).is_none());
        assert!(Confirmation::of(b"GET", 1, true).is_none());
        let all = Confirmation::of(b"UNSUBSCRIBE", 0, true).unwrap();
        let mut subs = Subscriptions::default();
        assert_eq!(subs.expected(all), 1, "one push even with none");
        for channel in [&b"a"[..], b"b", b"a"] {
            subs.observe(&[Some(b"subscribe"), Some(channel), Some(b"1")]);
        }
        subs.observe(&[Some(b"psubscribe"), Some(b"p*"), Some(b"3")]);
        assert_eq!(subs.expected(all), 2);
        subs.observe(&[Some(b"unsubscribe"), Some(b"a"), Some(b"2")]);
        assert_eq!(subs.expected(all), 1);
        let patterns = Confirmation::of(b"PUNSUBSCRIBE", 0, true).unwrap();
        assert_eq!(subs.expected(patterns), 1);
    }

    #[test]
    fn pubsub_kinds() {
        let mut subs = Subscriptions::default();
        subs.observe(&[Some(b"ssubscribe"), Some(b"s"), Some(b"1")]);
        assert!(subs.any());
        subs.clear();
        assert!(!subs.any());
        assert!(Subscriptions::is_pubsub_kind(b"smessage"));
        assert!(!Subscriptions::is_pubsub_kind(b"pong"));
    }
}
