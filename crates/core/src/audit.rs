//! The audit log's chains.
//!
//! Guarantees:
//! * Every organization has a chain of its own, numbered from 1 without gaps (`chain_seq`);
//!   entries that belong to no organization (failed authentications of unknown keys,
//!   server-wide operator commands) form the server chain, named `""`. One organization's
//!   numbers say nothing of another's activity.
//! * Each entry stores the link of the entry before it in its chain (`prev_hash`) and its own
//!   link: HMAC-SHA256 under the audit key over `prev_hash`, a newline, and the JSON array of
//!   its fields in a fixed order ([`entry_mac`]). The audit key is derived from the server's
//!   pepper, which only the KMS unwraps: whoever can write the database but not use the KMS
//!   can neither edit an entry nor rewrite the chain after it, and deleting or inserting an
//!   entry breaks the numbering or the next link.
//! * Cutting a chain's tail (with its counter) leaves a shorter chain that still verifies;
//!   a [`Checkpoint`], kept outside the database, records each chain's head under a MAC of
//!   the same key, and a chain shorter than its checkpoint, or whose entry there differs, is
//!   broken.
//! * Entries written before chains were keyed (no `chain`) form the legacy chain: the global
//!   sequence, unkeyed SHA-256 links ([`entry_hash`]). They are checked as before, and anyone
//!   who can write the database could have rewritten them.

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

type HmacSha256 = hmac::Hmac<Sha256>;

/// One entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The global order of entries (internal; never shown to a tenant).
    pub seq: i64,
    /// The organization whose chain holds it (`""`: the server chain); `None` for a legacy
    /// entry.
    pub chain: Option<String>,
    /// Its number in its chain.
    pub chain_seq: Option<i64>,
    pub at: String,
    pub org_id: Option<String>,
    pub actor_id: Option<String>,
    pub key_id: Option<String>,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// JSON text.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The link a legacy entry must carry, given the one before it.
pub fn entry_hash(prev_hash: &str, e: &Entry) -> String {
    let fields = json!([
        e.seq,
        e.at,
        e.org_id,
        e.actor_id,
        e.key_id,
        e.action,
        e.object_type,
        e.object_id,
        e.detail
    ]);
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(fields.to_string().as_bytes());
    hex(&h.finalize())
}

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> String {
    // A 32-byte key is always a valid HMAC key.
    let Ok(mut m) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        m.update(p);
    }
    hex(&m.finalize().into_bytes())
}

/// The link a chained entry must carry, given the one before it and the audit key.
pub fn entry_mac(key: &[u8; 32], prev_hash: &str, e: &Entry) -> String {
    let fields = json!([
        "holdfast audit v2",
        e.chain,
        e.chain_seq,
        e.at,
        e.org_id,
        e.actor_id,
        e.key_id,
        e.action,
        e.object_type,
        e.object_id,
        e.detail
    ]);
    mac(
        key,
        &[prev_hash.as_bytes(), b"\n", fields.to_string().as_bytes()],
    )
}

/// Why a chain is broken at an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The numbering skips or repeats: an entry was deleted or inserted before this one.
    Sequence { expected: i64, found: i64 },
    /// `prev_hash` is not the previous entry's link.
    Link,
    /// The entry's fields do not give its stored link: it was edited (or forged without the
    /// key).
    Content,
}

/// Walks one chain incrementally, entry by entry, in order.
#[derive(Clone)]
pub struct Verifier {
    next_seq: i64,
    prev_hash: String,
    /// `None` for the legacy chain.
    key: Option<[u8; 32]>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The legacy chain, from its start.
    pub fn legacy() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS.to_owned(),
            key: None,
        }
    }

    /// A keyed chain, from its start.
    pub fn keyed(key: [u8; 32]) -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS.to_owned(),
            key: Some(key),
        }
    }

    /// A keyed chain, from the entry a checkpoint anchors (`seq` with link `hash`).
    pub fn resume(key: [u8; 32], seq: i64, hash: &str) -> Self {
        Self {
            next_seq: seq + 1,
            prev_hash: hash.to_owned(),
            key: Some(key),
        }
    }

    pub fn check(&mut self, e: &Entry) -> Result<(), Break> {
        let found = match self.key {
            Some(_) => e.chain_seq.unwrap_or(0),
            None => e.seq,
        };
        if found != self.next_seq {
            return Err(Break::Sequence {
                expected: self.next_seq,
                found,
            });
        }
        if e.prev_hash != self.prev_hash {
            return Err(Break::Link);
        }
        let expected = match &self.key {
            Some(k) => entry_mac(k, &e.prev_hash, e),
            None => entry_hash(&e.prev_hash, e),
        };
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            e.hash.as_bytes(),
        )) {
            return Err(Break::Content);
        }
        self.next_seq += 1;
        self.prev_hash.clone_from(&e.hash);
        Ok(())
    }

    /// The number of the last entry checked (entries checked, from a chain's start).
    pub fn count(&self) -> i64 {
        self.next_seq - 1
    }
}

/// The head of one chain at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
}

/// The heads of every chain at a moment, under a MAC of the audit key, printed by
/// `holdfast audit checkpoint` for keeping outside the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: String,
    pub at: String,
    pub heads: Vec<Head>,
    pub mac: String,
}

const CHECKPOINT_FORMAT: &str = "holdfast-audit-checkpoint-v1";

fn checkpoint_mac(key: &[u8; 32], at: &str, heads: &[Head]) -> String {
    let body = json!([CHECKPOINT_FORMAT, at, heads]).to_string();
    mac(key, &[b"checkpoint\n", body.as_bytes()])
}

impl Checkpoint {
    pub fn sign(key: &[u8; 32], at: String, heads: Vec<Head>) -> Self {
        let mac = checkpoint_mac(key, &at, &heads);
        Self {
            format: CHECKPOINT_FORMAT.to_owned(),
            at,
            heads,
            mac,
        }
    }

    /// True when this server's audit key made it, unaltered.
    pub fn authentic(&self, key: &[u8; 32]) -> bool {
        let expected = checkpoint_mac(key, &self.at, &self.heads);
        self.format == CHECKPOINT_FORMAT
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_bytes(),
                self.mac.as_bytes(),
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [9; 32];

    fn chain(n: i64) -> Vec<Entry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = Entry {
                    seq: seq * 3,
                    chain: Some("o".into()),
                    chain_seq: Some(seq),
                    at: format!("2026-01-01T00:00:{seq:02}.000000Z"),
                    org_id: Some("o".into()),
                    actor_id: Some("u".into()),
                    key_id: None,
                    action: "POST /v1/acl".into(),
                    object_type: None,
                    object_id: None,
                    detail: format!("{{\"n\":{seq}}}"),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = entry_mac(&KEY, &prev, &e);
                prev.clone_from(&e.hash);
                e
            })
            .collect()
    }

    fn verify(entries: &[Entry]) -> Result<i64, (i64, Break)> {
        let mut v = Verifier::keyed(KEY);
        for e in entries {
            v.check(e)
                .map_err(|b| (e.chain_seq.unwrap_or_default(), b))?;
        }
        Ok(v.count())
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn every_kind_of_tampering_is_named() {
        let mut edited = chain(5);
        edited[2].detail = "{\"n\":99}".into();
        assert_eq!(verify(&edited), Err((3, Break::Content)));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(
            verify(&deleted),
            Err((
                3,
                Break::Sequence {
                    expected: 2,
                    found: 3
                }
            ))
        );

        // Relinking an edited entry without the key does not help: an unkeyed hash, or a
        // MAC under another key, is not its link.
        let mut rehashed = chain(5);
        rehashed[1].actor_id = Some("mallory".into());
        rehashed[1].hash = entry_hash(&rehashed[1].prev_hash, &rehashed[1]);
        assert_eq!(verify(&rehashed), Err((2, Break::Content)));
        let mut forged = chain(5);
        let mut prev = forged[0].hash.clone();
        for e in forged.iter_mut().skip(1) {
            e.actor_id = Some("mallory".into());
            e.prev_hash = prev.clone();
            e.hash = entry_mac(&[1; 32], &prev, e);
            prev.clone_from(&e.hash);
        }
        assert_eq!(verify(&forged), Err((2, Break::Content)));
    }

    #[test]
    fn a_checkpoint_resumes_and_authenticates() {
        let c = chain(5);
        let mut v = Verifier::resume(KEY, 3, &c[2].hash);
        for e in &c[3..] {
            v.check(e).unwrap();
        }
        assert_eq!(v.count(), 5);
        let heads = vec![Head {
            chain: "o".into(),
            seq: 5,
            hash: c[4].hash.clone(),
        }];
        let cp = Checkpoint::sign(&KEY, "t".into(), heads);
        assert!(cp.authentic(&KEY));
        assert!(!cp.authentic(&[1; 32]));
        let mut moved = cp.clone();
        moved.heads[0].seq = 4;
        assert!(!moved.authentic(&KEY));
    }
}
