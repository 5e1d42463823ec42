//! AWS Signature Version 4 for requests to AWS APIs (KMS, S3) and to compatible servers.
//!
//! The caller gives the canonical pieces (method, URI path already percent-encoded, canonical
//! query string, the headers to sign and the payload's SHA-256); [`sign`] adds `host`,
//! `x-amz-date` and, with temporary credentials, `x-amz-security-token`, and returns every
//! header to send, `authorization` last. Checked against the worked example in the S3 API
//! documentation.

use crate::{CryptoError, Result};
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// An access key, with a session token for temporary credentials.
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

impl Credentials {
    /// The standard AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`).
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Self {
            access_key_id: var("AWS_ACCESS_KEY_ID")
                .ok_or_else(|| CryptoError::Kms("AWS_ACCESS_KEY_ID is not set".into()))?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")
                .ok_or_else(|| CryptoError::Kms("AWS_SECRET_ACCESS_KEY is not set".into()))?
                .into(),
            session_token: var("AWS_SESSION_TOKEN").map(Into::into),
        })
    }
}

/// What is signed.
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// The URI path, percent-encoded as sent.
    pub path: &'a str,
    /// The canonical query string (sorted, encoded); empty for none.
    pub query: &'a str,
    /// Further headers to sign, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Lower-case hex SHA-256 of the body (or `UNSIGNED-PAYLOAD` where the service allows).
    pub payload_sha256: &'a str,
}

/// `scheme://host[:port]` of an endpoint (a trailing `/` dropped) and its host, the value
/// signed as `host`; `None` unless the endpoint is exactly that.
pub fn origin_and_host(endpoint: &str) -> Option<(String, String)> {
    let origin = endpoint.trim_end_matches('/');
    let host = origin
        .split_once("://")
        .map(|(_, h)| h)
        .filter(|h| !h.is_empty() && !h.contains('/'))?;
    Some((origin.to_owned(), host.to_owned()))
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Lower-case hex SHA-256 of a body.
pub fn sha256_hex(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

fn hmac(key: &[u8], data: &str) -> Result<Vec<u8>> {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key)
        .map_err(|_| CryptoError::Kms("bad signing key".into()))?;
    m.update(data.as_bytes());
    Ok(m.finalize().into_bytes().to_vec())
}

/// The headers that authenticate `req` for `service` in `region` at `now`.
pub fn sign(
    req: Request<'_>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    now: time::OffsetDateTime,
) -> Result<Vec<(String, String)>> {
    let date = format!(
        "{:04}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let amz_date = format!(
        "{date}T{:02}{:02}{:02}Z",
        now.hour(),
        now.minute(),
        now.second()
    );
    let mut headers = req.headers;
    headers.push(("host".to_owned(), req.host.to_owned()));
    headers.push(("x-amz-date".to_owned(), amz_date.clone()));
    if let Some(t) = &credentials.session_token {
        headers.push((
            "x-amz-security-token".to_owned(),
            t.expose_secret().to_owned(),
        ));
    }
    headers.sort();
    let signed = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        req.method, req.path, req.query, req.payload_sha256
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k_secret = zeroize::Zeroizing::new(format!(
        "AWS4{}",
        credentials.secret_access_key.expose_secret()
    ));
    let k_date = hmac(k_secret.as_bytes(), &date)?;
    let k_region = hmac(&k_date, region)?;
    let k_service = hmac(&k_region, service)?;
    let k_signing = hmac(&k_service, "aws4_request")?;
    let signature = hex(&hmac(&k_signing, &to_sign)?);
    headers.push((
        "authorization".to_owned(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    Ok(headers)
}

/// Percent-encodes one path segment or query value the way SigV4 expects (RFC 3986
/// unreserved characters stay as they are).
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The GET Object example of the S3 API reference ("Signature Calculations for the
    /// Authorization Header"): a signature computed by AWS, not by this code.
    #[test]
    fn the_s3_reference_example_signs_as_documented() {
        let credentials = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let empty = sha256_hex(b"");
        assert_eq!(
            empty,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let headers = sign(
            Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: "",
                headers: vec![
                    ("range".into(), "bytes=0-9".into()),
                    ("x-amz-content-sha256".into(), empty.clone()),
                ],
                payload_sha256: &empty,
            },
            &credentials,
            "us-east-1",
            "s3",
            time::macros::datetime!(2013-05-24 00:00:00 UTC),
        )
        .unwrap();
        let auth = &headers.last().unwrap().1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn endpoints_give_their_origin_and_host() {
        assert_eq!(
            origin_and_host("http://127.0.0.1:5000/"),
            Some(("http://127.0.0.1:5000".into(), "127.0.0.1:5000".into()))
        );
        assert_eq!(origin_and_host("https://kms.example.com/path"), None);
        assert_eq!(origin_and_host("kms.example.com"), None);
    }

    #[test]
    fn uri_encoding_keeps_only_unreserved_characters() {
        assert_eq!(uri_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(uri_encode("a b/c+é"), "a%20b%2Fc%2B%C3%A9");
    }
}
