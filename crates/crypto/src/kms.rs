//! Key-encryption keys. A data key is stored only wrapped by a KEK that a [`Kms`] holds: a
//! local key file (the default), or AWS KMS (or a server speaking its API).

use crate::Result;
use crate::aead::DataKey;
use crate::local::LocalKms;

/// A data key wrapped by a key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    /// Which KEK wrapped it (`local:<id>`, `aws:<key id>`).
    pub kek_id: String,
    pub blob: Vec<u8>,
}

/// What a key-encryption-key provider does. `context` (the organization id) is bound into
/// every wrap: a wrapped key only unwraps with the same context.
pub trait Kms: Send + Sync {
    fn wrap(
        &self,
        key: &DataKey,
        context: &str,
    ) -> impl std::future::Future<Output = Result<Wrapped>> + Send;
    fn unwrap(
        &self,
        wrapped: &Wrapped,
        context: &str,
    ) -> impl std::future::Future<Output = Result<DataKey>> + Send;
    /// The KEK that new wraps use.
    fn current_kek(&self) -> Result<String>;
}

/// The configured provider.
pub enum AnyKms {
    Local(LocalKms),
    #[cfg(feature = "aws")]
    Aws(crate::aws::AwsKms),
    /// GCP Cloud KMS, Azure Key Vault or Vault transit.
    #[cfg(feature = "http-kms")]
    Http(crate::http::HttpKms),
}

impl std::fmt::Debug for AnyKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(_) => f.write_str("AnyKms::Local"),
            #[cfg(feature = "aws")]
            Self::Aws(_) => f.write_str("AnyKms::Aws"),
            #[cfg(feature = "http-kms")]
            Self::Http(_) => f.write_str("AnyKms::Http"),
        }
    }
}

impl Kms for AnyKms {
    async fn wrap(&self, key: &DataKey, context: &str) -> Result<Wrapped> {
        match self {
            Self::Local(k) => k.wrap(key, context).await,
            #[cfg(feature = "aws")]
            Self::Aws(k) => k.wrap(key, context).await,
            #[cfg(feature = "http-kms")]
            Self::Http(k) => k.wrap(key, context).await,
        }
    }
    async fn unwrap(&self, wrapped: &Wrapped, context: &str) -> Result<DataKey> {
        match self {
            Self::Local(k) => k.unwrap(wrapped, context).await,
            #[cfg(feature = "aws")]
            Self::Aws(k) => k.unwrap(wrapped, context).await,
            #[cfg(feature = "http-kms")]
            Self::Http(k) => k.unwrap(wrapped, context).await,
        }
    }
    fn current_kek(&self) -> Result<String> {
        match self {
            Self::Local(k) => k.current_kek(),
            #[cfg(feature = "aws")]
            Self::Aws(k) => k.current_kek(),
            #[cfg(feature = "http-kms")]
            Self::Http(k) => k.current_kek(),
        }
    }
}
