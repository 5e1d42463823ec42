//! Randomness from the operating system's CSPRNG, in one place.

use crate::{Result, ServiceError};

pub fn bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
    Ok(out)
}

pub fn uuid() -> Result<String> {
    Ok(uuid::Builder::from_random_bytes(bytes::<16>()?)
        .into_uuid()
        .to_string())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from lowercase or uppercase hex; `None` if it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
