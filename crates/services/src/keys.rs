//! API keys.
//!
//! Guarantees:
//! * A key is `hf_` + a 32-hex key id + 256 random bits (64 hex) + a CRC-32 checksum (8 hex).
//!   The checksum lets garbage be refused without a database lookup and lets scanners spot
//!   leaked keys.
//! * Only HMAC-SHA256(pepper, key id ‖ secret) is stored. The pepper is a 32-byte file in the
//!   data directory, created with mode 0600; a stolen database alone verifies nothing.
//! * Verification compares hashes in constant time and checks revocation and expiry against
//!   the injected clock, also for cached entries. Positive results are cached for
//!   [`CACHE_TTL_SECONDS`] keyed by the hash, never by the secret; a revocation made in this
//!   process clears the cache at once, one made by another process is seen within the TTL.
//! * Secrets are held in `secrecy` types and never logged; the `Debug` of every type here is
//!   redacted.

use crate::random;
use crate::{Result, ServiceError};
use hmac::{KeyInit, Mac};
use holdfast_core::authz::{Capability, KeyScope, Principal, SystemPass, Trail};
use holdfast_core::clock::{Clock, format_timestamp, parse_timestamp};
use holdfast_store::{ApiKeyRecord, Store};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub const KEY_PREFIX: &str = "hf_";
const ID_HEX: usize = 32;
const SECRET_HEX: usize = 64;
const CRC_HEX: usize = 8;
const KEY_LEN: usize = 3 + ID_HEX + SECRET_HEX + CRC_HEX;
pub const CACHE_TTL_SECONDS: i64 = 10;

const INVALID: ServiceError = ServiceError::Unauthenticated("invalid API key");

/// Why a token was refused, and the id of the key it named when that key exists (a
/// guessed or garbled id is never recorded).
#[derive(Debug)]
pub struct AuthFailure {
    pub error: ServiceError,
    pub key_id: Option<String>,
}

/// A freshly minted key: the full token is shown once, the record is stored.
pub struct NewKey {
    pub token: SecretString,
    pub record: ApiKeyRecord,
}

struct CacheEntry {
    principal: Principal,
    expires_at: Option<i64>,
    cached_at: i64,
}

pub struct KeyService {
    pepper: SecretBox<[u8; 32]>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
    usage: Mutex<HashMap<String, Usage>>,
    /// Verifications answered from the cache, and those that went to the store.
    pub cache_hits: std::sync::atomic::AtomicU64,
    pub cache_misses: std::sync::atomic::AtomicU64,
}

/// Uses of a key not yet written to the store.
#[derive(Debug, Clone, Default)]
struct Usage {
    day: String,
    requests: i64,
    at: String,
    from: Option<String>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyService { .. }")
    }
}

/// Loads the pepper file, creating it (mode 0600) when absent.
pub fn load_or_create_pepper(path: &Path) -> Result<SecretBox<[u8; 32]>> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io =
        |e: std::io::Error| ServiceError::Internal(format!("pepper file {}: {e}", path.display()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            let pepper = random::bytes::<32>()?;
            f.write_all(&pepper)
                .and_then(|()| f.sync_all())
                .map_err(io)?;
            Ok(SecretBox::new(Box::new(pepper)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut f = std::fs::File::open(path).map_err(io)?;
            let mode = f.metadata().map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(ServiceError::Internal(format!(
                    "pepper file {} is readable by others (mode {:o}); run chmod 600",
                    path.display(),
                    mode & 0o777
                )));
            }
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map_err(io)?;
            let pepper: [u8; 32] = buf.as_slice().try_into().map_err(|_| {
                ServiceError::Internal(format!("pepper file {} is not 32 bytes", path.display()))
            })?;
            Ok(SecretBox::new(Box::new(pepper)))
        }
        Err(e) => Err(io(e)),
    }
}

fn checksum(body: &str) -> String {
    format!("{:08x}", crc32fast::hash(body.as_bytes()))
}

/// Splits a token into (key id, secret), checking shape and checksum.
fn parse_token(token: &str) -> Option<(&str, &str)> {
    if token.len() != KEY_LEN || !token.starts_with(KEY_PREFIX) {
        return None;
    }
    let rest = token.get(3..)?;
    if !rest
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let (body, crc) = token.split_at(KEY_LEN - CRC_HEX);
    if checksum(body) != crc {
        return None;
    }
    Some((rest.get(..ID_HEX)?, rest.get(ID_HEX..ID_HEX + SECRET_HEX)?))
}

impl KeyService {
    pub fn new(pepper: SecretBox<[u8; 32]>, clock: Arc<dyn Clock>) -> Self {
        Self {
            pepper,
            clock,
            cache: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
            cache_hits: Default::default(),
            cache_misses: Default::default(),
        }
    }

    fn mac(&self, key_id: &str, secret: &str) -> Result<[u8; 32]> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(self.pepper.expose_secret())
            .map_err(|_| ServiceError::Internal("bad pepper length".into()))?;
        mac.update(key_id.as_bytes());
        mac.update(b"|");
        mac.update(secret.as_bytes());
        Ok(mac.finalize().into_bytes().into())
    }

    /// Derives a purpose-specific key from the pepper (used to sign URLs).
    pub fn derive(&self, purpose: &str) -> Result<SecretBox<[u8; 32]>> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(self.pepper.expose_secret())
            .map_err(|_| ServiceError::Internal("bad pepper length".into()))?;
        mac.update(b"holdfast derive|");
        mac.update(purpose.as_bytes());
        Ok(SecretBox::new(Box::new(mac.finalize().into_bytes().into())))
    }

    /// The key the audit chains are linked and checkpoints signed under (see
    /// `holdfast_core::audit`): derived from the pepper, so only a holder of the KMS has it.
    pub fn audit_key(&self) -> Result<[u8; 32]> {
        Ok(*self.derive("audit chain")?.expose_secret())
    }

    /// Mints a key for a user of an organization. Nothing is stored here.
    pub fn mint(
        &self,
        org_id: &str,
        user_id: &str,
        name: &str,
        expires_at: Option<String>,
        scope: &KeyScope,
    ) -> Result<NewKey> {
        let id = random::hex(&random::bytes::<16>()?);
        let secret = random::hex(&random::bytes::<32>()?);
        let body = format!("{KEY_PREFIX}{id}{secret}");
        let token = format!("{body}{}", checksum(&body));
        let hash = random::hex(&self.mac(&id, &secret)?);
        let preview = format!(
            "{KEY_PREFIX}{}…{}",
            id.get(..6).unwrap_or(""),
            token.get(KEY_LEN - 4..).unwrap_or("")
        );
        let record = ApiKeyRecord {
            id,
            org_id: org_id.to_owned(),
            user_id: user_id.to_owned(),
            name: name.to_owned(),
            secret_hash: hash,
            preview_name: preview,
            created: format_timestamp(self.clock.now()),
            expires_at,
            revoked_at: None,
            last_used_at: None,
            project_ids: scope.projects.clone(),
            capability: scope.capability.as_str().to_owned(),
            last_used_from: None,
        };
        Ok(NewKey {
            token: SecretString::from(token),
            record,
        })
    }

    /// Checks a presented token; every failure is the same `Unauthenticated` to the caller.
    /// `from` is the client's address, recorded as where the key was last used. A failure
    /// names the key id only when a key with that id exists (for the audit log).
    pub async fn authenticate(
        &self,
        store: &Store,
        token: &str,
        from: Option<&str>,
    ) -> std::result::Result<Principal, AuthFailure> {
        let unknown = |error| AuthFailure {
            error,
            key_id: None,
        };
        let (key_id, secret) =
            parse_token(token.trim_end_matches('\n')).ok_or_else(|| unknown(INVALID))?;
        let hash = self.mac(key_id, secret).map_err(unknown)?;
        let now = self.clock.now().unix_timestamp();
        if let Some(principal) = self.cached(&hash, now) {
            self.cache_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.touch(&principal.key_id, from);
            return Ok(principal);
        }
        self.cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let why = holdfast_core::authz::KeyLookupPass::authenticating();
        let record = store
            .find_api_key(&why, key_id)
            .await
            .map_err(|e| unknown(e.into()))?
            .ok_or_else(|| unknown(INVALID))?;
        let known = |error| AuthFailure {
            error,
            key_id: Some(key_id.to_owned()),
        };
        self.verify_record(record, &hash, now, from).map_err(known)
    }

    fn verify_record(
        &self,
        record: ApiKeyRecord,
        hash: &[u8; 32],
        now: i64,
        from: Option<&str>,
    ) -> Result<Principal> {
        let stored = random::unhex(&record.secret_hash).ok_or(INVALID)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            stored.as_slice(),
            hash.as_slice(),
        )) {
            return Err(INVALID);
        }
        if record.revoked_at.is_some() {
            return Err(ServiceError::Unauthenticated("API key has been revoked"));
        }
        let expires_at = match &record.expires_at {
            Some(t) => Some(parse_timestamp(t).ok_or(INVALID)?.unix_timestamp()),
            None => None,
        };
        if expires_at.is_some_and(|e| e <= now) {
            return Err(ServiceError::KeyExpired);
        }
        let capability = Capability::parse(&record.capability).ok_or(INVALID)?;
        let principal = Principal {
            user_id: record.user_id,
            org_id: record.org_id,
            key_id: record.id,
            scope: KeyScope {
                projects: record.project_ids,
                capability,
            },
            expires_at,
            trail: Trail::default(),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.insert(
                *hash,
                CacheEntry {
                    principal: principal.clone(),
                    expires_at,
                    cached_at: now,
                },
            );
        }
        self.touch(&principal.key_id, from);
        Ok(principal)
    }

    fn cached(&self, hash: &[u8; 32], now: i64) -> Option<Principal> {
        let cache = self.cache.lock().ok()?;
        let e = cache.get(hash)?;
        let fresh = now - e.cached_at < CACHE_TTL_SECONDS && e.expires_at.is_none_or(|x| x > now);
        // Each request gets a trail of its own.
        fresh.then(|| Principal {
            trail: Trail::default(),
            ..e.principal.clone()
        })
    }

    /// Forgets cached verifications (after a revocation).
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    /// Counts a use of the key in memory; [`KeyService::flush_usage`] writes the counts. A
    /// request never waits for this write (on SQLite it would queue behind the row writer).
    fn touch(&self, key_id: &str, from: Option<&str>) {
        let now = self.clock.now();
        let at = format_timestamp(now);
        let day = at.get(..10).unwrap_or_default().to_owned();
        if let Ok(mut usage) = self.usage.lock() {
            let u = usage.entry(key_id.to_owned()).or_default();
            // Uses counted just before midnight and flushed after it count for the new day
            // (at most one flush interval of them).
            u.day = day;
            u.requests += 1;
            u.at = at;
            if let Some(f) = from {
                u.from = Some(f.to_owned());
            }
        }
    }

    /// Uses of `key_id` counted but not yet written (they belong to `day`).
    pub fn pending_usage(&self, key_id: &str) -> Option<(String, i64)> {
        let usage = self.usage.lock().ok()?;
        usage.get(key_id).map(|u| (u.day.clone(), u.requests))
    }

    /// Writes the counted uses of every key; the server calls it every few seconds and at
    /// shutdown.
    pub async fn flush_usage(&self, store: &Store) {
        let pending: Vec<(String, Usage)> = match self.usage.lock() {
            Ok(mut u) => u.drain().collect(),
            Err(_) => return,
        };
        let why = SystemPass::new("recording API key use");
        for (key_id, u) in pending {
            if let Err(e) = store
                .record_key_use(&why, &key_id, &u.day, u.requests, &u.at, u.from.as_deref())
                .await
            {
                tracing::warn!(error = %e, "could not record key use");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_core::clock::ManualClock;

    fn service() -> KeyService {
        KeyService::new(
            SecretBox::new(Box::new([7u8; 32])),
            Arc::new(ManualClock::at_unix(1_800_000_000)),
        )
    }

    #[test]
    fn minted_tokens_parse_and_hash_consistently() {
        let s = service();
        let k = s
            .mint("o", "u", "test", None, &KeyScope::default())
            .unwrap();
        let token = k.token.expose_secret();
        assert_eq!(token.len(), KEY_LEN);
        let (id, secret) = parse_token(token).unwrap();
        assert_eq!(id, k.record.id);
        assert_eq!(
            random::hex(&s.mac(id, secret).unwrap()),
            k.record.secret_hash
        );
        assert!(!k.record.preview_name.contains(secret));
    }

    #[test]
    fn garbled_tokens_are_refused_before_lookup() {
        let s = service();
        let k = s
            .mint("o", "u", "test", None, &KeyScope::default())
            .unwrap();
        let token = k.token.expose_secret().to_owned();
        let mut flipped = token.clone().into_bytes();
        flipped[40] = if flipped[40] == b'a' { b'b' } else { b'a' };
        for bad in [
            String::new(),
            "sk-123".into(),
            String::from_utf8(flipped).unwrap(),
            token[..KEY_LEN - 1].to_owned(),
            token.to_uppercase(),
        ] {
            assert!(parse_token(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn pepper_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hf-pepper-{}", random::uuid().unwrap()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pepper.key");
        let a = load_or_create_pepper(&path).unwrap();
        let b = load_or_create_pepper(&path).unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create_pepper(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
