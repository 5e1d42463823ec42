//! Authentication of export manifests.
//!
//! Guarantee: `export open` opens only a manifest this installation wrote. Every manifest
//! carries an HMAC-SHA256 over its contents under a key derived from a 256-bit key made for
//! the export (for a sealed export, its file key; for a plaintext one, a key made only for
//! this), which the manifest keeps only wrapped by the KMS and bound to the export's id. A
//! manifest replaced by another (a plaintext one in place of a sealed one, another export's,
//! or one edited by hand) does not authenticate. The wrapping of keys is left out of what is
//! authenticated, so that `keys rotate-kek` can re-wrap them.

use crate::export::{Authentication, Manifest};
use crate::{Result, ServiceError, random};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use holdfast_crypto::{AnyKms, DataKey, Kms, Wrapped};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    for p in parts {
        mac.update(p);
    }
    Ok(mac.finalize().into_bytes().to_vec())
}

/// What is authenticated: the manifest without its authentication and key wrapping.
fn signed_bytes(m: &Manifest) -> Result<Vec<u8>> {
    let mut m = m.clone();
    m.authentication = None;
    if let Some(e) = m.encryption.as_mut() {
        e.kek_id.clear();
        e.wrapped_key.clear();
    }
    serde_json::to_vec(&m).map_err(|e| ServiceError::Internal(e.to_string()))
}

fn tag(key: &DataKey, m: &Manifest) -> Result<Vec<u8>> {
    let mac_key = hmac(key.expose(), &[b"holdfast export manifest v1"])?;
    hmac(&mac_key, &[&signed_bytes(m)?])
}

/// Authenticates `m` (whose other fields are final) under `key`, wrapped by `kms` for it.
pub async fn sign(kms: &AnyKms, key: &DataKey, context: &str, m: &mut Manifest) -> Result<()> {
    let wrapped = kms
        .wrap(key, context)
        .await
        .map_err(|e| ServiceError::Internal(format!("wrapping the manifest key: {e}")))?;
    m.authentication = Some(Authentication {
        kek_id: wrapped.kek_id,
        wrapped_key: B64.encode(&wrapped.blob),
        key_context: context.to_owned(),
        hmac_sha256: random::hex(&tag(key, m)?),
    });
    Ok(())
}

/// Unwraps the manifest's key with `kms`.
pub async fn key(kms: &AnyKms, m: &Manifest) -> Result<Option<DataKey>> {
    let Some(a) = &m.authentication else {
        return Ok(None);
    };
    let wrapped = Wrapped {
        kek_id: a.kek_id.clone(),
        blob: B64
            .decode(&a.wrapped_key)
            .map_err(|_| ServiceError::bad("manifest.json: the wrapped key is not base64"))?,
    };
    kms.unwrap(&wrapped, &a.key_context)
        .await
        .map(Some)
        .map_err(|err| {
            ServiceError::bad(format!(
                "the manifest key does not unwrap with this KMS (it was wrapped by {}): {err}",
                a.kek_id
            ))
        })
}

/// Checks a manifest's authentication; one without any is refused unless `allow_missing`
/// (exports made before manifests were authenticated).
pub async fn verify(
    kms: &AnyKms,
    m: &Manifest,
    expected_context: &str,
    allow_missing: bool,
) -> Result<()> {
    let Some(a) = &m.authentication else {
        if allow_missing {
            tracing::warn!(export = %m.id, "opening an export whose manifest is not authenticated");
            return Ok(());
        }
        return Err(ServiceError::bad(
            "manifest.json is not authenticated: it was not written by this version of \
             holdfast (an export made before manifests were authenticated opens with \
             --unauthenticated)",
        ));
    };
    if a.key_context != expected_context {
        return Err(ServiceError::bad(
            "manifest.json is not authentic: it belongs to another export",
        ));
    }
    let Some(key) = key(kms, m).await? else {
        return Err(ServiceError::bad("manifest.json is not authenticated"));
    };
    let expected = tag(&key, m)?;
    let given = random::unhex(&a.hmac_sha256).unwrap_or_default();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_slice(),
        given.as_slice(),
    )) {
        return Err(ServiceError::bad(
            "manifest.json is not authentic: it was altered or replaced",
        ));
    }
    Ok(())
}
