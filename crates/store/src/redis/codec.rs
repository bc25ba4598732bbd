//! Key names and value encodings of the Redis store.
//!
//! Values are small fixed binary headers (big-endian integers) followed by the readable
//! texts, so a check decodes a few bytes and `spamgate greylist list` still has names
//! to show. The first byte is a format version: a value this build cannot read counts
//! as absent (and is overwritten by the next write), never as an error that would
//! fail every later check of that key.

use spamgate_engine::UnixTime;
use spamgate_engine::greylist::{AwlState, Key, TripletState};

/// Key names under one prefix. See `docs/cluster.md` for the layout.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_string(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn triplet(&self, key: &Key) -> String {
        format!("{}t:{}", self.prefix, hex(key))
    }

    pub(crate) fn awl(&self, key: &Key) -> String {
        format!("{}a:{}", self.prefix, hex(key))
    }

    /// The sorted set of a network's pending triplets, scored by their expiry.
    pub(crate) fn network(&self, key: &Key) -> String {
        format!("{}n:{}", self.prefix, hex(key))
    }

    /// A SCAN pattern matching the keys that start with the prefix and `kind`
    /// (`t:`, `a:`, ...), whatever glob characters the prefix contains.
    pub(crate) fn pattern(&self, kind: &str) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + kind.len() + 1);
        for c in self.prefix.chars().chain(kind.chars()) {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }

    /// The 16-byte key in a `t:`/`a:` key name, if it is one of ours.
    pub(crate) fn parse_key(&self, kind: &str, name: &[u8]) -> Option<Key> {
        let rest = name
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(kind.as_bytes())?;
        unhex(rest)
    }
}

pub(crate) fn hex(key: &Key) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(32);
    for byte in key {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

pub(crate) fn unhex(text: &[u8]) -> Option<Key> {
    if text.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (byte, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(key)
}

const TRIPLET_V1: u8 = 1;
const AWL_V1: u8 = 1;
/// `passed_at` of a pending triplet.
const NOT_PASSED: u64 = u64::MAX;

/// A stored triplet with the texts it was created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredTriplet {
    pub state: TripletState,
    pub expires_at: UnixTime,
    pub network_key: Key,
    pub network: String,
    pub sender: String,
    pub recipient: String,
}

/// version, first_seen, last_seen, attempts, passed_at, expires_at, network key,
/// network length (u16), sender length (u16); then network, sender, recipient.
const TRIPLET_HEADER: usize = 1 + 8 + 8 + 4 + 8 + 8 + 16 + 2 + 2;

pub(crate) fn encode_triplet(triplet: &StoredTriplet) -> Vec<u8> {
    let network = clip(&triplet.network);
    let sender = clip(&triplet.sender);
    let recipient = clip(&triplet.recipient);
    let mut out =
        Vec::with_capacity(TRIPLET_HEADER + network.len() + sender.len() + recipient.len());
    out.push(TRIPLET_V1);
    out.extend_from_slice(&triplet.state.first_seen.to_be_bytes());
    out.extend_from_slice(&triplet.state.last_seen.to_be_bytes());
    out.extend_from_slice(&triplet.state.attempts.to_be_bytes());
    out.extend_from_slice(&triplet.state.passed_at.unwrap_or(NOT_PASSED).to_be_bytes());
    out.extend_from_slice(&triplet.expires_at.to_be_bytes());
    out.extend_from_slice(&triplet.network_key);
    out.extend_from_slice(&(network.len() as u16).to_be_bytes());
    out.extend_from_slice(&(sender.len() as u16).to_be_bytes());
    out.extend_from_slice(network);
    out.extend_from_slice(sender);
    out.extend_from_slice(recipient);
    out
}

pub(crate) fn decode_triplet(value: &[u8]) -> Option<StoredTriplet> {
    let mut reader = Reader(value);
    if reader.u8()? != TRIPLET_V1 {
        return None;
    }
    let first_seen = reader.u64()?;
    let last_seen = reader.u64()?;
    let attempts = reader.u32()?;
    let passed_at = Some(reader.u64()?).filter(|&at| at != NOT_PASSED);
    let expires_at = reader.u64()?;
    let network_key = reader.key()?;
    let network_len = usize::from(reader.u16()?);
    let sender_len = usize::from(reader.u16()?);
    let network = reader.text(network_len)?;
    let sender = reader.text(sender_len)?;
    let recipient = reader.text(reader.0.len())?;
    Some(StoredTriplet {
        state: TripletState {
            first_seen,
            last_seen,
            attempts,
            passed_at,
        },
        expires_at,
        network_key,
        network,
        sender,
        recipient,
    })
}

/// A stored auto-whitelist entry and the client address it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredAwl {
    pub state: AwlState,
    pub expires_at: UnixTime,
    pub client: String,
}

/// version, first_seen, last_seen, expires_at; then the client address.
const AWL_HEADER: usize = 1 + 8 + 8 + 8;

pub(crate) fn encode_awl(awl: &StoredAwl) -> Vec<u8> {
    let client = clip(&awl.client);
    let mut out = Vec::with_capacity(AWL_HEADER + client.len());
    out.push(AWL_V1);
    out.extend_from_slice(&awl.state.first_seen.to_be_bytes());
    out.extend_from_slice(&awl.state.last_seen.to_be_bytes());
    out.extend_from_slice(&awl.expires_at.to_be_bytes());
    out.extend_from_slice(client);
    out
}

pub(crate) fn decode_awl(value: &[u8]) -> Option<StoredAwl> {
    let mut reader = Reader(value);
    if reader.u8()? != AWL_V1 {
        return None;
    }
    let first_seen = reader.u64()?;
    let last_seen = reader.u64()?;
    let expires_at = reader.u64()?;
    let client = reader.text(reader.0.len())?;
    Some(StoredAwl {
        state: AwlState {
            first_seen,
            last_seen,
        },
        expires_at,
        client,
    })
}

/// Texts longer than a u16 length can say are cut (at a character boundary); they
/// come from bounded policy attributes, so this never happens in practice.
fn clip(text: &str) -> &[u8] {
    let mut end = text.len().min(usize::from(u16::MAX));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text.as_bytes()[..end]
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[byte]| byte)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }

    fn key(&mut self) -> Option<Key> {
        self.take()
    }

    fn text(&mut self, len: usize) -> Option<String> {
        if self.0.len() < len {
            return None;
        }
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(text.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triplet(passed_at: Option<u64>) -> StoredTriplet {
        StoredTriplet {
            state: TripletState {
                first_seen: 1_700_000_000,
                last_seen: 1_700_000_400,
                attempts: 3,
                passed_at,
            },
            expires_at: 1_703_024_400,
            network_key: [7; 16],
            network: "192.0.2.0/24".into(),
            sender: "news@example.com".into(),
            recipient: "alice@example.org".into(),
        }
    }

    #[test]
    fn triplets_round_trip() {
        for value in [
            triplet(None),
            triplet(Some(1_700_000_400)),
            triplet(Some(0)),
        ] {
            let encoded = encode_triplet(&value);
            assert_eq!(encoded.len(), TRIPLET_HEADER + 12 + 16 + 17);
            assert_eq!(decode_triplet(&encoded), Some(value));
        }
    }

    #[test]
    fn awl_entries_round_trip() {
        let value = StoredAwl {
            state: AwlState {
                first_seen: 5,
                last_seen: 6,
            },
            expires_at: 7,
            client: "2001:db8::25".into(),
        };
        assert_eq!(decode_awl(&encode_awl(&value)), Some(value));
    }

    #[test]
    fn foreign_or_cut_values_read_as_absent() {
        let good = encode_triplet(&triplet(None));
        let check = |value: &[u8]| assert_eq!(decode_triplet(value), None, "{value:?}");
        check(b"");
        check(b"hello");
        check(&good[..TRIPLET_HEADER - 1]);
        // Lengths that point past the end.
        check(&good[..TRIPLET_HEADER + 5]);
        let mut other_version = good.clone();
        other_version[0] = 2;
        check(&other_version);
        let mut not_utf8 = good;
        not_utf8[TRIPLET_HEADER] = 0xff;
        check(&not_utf8);
        assert_eq!(decode_awl(b"\x01short"), None);
    }

    #[test]
    fn long_texts_are_clipped_at_a_character_boundary() {
        let mut value = triplet(None);
        value.sender = "é".repeat(40_000);
        let decoded = decode_triplet(&encode_triplet(&value)).unwrap();
        assert_eq!(decoded.sender.len(), 65_534);
        assert_eq!(decoded.recipient, value.recipient);
    }

    #[test]
    fn names_and_patterns() {
        let names = Names::new("sg[1]*:");
        let key = [0xab; 16];
        assert_eq!(names.triplet(&key), format!("sg[1]*:t:{}", "ab".repeat(16)));
        assert_eq!(names.pattern("t:"), r"sg\[1\]\*:t:*");
        assert_eq!(
            names.parse_key("t:", names.triplet(&key).as_bytes()),
            Some(key)
        );
        assert_eq!(names.parse_key("a:", names.triplet(&key).as_bytes()), None);
        assert_eq!(unhex(b"zz"), None);
    }
}
