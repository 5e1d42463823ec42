//! The audit log's hash chain.
//!
//! Each entry stores the hash of the entry before it (`prev_hash`) and its own hash, which is
//! SHA-256 over `prev_hash`, a newline, and the JSON array of the entry's fields in a fixed
//! order (the detail as the exact text stored). Editing any stored field of an entry changes
//! its hash; deleting an entry or inserting one breaks the link (or the sequence) of the next.
//! The first entry's `prev_hash` is [`GENESIS`].

use serde_json::json;
use sha2::{Digest, Sha256};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: i64,
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

/// The hash an entry must carry, given the hash before it.
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
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Why the chain is broken at an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The sequence skips or repeats: an entry was deleted or inserted before this one.
    Sequence { expected: i64, found: i64 },
    /// `prev_hash` is not the previous entry's hash.
    Link,
    /// The entry's fields do not hash to its stored hash: it was edited.
    Content,
}

/// Walks a chain incrementally, entry by entry, in sequence order.
#[derive(Debug, Clone)]
pub struct Verifier {
    next_seq: i64,
    prev_hash: String,
}

impl Default for Verifier {
    fn default() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS.to_owned(),
        }
    }
}

impl Verifier {
    pub fn check(&mut self, e: &Entry) -> Result<(), Break> {
        if e.seq != self.next_seq {
            return Err(Break::Sequence {
                expected: self.next_seq,
                found: e.seq,
            });
        }
        if e.prev_hash != self.prev_hash {
            return Err(Break::Link);
        }
        if entry_hash(&e.prev_hash, e) != e.hash {
            return Err(Break::Content);
        }
        self.next_seq += 1;
        self.prev_hash.clone_from(&e.hash);
        Ok(())
    }

    /// Entries checked so far.
    pub fn count(&self) -> i64 {
        self.next_seq - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Entry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = Entry {
                    seq,
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
                e.hash = entry_hash(&prev, &e);
                prev.clone_from(&e.hash);
                e
            })
            .collect()
    }

    fn verify(entries: &[Entry]) -> Result<i64, (i64, Break)> {
        let mut v = Verifier::default();
        for e in entries {
            v.check(e).map_err(|b| (e.seq, b))?;
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

        // Rehashing an edited entry does not help: the next link breaks.
        let mut rehashed = chain(5);
        rehashed[1].actor_id = Some("mallory".into());
        rehashed[1].hash = entry_hash(&rehashed[1].prev_hash, &rehashed[1]);
        assert_eq!(verify(&rehashed), Err((3, Break::Link)));
    }
}
