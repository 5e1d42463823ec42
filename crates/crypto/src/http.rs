//! Key-encryption keys in GCP Cloud KMS, Azure Key Vault or HashiCorp Vault's transit engine,
//! over their documented HTTP APIs with a bearer token:
//!
//! * GCP: `POST {endpoint}/v1/{key}:encrypt` / `:decrypt` with `plaintext` / `ciphertext`
//!   and `additionalAuthenticatedData` (`Authorization: Bearer`).
//! * Azure: `POST {key}/wrapkey` / `unwrapkey` `?api-version=7.4` with `alg` `RSA-OAEP-256`
//!   and a base64url `value` (`Authorization: Bearer`); `key` is the key's URL.
//! * Vault: `POST {endpoint}/v1/{mount}/encrypt/{key}` / `decrypt/{key}` with `plaintext` /
//!   `ciphertext` and `context` (`X-Vault-Token`).
//!
//! The token is fixed, or read from a file at every call ([`Token::File`]), so that whatever
//! renews it (Vault Agent's token sink, a workload-identity token file, a sidecar that runs
//! `gcloud auth print-access-token`) takes effect without a restart; or, on GCP and Azure,
//! fetched from the instance's metadata service and renewed before it expires
//! ([`Token::Metadata`]).
//!
//! Every provider wraps `data key ‖ SHA-256("holdfast-dek|" ‖ context)` and checks the suffix
//! on unwrap, so the wrap is bound to its organization even where the provider has no
//! associated data (Azure, or Vault keys without derivation).

use crate::aead::DataKey;
use crate::kms::{Kms, Wrapped};
use crate::{CryptoError, Result};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Gcp,
    Azure,
    Vault,
}

impl Flavor {
    fn prefix(self) -> &'static str {
        match self {
            Self::Gcp => "gcp:",
            Self::Azure => "azure:",
            Self::Vault => "vault:",
        }
    }
}

/// Where the bearer token comes from.
pub enum Token {
    Fixed(SecretString),
    /// Read (and trimmed) at every call.
    File(std::path::PathBuf),
    /// From the instance's metadata service, for the identity the machine runs as.
    Metadata(MetadataToken),
}

/// A token from GCP's metadata server or Azure's Instance Metadata Service, kept until a
/// minute before it expires and then fetched again.
pub struct MetadataToken {
    url: String,
    header: (&'static str, &'static str),
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(SecretString, std::time::Instant)>>,
}

impl MetadataToken {
    fn new(url: String, header: (&'static str, &'static str)) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| CryptoError::Kms(e.to_string()))?;
        Ok(Self {
            url,
            header,
            http,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// GCP: the default service account's token from the metadata server at `base`
    /// (`http://metadata.google.internal` on Google Cloud).
    pub fn gcp(base: &str) -> Result<Self> {
        Self::new(
            format!(
                "{}/computeMetadata/v1/instance/service-accounts/default/token",
                base.trim_end_matches('/')
            ),
            ("metadata-flavor", "Google"),
        )
    }

    /// Azure: a managed identity's token for Key Vault from the Instance Metadata Service at
    /// `base` (`http://169.254.169.254` on Azure); `client_id` picks a user-assigned identity.
    pub fn azure(base: &str, client_id: Option<&str>) -> Result<Self> {
        let mut url = format!(
            "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net",
            base.trim_end_matches('/')
        );
        if let Some(id) = client_id {
            if !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return Err(CryptoError::Kms(format!(
                    "the managed identity's client id {id:?} is not a GUID"
                )));
            }
            url.push_str("&client_id=");
            url.push_str(id);
        }
        Self::new(url, ("metadata", "true"))
    }

    async fn get(&self) -> Result<SecretString> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && std::time::Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let failed = |e: &dyn std::fmt::Display| {
            CryptoError::Kms(format!("metadata service {}: {e}", self.url))
        };
        let resp = self
            .http
            .get(&self.url)
            .header(self.header.0, self.header.1)
            .send()
            .await
            .map_err(|e| failed(&e))?;
        let status = resp.status();
        let text = Zeroizing::new(resp.text().await.map_err(|e| failed(&e))?);
        if !status.is_success() {
            return Err(failed(&format!(
                "answered {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| failed(&e))?;
        let token = field(&v, &["access_token"])
            .filter(|t| !t.is_empty())
            .ok_or_else(|| failed(&"no access_token in the answer"))?;
        // GCP sends a number, Azure a string of one.
        let lifetime = match v.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(300);
        let until =
            std::time::Instant::now() + std::time::Duration::from_secs(lifetime.saturating_sub(60));
        let token = SecretString::from(token);
        *cached = Some((token.clone(), until));
        Ok(token)
    }
}

impl Token {
    async fn get(&self) -> Result<SecretString> {
        match self {
            Self::Fixed(t) => Ok(t.clone()),
            Self::Metadata(m) => m.get().await,
            Self::File(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    CryptoError::Kms(format!("token file {}: {e}", path.display()))
                })?);
                let token = text.trim();
                if token.is_empty() {
                    return Err(CryptoError::Kms(format!(
                        "token file {} is empty",
                        path.display()
                    )));
                }
                Ok(token.into())
            }
        }
    }
}

pub struct HttpKms {
    flavor: Flavor,
    /// GCP and Vault: the API's base URL. Azure: unused (the key URL is absolute).
    endpoint: String,
    /// GCP: `projects/…/locations/…/keyRings/…/cryptoKeys/…`. Azure: the key's URL. Vault:
    /// `mount/key` (for example `transit/holdfast`).
    key: String,
    token: Token,
    http: reqwest::Client,
}

fn bound(key: &DataKey, context: &str) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(key.expose().to_vec());
    v.extend_from_slice(&Sha256::digest(
        format!("holdfast-dek|{context}").as_bytes(),
    ));
    v
}

fn unbind(plain: &[u8], context: &str) -> Result<DataKey> {
    let (key, tag) = plain.split_at_checked(32).ok_or(CryptoError::Open)?;
    let want = Sha256::digest(format!("holdfast-dek|{context}").as_bytes());
    if !subtle_eq(tag, &want) {
        return Err(CryptoError::Open);
    }
    DataKey::from_bytes(key)
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

impl HttpKms {
    pub fn new(flavor: Flavor, endpoint: &str, key: &str, token: Token) -> Result<Self> {
        if key.is_empty() {
            return Err(CryptoError::Kms("a key name is required".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| CryptoError::Kms(e.to_string()))?;
        Ok(Self {
            flavor,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            key: key.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    fn url(&self, wrap: bool) -> String {
        match self.flavor {
            Flavor::Gcp => format!(
                "{}/v1/{}:{}",
                self.endpoint,
                self.key,
                if wrap { "encrypt" } else { "decrypt" }
            ),
            Flavor::Azure => format!(
                "{}/{}?api-version=7.4",
                self.key,
                if wrap { "wrapkey" } else { "unwrapkey" }
            ),
            Flavor::Vault => {
                let (mount, name) = self.key.rsplit_once('/').unwrap_or(("transit", &self.key));
                format!(
                    "{}/v1/{mount}/{}/{name}",
                    self.endpoint,
                    if wrap { "encrypt" } else { "decrypt" }
                )
            }
        }
    }

    /// Retried as `crate::retry` allows (wrap and unwrap are idempotent).
    async fn post(&self, wrap: bool, body: Value) -> Result<Value> {
        let what = format!("{:?}", self.flavor);
        let text = crate::retry::retry("kms", || async {
            let token = match self.token.get().await {
                Ok(t) => t,
                Err(e) => return crate::retry::Outcome::Fail(e),
            };
            let mut req = self.http.post(self.url(wrap)).json(&body);
            req = match self.flavor {
                Flavor::Vault => req.header("x-vault-token", token.expose_secret()),
                _ => req.bearer_auth(token.expose_secret()),
            };
            crate::retry::http_outcome(&what, req).await
        })
        .await?;
        serde_json::from_str(&text).map_err(|e| CryptoError::Kms(e.to_string()))
    }
}

impl Kms for HttpKms {
    async fn wrap(&self, key: &DataKey, context: &str) -> Result<Wrapped> {
        let plain = bound(key, context);
        let ctx = B64.encode(context);
        let blob = match self.flavor {
            Flavor::Gcp => {
                let out = self
                    .post(true, json!({"plaintext": B64.encode(&*plain), "additionalAuthenticatedData": ctx}))
                    .await?;
                field(&out, &["ciphertext"]).and_then(|c| B64.decode(c).ok())
            }
            Flavor::Azure => {
                let out = self
                    .post(true, json!({"alg": "RSA-OAEP-256", "value": B64URL.encode(&*plain)}))
                    .await?;
                field(&out, &["value"]).and_then(|c| B64URL.decode(c).ok())
            }
            Flavor::Vault => {
                let out = self
                    .post(true, json!({"plaintext": B64.encode(&*plain), "context": ctx}))
                    .await?;
                field(&out, &["data", "ciphertext"]).map(|c| c.as_bytes().to_vec())
            }
        }
        .ok_or_else(|| CryptoError::Kms(format!("{:?} returned no ciphertext", self.flavor)))?;
        Ok(Wrapped {
            kek_id: self.current_kek()?,
            blob,
        })
    }

    async fn unwrap(&self, wrapped: &Wrapped, context: &str) -> Result<DataKey> {
        if wrapped.kek_id != self.current_kek()? {
            return Err(CryptoError::UnknownKek(wrapped.kek_id.clone()));
        }
        let ctx = B64.encode(context);
        let plain = match self.flavor {
            Flavor::Gcp => {
                let out = self
                    .post(false, json!({"ciphertext": B64.encode(&wrapped.blob), "additionalAuthenticatedData": ctx}))
                    .await?;
                field(&out, &["plaintext"]).and_then(|c| B64.decode(c).ok())
            }
            Flavor::Azure => {
                let out = self
                    .post(false, json!({"alg": "RSA-OAEP-256", "value": B64URL.encode(&wrapped.blob)}))
                    .await?;
                field(&out, &["value"]).and_then(|c| B64URL.decode(c).ok())
            }
            Flavor::Vault => {
                let ct = String::from_utf8(wrapped.blob.clone()).map_err(|_| CryptoError::Open)?;
                let out = self
                    .post(false, json!({"ciphertext": ct, "context": ctx}))
                    .await?;
                field(&out, &["data", "plaintext"]).and_then(|c| B64.decode(c).ok())
            }
        }
        .map(Zeroizing::new)
        .ok_or(CryptoError::Open)?;
        unbind(&plain, context)
    }

    fn current_kek(&self) -> Result<String> {
        Ok(format!("{}{}", self.flavor.prefix(), self.key))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_context_suffix_binds_the_wrap() {
        let k = DataKey::generate().unwrap();
        let b = bound(&k, "org-a");
        assert_eq!(unbind(&b, "org-a").unwrap().expose(), k.expose());
        assert!(unbind(&b, "org-b").is_err());
        assert!(unbind(&b[..40], "org-a").is_err());
    }
}
