//! Key material kept in the data directory, wrapped by the KMS: a file holds
//! `{"kek_id": ..., "wrapped": <base64>}` (mode 0600), never the key itself. Used for the
//! API-key pepper and for the storage key that encrypts the embedded database and the blobs.

use crate::{Result, ServiceError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use holdfast_crypto::{AnyKms, DataKey, Kms, Wrapped};
use std::path::Path;

fn io(path: &Path, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("key file {}: {e}", path.display()))
}

/// The KEK that wraps the key in `path`; `None` when the file does not exist.
pub fn kek_of(path: &Path) -> Result<Option<String>> {
    Ok(read(path)?.map(|w| w.kek_id))
}

fn read(path: &Path) -> Result<Option<Wrapped>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = holdfast_crypto::local::read_private(path).map_err(|e| io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| io(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| io(path, e))?;
    let kek_id = v
        .get("kek_id")
        .and_then(|k| k.as_str())
        .ok_or_else(|| io(path, "no kek_id"))?;
    let blob = v
        .get("wrapped")
        .and_then(|w| w.as_str())
        .and_then(|b| B64.decode(b).ok())
        .ok_or_else(|| io(path, "no wrapped key"))?;
    Ok(Some(Wrapped {
        kek_id: kek_id.to_owned(),
        blob,
    }))
}

/// Reads and unwraps the key in `path`; `None` when the file does not exist.
pub async fn load(kms: &AnyKms, path: &Path, context: &str) -> Result<Option<DataKey>> {
    let Some(wrapped) = read(path)? else {
        return Ok(None);
    };
    let key = kms
        .unwrap(&wrapped, context)
        .await
        .map_err(|e| io(path, e))?;
    Ok(Some(key))
}

/// Wraps `key` and writes it to `path` (mode 0600, durably, replacing atomically).
pub async fn store(kms: &AnyKms, path: &Path, context: &str, key: &DataKey) -> Result<()> {
    let w = kms.wrap(key, context).await.map_err(|e| io(path, e))?;
    let text = serde_json::json!({"kek_id": w.kek_id, "wrapped": B64.encode(&w.blob)}).to_string();
    holdfast_crypto::local::write_private(path, text.as_bytes()).map_err(|e| io(path, e))?;
    Ok(())
}

/// Wraps the key in `path` again under the KMS's current KEK, unless it already is. Returns
/// whether it changed; a missing file is left alone.
pub async fn rewrap(kms: &AnyKms, path: &Path, context: &str) -> Result<bool> {
    let current = kms
        .current_kek()
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    if kek_of(path)?.is_none_or(|k| k == current) {
        return Ok(false);
    }
    let Some(key) = load(kms, path, context).await? else {
        return Ok(false);
    };
    store(kms, path, context, &key).await?;
    Ok(true)
}

/// Loads the key in `path`, or makes, wraps and stores a new one.
pub async fn load_or_create(kms: &AnyKms, path: &Path, context: &str) -> Result<DataKey> {
    if let Some(k) = load(kms, path, context).await? {
        return Ok(k);
    }
    let key = DataKey::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
    store(kms, path, context, &key).await?;
    Ok(key)
}
