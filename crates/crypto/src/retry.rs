//! Bounded retries for calls to services outside the process (a KMS, S3).
//!
//! Guarantees: a call is tried at most [`ATTEMPTS`] times, with a wait of [`BACKOFF`] times
//! 4ⁿ⁻¹, less up to half of it at random, after the n-th failure; and only a failure that is
//! safe to try again is retried: the connection failed or timed out, or the service answered
//! 429 or 5xx. Every call made through it is idempotent (KMS encrypt and decrypt; S3 GET, PUT,
//! HEAD and DELETE of one object), so a retry after a lost answer changes nothing twice.

use std::future::Future;
use std::time::Duration;

pub const ATTEMPTS: u32 = 3;
pub const BACKOFF: Duration = Duration::from_millis(100);

/// What one attempt came to.
pub enum Outcome<T, E> {
    Done(T),
    /// Safe to try again.
    Retry(E),
    Fail(E),
}

/// A status worth trying again.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || status >= 500
}

fn wait(failures: u32) -> Duration {
    let full = BACKOFF.saturating_mul(4u32.saturating_pow(failures.saturating_sub(1)));
    let jitter = crate::random::<1>()
        .map(|[b]| f64::from(b) / 255.0)
        .unwrap_or(0.5);
    full.mul_f64(1.0 - jitter / 2.0)
}

/// Runs `attempt` until it is done, fails for good, or has failed [`ATTEMPTS`] times (the
/// last error is returned).
pub async fn retry<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome<T, E>>,
{
    let mut failures = 0;
    loop {
        match attempt().await {
            Outcome::Done(v) => return Ok(v),
            Outcome::Fail(e) => return Err(e),
            Outcome::Retry(e) => {
                failures += 1;
                if failures >= ATTEMPTS {
                    return Err(e);
                }
                tokio::time::sleep(wait(failures)).await;
            }
        }
    }
}

/// Sends a request and sorts the answer: the body on success; a failure to connect, a
/// timeout, 429 or 5xx to be retried; anything else final.
#[cfg(any(feature = "aws", feature = "http-kms"))]
pub(crate) async fn http_outcome(
    what: &str,
    req: reqwest::RequestBuilder,
) -> Outcome<String, crate::CryptoError> {
    let err = |e: &dyn std::fmt::Display| crate::CryptoError::Kms(format!("{what}: {e}"));
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() || e.is_timeout() => return Outcome::Retry(err(&e)),
        Err(e) => return Outcome::Fail(err(&e)),
    };
    let status = resp.status();
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => return Outcome::Retry(err(&e)),
    };
    if status.is_success() {
        return Outcome::Done(text);
    }
    let e = crate::CryptoError::Kms(format!(
        "{what} answered {status}: {}",
        text.chars().take(300).collect::<String>()
    ));
    if retryable_status(status.as_u16()) {
        Outcome::Retry(e)
    } else {
        Outcome::Fail(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn run(fail_first: u32, retryable: bool) -> (Result<u32, String>, u32) {
        let tries = AtomicU32::new(0);
        let out = retry(|| async {
            let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= fail_first {
                let e = format!("failure {n}");
                if retryable {
                    Outcome::Retry(e)
                } else {
                    Outcome::Fail(e)
                }
            } else {
                Outcome::Done(n)
            }
        })
        .await;
        (out, tries.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn retries_what_may_be_retried_a_bounded_number_of_times() {
        assert_eq!(run(0, true).await, (Ok(1), 1));
        assert_eq!(run(2, true).await, (Ok(3), 3));
        assert_eq!(run(5, true).await, (Err("failure 3".into()), 3));
        assert_eq!(run(1, false).await, (Err("failure 1".into()), 1));
    }

    #[test]
    fn waits_grow_and_are_bounded() {
        for n in 1..=3 {
            let full = BACKOFF * 4u32.pow(n - 1);
            let w = wait(n);
            assert!(w <= full && w >= full / 2, "{n}: {w:?}");
        }
        assert!(retryable_status(503) && retryable_status(429) && !retryable_status(404));
    }
}
