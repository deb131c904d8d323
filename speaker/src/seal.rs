//! Sealing of membership messages: every datagram is `HMAC-SHA256(key, body)
//! || body`, with the key every speaker reads from the Secret
//! `ferrolb-system/ferrolb-memberlist` (key `secretkey`, MetalLB's name for
//! it). This module owns the key, the tag and the per-sender replay window;
//! what the body says is [`crate::liveness`]'s business. Pure: bytes in,
//! bytes or a [`Rejection`] out.
//!
//! A replay is made useless in three ways, each checked by the receiver:
//! every body names its recipient (a message to one node cannot be replayed
//! to another), every sender numbers what it sends to each recipient within
//! its process generation (a number seen before, or from an older
//! generation, is refused by [`ReplayWindow`]), and a member the receiver
//! does not know yet only counts as live once it has answered a fresh
//! challenge (see [`crate::liveness`]). No clock needs to agree between nodes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of the tag in front of every sealed message.
pub const TAG_LEN: usize = 32;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// The shared membership key.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Why a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is shorter than [`MIN_KEY_LEN`] bytes; nothing was started.
    #[error(
        "the membership key has {len} bytes; at least {MIN_KEY_LEN} are needed (create it with: kubectl create secret generic -n ferrolb-system ferrolb-memberlist --from-literal=secretkey=\"$(openssl rand -base64 32)\")"
    )]
    TooShort {
        /// How many bytes it had.
        len: usize,
    },
}

impl Key {
    /// The key made of `secret`'s bytes (the Secret's value as given, not
    /// decoded: `openssl rand -base64 32` gives 44 bytes of key).
    pub fn new(secret: &[u8]) -> Result<Key, KeyError> {
        let trimmed = secret.trim_ascii();
        if trimmed.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { len: trimmed.len() });
        }
        Ok(Key(trimmed.to_vec()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }

    /// `body` sealed: tag, then body.
    pub fn seal(&self, body: &[u8]) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        let mut out = Vec::with_capacity(TAG_LEN + body.len());
        out.extend_from_slice(&tag);
        out.extend_from_slice(body);
        out
    }

    /// The body of `sealed` if its tag is right (compared in constant time).
    pub fn open<'a>(&self, sealed: &'a [u8]) -> Result<&'a [u8], Rejection> {
        if sealed.len() <= TAG_LEN {
            return Err(Rejection::Truncated);
        }
        let (tag, body) = sealed.split_at(TAG_LEN);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| Rejection::BadTag)?;
        Ok(body)
    }
}

/// Why a received membership datagram was dropped. Each has a stable label
/// for the `ferrolb_speaker_member_messages_rejected_total` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    /// Shorter than a tag.
    Truncated,
    /// The tag does not match: another key, or altered in transit.
    BadTag,
    /// Sealed with the right key but not a message this version reads.
    Malformed,
    /// Addressed to another node.
    Misdirected,
    /// A number already seen from that sender, or an older generation.
    Replayed,
    /// Claims to come from this very node.
    FromSelf,
}

impl Rejection {
    /// Every reason, for exporting zeros.
    pub const ALL: [Rejection; 6] = [
        Rejection::Truncated,
        Rejection::BadTag,
        Rejection::Malformed,
        Rejection::Misdirected,
        Rejection::Replayed,
        Rejection::FromSelf,
    ];

    /// The metric label.
    pub fn as_label(self) -> &'static str {
        match self {
            Rejection::Truncated => "truncated",
            Rejection::BadTag => "bad_tag",
            Rejection::Malformed => "malformed",
            Rejection::Misdirected => "misdirected",
            Rejection::Replayed => "replayed",
            Rejection::FromSelf => "from_self",
        }
    }
}

/// What one receiver remembers of one sender's numbering: the newest
/// generation, the highest sequence number in it, and which of the 64 below
/// it were seen (the IPsec anti-replay window, RFC 4303 §3.4.3), so a
/// datagram reordered on the LAN is still accepted once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    generation: u64,
    highest: u64,
    seen: u64,
}

impl ReplayWindow {
    /// Accepts `(generation, seq)` once; refuses it if it was seen, is too
    /// old for the window, or belongs to an older generation.
    pub fn accept(&mut self, generation: u64, seq: u64) -> Result<(), Rejection> {
        if generation < self.generation {
            return Err(Rejection::Replayed);
        }
        if generation > self.generation {
            *self = ReplayWindow {
                generation,
                highest: seq,
                seen: 1,
            };
            return Ok(());
        }
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = seq;
            return Ok(());
        }
        let back = self.highest - seq;
        if back >= 64 || self.seen & (1 << back) != 0 {
            return Err(Rejection::Replayed);
        }
        self.seen |= 1 << back;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(text: &str) -> Key {
        Key::new(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_sealed_body_opens_with_the_same_key_only() {
        let sealed = key("0123456789abcdef-one").seal(b"hello");
        assert_eq!(key("0123456789abcdef-one").open(&sealed), Ok(&b"hello"[..]));
        assert_eq!(
            key("0123456789abcdef-two").open(&sealed),
            Err(Rejection::BadTag)
        );
    }

    #[test]
    fn an_altered_body_is_refused() {
        let mut sealed = key("0123456789abcdef").seal(b"hello");
        *sealed.last_mut().unwrap() ^= 1;
        assert_eq!(
            key("0123456789abcdef").open(&sealed),
            Err(Rejection::BadTag)
        );
        assert_eq!(
            key("0123456789abcdef").open(&sealed[..TAG_LEN]),
            Err(Rejection::Truncated)
        );
    }

    #[test]
    fn a_short_or_missing_key_is_refused_with_how_to_make_one() {
        let error = Key::new(b"  short \n").unwrap_err();
        assert_eq!(error, KeyError::TooShort { len: 5 });
        assert!(error.to_string().contains("kubectl create secret generic"));
        assert!(Key::new(b"").is_err());
    }

    #[test]
    fn a_number_is_accepted_once_even_out_of_order() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(7, 10), Ok(()));
        assert_eq!(w.accept(7, 12), Ok(()));
        assert_eq!(w.accept(7, 11), Ok(()), "reordered, first time");
        assert_eq!(w.accept(7, 11), Err(Rejection::Replayed));
        assert_eq!(w.accept(7, 12), Err(Rejection::Replayed));
        assert_eq!(w.accept(7, 200), Ok(()));
        assert_eq!(w.accept(7, 100), Err(Rejection::Replayed), "too old");
    }

    #[test]
    fn an_older_generation_is_a_replay_and_a_newer_one_starts_afresh() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(7, 1000), Ok(()));
        assert_eq!(w.accept(8, 1), Ok(()), "the sender restarted");
        assert_eq!(w.accept(7, 1001), Err(Rejection::Replayed));
    }

    proptest! {
        #[test]
        fn no_number_is_ever_accepted_twice(seqs in proptest::collection::vec(0u64..300, 1..200)) {
            let mut w = ReplayWindow::default();
            let mut accepted = std::collections::BTreeSet::new();
            for seq in seqs {
                if w.accept(1, seq).is_ok() {
                    prop_assert!(accepted.insert(seq), "{seq} accepted twice");
                }
            }
        }
    }
}
