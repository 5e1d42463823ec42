//! Holdfast's cryptography: authenticated encryption of secrets under data keys, and the
//! key-encryption keys (KEKs) that wrap those data keys, behind the [`Kms`] trait.
//!
//! Guarantees:
//! * Secrets are sealed with AES-256-GCM (aws-lc-rs) under a fresh random 96-bit nonce drawn
//!   by the library for every seal; callers cannot supply or reuse one.
//! * Every seal binds associated data chosen by the caller (for secrets: format version,
//!   organization, row id and field), so a ciphertext moved to another row, field or
//!   organization fails to open. So does any flipped bit or truncation.
//! * Files of any size (exports) are sealed in segments under a key derived for each file
//!   ([`stream`]): segments cannot be altered, reordered, dropped or cut off unnoticed, and a
//!   file does not open under another name.
//! * Keys live in `secrecy`/`zeroize` types: never printed, zeroed when dropped.

pub mod aead;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod aws_creds;
#[cfg(feature = "http-kms")]
pub mod http;
pub mod kms;
pub mod local;
pub mod retry;
#[cfg(feature = "aws")]
pub mod sigv4;
pub mod stream;

pub use aead::{DataKey, open, seal};
pub use kms::{AnyKms, Kms, Wrapped};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Wrong key, wrong associated data, or tampered ciphertext: deliberately one error.
    #[error("decryption failed: the data is corrupt, tampered with, or under another key")]
    Open,
    #[error("encryption failed")]
    Seal,
    #[error("randomness unavailable")]
    Random,
    #[error("key file {path}: {why}")]
    KeyFile { path: String, why: String },
    #[error("no key-encryption key {0:?} is available")]
    UnknownKek(String),
    #[error("key management service: {0}")]
    Kms(String),
}

pub type Result<T> = std::result::Result<T, CryptoError>;

/// Random bytes from the system's generator (through aws-lc).
pub fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| CryptoError::Random)?;
    Ok(b)
}
