//! Blob storage for attachments and overflow batches, and the signed URLs that let the SDKs
//! upload and download them without an Authorization header.
//!
//! Guarantees:
//! * Blobs live under `<org id>/<kind>/<sha256(key)>`, in a folder of the data dir or in an
//!   S3-compatible bucket (`s3`): a caller-chosen key can never name a place outside its
//!   organization's folder.
//! * Local writes go to a temporary file that is synced and renamed, so a blob is whole or
//!   absent; an S3 PUT is whole or absent by itself, and is encrypted by the server.
//! * Uploads are streamed ([`BlobStore::put_stream`]): to a local temporary file as they
//!   arrive, sealed in segments when encryption at rest is on, and refused as soon as they
//!   pass the size their grant allows. (For S3 the upload is gathered, within that size,
//!   before its one PUT.)
//! * A signed URL carries its purpose, organization, key and expiry, authenticated with an
//!   HMAC under a key derived from the server's pepper. It is unguessable, expires, and works
//!   only for the one purpose (upload or download of one blob) it was made for.

use crate::{Result, ServiceError, random};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    Attachment,
    Overflow,
    /// An object in the bucket configured for external attachments, read only; its key is
    /// the object's name in that bucket.
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Upload,
    Download,
}

impl BlobKind {
    /// What an upload of this kind is recorded as; external objects are never uploaded.
    pub fn upload_kind(self) -> Option<holdfast_store::UploadKind> {
        match self {
            Self::Attachment => Some(holdfast_store::UploadKind::Attachment),
            Self::Overflow => Some(holdfast_store::UploadKind::Overflow),
            Self::External => None,
        }
    }
}

/// What a signed URL grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub purpose: Purpose,
    pub kind: BlobKind,
    pub org_id: String,
    pub key: String,
    pub expires: i64,
    /// The content type a download is served with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Uploads: the grant's id, recorded in the store so that it is used once, and the most
    /// bytes it allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadLimit {
    pub id: String,
    pub max_bytes: u64,
}

/// Where a streamed upload is written: a file, sealed or not.
enum Sink {
    Plain(std::io::BufWriter<std::fs::File>),
    Sealed(holdfast_crypto::stream::Sealer<std::io::BufWriter<std::fs::File>>),
    Memory(Vec<u8>),
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(w) => w.write_all(bytes),
            Self::Sealed(w) => w.write_all(bytes),
            Self::Memory(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
        }
    }
}

enum Backend {
    Local(PathBuf),
    S3(Box<crate::s3::S3>),
}

pub struct BlobStore {
    backend: Backend,
    /// The bucket `ExternalAttachment` references may resolve in, when one is configured.
    /// With the prefix its objects must have, `{org_id}` standing for the organization.
    external: Option<(crate::s3::S3, String)>,
    signing_key: SecretBox<[u8; 32]>,
    /// Encrypts blobs at rest when set (shared with the threads that open downloads).
    at_rest: Option<std::sync::Arc<holdfast_crypto::DataKey>>,
}

fn no_external() -> ServiceError {
    ServiceError::Internal("no bucket is configured for external attachments".into())
}

/// The first bytes of a blob encrypted at rest.
const SEALED_MAGIC: &[u8] = b"HFBLOB1\0";

impl BlobStore {
    /// `at_rest`: the storage key; blobs are then sealed with AES-256-GCM, bound to their
    /// organization, kind and key, so a file moved to another place does not open.
    pub fn new(
        root: PathBuf,
        signing_key: SecretBox<[u8; 32]>,
        at_rest: Option<holdfast_crypto::DataKey>,
    ) -> Self {
        Self {
            backend: Backend::Local(root),
            external: None,
            signing_key,
            at_rest: at_rest.map(std::sync::Arc::new),
        }
    }

    /// Blobs in an S3-compatible bucket (sealed with `at_rest` as well, when it is set).
    pub fn s3(
        s3: crate::s3::S3,
        signing_key: SecretBox<[u8; 32]>,
        at_rest: Option<holdfast_crypto::DataKey>,
    ) -> Self {
        Self {
            backend: Backend::S3(Box::new(s3)),
            external: None,
            signing_key,
            at_rest: at_rest.map(std::sync::Arc::new),
        }
    }

    /// Lets `ExternalAttachment` references to objects in `bucket` resolve (read only), for
    /// an organization only under `prefix` (`{org_id}` in it stands for the organization's
    /// id), so that no organization can name another's objects.
    #[must_use]
    pub fn with_external(mut self, bucket: crate::s3::S3, prefix: String) -> Self {
        self.external = Some((bucket, prefix));
        self
    }

    /// The bucket external attachments resolve in, and the prefix an organization's objects
    /// there have; `None` when none is configured.
    pub fn external_bucket(&self, org_id: &str) -> Option<(&str, String)> {
        self.external
            .as_ref()
            .map(|(s3, prefix)| (s3.bucket(), prefix.replace("{org_id}", org_id)))
    }

    /// The size of object `key` in the external bucket; `None` when it is missing.
    pub async fn external_size(&self, key: &str) -> Result<Option<u64>> {
        let (s3, _) = self.external.as_ref().ok_or_else(no_external)?;
        s3.size_of(key).await
    }

    /// Replicas that share a bucket must share the keys that seal its blobs and sign their
    /// URLs (`storage.key`, `pepper.wrapped`). The bucket keeps a check value of both,
    /// `holdfast-key-check.json` (HMACs under each key, which reveal nothing of them): the
    /// first server writes it, and a server with other keys fails here, at start, instead of
    /// failing on every blob another replica wrote. A no-op for local blobs.
    pub async fn check_shared_keys(&self) -> Result<()> {
        const NAME: &str = "holdfast-key-check.json";
        let Backend::S3(s3) = &self.backend else {
            return Ok(());
        };
        let check = |key: &[u8], what: &str| -> Result<String> {
            let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            mac.update(format!("holdfast key check v1: {what}").as_bytes());
            Ok(random::hex(&mac.finalize().into_bytes()))
        };
        let mine = serde_json::json!({
            "version": 1,
            "signing": check(self.signing_key.expose_secret(), "signing")?,
            "sealing": match &self.at_rest {
                Some(k) => check(k.expose(), "sealing")?,
                None => "none".to_owned(),
            },
        });
        let differs = |theirs: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(theirs).map_or(true, |t| t != mine)
        };
        let theirs = match s3.get(NAME).await? {
            Some(theirs) => theirs,
            None => {
                s3.put(NAME, mine.to_string().into_bytes()).await?;
                // Two servers starting at once: the one whose value was overwritten sees it.
                s3.get(NAME).await?.unwrap_or_default()
            }
        };
        if differs(&theirs) {
            return Err(ServiceError::Internal(format!(
                "the bucket's blobs are sealed or signed under other keys than this server's \
                 ({NAME} differs): replicas that share a bucket must share the data dir's \
                 storage.key and pepper.wrapped, and the same encrypt_at_rest"
            )));
        }
        Ok(())
    }

    fn aad(org_id: &str, kind: BlobKind, key: &str) -> Vec<u8> {
        format!("holdfast-blob|v1|{org_id}|{kind:?}|{key}").into_bytes()
    }

    /// `<org id>/<kind>/<sha256(key)>`.
    fn name(org_id: &str, kind: BlobKind, key: &str) -> Result<String> {
        if org_id.is_empty()
            || !org_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ServiceError::Internal("bad organization id".into()));
        }
        let name = random::hex(&sha2::Sha256::digest(key.as_bytes()));
        let kind = match kind {
            BlobKind::Attachment => "attachments",
            BlobKind::Overflow => "overflow",
            BlobKind::External => {
                return Err(ServiceError::Internal(
                    "external objects are not stored here".into(),
                ));
            }
        };
        Ok(format!("{org_id}/{kind}/{name}"))
    }

    /// Streams an upload into place, whole or not at all, refusing it (`TooLarge`) as soon as
    /// it passes `max` bytes; returns its size. A failed chunk (the client went away, a read
    /// timed out) fails the upload.
    pub async fn put_stream<S, C, E>(
        &self,
        org_id: &str,
        kind: BlobKind,
        key: &str,
        mut chunks: S,
        max: u64,
    ) -> Result<u64>
    where
        S: futures::Stream<Item = std::result::Result<C, E>> + Unpin,
        C: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        use futures::StreamExt;
        let name = Self::name(org_id, kind, key)?;
        let io = |e: std::io::Error| ServiceError::Internal(format!("blob write: {e}"));
        let (mut sink, tmp) = match &self.backend {
            Backend::Local(root) => {
                let path = root.join(&name);
                let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
                std::fs::create_dir_all(&dir).map_err(io)?;
                let tmp = dir.join(format!(".tmp-{}", random::uuid()?));
                let file = std::io::BufWriter::with_capacity(
                    256 * 1024,
                    std::fs::File::create(&tmp).map_err(io)?,
                );
                let sink = match &self.at_rest {
                    Some(k) => Sink::Sealed(
                        holdfast_crypto::stream::Sealer::new(
                            k,
                            &Self::aad(org_id, kind, key),
                            file,
                        )
                        .map_err(|e| ServiceError::Internal(e.to_string()))?,
                    ),
                    None => Sink::Plain(file),
                };
                (sink, Some(tmp))
            }
            Backend::S3(_) => (Sink::Memory(Vec::new()), None),
        };
        let cleanup = |tmp: &Option<PathBuf>| {
            if let Some(t) = tmp {
                let _ = std::fs::remove_file(t);
            }
        };
        let mut total: u64 = 0;
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    cleanup(&tmp);
                    return Err(ServiceError::bad(format!("upload not received whole: {e}")));
                }
            };
            let bytes = chunk.as_ref();
            total = total.saturating_add(bytes.len() as u64);
            if total > max {
                cleanup(&tmp);
                return Err(ServiceError::TooLarge(format!(
                    "the upload is larger than the {max} bytes its URL allows"
                )));
            }
            if let Err(e) = sink.write(bytes) {
                cleanup(&tmp);
                return Err(io(e));
            }
        }
        let finished = match sink {
            Sink::Memory(bytes) => {
                return self.put(org_id, kind, key, &bytes).await.map(|()| total);
            }
            Sink::Plain(w) => w.into_inner().map_err(|e| e.into_error()),
            Sink::Sealed(w) => w
                .finish()
                .and_then(|w| w.into_inner().map_err(|e| e.into_error())),
        };
        let (Some(tmp), Backend::Local(root)) = (tmp, &self.backend) else {
            return Err(ServiceError::Internal("blob write: no local file".into()));
        };
        let path = root.join(&name);
        let placed = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let file = finished?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("blob write: {e}")))?;
        placed.map_err(io)?;
        Ok(total)
    }

    pub async fn put(&self, org_id: &str, kind: BlobKind, key: &str, bytes: &[u8]) -> Result<()> {
        let name = Self::name(org_id, kind, key)?;
        let bytes = match &self.at_rest {
            Some(k) => {
                let body = holdfast_crypto::seal(k, &Self::aad(org_id, kind, key), bytes)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                [SEALED_MAGIC, body.as_slice()].concat()
            }
            None => bytes.to_vec(),
        };
        match &self.backend {
            Backend::Local(root) => write_file(&root.join(name), &bytes),
            Backend::S3(s3) => s3.put(&name, bytes).await,
        }
    }

    pub async fn get(&self, org_id: &str, kind: BlobKind, key: &str) -> Result<Vec<u8>> {
        let name = Self::name(org_id, kind, key)?;
        let bytes = match &self.backend {
            Backend::Local(root) => match std::fs::read(root.join(&name)) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(ServiceError::Internal(format!("blob read: {e}"))),
            },
            Backend::S3(s3) => s3.get(&name).await?,
        };
        let bytes = bytes.ok_or_else(|| ServiceError::NotFound("blob".into()))?;
        if holdfast_crypto::stream::is_sealed(&bytes) {
            let k = self.at_rest.as_ref().ok_or_else(|| {
                ServiceError::Internal("blob is encrypted but no storage key is configured".into())
            })?;
            let mut out = Vec::with_capacity(bytes.len());
            holdfast_crypto::stream::open_to(
                k,
                &Self::aad(org_id, kind, key),
                bytes.as_slice(),
                &mut out,
            )
            .map_err(|e| ServiceError::Internal(format!("blob {name}: {e}")))?;
            return Ok(out);
        }
        match (bytes.strip_prefix(SEALED_MAGIC), &self.at_rest) {
            (Some(body), Some(k)) => holdfast_crypto::open(k, &Self::aad(org_id, kind, key), body)
                .map(|p| p.to_vec())
                .map_err(|e| ServiceError::Internal(format!("blob {name}: {e}"))),
            (Some(_), None) => Err(ServiceError::Internal(
                "blob is encrypted but no storage key is configured".into(),
            )),
            // Written before encryption at rest was on.
            (None, _) => Ok(bytes),
        }
    }

    /// Reads a blob as a stream of pieces, so that a download never holds it whole: a local
    /// blob sealed in segments is opened one segment at a time as the client takes it (a
    /// segment that does not open ends the stream with an error). Blobs in a bucket, and
    /// local ones from before segments, are read whole (they are within the upload limit).
    pub async fn get_stream(
        &self,
        org_id: &str,
        kind: BlobKind,
        key: &str,
        max: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<std::result::Result<Vec<u8>, String>>> {
        if kind == BlobKind::External {
            let (s3, _) = self.external.as_ref().ok_or_else(no_external)?;
            return s3.get_stream(key, max).await;
        }
        let name = Self::name(org_id, kind, key)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let Backend::Local(root) = &self.backend else {
            let bytes = self.get(org_id, kind, key).await?;
            let _ = tx.send(Ok(bytes)).await;
            return Ok(rx);
        };
        let path = root.join(&name);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ServiceError::NotFound("blob".into()));
            }
            Err(e) => return Err(ServiceError::Internal(format!("blob read: {e}"))),
        };
        let mut head = [0u8; 8];
        let sealed_stream = {
            use std::io::{Read, Seek};
            let n = file.read(&mut head).unwrap_or(0);
            file.rewind()
                .map_err(|e| ServiceError::Internal(format!("blob read: {e}")))?;
            head.get(..n)
                .is_some_and(|h| h == holdfast_crypto::stream::MAGIC.as_slice())
        };
        if !sealed_stream {
            let bytes = self.get(org_id, kind, key).await?;
            let _ = tx.send(Ok(bytes)).await;
            return Ok(rx);
        }
        let k = self.at_rest.clone().ok_or_else(|| {
            ServiceError::Internal("blob is encrypted but no storage key is configured".into())
        })?;
        let aad = Self::aad(org_id, kind, key);
        tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter(tx.clone());
            let reader = std::io::BufReader::with_capacity(256 * 1024, file);
            if let Err(e) = holdfast_crypto::stream::open_to(&k, &aad, reader, &mut out) {
                let _ = tx.blocking_send(Err(format!("blob {name}: {e}")));
            }
        });
        Ok(rx)
    }

    pub async fn delete(&self, org_id: &str, kind: BlobKind, key: &str) -> Result<()> {
        let name = Self::name(org_id, kind, key)?;
        match &self.backend {
            Backend::Local(root) => match std::fs::remove_file(root.join(name)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(ServiceError::Internal(format!("blob delete: {e}"))),
            },
            Backend::S3(s3) => s3.delete(&name).await,
        }
    }

    /// The token part of a signed URL (`/signed/<token>`).
    pub fn sign(&self, grant: &Grant) -> Result<String> {
        sign_token(self.signing_key.expose_secret(), grant)
    }

    /// Checks a token for the given purpose at time `now` (unix seconds).
    pub fn verify(&self, token: &str, purpose: Purpose, now: i64) -> Result<Grant> {
        let invalid = || ServiceError::Forbidden("invalid or expired signed URL".into());
        let grant: Grant =
            open_token(self.signing_key.expose_secret(), token)?.ok_or_else(invalid)?;
        if grant.purpose != purpose || grant.expires <= now {
            return Err(invalid());
        }
        Ok(grant)
    }
}

fn token_mac(key: &[u8; 32], payload: &str) -> Result<Vec<u8>> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .map_err(|_| ServiceError::Internal("bad signing key".into()))?;
    mac.update(payload.as_bytes());
    Ok(mac.finalize().into_bytes().to_vec())
}

/// A signed token: `base64url(JSON of what) . base64url(HMAC-SHA256 of that under key)`.
pub(crate) fn sign_token<T: Serialize>(key: &[u8; 32], what: &T) -> Result<String> {
    let json = serde_json::to_vec(what).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let payload = URL_SAFE_NO_PAD.encode(json);
    let sig = URL_SAFE_NO_PAD.encode(token_mac(key, &payload)?);
    Ok(format!("{payload}.{sig}"))
}

/// What a token [`sign_token`] made under `key` holds; `None` when its signature does not
/// match (compared in constant time) or it does not parse.
pub(crate) fn open_token<T: serde::de::DeserializeOwned>(
    key: &[u8; 32],
    token: &str,
) -> Result<Option<T>> {
    let Some((payload, sig)) = token.split_once('.') else {
        return Ok(None);
    };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
        return Ok(None);
    };
    let expected = token_mac(key, payload)?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        sig.as_slice(),
        expected.as_slice(),
    )) {
        return Ok(None);
    }
    Ok(URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok()))
}

/// Hands what is written to it to a download, a piece at a time; fails once the download is
/// gone.
pub(crate) struct ChannelWriter(
    pub(crate) tokio::sync::mpsc::Sender<std::result::Result<Vec<u8>, String>>,
);

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes.to_vec()))
            .map_err(|_| std::io::Error::other("the download was abandoned"))?;
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes a file whole or not at all: a synced temporary file renamed into place.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |e: std::io::Error| ServiceError::Internal(format!("blob write: {e}"));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".tmp-{}", random::uuid()?));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> BlobStore {
        let root = std::env::temp_dir().join(format!("hf-blobs-{}", random::uuid().unwrap()));
        BlobStore::new(root, SecretBox::new(Box::new([3u8; 32])), None)
    }

    #[test]
    fn signed_urls_are_single_purpose_and_expire() {
        let s = store();
        let grant = Grant {
            purpose: Purpose::Upload,
            kind: BlobKind::Attachment,
            org_id: "o".into(),
            key: "k".into(),
            expires: 100,
            content_type: None,
            upload: None,
        };
        let token = s.sign(&grant).unwrap();
        assert_eq!(s.verify(&token, Purpose::Upload, 99).unwrap(), grant);
        assert!(s.verify(&token, Purpose::Download, 99).is_err());
        assert!(s.verify(&token, Purpose::Upload, 100).is_err());
        let (payload, sig) = token.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            br#"{"purpose":"upload","kind":"attachment","org_id":"x","key":"k","expires":999}"#,
        );
        assert!(
            s.verify(&format!("{forged}.{sig}"), Purpose::Upload, 99)
                .is_err()
        );
        assert!(
            s.verify(&format!("{payload}.AAAA"), Purpose::Upload, 99)
                .is_err()
        );
    }

    #[tokio::test]
    async fn blobs_round_trip_inside_the_org_folder() {
        let s = store();
        let key = "../../etc/passwd";
        s.put("org-1", BlobKind::Overflow, key, b"hello")
            .await
            .unwrap();
        assert_eq!(
            s.get("org-1", BlobKind::Overflow, key).await.unwrap(),
            b"hello"
        );
        assert!(s.get("org-2", BlobKind::Overflow, key).await.is_err());
        assert!(s.put("../x", BlobKind::Overflow, "k", b"").await.is_err());
        s.delete("org-1", BlobKind::Overflow, key).await.unwrap();
        assert!(matches!(
            s.get("org-1", BlobKind::Overflow, key).await,
            Err(ServiceError::NotFound(_))
        ));
    }
}
