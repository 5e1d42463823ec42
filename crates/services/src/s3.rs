//! Blobs in an S3-compatible bucket, each object written with server-side encryption.
//!
//! Requests are signed with SigV4 (`holdfast_crypto::sigv4`), bodies included. Every PUT asks
//! for server-side encryption (`AES256`, or `aws:kms` with an optional key id) and checks that
//! the answer confirms it: a server that ignored the header would otherwise keep the object in
//! the clear, so an unconfirmed write is an error and the object is deleted.

use crate::{Result, ServiceError};
use holdfast_crypto::aws_creds::CredentialChain;
use holdfast_crypto::sigv4;

/// The server-side encryption asked for on every object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// Keys managed by the storage service (`AES256`).
    S3,
    /// A KMS key (`aws:kms`); the bucket's default key when none is named.
    Kms { key_id: Option<String> },
}

impl Sse {
    fn header(&self) -> &'static str {
        match self {
            Self::S3 => "AES256",
            Self::Kms { .. } => "aws:kms",
        }
    }
}

pub struct S3Config {
    pub bucket: String,
    /// Prepended to every object name (for example `holdfast/`).
    pub prefix: String,
    pub region: String,
    /// `https://s3.<region>.amazonaws.com` unless set (an S3-compatible server); requests use
    /// path-style addressing (`/<bucket>/<key>`).
    pub endpoint: Option<String>,
    pub sse: Sse,
    /// From the standard chain (`holdfast_crypto::aws_creds`).
    pub credentials: CredentialChain,
}

pub struct S3 {
    config: S3Config,
    /// `scheme://host`.
    origin: String,
    host: String,
    http: reqwest::Client,
}

fn failed(what: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("object storage {what}: {e}"))
}

impl S3 {
    pub fn new(config: S3Config) -> Result<Self> {
        if config.bucket.is_empty()
            || !config
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(ServiceError::Internal(format!(
                "bad bucket name {:?}",
                config.bucket
            )));
        }
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", config.region));
        let (origin, host) = sigv4::origin_and_host(&endpoint)
            .ok_or_else(|| ServiceError::Internal(format!("bad endpoint {endpoint:?}")))?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| failed("client", e))?;
        Ok(Self {
            config,
            origin,
            host,
            http,
        })
    }

    /// `s3://<bucket>/<prefix>`: where object names start, for messages.
    pub fn url_prefix(&self) -> String {
        format!("s3://{}/{}", self.config.bucket, self.config.prefix)
    }

    /// The request path of an object: bucket, prefix and name, each part encoded.
    fn path(&self, name: &str) -> String {
        let key = format!("{}{name}", self.config.prefix);
        let encoded: Vec<String> = key.split('/').map(sigv4::uri_encode).collect();
        format!(
            "/{}/{}",
            sigv4::uri_encode(&self.config.bucket),
            encoded.join("/")
        )
    }

    /// Sends one request, retried as `holdfast_crypto::retry` allows (every request here is
    /// a GET, PUT, HEAD or DELETE of one object: idempotent); the last answer is returned,
    /// whatever its status.
    async fn send(
        &self,
        method: reqwest::Method,
        name: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<reqwest::Response> {
        use holdfast_crypto::retry::{Outcome, retry, retryable_status};
        let path = self.path(name);
        let payload = sigv4::sha256_hex(&body);
        let body = bytes::Bytes::from(body);
        retry("s3", || async {
            let credentials = match self.config.credentials.get().await {
                Ok(c) => c,
                Err(e) => return Outcome::Fail(failed("credentials", e)),
            };
            let mut headers = headers.clone();
            headers.push(("x-amz-content-sha256".into(), payload.clone()));
            #[allow(clippy::disallowed_methods)] // request signing needs the real time
            let now = time::OffsetDateTime::now_utc();
            let signed = match sigv4::sign(
                sigv4::Request {
                    method: method.as_str(),
                    host: &self.host,
                    path: &path,
                    query: "",
                    headers,
                    payload_sha256: &payload,
                },
                &credentials,
                &self.config.region,
                "s3",
                now,
            ) {
                Ok(s) => s,
                Err(e) => return Outcome::Fail(failed("signing", e)),
            };
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.origin))
                .body(body.clone());
            for (k, v) in signed {
                if k != "host" {
                    req = req.header(k, v);
                }
            }
            match req.send().await {
                Ok(r) if retryable_status(r.status().as_u16()) => {
                    Outcome::Retry(Self::refuse(method.as_str(), r).await)
                }
                Ok(r) => Outcome::Done(r),
                Err(e) if e.is_connect() || e.is_timeout() => {
                    Outcome::Retry(failed(method.as_str(), e))
                }
                Err(e) => Outcome::Fail(failed(method.as_str(), e)),
            }
        })
        .await
    }

    async fn refuse(what: &str, resp: reqwest::Response) -> ServiceError {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        failed(
            what,
            format!("{status}: {}", text.chars().take(300).collect::<String>()),
        )
    }

    /// Writes an object, encrypted by the server; fails unless the server confirms that.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let mut headers = vec![(
            "x-amz-server-side-encryption".to_owned(),
            self.config.sse.header().to_owned(),
        )];
        if let Sse::Kms {
            key_id: Some(key_id),
        } = &self.config.sse
        {
            headers.push((
                "x-amz-server-side-encryption-aws-kms-key-id".to_owned(),
                key_id.clone(),
            ));
        }
        let resp = self
            .send(reqwest::Method::PUT, name, headers, bytes)
            .await?;
        if !resp.status().is_success() {
            return Err(Self::refuse("PUT", resp).await);
        }
        let confirmed = resp
            .headers()
            .get("x-amz-server-side-encryption")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == self.config.sse.header());
        if !confirmed {
            // Best effort: the caller sees the error either way.
            let _ = self.delete(name).await;
            return Err(failed(
                "PUT",
                "the server did not confirm server-side encryption; the object was removed",
            ));
        }
        Ok(())
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let resp = self
            .send(reqwest::Method::GET, name, Vec::new(), Vec::new())
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::refuse("GET", resp).await);
        }
        let bytes = resp.bytes().await.map_err(|e| failed("GET", e))?;
        Ok(Some(bytes.to_vec()))
    }

    /// An object's headers (`HEAD`), `None` if it is missing.
    async fn head(&self, name: &str) -> Result<Option<reqwest::header::HeaderMap>> {
        let resp = self
            .send(reqwest::Method::HEAD, name, Vec::new(), Vec::new())
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::refuse("HEAD", resp).await);
        }
        Ok(Some(resp.headers().clone()))
    }

    /// The server-side encryption an object is stored with, `None` if it is missing.
    pub async fn encryption_of(&self, name: &str) -> Result<Option<String>> {
        Ok(self.head(name).await?.map(|h| {
            h.get("x-amz-server-side-encryption")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned()
        }))
    }

    /// An object's size in bytes, `None` if it is missing (or the server did not say).
    pub async fn size_of(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.head(name).await?.and_then(|h| {
            h.get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        }))
    }

    /// Reads an object as a stream of pieces, ending it with an error past `max` bytes; a
    /// missing object is `NotFound`.
    pub async fn get_stream(
        &self,
        name: &str,
        max: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<std::result::Result<Vec<u8>, String>>> {
        let mut resp = self
            .send(reqwest::Method::GET, name, Vec::new(), Vec::new())
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(ServiceError::NotFound("object".into()));
        }
        if !resp.status().is_success() {
            return Err(Self::refuse("GET", resp).await);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        sent += chunk.len() as u64;
                        if sent > max {
                            let _ = tx.send(Err(format!("object is over {max} bytes"))).await;
                            return;
                        }
                        if tx.send(Ok(chunk.to_vec())).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(format!("object read: {e}"))).await;
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// The bucket this client reads and writes.
    pub fn bucket(&self) -> &str {
        &self.config.bucket
    }

    /// Deletes an object; deleting a missing one succeeds.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let resp = self
            .send(reqwest::Method::DELETE, name, Vec::new(), Vec::new())
            .await?;
        if !(resp.status().is_success() || resp.status() == reqwest::StatusCode::NOT_FOUND) {
            return Err(Self::refuse("DELETE", resp).await);
        }
        Ok(())
    }
}
