//! AWS KMS as the key-encryption key: `Encrypt` and `Decrypt` over its JSON API, signed with
//! Signature Version 4, with the organization id as the encryption context. Works against
//! AWS and against KMS-compatible servers (`endpoint`).

use crate::aead::DataKey;
use crate::aws_creds::CredentialChain;
use crate::kms::{Kms, Wrapped};
use crate::retry::Outcome;
use crate::sigv4::{self, Credentials};
use crate::{CryptoError, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
const PREFIX: &str = "aws:";

/// Where the KEK lives and the credentials to use it.
pub struct AwsConfig {
    /// Key id or ARN of a symmetric KMS key.
    pub key_id: String,
    pub region: String,
    /// `https://kms.<region>.amazonaws.com` unless set (a KMS-compatible server).
    pub endpoint: Option<String>,
    /// From the standard chain ([`crate::aws_creds`]).
    pub credentials: CredentialChain,
}

pub struct AwsKms {
    config: AwsConfig,
    endpoint: String,
    host: String,
    http: reqwest::Client,
}

impl AwsKms {
    pub fn new(config: AwsConfig) -> Result<Self> {
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://kms.{}.amazonaws.com", config.region));
        let (endpoint, host) = sigv4::origin_and_host(&endpoint)
            .ok_or_else(|| CryptoError::Kms(format!("bad endpoint {endpoint:?}")))?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| CryptoError::Kms(e.to_string()))?;
        Ok(Self {
            config,
            endpoint,
            host,
            http,
        })
    }

    /// Headers for one signed call (SigV4, service `kms`).
    fn sign(
        &self,
        credentials: &Credentials,
        target: &str,
        body: &str,
        now: time::OffsetDateTime,
    ) -> Result<Vec<(String, String)>> {
        sigv4::sign(
            sigv4::Request {
                method: "POST",
                host: &self.host,
                path: "/",
                query: "",
                headers: vec![
                    (
                        "content-type".to_owned(),
                        "application/x-amz-json-1.1".to_owned(),
                    ),
                    ("x-amz-target".to_owned(), format!("TrentService.{target}")),
                ],
                payload_sha256: &sigv4::sha256_hex(body.as_bytes()),
            },
            credentials,
            &self.config.region,
            "kms",
            now,
        )
    }

    /// One call of the KMS JSON API.
    /// Retried as `crate::retry` allows (encrypt and decrypt are idempotent).
    pub async fn call(&self, target: &str, body: Value) -> Result<Value> {
        let body = body.to_string();
        let text = crate::retry::retry("kms", || self.attempt(target, &body)).await?;
        serde_json::from_str(&text).map_err(|e| CryptoError::Kms(format!("{target}: {e}")))
    }

    async fn attempt(&self, target: &str, body: &str) -> Outcome<String, CryptoError> {
        let credentials = match self.config.credentials.get().await {
            Ok(c) => c,
            Err(e) => return Outcome::Fail(e),
        };
        #[allow(clippy::disallowed_methods)] // request signing needs the real time
        let now = time::OffsetDateTime::now_utc();
        let signed = match self.sign(&credentials, target, body, now) {
            Ok(s) => s,
            Err(e) => return Outcome::Fail(e),
        };
        let mut req = self
            .http
            .post(format!("{}/", self.endpoint))
            .body(body.to_owned());
        for (k, v) in signed {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        crate::retry::http_outcome(target, req).await
    }

    fn context(context: &str) -> Value {
        json!({ "holdfast_org": context })
    }
}

impl Kms for AwsKms {
    async fn wrap(&self, key: &DataKey, context: &str) -> Result<Wrapped> {
        let out = self
            .call(
                "Encrypt",
                json!({"KeyId": self.config.key_id, "Plaintext": B64.encode(key.expose()),
                       "EncryptionContext": Self::context(context)}),
            )
            .await?;
        let blob = out
            .get("CiphertextBlob")
            .unwrap_or(&Value::Null)
            .as_str()
            .and_then(|b| B64.decode(b).ok())
            .ok_or_else(|| CryptoError::Kms("Encrypt returned no CiphertextBlob".into()))?;
        Ok(Wrapped {
            kek_id: self.current_kek()?,
            blob,
        })
    }

    async fn unwrap(&self, wrapped: &Wrapped, context: &str) -> Result<DataKey> {
        let key_id = wrapped
            .kek_id
            .strip_prefix(PREFIX)
            .ok_or_else(|| CryptoError::UnknownKek(wrapped.kek_id.clone()))?;
        let out = self
            .call(
                "Decrypt",
                json!({"KeyId": key_id, "CiphertextBlob": B64.encode(&wrapped.blob),
                       "EncryptionContext": Self::context(context)}),
            )
            .await?;
        let plain = out
            .get("Plaintext")
            .unwrap_or(&Value::Null)
            .as_str()
            .and_then(|b| B64.decode(b).ok())
            .map(zeroize::Zeroizing::new)
            .ok_or(CryptoError::Open)?;
        DataKey::from_bytes(&plain)
    }

    fn current_kek(&self) -> Result<String> {
        Ok(format!("{PREFIX}{}", self.config.key_id))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The signature is deterministic for a time and body, is scoped to the date, region and
    /// `kms`, signs the expected headers, and changes with the operation. (The signing itself
    /// is checked against AWS's worked example in `sigv4`.)
    #[test]
    fn signing_is_deterministic_and_scoped() {
        let creds = || Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let kms = AwsKms::new(AwsConfig {
            key_id: "k".into(),
            region: "us-east-1".into(),
            endpoint: Some("http://127.0.0.1:5000".into()),
            credentials: CredentialChain::fixed(creds()).unwrap(),
        })
        .unwrap();
        let c = creds();
        let now = time::macros::datetime!(2015-08-30 12:36:00 UTC);
        let a = kms.sign(&c, "Encrypt", "{}", now).unwrap();
        let b = kms.sign(&c, "Encrypt", "{}", now).unwrap();
        assert_eq!(a, b);
        let auth = &a.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
        ));
        let c = kms.sign(&c, "Decrypt", "{}", now).unwrap();
        assert_ne!(a, c);
    }
}
