//! The vault: per-organization data keys, wrapped by the configured KMS, and the sealing of
//! secrets under them.
//!
//! Guarantees:
//! * Each organization has its own 256-bit data key (versioned); it is stored only wrapped by
//!   the KMS, with the organization id as the wrap context.
//! * A secret is sealed with AES-256-GCM under a fresh random nonce; the associated data is
//!   `holdfast-secret|v1|{org}|{secret id}|{field}`, so a ciphertext copied to another row,
//!   field or organization does not open.
//! * Unwrapped data keys are cached in memory (zeroed when dropped) and never logged.
//! * KEK rotation re-wraps every data key under the KMS's current KEK; DEK rotation seals an
//!   organization's secrets under a new data key in one transaction. Both run while servers
//!   serve: a server meeting a data key version it has not seen unwraps it from the store.

use crate::{Result, ServiceError};
use holdfast_core::authz::{OrgPass, SystemPass, system_org_lookup};
use holdfast_crypto::{AnyKms, DataKey, Kms, Wrapped};
use holdfast_store::{DataKeyRecord, SecretRecord, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

pub struct Vault {
    kms: AnyKms,
    keys: Mutex<HashMap<(String, i64), Arc<DataKey>>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault { .. }")
    }
}

fn crypto(e: holdfast_crypto::CryptoError) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// The field an OpenID Connect connection's client secret is sealed as.
pub const SSO_SECRET_FIELD: &str = "oidc_client_secret";

pub fn secret_aad(org_id: &str, id: &str, field: &str) -> Vec<u8> {
    format!("holdfast-secret|v1|{org_id}|{id}|{field}").into_bytes()
}

impl Vault {
    pub fn new(kms: AnyKms) -> Self {
        Self {
            kms,
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub fn kms(&self) -> &AnyKms {
        &self.kms
    }

    fn cached(&self, org: &str, version: i64) -> Option<Arc<DataKey>> {
        self.keys
            .lock()
            .ok()
            .and_then(|k| k.get(&(org.to_owned(), version)).cloned())
    }

    async fn unwrap_record(&self, k: &DataKeyRecord) -> Result<Arc<DataKey>> {
        let wrapped = Wrapped {
            kek_id: k.kek_id.clone(),
            blob: k.wrapped.clone(),
        };
        let key = Arc::new(self.kms.unwrap(&wrapped, &k.org_id).await.map_err(crypto)?);
        if let Ok(mut m) = self.keys.lock() {
            m.insert((k.org_id.clone(), k.version), key.clone());
        }
        Ok(key)
    }

    /// The organization's current data key, made on first use.
    async fn active(
        &self,
        store: &Store,
        pass: &OrgPass,
        now: &str,
    ) -> Result<(i64, Arc<DataKey>)> {
        let org = pass.org_id();
        for _ in 0..3 {
            if let Some(k) = store.active_data_key(pass).await? {
                if let Some(key) = self.cached(org, k.version) {
                    return Ok((k.version, key));
                }
                return Ok((k.version, self.unwrap_record(&k).await?));
            }
            let key = DataKey::generate().map_err(crypto)?;
            let wrapped = self.kms.wrap(&key, org).await.map_err(crypto)?;
            let rec = DataKeyRecord {
                org_id: org.to_owned(),
                version: 1,
                kek_id: wrapped.kek_id,
                wrapped: wrapped.blob,
                created: now.to_owned(),
                retired: None,
            };
            // Another process may have made it first; then use theirs.
            store.insert_data_key(pass, &rec).await?;
        }
        Err(ServiceError::Internal("no data key could be made".into()))
    }

    async fn version(&self, store: &Store, pass: &OrgPass, version: i64) -> Result<Arc<DataKey>> {
        let org = pass.org_id();
        if let Some(k) = self.cached(org, version) {
            return Ok(k);
        }
        let rec = store.data_key(pass, version).await?.ok_or_else(|| {
            ServiceError::Internal(format!("data key {version} of {org} is missing"))
        })?;
        self.unwrap_record(&rec).await
    }

    /// Seals a secret's field under the organization's current data key; `pass` is the
    /// caller's pass in that organization.
    pub async fn seal(
        &self,
        store: &Store,
        pass: &OrgPass,
        id: &str,
        field: &str,
        plaintext: &[u8],
        now: &str,
    ) -> Result<(i64, Vec<u8>)> {
        let org = pass.org_id();
        let (version, key) = self.active(store, pass, now).await?;
        let sealed =
            holdfast_crypto::seal(&key, &secret_aad(org, id, field), plaintext).map_err(crypto)?;
        Ok((version, sealed))
    }

    /// Opens a stored secret's value; `pass` is a pass in the secret's organization.
    pub async fn open(
        &self,
        store: &Store,
        pass: &OrgPass,
        rec: &SecretRecord,
    ) -> Result<Zeroizing<Vec<u8>>> {
        if rec.org_id != pass.org_id() {
            return Err(ServiceError::Internal(
                "a secret was opened with another organization's pass".into(),
            ));
        }
        let key = self.version(store, pass, rec.dek_version).await?;
        holdfast_crypto::open(
            &key,
            &secret_aad(&rec.org_id, &rec.id, "value"),
            &rec.ciphertext,
        )
        .map_err(crypto)
    }

    /// Opens a field sealed by [`Vault::seal`] and stored elsewhere than the secrets table.
    pub async fn open_field(
        &self,
        store: &Store,
        pass: &OrgPass,
        id: &str,
        field: &str,
        dek_version: i64,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.version(store, pass, dek_version).await?;
        holdfast_crypto::open(&key, &secret_aad(pass.org_id(), id, field), sealed).map_err(crypto)
    }

    /// Re-wraps every data key under the KMS's current KEK. Returns how many changed.
    pub async fn rewrap_all(&self, store: &Store) -> Result<usize> {
        let why = SystemPass::new("rotating the key-encryption key");
        let current = self.kms.current_kek().map_err(crypto)?;
        let mut changed = 0;
        for k in store.all_data_keys(&why).await? {
            if k.kek_id == current {
                continue;
            }
            let key = self.unwrap_record(&k).await?;
            let wrapped = self.kms.wrap(&key, &k.org_id).await.map_err(crypto)?;
            let rec = DataKeyRecord {
                kek_id: wrapped.kek_id,
                wrapped: wrapped.blob,
                ..k.clone()
            };
            if store.rewrap_data_key(&why, &rec, &k.kek_id).await? {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Whether any stored data key is wrapped by `kek_id`.
    pub async fn kek_in_use(&self, store: &Store, kek_id: &str) -> Result<bool> {
        let why = SystemPass::new("retiring a key-encryption key");
        Ok(store
            .all_data_keys(&why)
            .await?
            .iter()
            .any(|k| k.kek_id == kek_id))
    }

    /// Seals every secret of an organization under a new data key. Returns how many.
    pub async fn rotate_dek(&self, store: &Store, org: &str, now: &str) -> Result<usize> {
        let why = SystemPass::new("rotating an organization's data key");
        let pass = system_org_lookup(&why, org);
        let (current, _) = self.active(store, &pass, now).await?;
        let secrets = store.org_secrets(&why, org).await?;
        let key = DataKey::generate().map_err(crypto)?;
        let wrapped = self.kms.wrap(&key, org).await.map_err(crypto)?;
        let version = current + 1;
        let mut reencrypted = Vec::with_capacity(secrets.len());
        for s in &secrets {
            let plain = self.open(store, &pass, s).await?;
            let sealed = holdfast_crypto::seal(&key, &secret_aad(org, &s.id, "value"), &plain)
                .map_err(crypto)?;
            reencrypted.push((s.clone(), sealed));
        }
        // OpenID Connect client secrets, sealed the same way in their own table (SAML
        // connections have none).
        let mut connections = Vec::new();
        for c in store
            .list_sso_connections(&why, org)
            .await?
            .into_iter()
            .filter(|c| !c.secret_ciphertext.is_empty())
        {
            let sealed = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                &c.secret_ciphertext,
            )
            .map_err(|e| ServiceError::Internal(format!("sign-in connection {}: {e}", c.id)))?;
            let plain = self
                .open_field(
                    store,
                    &pass,
                    &c.id,
                    SSO_SECRET_FIELD,
                    c.secret_dek_version,
                    &sealed,
                )
                .await?;
            let resealed =
                holdfast_crypto::seal(&key, &secret_aad(org, &c.id, SSO_SECRET_FIELD), &plain)
                    .map_err(crypto)?;
            connections.push((c, resealed));
        }
        let rec = DataKeyRecord {
            org_id: org.to_owned(),
            version,
            kek_id: wrapped.kek_id,
            wrapped: wrapped.blob,
            created: now.to_owned(),
            retired: None,
        };
        store
            .rotate_data_key(&why, &rec, &reencrypted, &connections, now)
            .await?;
        if let Ok(mut m) = self.keys.lock() {
            m.insert((org.to_owned(), version), Arc::new(key));
        }
        Ok(secrets.len())
    }

    /// Opens every secret of an organization; returns (opened, ids that failed).
    pub async fn verify(&self, store: &Store, org: &str) -> Result<(usize, Vec<String>)> {
        let why = SystemPass::new("verifying secrets");
        let pass = system_org_lookup(&why, org);
        let mut ok = 0;
        let mut failed = Vec::new();
        for s in store.org_secrets(&why, org).await? {
            match self.open(store, &pass, &s).await {
                Ok(_) => ok += 1,
                Err(_) => failed.push(s.id.clone()),
            }
        }
        Ok((ok, failed))
    }
}
