//! Files of any size sealed with AES-256-GCM in segments (the STREAM construction), for
//! exports.
//!
//! A sealed file is `header ‖ segment…`:
//! * header: the magic `HFSTRM1\0` and a random 32-byte salt. The file's own key is
//!   HKDF-SHA256 of the caller's key with that salt and the caller's label (an export names its
//!   id and the file's path), so every file has a key no other file shares, and a file moved to
//!   another name or export does not open.
//! * segments: the plaintext in pieces of [`SEGMENT`] bytes, each sealed with its own nonce:
//!   an 8-byte big-endian counter, three zero bytes, then 1 for the last segment and 0 for the
//!   others. The header is the associated data of every segment. Every segment but the last
//!   is full; the last holds the rest (a full segment or less, possibly nothing), so a reader
//!   knows a segment is the last when the file ends with it.
//!
//! Reordered, dropped, duplicated or altered segments fail to open, and so does a file cut at a
//! segment boundary (its last segment is not marked last).

use crate::aead::{DataKey, TAG_LEN};
use crate::{CryptoError, Result};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use std::io::{Read, Write};

pub const MAGIC: &[u8; 8] = b"HFSTRM1\0";
const SALT_LEN: usize = 32;
pub const HEADER_LEN: usize = MAGIC.len() + SALT_LEN;
/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;

fn file_key(key: &DataKey, salt: &[u8], label: &[u8]) -> Result<LessSafeKey> {
    let prk = Salt::new(HKDF_SHA256, salt).extract(key.expose());
    let info = [b"holdfast stream v1\0".as_slice(), label];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .map_err(|_| CryptoError::Seal)?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

fn nonce(counter: u64, last: bool) -> Result<Nonce> {
    let mut n = [0u8; NONCE_LEN];
    for (d, s) in n.iter_mut().zip(counter.to_be_bytes()) {
        *d = s;
    }
    n[NONCE_LEN - 1] = u8::from(last);
    Nonce::try_assume_unique_for_key(&n).map_err(|_| CryptoError::Seal)
}

/// Seals what is written to it into `out`; [`Sealer::finish`] writes the last segment.
pub struct Sealer<W: Write> {
    key: LessSafeKey,
    header: [u8; HEADER_LEN],
    counter: u64,
    buf: Vec<u8>,
    out: W,
}

impl<W: Write> Sealer<W> {
    pub fn new(key: &DataKey, label: &[u8], mut out: W) -> Result<Self> {
        let salt = crate::random::<SALT_LEN>()?;
        let mut header = [0u8; HEADER_LEN];
        for (d, s) in header.iter_mut().zip(MAGIC.iter().chain(&salt)) {
            *d = *s;
        }
        out.write_all(&header).map_err(|_| CryptoError::Seal)?;
        Ok(Self {
            key: file_key(key, &salt, label)?,
            header,
            counter: 0,
            buf: Vec::with_capacity(SEGMENT + TAG_LEN),
            out,
        })
    }

    fn seal_segment(&mut self, last: bool) -> std::io::Result<()> {
        let n = nonce(self.counter, last).map_err(std::io::Error::other)?;
        self.key
            .seal_in_place_append_tag(n, Aad::from(&self.header), &mut self.buf)
            .map_err(|_| std::io::Error::other(CryptoError::Seal))?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| std::io::Error::other(CryptoError::Seal))?;
        Ok(())
    }

    /// Seals the rest as the last segment and returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.seal_segment(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // A full segment is sealed only once more data follows it, so the last segment is
        // never a full one.
        if self.buf.len() == SEGMENT && !data.is_empty() {
            self.seal_segment(false)?;
        }
        let n = data.len().min(SEGMENT - self.buf.len());
        self.buf
            .extend_from_slice(data.get(..n).unwrap_or_default());
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Whether `bytes` start like a sealed file.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Opens a sealed file from `input` into `out`; returns the plaintext length. On an error,
/// `out` may hold the segments that opened before it: callers write to a temporary place.
pub fn open_to(
    key: &DataKey,
    label: &[u8],
    mut input: impl Read,
    mut out: impl Write,
) -> Result<u64> {
    let mut header = [0u8; HEADER_LEN];
    input
        .read_exact(&mut header)
        .map_err(|_| CryptoError::Open)?;
    if !is_sealed(&header) {
        return Err(CryptoError::Open);
    }
    let key = file_key(key, header.get(MAGIC.len()..).unwrap_or_default(), label)?;
    let full = SEGMENT + TAG_LEN;
    // Holds up to one segment more than the one being opened, to know whether it is the last.
    let mut buf = vec![0u8; 2 * full];
    let mut have = 0;
    let mut counter = 0u64;
    let mut total = 0u64;
    loop {
        while have < buf.len() {
            let n = input
                .read(buf.get_mut(have..).unwrap_or_default())
                .map_err(|_| CryptoError::Open)?;
            if n == 0 {
                break;
            }
            have += n;
        }
        let last = have <= full;
        let take = if last { have } else { full };
        if take < TAG_LEN {
            return Err(CryptoError::Open);
        }
        let segment = buf.get_mut(..take).ok_or(CryptoError::Open)?;
        let plain = key
            .open_in_place(nonce(counter, last)?, Aad::from(&header), segment)
            .map_err(|_| CryptoError::Open)?;
        out.write_all(plain).map_err(|_| CryptoError::Open)?;
        total += plain.len() as u64;
        if last {
            return Ok(total);
        }
        buf.copy_within(take..have, 0);
        have -= take;
        counter = counter.checked_add(1).ok_or(CryptoError::Open)?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn seal(key: &DataKey, label: &[u8], data: &[u8]) -> Vec<u8> {
        let mut s = Sealer::new(key, label, Vec::new()).unwrap();
        // Odd write sizes, to cross segment boundaries mid-write.
        for chunk in data.chunks(7001) {
            s.write_all(chunk).unwrap();
        }
        s.finish().unwrap()
    }

    fn open(key: &DataKey, label: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        open_to(key, label, sealed, &mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_every_boundary() {
        let key = DataKey::generate().unwrap();
        for len in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            2 * SEGMENT,
            3 * SEGMENT + 5,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&key, b"a/b.jsonl", &data);
            let segments = len.div_ceil(SEGMENT).max(1);
            assert_eq!(sealed.len(), HEADER_LEN + len + segments * TAG_LEN, "{len}");
            assert_eq!(open(&key, b"a/b.jsonl", &sealed).unwrap(), data, "{len}");
        }
        // Same key, same data: different salts, so different files.
        assert_ne!(seal(&key, b"x", b"same"), seal(&key, b"x", b"same"));
    }

    #[test]
    fn tampering_truncation_reordering_and_moving_are_refused() {
        let key = DataKey::generate().unwrap();
        let data: Vec<u8> = (0..3 * SEGMENT + 100).map(|i| (i % 13) as u8).collect();
        let sealed = seal(&key, b"rows/1.jsonl", &data);
        let full = SEGMENT + TAG_LEN;
        // A flipped bit anywhere: header, any segment, any tag.
        for i in [0, 9, HEADER_LEN, HEADER_LEN + full + 3, sealed.len() - 1] {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(open(&key, b"rows/1.jsonl", &t).is_err(), "byte {i}");
        }
        // Cut at a segment boundary, or inside one, or to the header.
        for cut in [
            HEADER_LEN,
            HEADER_LEN + full,
            HEADER_LEN + 3 * full,
            sealed.len() - 1,
        ] {
            assert!(
                open(&key, b"rows/1.jsonl", &sealed[..cut]).is_err(),
                "cut {cut}"
            );
        }
        // Two segments swapped.
        let mut swapped = sealed[..HEADER_LEN].to_vec();
        swapped.extend_from_slice(&sealed[HEADER_LEN + full..HEADER_LEN + 2 * full]);
        swapped.extend_from_slice(&sealed[HEADER_LEN..HEADER_LEN + full]);
        swapped.extend_from_slice(&sealed[HEADER_LEN + 2 * full..]);
        assert!(open(&key, b"rows/1.jsonl", &swapped).is_err());
        // A segment repeated.
        let mut doubled = sealed[..HEADER_LEN + full].to_vec();
        doubled.extend_from_slice(&sealed[HEADER_LEN..]);
        assert!(open(&key, b"rows/1.jsonl", &doubled).is_err());
        // Another label (file name or export), another key.
        assert!(open(&key, b"rows/2.jsonl", &sealed).is_err());
        assert!(open(&DataKey::generate().unwrap(), b"rows/1.jsonl", &sealed).is_err());
        // Not a sealed file at all.
        assert!(open(&key, b"rows/1.jsonl", b"{\"id\":1}\n").is_err());
        assert_eq!(open(&key, b"rows/1.jsonl", &sealed).unwrap(), data);
    }
}
