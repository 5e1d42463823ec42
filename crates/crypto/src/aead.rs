//! AES-256-GCM with random nonces. A sealed blob is `nonce (12) ‖ ciphertext ‖ tag (16)`.

use crate::{CryptoError, Result};
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

pub const TAG_LEN: usize = 16;

/// A 256-bit key; zeroed on drop, never printed.
pub struct DataKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn generate() -> Result<Self> {
        Ok(Self(SecretBox::new(Box::new(crate::random::<32>()?))))
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Open)?;
        Ok(Self(SecretBox::new(Box::new(key))))
    }
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

fn key(k: &DataKey) -> Result<RandomizedNonceKey> {
    RandomizedNonceKey::new(&AES_256_GCM, k.expose()).map_err(|_| CryptoError::Seal)
}

/// Seals `plaintext` bound to `aad` under a fresh random nonce.
pub fn seal(k: &DataKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut buf = plaintext.to_vec();
    let nonce = key(k)?
        .seal_in_place_append_tag(Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Seal)?;
    let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Opens a blob made by [`seal`] with the same key and associated data.
pub fn open(k: &DataKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Open);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
    let mut buf = Zeroizing::new(body.to_vec());
    let len = key(k)?
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Open)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// The raw primitive with a given nonce, for the Wycheproof vectors only.
#[cfg(test)]
fn open_with_nonce(key: &[u8], nonce: &[u8], aad: &[u8], ct_tag: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::aead::{LessSafeKey, UnboundKey};
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ct_tag.to_vec();
    let len = k.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?.len();
    buf.truncate(len);
    Some(buf)
}

#[cfg(test)]
fn seal_with_nonce(key: &[u8], nonce: &[u8], aad: &[u8], pt: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::aead::{LessSafeKey, UnboundKey};
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = pt.to_vec();
    k.seal_in_place_append_tag(nonce, Aad::from(aad), &mut buf)
        .ok()?;
    Some(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_tampering_is_refused() {
        let k = DataKey::generate().unwrap();
        let aad = b"v1|org-a|secret-1|value";
        let sealed = seal(&k, aad, b"sk-live-123").unwrap();
        assert_eq!(&*open(&k, aad, &sealed).unwrap(), b"sk-live-123");
        // Fresh nonce every time.
        assert_ne!(seal(&k, aad, b"sk-live-123").unwrap(), sealed);
        for i in 0..sealed.len() {
            for bit in [0x01u8, 0x80] {
                let mut flipped = sealed.clone();
                flipped[i] ^= bit;
                assert!(open(&k, aad, &flipped).is_err(), "byte {i}");
            }
        }
        for n in 0..sealed.len() {
            assert!(open(&k, aad, &sealed[..n]).is_err(), "truncated to {n}");
        }
        // Moved to another row, field or organization; or another key.
        for other in [
            &b"v1|org-a|secret-2|value"[..],
            b"v1|org-a|secret-1|name",
            b"v1|org-b|secret-1|value",
        ] {
            assert!(open(&k, other, &sealed).is_err());
        }
        assert!(open(&DataKey::generate().unwrap(), aad, &sealed).is_err());
    }

    /// Project Wycheproof's AES-GCM vectors with 256-bit keys and 96-bit nonces (the only
    /// shape used here) against the AEAD in use: every valid vector seals to the expected
    /// ciphertext and opens; every invalid one is refused.
    #[test]
    fn wycheproof_aes_256_gcm() {
        use wycheproof::TestResult;
        use wycheproof::aead::{TestName, TestSet};
        let set = TestSet::load(TestName::AesGcm).unwrap();
        let (mut valid, mut invalid) = (0, 0);
        for group in set.test_groups {
            if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
                continue;
            }
            for t in group.tests {
                let ct_tag: Vec<u8> = [t.ct.as_ref(), t.tag.as_ref()].concat();
                let opened = open_with_nonce(&t.key, &t.nonce, &t.aad, &ct_tag);
                match t.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        assert_eq!(opened.as_deref(), Some(t.pt.as_ref()), "tc {}", t.tc_id);
                        let sealed = seal_with_nonce(&t.key, &t.nonce, &t.aad, &t.pt);
                        assert_eq!(sealed.as_deref(), Some(ct_tag.as_slice()), "tc {}", t.tc_id);
                        valid += 1;
                    }
                    TestResult::Invalid => {
                        assert!(opened.is_none(), "tc {} should be refused", t.tc_id);
                        invalid += 1;
                    }
                }
            }
        }
        println!("wycheproof AES-256-GCM: {valid} valid and {invalid} invalid vectors checked");
        assert!(
            valid > 30 && invalid > 10,
            "{valid} valid, {invalid} invalid"
        );
    }
}
