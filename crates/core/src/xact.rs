//! Transaction ids. Each accepted write gets a fresh id, server-wide and only growing. On the
//! wire it is a fixed-width 19-digit decimal string, because the SDKs compare versions as
//! strings. The layout matches the SDK's: the top 16 bits are `0x0DE1`, the low 48 bits a
//! counter, so every id has exactly 19 digits.

use std::fmt;

const PREFIX: u64 = 0x0DE1 << 48;
const COUNTER_MASK: u64 = (1 << 48) - 1;
/// The SDKs' "pretty" form of an id is `id * COPRIME mod 2^64` in 16 hex digits
/// (`prettify_xact`); `COPRIME_INVERSE` undoes it.
const COPRIME: u64 = 205_891_132_094_649;
const COPRIME_INVERSE: u64 = 1_522_336_535_492_693_385;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct XactId(u64);

impl XactId {
    /// The id for the n-th write of this server (n counts from 1).
    pub fn from_counter(n: u64) -> Option<Self> {
        (n <= COUNTER_MASK).then_some(Self(PREFIX | n))
    }

    /// The stored form (fits an SQL BIGINT).
    pub fn as_i64(self) -> i64 {
        // PREFIX | 48-bit counter < 2^62, so this never wraps.
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    pub fn from_i64(v: i64) -> Option<Self> {
        u64::try_from(v)
            .ok()
            .filter(|v| v & !COUNTER_MASK == PREFIX)
            .map(Self)
    }

    /// The SDKs' 16-hex "pretty" form, as they print and store a version.
    pub fn pretty(self) -> String {
        format!("{:016x}", self.0.wrapping_mul(COPRIME))
    }

    /// Parses the 19-digit decimal form, or the SDKs' 16-hex "pretty" form.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() == 19 && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<u64>()
                .ok()
                .filter(|v| v & !COUNTER_MASK == PREFIX)
                .map(Self);
        }
        if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return u64::from_str_radix(s, 16)
                .ok()
                .map(|v| v.wrapping_mul(COPRIME_INVERSE))
                .filter(|v| v & !COUNTER_MASK == PREFIX)
                .map(Self);
        }
        None
    }
}

impl fmt::Display for XactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:019}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_19_digits_and_order_as_strings() {
        let a = XactId::from_counter(1).unwrap();
        let b = XactId::from_counter(10).unwrap();
        let c = XactId::from_counter(COUNTER_MASK).unwrap();
        for x in [a, b, c] {
            assert_eq!(x.to_string().len(), 19);
            assert_eq!(XactId::parse(&x.to_string()), Some(x));
            assert_eq!(XactId::from_i64(x.as_i64()), Some(x));
        }
        assert!(a.to_string() < b.to_string() && b.to_string() < c.to_string());
        assert_eq!(XactId::from_counter(COUNTER_MASK + 1), None);
    }

    #[test]
    fn pretty_hex_form_parses() {
        assert_eq!(COPRIME.wrapping_mul(COPRIME_INVERSE), 1);
        let a = XactId::from_counter(255).unwrap();
        assert_eq!(XactId::parse(&a.pretty()), Some(a));
        // As the Python SDK computes it: prettify_xact(1000192656880881099).
        let known = XactId::parse("1000192656880881099").unwrap();
        assert_eq!(known.pretty(), "81cd05ee665fdfb3");
        assert_eq!(XactId::parse("81cd05ee665fdfb3"), Some(known));
        // The id's plain hex is not the pretty form.
        assert_eq!(XactId::parse(&format!("{:016x}", a.0)), None);
        assert_eq!(XactId::parse("123"), None);
        assert_eq!(XactId::parse("9999999999999999999"), None);
    }
}
